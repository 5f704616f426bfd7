//! The running bot, shared by every channel: the current `Bot` (swapped whole when staff edit
//! `knowledge/` or `dialogs/`), the store, the clock. One turn per message: load the chat,
//! `conversation::handle`, commit — messages of one chat strictly in arrival order, chats in
//! parallel. The async shell around the pure core; SQLite runs on blocking threads.
//!
//! Knowledge changes one at a time: console edits hold the edit lock while they read, check
//! and write a file (`edit`), and every reload holds the reload lock, so an edit is never
//! written over another and a slower reload never swaps an older version in after a newer one.
//! Edits that queue behind a reload are served by the next one (one rebuild for many edits).

mod edit;
pub mod last_good;

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
pub use last_good::LastGood;

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
    /// The file changed on disk since the edit read it (someone edited it meanwhile): it was
    /// left as they wrote it.
    Conflict(String),
    /// The file could not be read, edited or written.
    Failed(String),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
enum Reload {
    /// A new version went live.
    Live,
    /// The folders are the version serving.
    Unchanged,
    /// The folders are invalid; the version serving stays.
    Refused(String),
    /// The new version could not be recorded; the version serving stays.
    NotRecorded,
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
    /// Held by a console edit from reading its file to writing it.
    edits: Mutex<()>,
    /// Held by a reload from hashing the folders to swapping the new version in.
    reloads: Mutex<()>,
    /// Where each version that goes live is kept (`xiaoer serve`; none in tests).
    last_good: Option<LastGood>,
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
        let source = describe_source(&settings.kb, &settings.dialogs, "start-up");
        Service::with(bot, store, clock, settings, None, None, &source)
    }

    /// `xiaoer serve`'s start: loads `kb` and `dialogs` and keeps each version that goes live
    /// in `last_good`. When the folders are invalid, the last good version serves instead, and
    /// the problems are logged and reported as a refused reload (`/health`, the console) until
    /// the folders are fixed; with none kept, the folders' problems are the error.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        last_good: LastGood,
    ) -> Result<Service> {
        let (kb, dialogs) = (&settings.kb, &settings.dialogs);
        let error = match Bot::load(kb, dialogs, settings.thresholds) {
            Ok(bot) => {
                let source = describe_source(kb, dialogs, "start-up");
                let service =
                    Service::with(bot, store, clock, settings, Some(last_good), None, &source)?;
                service.keep_last_good();
                return Ok(service);
            }
            Err(error) => error,
        };
        let kept = last_good.load(settings.thresholds).unwrap_or_else(|kept_error| {
            tracing::error!(error = %kept_error, kept = %last_good.root().display(), "the last good knowledge version does not load");
            None
        });
        let Some(bot) = kept else {
            return Err(error);
        };
        tracing::error!(
            %error,
            version = %bot.version.hash,
            kept = %last_good.root().display(),
            "the knowledge folders are invalid; serving the last good version until they are fixed"
        );
        let problem = ReloadProblem {
            hash: content_hash(&[kb, dialogs]),
            at_ms: clock.now_ms(),
            problems: error.to_string(),
        };
        let source = format!(
            "start-up: the folders are invalid; the last good version kept in {}",
            last_good.root().display()
        );
        Service::with(
            bot,
            store,
            clock,
            settings,
            Some(last_good),
            Some(problem),
            &source,
        )
    }

    fn with(
        bot: Bot,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        last_good: Option<LastGood>,
        refused: Option<ReloadProblem>,
        source: &str,
    ) -> Result<Service> {
        let hours = ServiceHours::parse(&settings.hours)?;
        store
            .record_knowledge(&bot.version, source, clock.now_ms())
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
            last_problem: RwLock::new(refused),
            edits: Mutex::new(()),
            reloads: Mutex::new(()),
            last_good,
            store_probe: crate::health::StoreProbe::default(),
        })
    }

    /// Keeps the files of the version serving as the last good one (when this service keeps
    /// one); a failure is logged, the version keeps serving.
    fn keep_last_good(&self) {
        let Some(last_good) = &self.last_good else {
            return;
        };
        let version = &self.bot().version;
        match last_good.keep(&self.settings.kb, &self.settings.dialogs, version) {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(version = %version.hash, "files changed since loaded; the next version is kept instead")
            }
            Err(error) => {
                tracing::warn!(%error, kept = %last_good.root().display(), "could not keep the last good knowledge version")
            }
        }
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
        let hours = self.hours_of(&bot);
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

    /// The service hours in force: the shop's own (`shop.toml`, reloaded with the knowledge)
    /// when it names them, else `[hours]` of the settings.
    fn hours_of(&self, bot: &Bot) -> ServiceHours {
        match bot.engine.knowledge_base().shop.service_hours() {
            Some(Ok(hours)) => hours,
            _ => self.hours.clone(),
        }
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
        if !self.hours_of(&bot).is_open(now) {
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
        self.reload("file change") == Reload::Live
    }

    /// `reload_if_changed`, recording `event` as what changed the files. Folders back at the
    /// version serving (a refused edit reverted) clear the refusal.
    fn reload(&self, event: &str) -> Reload {
        let _one_at_a_time = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        let (kb, dialogs) = (&self.settings.kb, &self.settings.dialogs);
        let hash = content_hash(&[kb, dialogs]);
        let current = self.bot().version.hash.clone();
        if hash == current {
            let mut last_problem = self.last_problem.write().unwrap_or_else(|e| e.into_inner());
            if let Some(cleared) = last_problem.take() {
                tracing::info!(version = %current, refused = %cleared.hash, "the knowledge folders are back to the version serving; the refusal is cleared");
            }
            return Reload::Unchanged;
        }
        if let Some(refused) = self.last_reload_problem().filter(|p| p.hash == hash) {
            return Reload::Refused(refused.problems);
        }
        let now = self.clock.now_ms();
        match Bot::load(kb, dialogs, self.settings.thresholds) {
            Ok(bot) => {
                let changed = changed_files(&self.bot().version.files, &bot.version.files);
                let source =
                    describe_source(kb, dialogs, &format!("{event}: {}", changed.join(", ")));
                if let Err(error) = self.store.record_knowledge(&bot.version, &source, now) {
                    tracing::error!(%error, "could not record the knowledge version; keeping the old one");
                    return Reload::NotRecorded;
                }
                tracing::info!(version = %bot.version.hash, entries = bot.version.entries, flows = bot.version.flows, %source, "knowledge reloaded");
                *self.bot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(bot);
                *self.last_problem.write().unwrap_or_else(|e| e.into_inner()) = None;
                self.keep_last_good();
                Reload::Live
            }
            Err(error) => {
                tracing::error!(%error, "edited knowledge is invalid; still serving version {current}");
                let problems = error.to_string();
                *self.last_problem.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(ReloadProblem {
                        hash,
                        at_ms: now,
                        problems: problems.clone(),
                    });
                Reload::Refused(problems)
            }
        }
    }

    /// Adds a buyer's question as an example of an entry (an editor in the console): the
    /// entry's file is edited in place, the result validated on a copy first, written
    /// atomically and reloaded like any edit. Edits run one at a time; a file that changed on
    /// disk while the edit was being made is not written over (`Conflict`). Returns the hash
    /// of a version serving the example.
    pub fn add_example(
        &self,
        entry: &str,
        example: &str,
        agent: &str,
    ) -> std::result::Result<String, EditRefused> {
        let entry_id = {
            let _one_at_a_time = self.edits.lock().unwrap_or_else(|e| e.into_inner());
            self.write_example(entry, example)?
        };
        // After the write: this reload, or one that started after the write, serves it.
        let event = format!("console: {agent} added an example to {entry_id}");
        match self.reload(&event) {
            Reload::Live | Reload::Unchanged => Ok(self.bot().version.hash.clone()),
            Reload::Refused(problems) => Err(EditRefused::Invalid(problems)),
            Reload::NotRecorded => Err(EditRefused::Failed(
                "the edited knowledge could not be recorded in the store".into(),
            )),
        }
    }

    /// Reads the entry's file, adds the example, validates and writes it; the entry's id.
    fn write_example(
        &self,
        entry: &str,
        example: &str,
    ) -> std::result::Result<String, EditRefused> {
        let bot = self.bot();
        let entry = bot
            .engine
            .knowledge_base()
            .entry(entry)
            .ok_or_else(|| EditRefused::Unknown(format!("no entry \"{entry}\"")))?;
        // The folder's file of that name: the version serving may have been loaded from the
        // last good copy.
        let file = self
            .settings
            .kb
            .join(entry.location.file.file_name().unwrap_or_default());
        let read = edit::read(&file).map_err(refused_write)?;
        let edited = crate::knowledge::add_example(&read.text, entry.id.as_str(), example)
            .ok_or_else(|| {
                EditRefused::Failed(format!(
                    "{}: the examples of {} are not one per line",
                    file.display(),
                    entry.id
                ))
            })?;
        self.validate_edit(&file, &edited)
            .map_err(EditRefused::Invalid)?;
        edit::replace(&file, &read, &edited).map_err(refused_write)?;
        Ok(entry.id.as_str().to_string())
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

fn refused_write(refused: edit::WriteRefused) -> EditRefused {
    match refused {
        edit::WriteRefused::Changed(file) => EditRefused::Conflict(format!(
            "{} was changed by someone else while the example was being added; nothing was \
             written, so their edit stands: look at the entry again and add the example anew",
            file.display()
        )),
        edit::WriteRefused::Failed(message) => EditRefused::Failed(message),
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
