//! The Telegram channel (teloxide): buyers chat with the shop's bot. A thin adapter over
//! `Service`, like `http`: a text goes through `Service::receive_pushed`, the same turn as
//! `POST /api/chat`, and what the bot says waits in the store's outbox until `outbox` has
//! handed it to Telegram.
//!
//! - `update`: an update → what it asks (a message, `/start`, `/human`, a pressed button, a
//!   message kind the bot can't read), or nothing; the group rule.
//! - `lanes`: updates of one chat in order, chats in parallel; an album's photos as one.
//! - `outbox`: delivery in order per chat, retried until Telegram takes it; numbered options as
//!   inline buttons; long texts split at Telegram's 4,096 limit.
//! - `refusal`: which failed sends are for good (the buyer blocked the bot …), and their codes.
//! - `throttle`: Telegram's rate limits (per chat, per group, overall), kept before each send.
//! - `webhook`: the route Telegram posts updates to, and its secret token.
//!
//! Updates come by long polling (default) or, with `webhook_url` set, as POSTs to that URL's
//! path on the `serve` HTTP server, each checked for the secret token. Either way an update
//! is acknowledged to Telegram only after its turn is stored (an album's photo once the store
//! holds it, see `lanes`), and a message Telegram delivers
//! twice (a restart before the acknowledgement, a webhook retry) is handled once: its
//! Telegram id is stored with it. No teloxide `Dispatcher` or `Dialogue`: the conversation
//! state is ours (`storage`), and this loop acknowledges updates only once they are stored.

pub mod lanes;
pub mod outbox;
pub mod refusal;
pub mod throttle;
pub mod update;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use teloxide::payloads::{GetUpdatesSetters, SetWebhookSetters};
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, CallbackQueryId, ChatId, MessageId};
use teloxide::{ApiError, Bot, RequestError};

use crate::config::TelegramSettings;
use crate::conversation::ChatKey;
use crate::dialog::Attachment;
use crate::normalize::{reply_lang, Lang};
use crate::reply;
use crate::service::Service;
use crate::storage::{HeldPart, StoreError};

use lanes::Lanes;
use outbox::{Backoff, Outbox, CHANNEL};
use throttle::{Limits, Rate};
use update::{Incoming, Me, Request};

/// The updates the bot asks Telegram for.
const ALLOWED_UPDATES: [AllowedUpdate; 2] = [AllowedUpdate::Message, AllowedUpdate::CallbackQuery];

pub use webhook::SECRET_HEADER;

/// The rate limits the settings ask for.
fn limits(settings: &TelegramSettings) -> Limits {
    let rate = |sends: u32, per: Duration| Rate {
        sends: sends.max(1) as usize,
        per,
    };
    Limits {
        chat: rate(1, Duration::from_millis(settings.chat_interval_ms)),
        group: rate(settings.group_per_minute, Duration::from_secs(60)),
        global: rate(settings.global_per_second, Duration::from_secs(1)),
    }
}

/// The running Telegram bot of one token.
pub struct Telegram {
    bot: Bot,
    me: Me,
    service: Arc<Service>,
    outbox: Arc<Outbox>,
    backoff: Backoff,
    settings: TelegramSettings,
}

impl Telegram {
    /// Connects to the Bot API at `settings.api_url` with the token and learns the bot's
    /// account (`getMe`); fails when the token is missing or refused.
    pub async fn connect(
        service: Arc<Service>,
        settings: &TelegramSettings,
    ) -> anyhow::Result<Arc<Telegram>> {
        let token = settings
            .token
            .as_ref()
            .context("TELEGRAM_BOT_TOKEN is not set")?;
        let api_url = url::Url::parse(&settings.api_url)
            .with_context(|| format!("TELEGRAM_API_URL={} is not a URL", settings.api_url))?;
        // The client must outwait a long poll.
        let client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(u64::from(settings.poll_timeout_s) + 10))
            .build()
            .context("building the HTTP client for Telegram")?;
        let bot = Bot::with_client(token.expose(), client).set_api_url(api_url);
        let account = bot.get_me().await.context(
            "asking Telegram for the bot's account (getMe): is TELEGRAM_BOT_TOKEN right?",
        )?;
        let me = Me {
            id: account.user.id,
            // Every bot has one; an empty name only means groups can't @mention it.
            username: account.user.username.clone().unwrap_or_default(),
        };
        let initial = Duration::from_millis(settings.retry_initial_ms.max(1));
        let backoff = Backoff {
            initial,
            max: Duration::from_millis(settings.retry_max_ms).max(initial),
        };
        let outbox = Outbox::new(
            bot.clone(),
            service.store().clone(),
            service.clock().clone(),
            backoff,
            Duration::from_millis(settings.outbox_interval_ms.max(10)),
            limits(settings),
        );
        tracing::info!(username = %me.username, "connected to Telegram");
        Ok(Arc::new(Telegram {
            bot,
            me,
            service,
            outbox,
            backoff,
            settings: settings.clone(),
        }))
    }

    /// The bot's @username.
    pub fn username(&self) -> &str {
        &self.me.username
    }

    /// Long polling (the default): removes a registered webhook, then polls and delivers in
    /// the background until the process ends.
    pub async fn start_polling(self: Arc<Self>) -> anyhow::Result<()> {
        // getUpdates is refused while a webhook is registered.
        self.bot
            .delete_webhook()
            .await
            .context("removing a registered webhook (deleteWebhook)")?;
        tokio::spawn(self.outbox.clone().run());
        tokio::spawn(self.poll());
        Ok(())
    }

    async fn poll(self: Arc<Self>) {
        let lanes = self.lanes();
        // 0: from the oldest update Telegram has not seen acknowledged.
        let mut offset = 0;
        let mut wait = self.backoff.initial;
        loop {
            let polled = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.settings.poll_timeout_s)
                .allowed_updates(ALLOWED_UPDATES)
                .await;
            match polled {
                Ok(updates) => {
                    wait = self.backoff.initial;
                    if let Some(next) = updates.iter().map(|u| u.id.as_offset()).max() {
                        offset = next;
                    }
                    let handled: Vec<_> = updates
                        .iter()
                        .filter_map(|u| update::read(u, &self.me))
                        .map(|incoming| lanes.push(incoming))
                        .collect();
                    // The next poll acknowledges these updates: only once they are stored.
                    for done in handled {
                        let _ = done.await;
                    }
                }
                Err(RequestError::RetryAfter(seconds)) => {
                    tokio::time::sleep(seconds.duration()).await;
                }
                Err(error) => {
                    if matches!(
                        error,
                        RequestError::Api(ApiError::TerminatedByOtherGetUpdates)
                    ) {
                        tracing::error!(
                            "another process polls Telegram with this token: run one bot per token"
                        );
                    } else {
                        tracing::warn!(error.cause_chain = ?error, wait_ms = wait.as_millis() as u64, "polling Telegram failed; trying again");
                    }
                    tokio::time::sleep(wait).await;
                    wait = self.backoff.next(wait);
                }
            }
        }
    }

    /// Webhook mode: registers `webhook_url` with its secret at Telegram, starts the outbox,
    /// and returns the route to merge into the `serve` server.
    pub async fn start_webhook(self: Arc<Self>) -> anyhow::Result<Router> {
        let (url, secret) = webhook::address(&self.settings, self.bot.token())?;
        self.bot
            .set_webhook(url.clone())
            .secret_token(secret)
            // One connection: Telegram sends the next update only after this one is answered
            // (once its turn is stored), so a chat's messages are handled in the order sent.
            .max_connections(1)
            .allowed_updates(ALLOWED_UPDATES)
            .await
            .with_context(|| format!("registering the webhook {url} with Telegram (setWebhook)"))?;
        tokio::spawn(self.outbox.clone().run());
        tracing::info!(%url, "Telegram webhook registered");
        self.webhook_router()
    }

    /// The webhook route alone: `POST <path of webhook_url>`, refused (401) without the
    /// secret token; answered once the update is stored.
    pub fn webhook_router(self: &Arc<Self>) -> anyhow::Result<Router> {
        let (url, secret) = webhook::address(&self.settings, self.bot.token())?;
        Ok(webhook::router(
            url.path(),
            self.lanes(),
            self.me.clone(),
            secret,
        ))
    }

    /// The lanes, with the album photos a restart left unhandled already queued. Read from
    /// the store once, before any update is taken, so they stay ahead of later photos.
    fn lanes(self: &Arc<Self>) -> Arc<Lanes> {
        let (handling, keeping) = (self.clone(), self.clone());
        let lanes = Lanes::new(
            Arc::new(move |incoming| {
                let telegram = handling.clone();
                Box::pin(async move { telegram.handle(incoming).await })
            }),
            Arc::new(move |incoming| {
                let telegram = keeping.clone();
                Box::pin(async move { telegram.hold(incoming).await })
            }),
            Duration::from_millis(self.settings.album_wait_ms),
        );
        match self.service.store().held_parts(CHANNEL) {
            Ok(parts) => parts
                .into_iter()
                .filter_map(incoming_of)
                .for_each(|incoming| lanes.push_kept(incoming)),
            Err(error) => {
                tracing::error!(%error, "reading the album photos kept before a restart failed")
            }
        }
        lanes
    }

    /// Keeps an album's photo until its album's turn is stored (see `lanes`). A store that
    /// fails is logged and the photo acknowledged all the same: its turn would fail on that
    /// store too, and the buyer is asked to send again.
    async fn hold(&self, incoming: Incoming) {
        let Some(part) = held_part(&incoming) else {
            return;
        };
        let store = self.service.store().clone();
        match tokio::task::spawn_blocking(move || store.hold_part(&part)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "keeping an album's photo failed"),
            Err(error) => tracing::error!(%error, "keeping an album's photo panicked"),
        }
    }

    /// Forgets the kept photos of an album whose turn is over.
    async fn release(&self, chat: &ChatKey, album: String) {
        let store = self.service.store().clone();
        let chat = chat.clone();
        match tokio::task::spawn_blocking(move || store.release_album(&chat, &album)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "forgetting an album's kept photos failed"),
            Err(error) => tracing::error!(%error, "forgetting an album's kept photos panicked"),
        }
    }

    /// One update, after every earlier one of its chat. An error is logged and the buyer is
    /// asked to send again; it never stops the bot.
    async fn handle(&self, incoming: Incoming) {
        let chat_id = incoming.chat;
        let chat = ChatKey::parse(CHANNEL, &chat_id.0.to_string())
            .expect("a chat id number is a valid chat key");
        let source_id = incoming.source_id;
        let album = incoming.album;
        // Kept to ask again in the buyer's language should the turn fail.
        let words = match &incoming.request {
            Request::Message { text, .. } => text.clone(),
            _ => String::new(),
        };
        let result = match incoming.request {
            Request::Welcome => self.template(&chat, "welcome", source_id).await,
            Request::Unsupported => {
                self.template(&chat, "message_kind_unsupported", source_id)
                    .await
            }
            Request::Human => {
                let text = match self.language(&chat).await {
                    Lang::Zh => "转人工",
                    Lang::En => "talk to a human",
                };
                self.receive(&chat, source_id, text.to_string(), Vec::new())
                    .await
            }
            Request::Message { text, attachments } => {
                self.receive(&chat, source_id, text, attachments).await
            }
            Request::Choice {
                number,
                callback,
                message,
            } => {
                self.spend_buttons(chat_id, callback, message);
                self.receive(&chat, source_id, number, Vec::new()).await
            }
        };
        match result {
            Ok(()) => self.outbox.wake(&chat),
            Err(error) => {
                tracing::error!(%chat, error.cause_chain = ?error, "a Telegram update could not be handled");
                self.ask_again(chat_id, &chat, &words).await;
            }
        }
        // Stored, or the buyer asked to send again: either way not to be handled again.
        if let Some(album) = album {
            self.release(&chat, album).await;
        }
    }

    async fn receive(
        &self,
        chat: &ChatKey,
        source_id: String,
        text: String,
        attachments: Vec<Attachment>,
    ) -> Result<(), StoreError> {
        let handled = self
            .service
            .receive_pushed(chat.clone(), source_id, text, attachments)
            .await?;
        match handled {
            Some(handled) => tracing::info!(
                %chat,
                decision = handled.action.as_str(),
                entry_id = handled.topic.as_deref().unwrap_or("-"),
                score = handled.confidence,
                state = handled.state,
                "telegram message handled"
            ),
            None => tracing::info!(%chat, "telegram message delivered again; already handled"),
        }
        Ok(())
    }

    async fn template(
        &self,
        chat: &ChatKey,
        template: &'static str,
        source_id: String,
    ) -> Result<(), StoreError> {
        self.service
            .send_template(chat.clone(), template, source_id)
            .await
            .map(drop)
    }

    /// The buyer's language as the conversation remembers it (Chinese for a new chat).
    async fn language(&self, chat: &ChatKey) -> Lang {
        let store = self.service.store().clone();
        let chat = chat.clone();
        tokio::task::spawn_blocking(move || store.conversation(&chat))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|conversation| conversation.memory.lang)
            .unwrap_or_default()
    }

    /// A pressed button: stops its spinner and removes the question's buttons, so an old
    /// question can't be answered again by mistake. Best effort, beside the turn.
    fn spend_buttons(&self, chat: ChatId, callback: CallbackQueryId, message: MessageId) {
        let bot = self.bot.clone();
        tokio::spawn(async move {
            if let Err(error) = bot.answer_callback_query(callback).await {
                tracing::warn!(chat = chat.0, %error, "answerCallbackQuery failed");
            }
            if let Err(error) = bot.edit_message_reply_markup(chat, message).await {
                tracing::warn!(chat = chat.0, %error, "removing spent buttons failed");
            }
        });
    }

    /// The store failed, so nothing of the message was kept: the buyer is asked to send it
    /// again, in the language of their `words` (or the one remembered), straight to Telegram
    /// (the outbox lives in that store).
    async fn ask_again(&self, chat_id: ChatId, chat: &ChatKey, words: &str) {
        let lang = reply_lang(words, self.language(chat).await);
        let bot = self.service.bot();
        let text = reply::template(bot.engine.knowledge_base(), "try_again", lang, &[]);
        self.outbox.pace(chat_id).await;
        if let Err(error) = self.bot.send_message(chat_id, text).await {
            tracing::error!(chat = chat_id.0, %error, "could not ask the buyer to send again");
        }
    }
}

/// An album's photo as the store keeps it.
fn held_part(incoming: &Incoming) -> Option<HeldPart> {
    let (Some(album), Request::Message { text, attachments }) =
        (&incoming.album, &incoming.request)
    else {
        return None;
    };
    Some(HeldPart {
        chat: ChatKey::parse(CHANNEL, &incoming.chat.0.to_string())?,
        source_id: incoming.source_id.clone(),
        album: album.clone(),
        text: text.clone(),
        attachments: attachments.clone(),
    })
}

/// A kept album photo as the lanes take it.
fn incoming_of(part: HeldPart) -> Option<Incoming> {
    Some(Incoming {
        chat: ChatId(part.chat.id().parse().ok()?),
        source_id: part.source_id,
        album: Some(part.album),
        request: Request::Message {
            text: part.text,
            attachments: part.attachments,
        },
    })
}
