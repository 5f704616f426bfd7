//! Settings: defaults in code, then an optional `xiaoer.toml`, then `XIAOER_*` environment
//! variables. The only module that reads the environment.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hours::HoursSettings;
use crate::{Error, Result};

/// When the bot answers, asks which topic was meant, or hands off.
///
/// Chosen on the tuning splits of every shop and the synthetic FAQ bases of the benchmark (see
/// README "Evaluation"): 0.2–0.3 is the clarify band; reported on the held-out splits.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Confidence at or above which the bot answers.
    pub answer: f32,
    /// Best similarity at or above which an unsure bot offers choices instead of handing off.
    pub clarify: f32,
    /// Margin over the runner-up below which two topics count as a tie.
    pub margin: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            answer: 0.3,
            clarify: 0.2,
            margin: 0.05,
        }
    }
}

/// A secret read from the environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// `None` for an empty value.
    pub fn parse(value: &str) -> Option<Secret> {
        let value = value.trim();
        (!value.is_empty()).then(|| Secret(value.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The Telegram bot (`src/channels/telegram`). It runs when a token is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramSettings {
    /// The bot's token from BotFather: `TELEGRAM_BOT_TOKEN` only, never a file.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// The Bot API server (`TELEGRAM_API_URL`): Telegram's, a self-hosted one, or a test's.
    pub api_url: String,
    /// Webhook mode: the public HTTPS URL Telegram posts updates to (`TELEGRAM_WEBHOOK_URL`);
    /// its path is served by `xiaoer serve`. Without it the bot uses long polling.
    pub webhook_url: Option<String>,
    /// The secret Telegram sends with every webhook update (`TELEGRAM_WEBHOOK_SECRET`, 1–256
    /// of `A-Z a-z 0-9 _ -`); when unset, one is derived from the token.
    #[serde(skip)]
    pub webhook_secret: Option<Secret>,
    /// How long one long-polling request waits for updates, in seconds.
    pub poll_timeout_s: u32,
    /// First wait before a failed send is tried again (network, 5xx); it doubles each time.
    pub retry_initial_ms: u64,
    /// Longest wait between two tries of a send.
    pub retry_max_ms: u64,
    /// How often the outbox looks for messages stored outside a turn (agent replies,
    /// reminders), in milliseconds.
    pub outbox_interval_ms: u64,
    /// Least time between two messages to one chat, in milliseconds (Telegram: about one a
    /// second).
    pub chat_interval_ms: u64,
    /// Most messages a minute to one group (Telegram: 20).
    pub group_per_minute: u32,
    /// Most messages a second to all chats together (Telegram: 30).
    pub global_per_second: u32,
    /// How long an album's photos wait for the next one before they are handled together,
    /// in milliseconds (Telegram sends each photo of an album as a message of its own).
    pub album_wait_ms: u64,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            token: None,
            api_url: "https://api.telegram.org".into(),
            webhook_url: None,
            webhook_secret: None,
            poll_timeout_s: 10,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            outbox_interval_ms: 1_000,
            chat_interval_ms: 1_000,
            group_per_minute: 20,
            global_per_second: 30,
            album_wait_ms: 1_000,
        }
    }
}

/// How `xiaoer serve` treats HTTP connections (`[connections]`; `src/channels/listener.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// Longest time from a request's first byte to the end of its headers, in milliseconds
    /// (`XIAOER_HEADER_TIMEOUT_MS`).
    pub header_timeout_ms: u64,
    /// Longest time from the end of a request's headers to the end of its body, in
    /// milliseconds (`XIAOER_BODY_TIMEOUT_MS`): a slower body is cut off with a 408.
    pub body_timeout_ms: u64,
    /// Longest time a connection may wait for its next request (or, just opened, for its first
    /// byte), in milliseconds (`XIAOER_IDLE_TIMEOUT_MS`).
    pub idle_timeout_ms: u64,
    /// Most connections open at once (`XIAOER_MAX_CONNECTIONS`); at the cap the connection idle
    /// the longest is closed for a new one. 0: a little below the open-file limit.
    pub max_connections: u64,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_timeout_ms: 10_000,
            body_timeout_ms: 15_000,
            idle_timeout_ms: 30_000,
            max_connections: 0,
        }
    }
}

/// Everything configurable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Folder of the knowledge base.
    pub kb: PathBuf,
    /// Folder of the dialog flows.
    pub dialogs: PathBuf,
    /// Folder of the SQLite store (created if missing).
    pub data: PathBuf,
    /// Where `xiaoer serve` listens.
    pub addr: String,
    pub thresholds: Thresholds,
    pub hours: HoursSettings,
    /// Seconds an unclaimed handoff waits before the buyer gets a reminder (rulebooks: 1–3 min).
    pub remind_after_s: u64,
    /// How often the running bot looks for edits of `kb` and `dialogs`, in milliseconds.
    pub reload_interval_ms: u64,
    pub telegram: TelegramSettings,
    pub connections: ConnectionSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kb: PathBuf::from("knowledge"),
            dialogs: PathBuf::from("dialogs"),
            data: PathBuf::from("data"),
            addr: "127.0.0.1:8080".into(),
            thresholds: Thresholds::default(),
            hours: HoursSettings::default(),
            remind_after_s: 90,
            reload_interval_ms: 1000,
            telegram: TelegramSettings::default(),
            connections: ConnectionSettings::default(),
        }
    }
}

impl Settings {
    /// Defaults, overlaid by `file` (if it exists) and by `XIAOER_*` variables.
    pub fn load(file: &Path) -> Result<Settings> {
        let mut settings = match std::fs::read_to_string(file) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Error::Config(format!("{}: {}", file.display(), e.message())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(source) => {
                return Err(Error::Io {
                    path: file.to_path_buf(),
                    source,
                })
            }
        };
        for (name, slot) in [
            ("XIAOER_KB", &mut settings.kb),
            ("XIAOER_DIALOGS", &mut settings.dialogs),
            ("XIAOER_DATA", &mut settings.data),
        ] {
            if let Ok(value) = std::env::var(name) {
                *slot = PathBuf::from(value);
            }
        }
        if let Ok(addr) = std::env::var("XIAOER_ADDR") {
            settings.addr = addr;
        }
        for (name, slot) in [
            ("XIAOER_REMIND_AFTER_S", &mut settings.remind_after_s),
            (
                "XIAOER_RELOAD_INTERVAL_MS",
                &mut settings.reload_interval_ms,
            ),
            (
                "XIAOER_HEADER_TIMEOUT_MS",
                &mut settings.connections.header_timeout_ms,
            ),
            (
                "XIAOER_BODY_TIMEOUT_MS",
                &mut settings.connections.body_timeout_ms,
            ),
            (
                "XIAOER_IDLE_TIMEOUT_MS",
                &mut settings.connections.idle_timeout_ms,
            ),
            (
                "XIAOER_MAX_CONNECTIONS",
                &mut settings.connections.max_connections,
            ),
        ] {
            if let Ok(value) = std::env::var(name) {
                *slot = value
                    .parse()
                    .map_err(|_| Error::Config(format!("{name}={value} is not a whole number")))?;
            }
        }
        for (name, slot) in [
            ("XIAOER_ANSWER_THRESHOLD", &mut settings.thresholds.answer),
            ("XIAOER_CLARIFY_THRESHOLD", &mut settings.thresholds.clarify),
            ("XIAOER_MARGIN", &mut settings.thresholds.margin),
        ] {
            if let Ok(value) = std::env::var(name) {
                *slot = value
                    .parse()
                    .map_err(|_| Error::Config(format!("{name}={value} is not a number")))?;
            }
        }
        read_telegram_env(&mut settings.telegram);
        Ok(settings)
    }
}

/// `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL`, `TELEGRAM_WEBHOOK_URL`, `TELEGRAM_WEBHOOK_SECRET`.
fn read_telegram_env(telegram: &mut TelegramSettings) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    telegram.token = var("TELEGRAM_BOT_TOKEN").and_then(|v| Secret::parse(&v));
    telegram.webhook_secret = var("TELEGRAM_WEBHOOK_SECRET").and_then(|v| Secret::parse(&v));
    if let Some(url) = var("TELEGRAM_API_URL") {
        telegram.api_url = url;
    }
    if let Some(url) = var("TELEGRAM_WEBHOOK_URL") {
        telegram.webhook_url = Some(url);
    }
}
