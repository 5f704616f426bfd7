//! The running bot, shared by every channel: the current `Bot` (swapped whole when staff edit
//! `knowledge/` or `dialogs/`), the store, the clock. One turn per message: load the chat,
//! `conversation::handle`, commit — messages of one chat strictly in arrival order, chats in
//! parallel. The async shell around the pure core; SQLite runs on blocking threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::bot::{changed_files, content_hash, Bot};
use crate::config::Settings;
use crate::conversation::{self, Act, ChatKey, Inbound};
use crate::dialog::Attachment;
use crate::hours::ServiceHours;
use crate::storage::{NewMessage, Sender, Store, StoreError, Turn};
use crate::{phrasing, reply, Result};

/// Where the time comes from (tests move it by hand).
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// What a channel gets back for one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handled {
    pub replies: Vec<String>,
    /// What the last reply offers to pick by number (a clarify's titles, a flow step's
    /// options), numbered from 1 in this order.
    pub choices: Vec<String>,
    pub action: Act,
    pub topic: Option<String>,
    pub confidence: f32,
    /// `bot`, `flow`, `waiting` or `agent` after the message.
    pub state: &'static str,
    /// The handoff this message created, if any.
    pub handoff: Option<i64>,
}

/// Why an edit from the console was not made.
#[derive(Debug, Clone, PartialEq)]
pub enum EditRefused {
    /// No such entry.
    Unknown(String),
    /// The edit would make the knowledge base invalid: its problems.
    Invalid(String),
    /// The file could not be read, edited or written.
    Failed(String),
}

/// A buyer message as a channel hands it over.
struct Received {
    text: String,
    attachments: Vec<Attachment>,
    source_id: Option<String>,
    replies_delivered: bool,
}

/// The last reload that was refused, for logs and the agent console.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadProblem {
    pub hash: String,
    pub at_ms: i64,
    pub problems: String,
}

pub struct Service {
    bot: RwLock<Arc<Bot>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hours: ServiceHours,
    settings: Settings,
    /// One lock per chat with a message in flight, so its turns never interleave.
    chats: Mutex<HashMap<ChatKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Turns running at once, one per core: the rest wait their turn first come first
    /// served, instead of dozens of threads taking the cores and the store's lock by chance
    /// (which left some buyers waiting far longer than others).
    running: tokio::sync::Semaphore,
    last_problem: RwLock<Option<ReloadProblem>>,
    store_probe: crate::health::StoreProbe,
}

impl Service {
    /// A service over a loaded bot; records the knowledge version it starts with.
    pub fn new(
        bot: Bot,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Result<Service> {
        let hours = ServiceHours::parse(&settings.hours)?;
        let source = describe_source(&settings.kb, &settings.dialogs, "start-up");
        store
            .record_knowledge(&bot.version, &source, clock.now_ms())
            .map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(Service {
            bot: RwLock::new(Arc::new(bot)),
            store,
            clock,
            hours,
            settings,
            chats: Mutex::new(HashMap::new()),
            running: tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            last_problem: RwLock::new(None),
            store_probe: crate::health::StoreProbe::default(),
        })
    }

    /// The bot serving now; a reload never changes the one a caller already holds.
    pub fn bot(&self) -> Arc<Bot> {
        self.bot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn last_reload_problem(&self) -> Option<ReloadProblem> {
        self.last_problem
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the store takes a write now and the knowledge serving answers (`/health`).
    pub async fn health(&self) -> crate::health::Health {
        let store = self
            .store_probe
            .check(self.store.clone(), self.clock.now_ms())
            .await;
        crate::health::Health {
            store,
            knowledge: crate::health::check_knowledge(&self.bot()),
        }
    }

    /// Handles one buyer message: after every earlier message of the same chat, stored before
    /// the replies are returned. The caller hands the replies over itself (the HTTP answer),
    /// so they are stored delivered.
    pub async fn receive(
        &self,
        chat: ChatKey,
        text: String,
        attachments: Vec<Attachment>,
    ) -> std::result::Result<Handled, StoreError> {
        let message = Received {
            text,
            attachments,
            source_id: None,
            replies_delivered: true,
        };
        self.turn(chat, message).await?.ok_or_else(|| {
            StoreError("a message without a source id was taken for a repeat".into())
        })
    }

    /// Handles one buyer message of a push channel (Telegram), whose replies wait in the
    /// outbox until the channel delivers them. `source_id` is the channel's id of the message:
    /// a message already stored under it is not handled again (`None`).
    pub async fn receive_pushed(
        &self,
        chat: ChatKey,
        source_id: String,
        text: String,
        attachments: Vec<Attachment>,
    ) -> std::result::Result<Option<Handled>, StoreError> {
        let message = Received {
            text,
            attachments,
            source_id: Some(source_id),
            replies_delivered: false,
        };
        self.turn(chat, message).await
    }

    /// Puts a reply template in the chat's outbox, in the chat's language, in order with its
    /// turns: the answer to a channel event that is no question (a welcome, a message kind the
    /// bot can't read). Returns false when `source_id` was already answered.
    pub async fn send_template(
        &self,
        chat: ChatKey,
        template: &'static str,
        source_id: String,
    ) -> std::result::Result<bool, StoreError> {
        let lock = self.chat_lock(&chat);
        let guard = lock.clone().lock_owned().await;
        let bot = self.bot();
        let store = self.store.clone();
        let at_ms = self.clock.now_ms();
        let notice_chat = chat.clone();
        let result = tokio::task::spawn_blocking(move || {
            if store.seen(&notice_chat, &source_id)? {
                return Ok(false);
            }
            let lang = store.conversation(&notice_chat)?.memory.lang;
            let knowledge_base = bot.engine.knowledge_base();
            let text = reply::template(knowledge_base, template, lang, &[]);
            let violations = phrasing::check(&knowledge_base.phrasing, &text);
            if !violations.is_empty() {
                let listing: Vec<String> = violations.iter().map(ToString::to_string).collect();
                tracing::error!(template, violations = ?listing, "template broke a phrasing rule; not sent");
                return Ok(false);
            }
            store.post_message(&NewMessage {
                chat: &notice_chat,
                from: Sender::Bot,
                text: &text,
                at_ms,
                source_id: Some(&source_id),
                agent: None,
                knowledge_version: Some(&bot.version.hash),
            })?;
            Ok(true)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError(format!("notice panicked: {e}"))));
        drop(guard);
        self.forget_idle_lock(&chat, lock);
        result
    }

    /// One turn: load the chat, `conversation::handle`, commit; `None` for a repeat.
    async fn turn(
        &self,
        chat: ChatKey,
        message: Received,
    ) -> std::result::Result<Option<Handled>, StoreError> {
        let lock = self.chat_lock(&chat);
        let guard = lock.clone().lock_owned().await;
        let running = self.running.acquire().await;
        let bot = self.bot();
        let store = self.store.clone();
        let hours = self.hours.clone();
        let inbound = Inbound {
            text: message.text,
            attachments: message.attachments,
            at_ms: self.clock.now_ms(),
        };
        let turn_chat = chat.clone();
        let result = tokio::task::spawn_blocking(move || {
            let source_id = message.source_id.as_deref();
            if let Some(source_id) = source_id {
                if store.seen(&turn_chat, source_id)? {
                    return Ok(None);
                }
            }
            let conversation = store.conversation(&turn_chat)?;
            let outcome = conversation::handle(&bot, &hours, &conversation, &inbound);
            let committed = store.commit_turn(&Turn {
                chat: &turn_chat,
                inbound: &inbound,
                outcome: &outcome,
                knowledge_version: &bot.version.hash,
                source_id,
                replies_delivered: message.replies_delivered,
            })?;
            Ok(Some(Handled {
                replies: outcome.replies,
                choices: outcome.choices,
                action: outcome.trace.act,
                topic: outcome.trace.topic,
                confidence: outcome.trace.confidence,
                state: outcome.conversation.state.name(),
                handoff: committed.handoff,
            }))
        })
        .await
        .unwrap_or_else(|e| Err(StoreError(format!("turn panicked: {e}"))));
        match &result {
            Ok(_) => self.store_probe.turn_stored(),
            Err(error) => self.store_probe.turn_failed(&error.to_string()),
        }
        drop(running);
        drop(guard);
        self.forget_idle_lock(&chat, lock);
        result
    }

    fn chat_lock(&self, chat: &ChatKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        chats.entry(chat.clone()).or_default().clone()
    }

    /// Drops a chat's lock when no other message of the chat holds or waits for it.
    fn forget_idle_lock(&self, chat: &ChatKey, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        // Ours and the map's: nobody else is waiting.
        if Arc::strong_count(&lock) == 2 {
            chats.remove(chat);
        }
    }

    /// Reminds every buyer whose handoff has waited longer than `remind_after_s` unclaimed
    /// (POLICIES.md §4: nobody waits in silence). Outside service hours the buyer was already
    /// told when agents are back, so reminders wait for the next shift. Returns how many were
    /// reminded.
    pub async fn send_reminders(&self) -> std::result::Result<usize, StoreError> {
        let bot = self.bot();
        let store = self.store.clone();
        let now = self.clock.now_ms();
        if !self.hours.is_open(now) {
            return Ok(0);
        }
        let before = now - (self.settings.remind_after_s as i64) * 1000;
        tokio::task::spawn_blocking(move || {
            let mut sent = 0;
            for handoff in store.due_reminders(before)? {
                let lang = store.conversation(&handoff.chat)?.memory.lang;
                let text = reply::template(bot.engine.knowledge_base(), "still_waiting", lang, &[]);
                if store.remind(handoff.id, &text, now, &bot.version.hash)? {
                    sent += 1;
                }
            }
            Ok(sent)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError(format!("reminders panicked: {e}"))))
    }

    /// Loads `kb` and `dialogs` again if their content changed. A valid new version is swapped
    /// in whole and recorded; an invalid one is refused, logged, and the old one keeps serving.
    /// Returns whether a new version went live.
    pub fn reload_if_changed(&self) -> bool {
        self.reload("file change")
    }

    /// `reload_if_changed`, recording `event` as what changed the files.
    fn reload(&self, event: &str) -> bool {
        let (kb, dialogs) = (&self.settings.kb, &self.settings.dialogs);
        let hash = content_hash(&[kb, dialogs]);
        let current = self.bot().version.hash.clone();
        let already_refused = self.last_reload_problem().is_some_and(|p| p.hash == hash);
        if hash == current || already_refused {
            return false;
        }
        let now = self.clock.now_ms();
        match Bot::load(kb, dialogs, self.settings.thresholds) {
            Ok(bot) => {
                let changed = changed_files(&self.bot().version.files, &bot.version.files);
                let source =
                    describe_source(kb, dialogs, &format!("{event}: {}", changed.join(", ")));
                if let Err(error) = self.store.record_knowledge(&bot.version, &source, now) {
                    tracing::error!(%error, "could not record the knowledge version; keeping the old one");
                    return false;
                }
                tracing::info!(version = %bot.version.hash, entries = bot.version.entries, flows = bot.version.flows, %source, "knowledge reloaded");
                *self.bot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(bot);
                *self.last_problem.write().unwrap_or_else(|e| e.into_inner()) = None;
                true
            }
            Err(error) => {
                tracing::error!(%error, "edited knowledge is invalid; still serving version {current}");
                *self.last_problem.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(ReloadProblem {
                        hash,
                        at_ms: now,
                        problems: error.to_string(),
                    });
                false
            }
        }
    }

    /// Adds a buyer's question as an example of an entry (an editor in the console): the
    /// entry's file is edited in place, the result validated on a copy first, written
    /// atomically and reloaded like any edit. Returns the new version's hash.
    pub fn add_example(
        &self,
        entry: &str,
        example: &str,
        agent: &str,
    ) -> std::result::Result<String, EditRefused> {
        let bot = self.bot();
        let entry = bot
            .engine
            .knowledge_base()
            .entry(entry)
            .ok_or_else(|| EditRefused::Unknown(format!("no entry \"{entry}\"")))?;
        let file = entry.location.file.clone();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| EditRefused::Failed(format!("{}: {e}", file.display())))?;
        let edited =
            crate::knowledge::add_example(&text, entry.id.as_str(), example).ok_or_else(|| {
                EditRefused::Failed(format!(
                    "{}: the examples of {} are not one per line",
                    file.display(),
                    entry.id
                ))
            })?;
        self.validate_edit(&file, &edited)
            .map_err(EditRefused::Invalid)?;
        let staged = file.with_extension("toml.new");
        std::fs::write(&staged, &edited)
            .and_then(|()| std::fs::rename(&staged, &file))
            .map_err(|e| EditRefused::Failed(format!("{}: {e}", file.display())))?;
        let event = format!("console: {agent} added an example to {}", entry.id);
        if self.reload(&event) {
            Ok(self.bot().version.hash.clone())
        } else {
            let problems = self
                .last_reload_problem()
                .map(|p| p.problems)
                .unwrap_or_default();
            Err(EditRefused::Invalid(problems))
        }
    }

    /// Loads a copy of the knowledge folder with `file` replaced by `text`; the problems if any.
    fn validate_edit(&self, file: &Path, text: &str) -> std::result::Result<(), String> {
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let copy = std::env::temp_dir().join(format!("xiaoer-edit-{}-{n}", std::process::id()));
        let result = (|| {
            std::fs::create_dir_all(&copy).map_err(|e| e.to_string())?;
            for listing in std::fs::read_dir(&self.settings.kb).map_err(|e| e.to_string())? {
                let path = listing.map_err(|e| e.to_string())?.path();
                if path.extension().is_some_and(|x| x == "toml") {
                    std::fs::copy(&path, copy.join(path.file_name().unwrap_or_default()))
                        .map_err(|e| e.to_string())?;
                }
            }
            std::fs::write(copy.join(file.file_name().unwrap_or_default()), text)
                .map_err(|e| e.to_string())?;
            let (_, _, diagnostics) = crate::bot::check_dirs(&copy, &self.settings.dialogs);
            if diagnostics.is_empty() {
                Ok(())
            } else {
                let listing: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
                Err(listing.join("\n"))
            }
        })();
        let _ = std::fs::remove_dir_all(&copy);
        result
    }

    /// Runs until the process ends: watches the knowledge folders and sends reminders.
    pub async fn run_background(self: Arc<Self>) {
        let interval = Duration::from_millis(self.settings.reload_interval_ms.max(100));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let service = self.clone();
            let _ = tokio::task::spawn_blocking(move || service.reload_if_changed()).await;
            if let Err(error) = self.send_reminders().await {
                tracing::error!(%error, "sending reminders failed");
            }
        }
    }
}

/// Who or what produced the knowledge now on disk: the event, and the last git commit that
/// touched the folders (with a note when the files differ from it), when they are in a repo.
fn describe_source(kb: &Path, dialogs: &Path, event: &str) -> String {
    let git = |dir: &PathBuf, args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let kb = kb.to_path_buf();
    let dialogs = dialogs.to_path_buf();
    let Some(commit) =
        git(&kb, &["log", "-1", "--format=%h %an: %s", "--", "."]).filter(|c| !c.is_empty())
    else {
        return event.to_string();
    };
    let edited = [&kb, &dialogs]
        .iter()
        .any(|dir| git(dir, &["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty()));
    if edited {
        format!("{event}; uncommitted edits on top of git {commit}")
    } else {
        format!("{event}; git {commit}")
    }
}
