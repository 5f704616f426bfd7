//! Settings: defaults in code, then an optional `xiaoer.toml`, then `XIAOER_*` environment
//! variables. The only module that reads the environment.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hours::HoursSettings;
use crate::{Error, Result};

/// When the bot answers, asks which topic was meant, or hands off.
///
/// Chosen on the tuning part of `tests/data/eval.jsonl` (see README "Evaluation");
/// reported on the held-out part.
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
            answer: 0.2,
            clarify: 0.2,
            margin: 0.05,
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
        Ok(settings)
    }
}
