//! What `/health` checks: that the store takes a write now, and that the knowledge serving
//! answers. Part of the async shell (`service` owns one `StoreProbe`).
//!
//! The store counts as failing when its check fails or when the last chat turn could not be
//! stored, less than `FAILURE_MEMORY` ago, with no turn stored since: a small write may still
//! fit on a disk too full for a chat's, and `/health` must not say `ok` while chats get 500.
//! The check (`Store::check_health`: a small committed write) runs at most once per `FRESH`,
//! however many callers ask, so a flood of `/health` never queues writes on the store; it runs
//! on a blocking thread and counts as failed after `STORE_PATIENCE` (a check still stuck is not
//! started again). A change from healthy to failing is logged at `error` with the cause, and
//! back at `info`: the log says when trouble began and ended without a line per poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bot::Bot;
use crate::storage::Store;

/// How long one check of the store answers for.
pub const FRESH: Duration = Duration::from_secs(1);
/// How long a check of the store may take before it counts as failed.
pub const STORE_PATIENCE: Duration = Duration::from_secs(5);
/// How long a chat turn the store refused keeps the store failing (unless a turn is stored).
pub const FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// What `/health` found; each part is `Err` with what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub store: Result<(), String>,
    pub knowledge: Result<(), String>,
}

impl Health {
    pub fn is_ok(&self) -> bool {
        self.store.is_ok() && self.knowledge.is_ok()
    }

    /// Each failed part as `part: problem`.
    pub fn problems(&self) -> Vec<String> {
        [("store", &self.store), ("knowledge", &self.knowledge)]
            .into_iter()
            .filter_map(|(part, result)| result.as_ref().err().map(|e| format!("{part}: {e}")))
            .collect()
    }
}

/// Whether the bot answers: the index finds the first entry for its own first example.
pub fn check_knowledge(bot: &Bot) -> Result<(), String> {
    let knowledge_base = bot.engine.knowledge_base();
    let (index, entry, example) = knowledge_base
        .entries
        .iter()
        .enumerate()
        .find_map(|(index, entry)| entry.examples.first().map(|x| (index, entry, x)))
        .ok_or("the knowledge base has no entry with an example question")?;
    let ranking = bot.engine.rank(example);
    if ranking.candidates.iter().any(|c| c.entry == index) {
        Ok(())
    } else {
        Err(format!(
            "the index does not find entry {} for its own example \"{example}\"",
            entry.id
        ))
    }
}

/// Checks the store at most once per `FRESH` and remembers the answer.
#[derive(Default)]
pub struct StoreProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// A check is running on a blocking thread (perhaps stuck past its patience).
    running: Arc<AtomicBool>,
    failing: AtomicBool,
    /// When the last turn could not be stored, and why; `None` once one is.
    turn_failure: std::sync::Mutex<Option<(Instant, String)>>,
}

impl StoreProbe {
    /// The store's health: its check now (or less than `FRESH` ago), then the last turn.
    pub async fn check(&self, store: Arc<dyn Store>, at_ms: i64) -> Result<(), String> {
        let mut last = self.last.lock().await;
        let checked = match last.as_ref() {
            Some((checked, result)) if checked.elapsed() < FRESH => result.clone(),
            _ => {
                let result = self.run(store, at_ms).await;
                *last = Some((Instant::now(), result.clone()));
                result
            }
        };
        let result = checked.and_then(|()| self.recent_turn_failure());
        self.log_change(&result);
        result
    }

    /// A chat turn could not be stored.
    pub fn turn_failed(&self, cause: &str) {
        *self.turn_failures() = Some((Instant::now(), cause.to_string()));
    }

    /// A chat turn was stored.
    pub fn turn_stored(&self) {
        let mut failure = self.turn_failures();
        if failure.is_some() {
            *failure = None;
        }
    }

    fn turn_failures(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.turn_failure.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recent_turn_failure(&self) -> Result<(), String> {
        match self.turn_failures().as_ref() {
            Some((at, cause)) if at.elapsed() < FAILURE_MEMORY => Err(format!(
                "a chat could not be stored {} s ago: {cause}",
                at.elapsed().as_secs()
            )),
            _ => Ok(()),
        }
    }

    async fn run(&self, store: Arc<dyn Store>, at_ms: i64) -> Result<(), String> {
        let patience = STORE_PATIENCE.as_secs();
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(format!(
                "an earlier check has not finished after {patience} s"
            ));
        }
        let running = self.running.clone();
        let check = tokio::task::spawn_blocking(move || {
            let result = store.check_health(at_ms);
            running.store(false, Ordering::SeqCst);
            result
        });
        match tokio::time::timeout(STORE_PATIENCE, check).await {
            Err(_) => Err(format!("the store did not answer within {patience} s")),
            Ok(Err(panicked)) => {
                self.running.store(false, Ordering::SeqCst);
                Err(format!("the store check panicked: {panicked}"))
            }
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
        }
    }

    fn log_change(&self, result: &Result<(), String>) {
        let was_failing = self.failing.swap(result.is_err(), Ordering::SeqCst);
        match result {
            Err(cause) if !was_failing => {
                tracing::error!(%cause, "health: the store does not take writes")
            }
            Ok(()) if was_failing => tracing::info!("health: the store takes writes again"),
            _ => {}
        }
    }
}
