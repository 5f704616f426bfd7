//! Reads one Telegram update: which chat it is from and what it asks of the bot, or nothing
//! when the bot is not addressed. Pure: no network, no store.
//!
//! Group chats: a group is a conversation of its own (its chat id is its key), and the bot
//! reads only what is addressed to it there — a command, an @mention of the bot, a reply to
//! one of its messages, or a press on its buttons. Everything else in a group is ignored and
//! never stored.

use teloxide::types::{
    CallbackQuery, CallbackQueryId, Chat, ChatId, Message, MessageEntityKind, MessageId, Update,
    UpdateKind, UserId,
};

use crate::dialog::Attachment;

/// The bot's own account (from `getMe`): groups address it by @username or by replying to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Me {
    pub id: UserId,
    pub username: String,
}

/// What one update asks of the bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub chat: ChatId,
    /// The message's id in its chat (`m42`) or the button press's (`c…`): whatever Telegram
    /// delivers twice is handled once.
    pub source_id: String,
    /// Photos sent together as an album share this id (see `join`).
    pub album: Option<String>,
    pub request: Request,
}

/// What the buyer wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `/start`, `/help` or a command the bot does not have: the shop's welcome.
    Welcome,
    /// `/human`: the buyer asks for a person.
    Human,
    /// Words, maybe with photos or documents (a caption is the words).
    Message {
        text: String,
        attachments: Vec<Attachment>,
    },
    /// A sticker, voice message, location … that the bot can't read.
    Unsupported,
    /// A button of a numbered question pressed: the option's number, the press to answer, and
    /// the message whose buttons are spent.
    Choice {
        number: String,
        callback: CallbackQueryId,
        message: MessageId,
    },
}

/// What the update asks of the bot; `None` for anything it does not answer (edits, channel
/// posts, other bots, service messages, group talk not addressed to it).
pub fn read(update: &Update, me: &Me) -> Option<Incoming> {
    match &update.kind {
        UpdateKind::Message(message) => read_message(message, me),
        UpdateKind::CallbackQuery(query) => read_choice(query),
        _ => None,
    }
}

fn conversation_chat(chat: &Chat) -> bool {
    chat.is_private() || chat.is_group() || chat.is_supergroup()
}

fn read_message(message: &Message, me: &Me) -> Option<Incoming> {
    if !conversation_chat(&message.chat) || message.from.as_ref().is_some_and(|u| u.is_bot) {
        return None;
    }
    let group = !message.chat.is_private();
    let words = message.text().or(message.caption()).unwrap_or_default();
    if group && !addressed(message, words, me) {
        return None;
    }
    let words = if group {
        without_mention(words, &me.username)
    } else {
        words.trim().to_string()
    };
    let request = if let Some(command) = command(&words, me) {
        match command.as_str() {
            "human" => Request::Human,
            _ => Request::Welcome,
        }
    } else if unsupported(message) {
        Request::Unsupported
    } else {
        let attachments = attachments(message);
        if words.is_empty() && attachments.is_empty() {
            // A service message (members joined, a pin …): nothing to answer.
            return None;
        }
        Request::Message {
            text: words,
            attachments,
        }
    };
    Some(Incoming {
        chat: message.chat.id,
        source_id: format!("m{}", message.id.0),
        album: message.media_group_id().map(|id| id.0.clone()),
        request,
    })
}

/// In a group: a command for the bot, an @mention of it, or a reply to one of its messages.
fn addressed(message: &Message, words: &str, me: &Me) -> bool {
    let replies_to_bot = message
        .reply_to_message()
        .and_then(|m| m.from.as_ref())
        .is_some_and(|user| user.id == me.id);
    let entities = message
        .parse_entities()
        .or_else(|| message.parse_caption_entities())
        .unwrap_or_default();
    let mentioned = entities.iter().any(|entity| match entity.kind() {
        MessageEntityKind::Mention => entity
            .text()
            .trim_start_matches('@')
            .eq_ignore_ascii_case(&me.username),
        MessageEntityKind::TextMention { user } => user.id == me.id,
        _ => false,
    });
    replies_to_bot || mentioned || command(words, me).is_some()
}

/// `/name` or `/name@this_bot` at the start of the words, lower-cased; a command for another
/// bot is none.
fn command(words: &str, me: &Me) -> Option<String> {
    let first = words.split_whitespace().next()?.strip_prefix('/')?;
    let (name, target) = match first.split_once('@') {
        Some((name, target)) => (name, Some(target)),
        None => (first, None),
    };
    let for_us = target.is_none_or(|t| t.eq_ignore_ascii_case(&me.username));
    (for_us && !name.is_empty()).then(|| name.to_lowercase())
}

/// The words without `@username` (any case).
fn without_mention(words: &str, username: &str) -> String {
    let mention = format!("@{}", username.to_ascii_lowercase());
    // ASCII lower-casing keeps byte offsets, so the original can be cut where the copy matches.
    let lower = words.to_ascii_lowercase();
    let mut kept = String::with_capacity(words.len());
    let mut rest = 0;
    if !username.is_empty() {
        let mut search = 0;
        while let Some(found) = lower[search..].find(&mention) {
            let start = search + found;
            kept.push_str(&words[rest..start]);
            rest = start + mention.len();
            search = rest;
        }
    }
    kept.push_str(&words[rest..]);
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Kinds of message the bot can't read.
fn unsupported(message: &Message) -> bool {
    message.sticker().is_some()
        || message.voice().is_some()
        || message.audio().is_some()
        || message.video().is_some()
        || message.video_note().is_some()
        || message.animation().is_some()
        || message.location().is_some()
        || message.venue().is_some()
        || message.contact().is_some()
        || message.dice().is_some()
        || message.poll().is_some()
}

/// The largest size of a photo, or a document, by its Telegram file id.
fn attachments(message: &Message) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    if let Some(largest) = message
        .photo()
        .and_then(|sizes| sizes.iter().max_by_key(|p| p.width * p.height))
    {
        attachments.push(Attachment {
            kind: "photo".into(),
            id: largest.file.id.0.clone(),
        });
    }
    if let Some(document) = message.document() {
        attachments.push(Attachment {
            kind: "document".into(),
            id: document.file.id.0.clone(),
        });
    }
    attachments
}

fn read_choice(query: &CallbackQuery) -> Option<Incoming> {
    let message = query.message.as_ref()?;
    let number = query.data.as_deref()?;
    let valid =
        !number.is_empty() && number.len() <= 2 && number.bytes().all(|b| b.is_ascii_digit());
    if !valid || !conversation_chat(message.chat()) {
        return None;
    }
    Some(Incoming {
        chat: message.chat().id,
        source_id: format!("c{}", query.id.0),
        album: None,
        request: Request::Choice {
            number: number.to_string(),
            callback: query.id.clone(),
            message: message.id(),
        },
    })
}

impl Incoming {
    /// Whether later photos of its album may still join it: a message with an album id.
    pub fn open_album(&self) -> bool {
        self.album.is_some() && matches!(self.request, Request::Message { .. })
    }

    /// Takes in `next` when it is another photo of this album: photos sent as one album arrive
    /// as one message each, and read together they are one answer (the flow asks for "the
    /// damage and the packaging", and gets both at once). The first caption is the words.
    /// Gives `next` back otherwise.
    pub fn join(&mut self, next: Incoming) -> Result<(), Incoming> {
        let same_album = self.chat == next.chat && self.album.is_some() && self.album == next.album;
        match (&mut self.request, next.request) {
            (
                Request::Message { text, attachments },
                Request::Message {
                    text: more_text,
                    attachments: more,
                },
            ) if same_album => {
                if text.is_empty() {
                    *text = more_text;
                }
                attachments.extend(more);
                Ok(())
            }
            (_, request) => Err(Incoming { request, ..next }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Me {
        Me {
            id: UserId(99),
            username: "xiaoer_shop_bot".into(),
        }
    }

    fn update(json: serde_json::Value) -> Update {
        // As Telegram sends it: text (teloxide reads an update from a `Value` as an error).
        serde_json::from_str(&json.to_string()).expect("a valid update")
    }

    fn message(chat: serde_json::Value, fields: serde_json::Value) -> Update {
        let mut message = serde_json::json!({
            "message_id": 7,
            "date": 1_795_392_000,
            "chat": chat,
            "from": {"id": 5, "is_bot": false, "first_name": "买家"},
        });
        for (key, value) in fields.as_object().unwrap() {
            message[key] = value.clone();
        }
        update(serde_json::json!({"update_id": 1, "message": message}))
    }

    fn private() -> serde_json::Value {
        serde_json::json!({"id": 5, "type": "private", "first_name": "买家"})
    }

    fn group() -> serde_json::Value {
        serde_json::json!({"id": -100, "type": "supergroup", "title": "买家群"})
    }

    #[track_caller]
    fn check(update: Update, expect: Option<Request>) {
        assert_eq!(read(&update, &me()).map(|i| i.request), expect);
    }

    fn words(text: &str) -> Option<Request> {
        Some(Request::Message {
            text: text.into(),
            attachments: Vec::new(),
        })
    }

    #[test]
    fn private_messages_are_read() {
        check(
            message(private(), serde_json::json!({"text": "包邮吗"})),
            words("包邮吗"),
        );
        check(
            message(private(), serde_json::json!({"text": "/start"})),
            Some(Request::Welcome),
        );
        check(
            message(private(), serde_json::json!({"text": "/start promo"})),
            Some(Request::Welcome),
        );
        check(
            message(private(), serde_json::json!({"text": "/human"})),
            Some(Request::Human),
        );
        check(
            message(
                private(),
                serde_json::json!({"text": "/HUMAN@xiaoer_shop_bot"}),
            ),
            Some(Request::Human),
        );
        check(
            message(
                private(),
                serde_json::json!({"sticker": {"file_id": "s", "file_unique_id": "s", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false}}),
            ),
            Some(Request::Unsupported),
        );
        check(
            message(
                private(),
                serde_json::json!({"location": {"latitude": 31.2, "longitude": 121.5}}),
            ),
            Some(Request::Unsupported),
        );
        check(
            message(
                private(),
                serde_json::json!({"voice": {"file_id": "v", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg", "file_size": 4096}}),
            ),
            Some(Request::Unsupported),
        );
    }

    #[test]
    fn the_largest_photo_and_documents_become_attachments() {
        check(
            message(
                private(),
                serde_json::json!({
                    "photo": [
                        {"file_id": "small", "file_unique_id": "a", "width": 90, "height": 90},
                        {"file_id": "large", "file_unique_id": "b", "width": 1280, "height": 960}
                    ],
                    "caption": "碎了"
                }),
            ),
            Some(Request::Message {
                text: "碎了".into(),
                attachments: vec![Attachment {
                    kind: "photo".into(),
                    id: "large".into(),
                }],
            }),
        );
        check(
            message(
                private(),
                serde_json::json!({"document": {"file_id": "doc", "file_unique_id": "d"}}),
            ),
            Some(Request::Message {
                text: String::new(),
                attachments: vec![Attachment {
                    kind: "document".into(),
                    id: "doc".into(),
                }],
            }),
        );
    }

    #[test]
    fn groups_are_read_only_when_the_bot_is_addressed() {
        check(
            message(group(), serde_json::json!({"text": "包邮吗"})),
            None,
        );
        check(
            message(
                group(),
                serde_json::json!({
                    "text": "@Xiaoer_Shop_Bot 包邮吗",
                    "entities": [{"type": "mention", "offset": 0, "length": 16}]
                }),
            ),
            words("包邮吗"),
        );
        check(
            message(
                group(),
                serde_json::json!({
                    "text": "@other_bot 包邮吗",
                    "entities": [{"type": "mention", "offset": 0, "length": 10}]
                }),
            ),
            None,
        );
        check(
            message(
                group(),
                serde_json::json!({
                    "text": "那退货呢",
                    "reply_to_message": {
                        "message_id": 6, "date": 1_795_392_000, "chat": group(),
                        "from": {"id": 99, "is_bot": true, "first_name": "店小二"},
                        "text": "您好"
                    }
                }),
            ),
            words("那退货呢"),
        );
        check(
            message(group(), serde_json::json!({"text": "/start@other_bot"})),
            None,
        );
        check(
            message(
                group(),
                serde_json::json!({"text": "/start@xiaoer_shop_bot"}),
            ),
            Some(Request::Welcome),
        );
    }

    #[test]
    fn channels_other_bots_and_edits_are_ignored() {
        let channel = serde_json::json!({"id": -200, "type": "channel", "title": "店铺频道"});
        check(
            message(channel, serde_json::json!({"text": "上新了"})),
            None,
        );
        let mut from_bot = message(private(), serde_json::json!({"text": "hi"}));
        if let UpdateKind::Message(m) = &mut from_bot.kind {
            m.from.as_mut().unwrap().is_bot = true;
        }
        check(from_bot, None);
        check(
            update(serde_json::json!({
                "update_id": 2,
                "edited_message": {"message_id": 7, "date": 1, "edit_date": 2, "chat": private(), "text": "改了"}
            })),
            None,
        );
    }

    #[test]
    fn a_pressed_button_is_its_number() {
        let press = update(serde_json::json!({
            "update_id": 3,
            "callback_query": {
                "id": "cb1", "chat_instance": "ci",
                "from": {"id": 5, "is_bot": false, "first_name": "买家"},
                "message": {"message_id": 8, "date": 1, "chat": private(), "text": "请问…"},
                "data": "2"
            }
        }));
        let incoming = read(&press, &me()).unwrap();
        assert_eq!(incoming.source_id, "ccb1");
        assert_eq!(
            incoming.request,
            Request::Choice {
                number: "2".into(),
                callback: CallbackQueryId("cb1".into()),
                message: MessageId(8),
            }
        );
    }

    #[test]
    fn the_photos_of_an_album_join_into_one_answer() {
        let photo = |id: &str, album: Option<&str>, caption: &str| Incoming {
            chat: ChatId(5),
            source_id: format!("m{id}"),
            album: album.map(String::from),
            request: Request::Message {
                text: caption.into(),
                attachments: vec![Attachment {
                    kind: "photo".into(),
                    id: id.into(),
                }],
            },
        };
        let mut album = photo("1", Some("a"), "");
        assert!(album.open_album());
        album.join(photo("2", Some("a"), "碎了")).unwrap();
        album.join(photo("3", Some("a"), "还有包装")).unwrap();
        let Request::Message { text, attachments } = &album.request else {
            panic!("a message");
        };
        assert_eq!(text, "碎了", "the first caption");
        assert_eq!(attachments.len(), 3);
        assert_eq!(album.source_id, "m1");
        // Another album, a photo of none, another chat: each stays apart.
        assert!(album.join(photo("4", Some("b"), "")).is_err());
        assert!(album.join(photo("5", None, "")).is_err());
        let elsewhere = Incoming {
            chat: ChatId(6),
            ..photo("6", Some("a"), "")
        };
        assert_eq!(album.join(elsewhere.clone()), Err(elsewhere));
        let mut single = photo("7", None, "");
        assert!(!single.open_album());
        assert!(single.join(photo("8", None, "")).is_err());
    }
}
