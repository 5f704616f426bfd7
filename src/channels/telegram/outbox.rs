//! The Telegram outbox: every message the bot or an agent sends reaches its chat from here —
//! a turn's replies, reminders, an agent's answer from the console. One delivery task per chat
//! with mail, so a chat gets its messages in the order they were stored; chats in parallel.
//! Every send first waits for Telegram's rate limits (`throttle`), so 429s stay rare.
//!
//! A message is marked delivered once Telegram has taken all its parts; until then it stays in
//! the store and is tried again — after the `retry_after` Telegram asks for on a 429, after a
//! doubling wait on network errors, 5xx and anything else — also after a restart. A refusal
//! for good (the buyer blocked the bot, deactivated their account, the bot was kicked from the
//! group) marks the message undeliverable with the reason instead: kept in the store for the
//! agents, logged once, never tried again. Later messages to that chat are each tried once, so
//! a buyer who unblocks the bot and writes again gets the answers. A send whose answer was
//! lost may reach the buyer twice; none is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use teloxide::payloads::SendMessageSetters;
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup};
use teloxide::{Bot, RequestError};

use super::refusal::{refusal, Refusal};
use super::throttle::{Limits, Throttle};
use crate::conversation::ChatKey;
use crate::service::Clock;
use crate::storage::{Store, StoredMessage};

/// The channel name in chat keys: `telegram:<chat id>`.
pub const CHANNEL: &str = "telegram";

/// Telegram's longest message, in UTF-16 code units (how the Bot API counts).
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// How long to wait between tries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `wait`: twice as long, at most `max`.
    pub fn next(&self, wait: Duration) -> Duration {
        (wait * 2).min(self.max)
    }
}

pub struct Outbox {
    bot: Bot,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    /// How often to look for mail stored outside a turn.
    interval: Duration,
    /// Chats with a delivery task, and whether mail came since it last looked.
    active: Mutex<HashMap<ChatKey, Arc<AtomicBool>>>,
    /// Telegram's rate limits, shared by every chat's delivery.
    throttle: Mutex<Throttle>,
}

impl Outbox {
    pub fn new(
        bot: Bot,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        backoff: Backoff,
        interval: Duration,
        limits: Limits,
    ) -> Arc<Outbox> {
        Arc::new(Outbox {
            bot,
            store,
            clock,
            backoff,
            interval,
            active: Mutex::new(HashMap::new()),
            throttle: Mutex::new(Throttle::new(limits)),
        })
    }

    fn active(&self) -> MutexGuard<'_, HashMap<ChatKey, Arc<AtomicBool>>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until Telegram's rate limits allow a message to `chat`, and counts it.
    pub async fn pace(&self, chat: ChatId) {
        loop {
            let taken = {
                let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
                // The moment is read under the lock, so the throttle never sees time go back.
                throttle.take(chat, std::time::Instant::now())
            };
            match taken {
                Ok(()) => return,
                Err(later) => tokio::time::sleep_until(later.into()).await,
            }
        }
    }

    /// The chat has new mail: its delivery task looks again, or starts.
    pub fn wake(self: &Arc<Self>, chat: &ChatKey) {
        let mut active = self.active();
        if let Some(mail) = active.get(chat) {
            mail.store(true, Ordering::SeqCst);
            return;
        }
        let mail = Arc::new(AtomicBool::new(true));
        active.insert(chat.clone(), mail.clone());
        drop(active);
        tokio::spawn(self.clone().deliver_chat(chat.clone(), mail));
    }

    /// Runs until the process ends: looks for undelivered mail every `interval` (agent
    /// replies, reminders, and whatever a restart left behind).
    pub async fn run(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.pending_chats(CHANNEL)).await {
                Ok(Ok(chats)) => chats.iter().for_each(|chat| self.wake(chat)),
                Ok(Err(error)) => tracing::error!(%error, "outbox: listing chats with mail failed"),
                Err(error) => tracing::error!(%error, "outbox: listing chats with mail panicked"),
            }
        }
    }

    async fn deliver_chat(self: Arc<Self>, chat: ChatKey, mail: Arc<AtomicBool>) {
        loop {
            mail.store(false, Ordering::SeqCst);
            let store = self.store.clone();
            let key = chat.clone();
            let pending = match tokio::task::spawn_blocking(move || store.undelivered(&key)).await {
                Ok(Ok(pending)) => pending,
                Ok(Err(error)) => {
                    tracing::error!(%chat, %error, "outbox: reading undelivered messages failed");
                    Vec::new()
                }
                Err(error) => {
                    tracing::error!(%chat, %error, "outbox: reading undelivered messages panicked");
                    Vec::new()
                }
            };
            if pending.is_empty() {
                // Retire unless mail came meanwhile (`wake` sets the flag under this lock).
                let mut active = self.active();
                if !mail.load(Ordering::SeqCst) {
                    active.remove(&chat);
                    return;
                }
                continue;
            }
            for message in &pending {
                self.deliver(&chat, message).await;
            }
        }
    }

    /// Sends one stored message, part by part, until Telegram has taken all or refused it for
    /// good; then marks it delivered or undeliverable.
    async fn deliver(&self, chat: &ChatKey, message: &StoredMessage) {
        let sent = match chat.id().parse::<i64>() {
            Ok(chat_id) => self.send_parts(ChatId(chat_id), message).await,
            Err(_) => Err("not_a_chat_id"),
        };
        if let Err(reason) = sent {
            // Once per message: it is never tried again.
            tracing::warn!(%chat, message = message.id, reason, "Telegram refused a message for good; it is kept as undeliverable");
        }
        self.record(message.id, sent.err()).await;
    }

    async fn send_parts(&self, chat_id: ChatId, message: &StoredMessage) -> Result<(), Refusal> {
        let parts = split_text(&message.text, MAX_MESSAGE_UNITS);
        let n_parts = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            // The buttons go with the question, at the end.
            let buttons = if index + 1 == n_parts {
                keyboard(&message.choices)
            } else {
                None
            };
            self.send_part(chat_id, part, buttons).await?;
        }
        Ok(())
    }

    /// Tries until Telegram takes the part or refuses it for good.
    async fn send_part(
        &self,
        chat_id: ChatId,
        text: &str,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<(), Refusal> {
        let mut wait = self.backoff.initial;
        loop {
            self.pace(chat_id).await;
            let mut request = self.bot.send_message(chat_id, text);
            if let Some(buttons) = &buttons {
                request = request.reply_markup(buttons.clone());
            }
            match request.await {
                Ok(_) => return Ok(()),
                Err(RequestError::RetryAfter(seconds)) => {
                    tracing::warn!(
                        chat = chat_id.0,
                        retry_after_s = seconds.seconds(),
                        "Telegram asks to slow down (429)"
                    );
                    tokio::time::sleep(seconds.duration()).await;
                }
                Err(error) => {
                    if let Some(reason) = refusal(&error) {
                        return Err(reason);
                    }
                    tracing::warn!(chat = chat_id.0, error.cause_chain = ?error, wait_ms = wait.as_millis() as u64, "sending to Telegram failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = self.backoff.next(wait);
                }
            }
        }
    }

    /// Marks a message delivered, or undeliverable for `refused`; a store that fails is asked
    /// again, so the message is not sent twice.
    async fn record(&self, id: i64, refused: Option<Refusal>) {
        let mut wait = self.backoff.initial;
        loop {
            let store = self.store.clone();
            let at_ms = self.clock.now_ms();
            let marked = tokio::task::spawn_blocking(move || match refused {
                None => store.mark_delivered(id, at_ms),
                Some(reason) => store.mark_undeliverable(id, reason),
            });
            match marked.await {
                Ok(Ok(())) => return,
                Ok(Err(error)) => {
                    tracing::error!(message = id, %error, "outbox: marking a message failed")
                }
                Err(error) => {
                    tracing::error!(message = id, %error, "outbox: marking a message panicked")
                }
            }
            tokio::time::sleep(wait).await;
            wait = self.backoff.next(wait);
        }
    }
}

/// One button per option, `1. 退货运费` …, each answering with its number.
fn keyboard(choices: &[String]) -> Option<InlineKeyboardMarkup> {
    (!choices.is_empty()).then(|| {
        InlineKeyboardMarkup::new(choices.iter().enumerate().map(|(index, title)| {
            let number = (index + 1).to_string();
            [InlineKeyboardButton::callback(
                format!("{number}. {title}"),
                number,
            )]
        }))
    })
}

/// Splits a text into parts of at most `limit` UTF-16 units: at the last line break of a part
/// if there is one in its second half, else after the last sentence end (。！？.!?) or space
/// there, else at the limit — always between two characters, never inside one. A blank text
/// has no parts.
pub fn split_text(text: &str, limit: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while units(rest) > limit {
        let mut end = 0;
        let mut counted = 0;
        for (at, c) in rest.char_indices() {
            if counted + c.len_utf16() > limit {
                break;
            }
            counted += c.len_utf16();
            end = at + c.len_utf8();
        }
        let window = &rest[..end];
        let half = window.len() / 2;
        let after =
            |at: Option<(usize, char)>| at.map(|(at, c)| at + c.len_utf8()).filter(|&at| at > half);
        let cut = after(window.char_indices().rev().find(|&(_, c)| c == '\n'))
            .or_else(|| {
                after(
                    window
                        .char_indices()
                        .rev()
                        .find(|&(_, c)| "。！？.!?".contains(c)),
                )
            })
            .or_else(|| {
                after(
                    window
                        .char_indices()
                        .rev()
                        .find(|&(_, c)| c.is_whitespace()),
                )
            })
            .unwrap_or(end);
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part);
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, limit: usize, expect: &[&str]) {
        let parts = split_text(text, limit);
        assert_eq!(parts, expect);
        for part in &parts {
            assert!(units(part) <= limit, "{part:?} is over {limit}");
        }
    }

    #[test]
    fn short_texts_are_one_part() {
        check("您好", 4096, &["您好"]);
        // Nothing to send (Telegram refuses empty messages).
        check(" \n", 4096, &[]);
    }

    #[test]
    fn long_texts_split_at_line_breaks_then_sentences_then_anywhere() {
        check("一二三四\n五六七八九", 8, &["一二三四", "五六七八九"]);
        check("一二三。四五六七八九", 8, &["一二三。四五六七", "八九"]);
        check("一二三四五六。七八九", 8, &["一二三四五六。", "七八九"]);
        check("abcde fgh ij", 8, &["abcde", "fgh ij"]);
        check("一二三四五六七八九十", 4, &["一二三四", "五六七八", "九十"]);
    }

    #[test]
    fn emoji_count_as_two_units_and_are_never_cut() {
        // 😀 is two UTF-16 units: four of them fill a limit of 8.
        check("😀😀😀😀😀", 8, &["😀😀😀😀", "😀"]);
        check("a😀😀😀😀", 8, &["a😀😀😀", "😀"]);
    }

    #[test]
    fn a_reply_at_telegrams_limit_fits_in_one_message_and_one_over_it_in_two() {
        let full = "您".repeat(MAX_MESSAGE_UNITS);
        assert_eq!(split_text(&full, MAX_MESSAGE_UNITS).len(), 1);
        let over = "您".repeat(MAX_MESSAGE_UNITS + 1);
        let parts = split_text(&over, MAX_MESSAGE_UNITS);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts.concat(), over);
    }

    #[test]
    fn every_choice_is_a_button_answering_with_its_number() {
        assert!(keyboard(&[]).is_none());
        let buttons = keyboard(&["退货运费".into(), "退货流程".into()]).unwrap();
        let json = serde_json::to_value(&buttons).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"inline_keyboard": [
                [{"text": "1. 退货运费", "callback_data": "1"}],
                [{"text": "2. 退货流程", "callback_data": "2"}],
            ]})
        );
    }
}
