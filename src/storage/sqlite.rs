//! The embedded store: one SQLite file (WAL journal, so a killed process loses no committed
//! turn), schema by migrations. The only file with SQL in it.
//!
//! One process owns the file: it is opened with `locking_mode = EXCLUSIVE`, so SQLite keeps
//! the WAL index in the process's memory instead of a memory-mapped `-shm` file (a `-shm`
//! file truncated or made unwritable under a running server killed it with SIGBUS, without a
//! log line). Another process (`xiaoer agent add`) goes through the running server instead
//! (`channels::control`). Opening refuses a damaged file (`PRAGMA quick_check`) with what is
//! wrong and what to do, and warns when the file exists but is empty: history is gone.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use rusqlite_migration::{Migrations, M};

use super::{
    AgentRecord, AgentRefused, CaseRecord, ClaimRefused, Closing, Committed, HandoffRecord,
    HeldPart, KnowledgeRecord, NewMessage, NoteRecord, RatingRecord, Sender, Store, StoreError,
    StoreResult, StoredMessage, Turn,
};
use crate::bot::KnowledgeVersion;
use crate::conversation::{ChatKey, ChatState, Conversation};

/// The schema, one step per release; never edit a step that has shipped, add one.
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE chats (
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        state TEXT NOT NULL,
        conversation TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (channel, chat_id)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        sender TEXT NOT NULL CHECK (sender IN ('buyer', 'bot', 'agent')),
        text TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        act TEXT,
        topic TEXT,
        confidence REAL,
        knowledge_version TEXT,
        attachments TEXT NOT NULL DEFAULT '[]',
        agent TEXT
    );
    CREATE INDEX messages_by_chat ON messages (channel, chat_id, id);
    CREATE TABLE cases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        order_no TEXT,
        description TEXT,
        remedy TEXT,
        responsible TEXT NOT NULL,
        evidence TEXT NOT NULL,
        collected TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        closed_ms INTEGER
    );
    CREATE TABLE handoffs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        reason TEXT NOT NULL,
        priority INTEGER NOT NULL,
        state TEXT NOT NULL,
        agent TEXT,
        summary TEXT NOT NULL,
        candidates TEXT NOT NULL,
        collected TEXT NOT NULL,
        evidence TEXT NOT NULL,
        case_id INTEGER REFERENCES cases (id),
        reminded_ms INTEGER,
        claimed_ms INTEGER,
        ended_ms INTEGER
    );
    CREATE INDEX handoffs_open ON handoffs (state, priority, created_ms);
    CREATE INDEX handoffs_by_chat ON handoffs (channel, chat_id, state);
    CREATE TABLE knowledge_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hash TEXT NOT NULL,
        loaded_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        entries INTEGER NOT NULL,
        flows INTEGER NOT NULL
    );",
    ),
    M::up(
        "CREATE TABLE agents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('agent', 'editor')),
        token_hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        handoff_id INTEGER NOT NULL REFERENCES handoffs (id),
        agent TEXT NOT NULL,
        text TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX notes_by_chat ON notes (channel, chat_id, id);
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        handoff_id INTEGER NOT NULL REFERENCES handoffs (id),
        agent TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        at_ms INTEGER NOT NULL
    );
    ALTER TABLE cases ADD COLUMN agent TEXT;
    ALTER TABLE messages ADD COLUMN handoff_reason TEXT;",
    ),
    // The outbox (push channels such as Telegram) and once-only handling of redelivered
    // messages. Messages stored before it count as delivered.
    M::up(
        "ALTER TABLE messages ADD COLUMN delivered_ms INTEGER;
    ALTER TABLE messages ADD COLUMN choices TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE messages ADD COLUMN source_id TEXT;
    UPDATE messages SET delivered_ms = at_ms;
    CREATE INDEX messages_outbox ON messages (channel, chat_id, id) WHERE delivered_ms IS NULL;
    CREATE UNIQUE INDEX messages_by_source ON messages (channel, chat_id, source_id)
        WHERE source_id IS NOT NULL;",
    ),
    // Messages a channel refused for good (the buyer blocked the bot): kept, with the reason,
    // and out of the outbox.
    M::up(
        "ALTER TABLE messages ADD COLUMN undeliverable TEXT;
    DROP INDEX messages_outbox;
    CREATE INDEX messages_outbox ON messages (channel, chat_id, id)
        WHERE delivered_ms IS NULL AND undeliverable IS NULL;",
    ),
    // Album photos acknowledged to the channel before their album's turn is stored.
    M::up(
        "CREATE TABLE held_parts (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        source_id TEXT NOT NULL,
        album TEXT NOT NULL,
        text TEXT NOT NULL,
        attachments TEXT NOT NULL,
        UNIQUE (channel, chat_id, source_id)
    );",
    ),
    // One row `/health` rewrites to prove the store takes a write.
    M::up(
        "CREATE TABLE health (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        checked_ms INTEGER NOT NULL
    );",
    ),
];

const HANDOFF_COLUMNS: &str = "id, channel, chat_id, created_ms, reason, priority, state, agent, summary, candidates, collected, evidence, case_id, reminded_ms";

/// The store's file name in its folder.
pub const FILE_NAME: &str = "xiaoer.sqlite3";

pub struct SqliteStore {
    connection: Mutex<Connection>,
    /// The file and its identity when opened; `None` in memory.
    file: Option<OpenedFile>,
}

/// A database file as it was when opened, to tell when it is deleted or replaced under us.
struct OpenedFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl OpenedFile {
    fn new(path: PathBuf) -> OpenedFile {
        let identity = file_identity(&path);
        OpenedFile { path, identity }
    }

    /// An error when the path no longer leads to the file we write.
    fn still_there(&self) -> StoreResult<()> {
        let path = self.path.display();
        match (file_identity(&self.path), self.identity) {
            (None, _) => Err(StoreError(format!(
                "the database file {path} was removed: what is written now is lost at the next restart"
            ))),
            (Some(now), Some(then)) if now != then => Err(StoreError(format!(
                "the database file {path} was replaced by another file: what is written now goes to the old one"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

impl SqliteStore {
    /// Opens (creating if missing) `xiaoer.sqlite3` in `dir` for this process alone, checks it
    /// is not damaged, and brings its schema up to date. Warns when the file is empty.
    pub fn open_dir(dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            tracing::warn!(
                file = %path.display(),
                "the database file is empty (0 bytes): its history is gone; starting with an empty store"
            );
        }
        let connection = Connection::open(&path)
            .map_err(|e| StoreError(format!("cannot open {}: {}", path.display(), sql(e).0)))?;
        // EXCLUSIVE before the first access: the WAL index then lives in this process's memory
        // and no `-shm` file is mapped.
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 5000; PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .and_then(|()| quick_check(&connection))
            .map_err(|e| opening_failed(&path, e))?
            .map_err(|problems| damaged(&path, &problems))?;
        let mut store = SqliteStore::with_connection(connection)?;
        store.file = Some(OpenedFile::new(path));
        Ok(store)
    }

    /// A store that lives in memory (the REPL, tests).
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        let connection = Connection::open_in_memory().map_err(sql)?;
        SqliteStore::with_connection(connection)
    }

    fn with_connection(mut connection: Connection) -> StoreResult<SqliteStore> {
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut connection)
            .map_err(|e| StoreError(format!("schema migration failed: {e}")))?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            file: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A SQLite error with its result code, which names the cause (`SQLITE_FULL`,
/// `SQLITE_IOERR_WRITE` = 778, `SQLITE_CORRUPT` …) where the message is vague.
fn sql(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => StoreError(format!(
            "{error} ({:?}, code {})",
            failure.code, failure.extended_code
        )),
        _ => StoreError(error.to_string()),
    }
}

/// `PRAGMA quick_check`: `Ok(Err(problems))` when the file is damaged.
fn quick_check(connection: &Connection) -> rusqlite::Result<Result<(), String>> {
    let mut statement = connection.prepare("PRAGMA quick_check")?;
    let found: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(Ok(()));
    }
    let mut listing: Vec<String> = found.into_iter().take(3).collect();
    if listing.is_empty() {
        listing.push("the check found nothing to read".into());
    }
    Ok(Err(listing.join("; ")))
}

/// Why a database file could not be opened, with what to do.
fn opening_failed(path: &Path, error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, NotADatabase};
    match error.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => damaged(path, &sql(error).0),
        Some(DatabaseBusy | DatabaseLocked) => StoreError(format!(
            "the database {} is in use by another process (a running `xiaoer serve`?): {}",
            path.display(),
            sql(error).0
        )),
        _ => StoreError(format!("cannot open {}: {}", path.display(), sql(error).0)),
    }
}

fn damaged(path: &Path, problems: &str) -> StoreError {
    StoreError(format!(
        "the database {} is damaged ({problems}); refusing to start on it. Restore it from a \
         backup, or move it (with any -wal file beside it) aside to start with an empty store; \
         `sqlite3 FILE .recover` may save what is readable",
        path.display()
    ))
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn from_json<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

fn chat_of(row: &Row, channel: usize) -> rusqlite::Result<ChatKey> {
    let channel_name: String = row.get(channel)?;
    let id: String = row.get(channel + 1)?;
    Ok(ChatKey::parse(&channel_name, &id)
        .unwrap_or_else(|| ChatKey::parse("unknown", "invalid").expect("a valid placeholder key")))
}

/// The chat of a handoff `agent` holds, or why not.
fn held_by(
    tx: &Transaction,
    handoff: i64,
    agent: &str,
) -> rusqlite::Result<Result<ChatKey, AgentRefused>> {
    let found: Option<(String, Option<String>, String, String)> = tx
        .query_row(
            "SELECT state, agent, channel, chat_id FROM handoffs WHERE id = ?1",
            params![handoff],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((state, holder, channel, chat_id)) = found else {
        return Ok(Err(AgentRefused::Missing));
    };
    if state != "claimed" || holder.as_deref() != Some(agent) {
        return Ok(Err(AgentRefused::NotHolder(
            holder.filter(|_| state == "claimed"),
        )));
    }
    Ok(ChatKey::parse(&channel, &chat_id).ok_or(AgentRefused::Missing))
}

fn handoff_of(row: &Row) -> rusqlite::Result<HandoffRecord> {
    let priority: i64 = row.get(5)?;
    Ok(HandoffRecord {
        id: row.get(0)?,
        chat: chat_of(row, 1)?,
        created_ms: row.get(3)?,
        reason: row.get(4)?,
        priority: if priority == 1 { "urgent" } else { "normal" }.to_string(),
        state: row.get(6)?,
        agent: row.get(7)?,
        summary: row.get(8)?,
        candidates: from_json(row.get(9)?),
        collected: from_json(row.get(10)?),
        evidence: from_json(row.get(11)?),
        case_id: row.get(12)?,
        reminded_ms: row.get(13)?,
    })
}

/// One row of `messages`.
struct MessageRow<'a> {
    chat: &'a ChatKey,
    sender: Sender,
    text: &'a str,
    at_ms: i64,
    /// Act, topic, confidence and knowledge version of the turn.
    trace: Option<(&'a str, Option<&'a str>, f32, &'a str)>,
    /// JSON list.
    attachments: &'a str,
    /// JSON list.
    choices: &'a str,
    agent: Option<&'a str>,
    source_id: Option<&'a str>,
    delivered_ms: Option<i64>,
}

impl<'a> MessageRow<'a> {
    /// A bot message outside a turn (reminder, hand-back notice, rating request), waiting in
    /// the outbox: `(act, confidence, knowledge version)` trace it.
    fn notice(
        chat: &'a ChatKey,
        text: &'a str,
        at_ms: i64,
        trace: (&'a str, f32, &'a str),
    ) -> Self {
        MessageRow {
            chat,
            sender: Sender::Bot,
            text,
            at_ms,
            trace: Some((trace.0, None, trace.1, trace.2)),
            attachments: "[]",
            choices: "[]",
            agent: None,
            source_id: None,
            delivered_ms: None,
        }
    }
}

fn insert_message(tx: &Connection, row: &MessageRow) -> rusqlite::Result<i64> {
    let (act, topic, confidence, version) = match row.trace {
        Some((act, topic, confidence, version)) => {
            (Some(act), topic, Some(confidence), Some(version))
        }
        None => (None, None, None, None),
    };
    tx.execute(
        "INSERT INTO messages (channel, chat_id, sender, text, at_ms, act, topic, confidence, knowledge_version, attachments, choices, agent, source_id, delivered_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![row.chat.channel(), row.chat.id(), row.sender.as_str(), row.text, row.at_ms, act, topic, confidence, version,
                row.attachments, row.choices, row.agent, row.source_id, row.delivered_ms],
    )?;
    Ok(tx.last_insert_rowid())
}

const MESSAGE_COLUMNS: &str = "id, channel, chat_id, sender, text, at_ms, act, topic, confidence, knowledge_version, attachments, agent, choices, delivered_ms, undeliverable";

fn message_of(row: &Row) -> rusqlite::Result<StoredMessage> {
    let sender: String = row.get(3)?;
    Ok(StoredMessage {
        id: row.get(0)?,
        chat: chat_of(row, 1)?,
        from: Sender::parse(&sender),
        text: row.get(4)?,
        at_ms: row.get(5)?,
        act: row.get(6)?,
        topic: row.get(7)?,
        confidence: row.get::<_, Option<f64>>(8)?.map(|c| c as f32),
        knowledge_version: row.get(9)?,
        attachments: from_json(row.get(10)?),
        agent: row.get(11)?,
        choices: from_json(row.get(12)?),
        delivered_ms: row.get(13)?,
        undeliverable: row.get(14)?,
    })
}

fn save_conversation(
    tx: &Transaction,
    chat: &ChatKey,
    conversation: &Conversation,
    at_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO chats (channel, chat_id, state, conversation, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (channel, chat_id) DO UPDATE SET state = ?3, conversation = ?4, updated_ms = ?5",
        params![chat.channel(), chat.id(), conversation.state.name(), json(conversation), at_ms],
    )?;
    Ok(())
}

fn load_conversation(connection: &Connection, chat: &ChatKey) -> rusqlite::Result<Conversation> {
    let stored: Option<String> = connection
        .query_row(
            "SELECT conversation FROM chats WHERE channel = ?1 AND chat_id = ?2",
            params![chat.channel(), chat.id()],
            |row| row.get(0),
        )
        .optional()?;
    Ok(stored.map(from_json).unwrap_or_default())
}

/// The chat of handoff `id` when it meets `condition` (SQL over the handoffs row).
fn handoff_chat(tx: &Transaction, id: i64, condition: &str) -> StoreResult<Option<ChatKey>> {
    let found: Option<(String, String)> = tx
        .query_row(
            &format!("SELECT channel, chat_id FROM handoffs WHERE id = ?1 AND {condition}"),
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    found
        .map(|(channel, chat_id)| {
            ChatKey::parse(&channel, &chat_id)
                .ok_or_else(|| StoreError(format!("bad chat key {channel}:{chat_id}")))
        })
        .transpose()
}

/// Moves a chat to `state` (an agent took it, or the bot has it back).
fn set_chat_state(
    tx: &Transaction,
    chat: &ChatKey,
    state: ChatState,
    at_ms: i64,
) -> StoreResult<()> {
    let mut conversation = load_conversation(tx, chat).map_err(sql)?;
    if !matches!(state, ChatState::Agent { .. }) {
        conversation.memory.unanswered = None;
    }
    conversation.state = state;
    save_conversation(tx, chat, &conversation, at_ms).map_err(sql)
}

/// The chat's waiting or claimed handoff.
fn open_handoff_of(tx: &Transaction, chat: &ChatKey) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT id FROM handoffs WHERE channel = ?1 AND chat_id = ?2 AND state IN ('waiting', 'claimed') ORDER BY id DESC LIMIT 1",
        params![chat.channel(), chat.id()],
        |row| row.get(0),
    )
    .optional()
}

impl Store for SqliteStore {
    fn conversation(&self, chat: &ChatKey) -> StoreResult<Conversation> {
        load_conversation(&self.lock(), chat).map_err(sql)
    }

    fn commit_turn(&self, turn: &Turn) -> StoreResult<Committed> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(sql)?;
        let outcome = turn.outcome;
        let chat = turn.chat;
        let at_ms = turn.inbound.at_ms;
        // Both sides carry what the bot made of the message, so a silent turn (an agent has
        // the chat) is traced too.
        let trace = &outcome.trace;
        let details = (
            trace.act.as_str(),
            trace.topic.as_deref(),
            trace.confidence,
            turn.knowledge_version,
        );
        let attachments = json(&turn.inbound.attachments);
        insert_message(
            &tx,
            &MessageRow {
                chat,
                sender: Sender::Buyer,
                text: &turn.inbound.text,
                at_ms,
                trace: Some(details),
                attachments: &attachments,
                choices: "[]",
                agent: None,
                source_id: turn.source_id,
                delivered_ms: Some(at_ms),
            },
        )
        .map_err(sql)?;
        if let Some(handoff) = &outcome.handoff {
            // Which questions the bot could not place (`unanswered`) is read from this.
            let buyer_message = tx.last_insert_rowid();
            tx.execute(
                "UPDATE messages SET handoff_reason = ?2 WHERE id = ?1",
                params![buyer_message, handoff.reason.as_str()],
            )
            .map_err(sql)?;
        }
        let n_replies = outcome.replies.len();
        let choices = json(&outcome.choices);
        for (index, reply) in outcome.replies.iter().enumerate() {
            // The choices belong to the question, the turn's last reply.
            let last = index + 1 == n_replies;
            insert_message(
                &tx,
                &MessageRow {
                    chat,
                    sender: Sender::Bot,
                    text: reply,
                    at_ms,
                    trace: Some(details),
                    attachments: "[]",
                    choices: if last { &choices } else { "[]" },
                    agent: None,
                    source_id: None,
                    delivered_ms: turn.replies_delivered.then_some(at_ms),
                },
            )
            .map_err(sql)?;
        }
        let mut committed = Committed::default();
        if let Some(case) = &outcome.case {
            tx.execute(
                "INSERT INTO cases (channel, chat_id, created_ms, kind, order_no, description, remedy, responsible, evidence, collected, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![chat.channel(), chat.id(), at_ms, case.kind, case.order, case.description, case.remedy,
                        case.responsible.as_str(), json(&case.evidence), json(&case.collected), case.status.as_str()],
            ).map_err(sql)?;
            committed.case = Some(tx.last_insert_rowid());
        }
        let open = open_handoff_of(&tx, chat).map_err(sql)?;
        if let Some(handoff) = &outcome.handoff {
            tx.execute(
                "INSERT INTO handoffs (channel, chat_id, created_ms, reason, priority, state, summary, candidates, collected, evidence, case_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'waiting', ?6, ?7, ?8, ?9, ?10)",
                params![chat.channel(), chat.id(), at_ms, handoff.reason.as_str(), handoff.priority as i64,
                        handoff.summary, json(&handoff.candidates), json(&handoff.collected), json(&handoff.evidence), committed.case],
            ).map_err(sql)?;
            committed.handoff = Some(tx.last_insert_rowid());
        } else if let Some(open) = open {
            if let Some((collected, evidence)) = &outcome.handoff_details {
                tx.execute(
                    "UPDATE handoffs SET collected = ?2, evidence = ?3 WHERE id = ?1",
                    params![open, json(collected), json(evidence)],
                )
                .map_err(sql)?;
            }
            if let Some(case) = committed.case {
                tx.execute(
                    "UPDATE handoffs SET case_id = ?2 WHERE id = ?1",
                    params![open, case],
                )
                .map_err(sql)?;
            }
            if outcome.cancel_handoff {
                tx.execute(
                    "UPDATE handoffs SET state = 'cancelled', ended_ms = ?2 WHERE id = ?1 AND state = 'waiting'",
                    params![open, at_ms],
                )
                .map_err(sql)?;
            }
        }
        if let Some(rating) = &outcome.rating {
            tx.execute(
                "INSERT INTO ratings (handoff_id, agent, score, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![rating.handoff, rating.agent, rating.score, at_ms],
            )
            .map_err(sql)?;
        }
        save_conversation(&tx, chat, &outcome.conversation, at_ms).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(committed)
    }

    fn messages(&self, chat: &ChatKey, after: i64) -> StoreResult<Vec<StoredMessage>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel = ?1 AND chat_id = ?2 AND id > ?3 ORDER BY id"
            ))
            .map_err(sql)?;
        let rows = statement
            .query_map(params![chat.channel(), chat.id(), after], message_of)
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn chat_exists(&self, chat: &ChatKey) -> StoreResult<bool> {
        let connection = self.lock();
        connection
            .prepare_cached("SELECT 1 FROM chats WHERE channel = ?1 AND chat_id = ?2")
            .and_then(|mut statement| statement.exists(params![chat.channel(), chat.id()]))
            .map_err(sql)
    }

    fn handoff(&self, id: i64) -> StoreResult<Option<HandoffRecord>> {
        let connection = self.lock();
        connection
            .query_row(
                &format!("SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id = ?1"),
                params![id],
                handoff_of,
            )
            .optional()
            .map_err(sql)
    }

    fn open_handoffs(&self) -> StoreResult<Vec<HandoffRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE state IN ('waiting', 'claimed') ORDER BY priority, created_ms, id"
            ))
            .map_err(sql)?;
        let rows = statement.query_map([], handoff_of).map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn cases(&self) -> StoreResult<Vec<CaseRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT id, channel, chat_id, created_ms, kind, order_no, description, remedy, responsible, evidence, collected, status, outcome, agent
                 FROM cases ORDER BY id",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok(CaseRecord {
                    id: row.get(0)?,
                    chat: chat_of(row, 1)?,
                    created_ms: row.get(3)?,
                    kind: row.get(4)?,
                    order: row.get(5)?,
                    description: row.get(6)?,
                    remedy: row.get(7)?,
                    responsible: row.get(8)?,
                    evidence: from_json(row.get(9)?),
                    collected: from_json(row.get(10)?),
                    status: row.get(11)?,
                    outcome: row.get(12)?,
                    agent: row.get(13)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn claim(
        &self,
        handoff: i64,
        agent: &str,
        at_ms: i64,
    ) -> StoreResult<Result<(), ClaimRefused>> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(sql)?;
        let found: Option<(String, Option<String>, String, String)> = tx
            .query_row(
                "SELECT state, agent, channel, chat_id FROM handoffs WHERE id = ?1",
                params![handoff],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(sql)?;
        let Some((state, holder, channel, chat_id)) = found else {
            return Ok(Err(ClaimRefused::Missing));
        };
        match (state.as_str(), holder) {
            ("waiting", _) => {}
            ("claimed", Some(holder)) if holder == agent => return Ok(Ok(())),
            ("claimed", Some(holder)) => return Ok(Err(ClaimRefused::HeldBy(holder))),
            (other, _) => return Ok(Err(ClaimRefused::NotWaiting(other.to_string()))),
        }
        tx.execute(
            "UPDATE handoffs SET state = 'claimed', agent = ?2, claimed_ms = ?3 WHERE id = ?1",
            params![handoff, agent, at_ms],
        )
        .map_err(sql)?;
        let chat = ChatKey::parse(&channel, &chat_id)
            .ok_or_else(|| StoreError(format!("bad chat key {channel}:{chat_id}")))?;
        let state = ChatState::Agent {
            agent: agent.to_string(),
        };
        set_chat_state(&tx, &chat, state, at_ms)?;
        tx.commit().map_err(sql)?;
        Ok(Ok(()))
    }

    fn release(
        &self,
        handoff: i64,
        notice: &str,
        knowledge_version: &str,
        at_ms: i64,
    ) -> StoreResult<bool> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(sql)?;
        let Some(chat) = handoff_chat(&tx, handoff, "state IN ('waiting', 'claimed')")? else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE handoffs SET state = 'released', ended_ms = ?2 WHERE id = ?1",
            params![handoff, at_ms],
        )
        .map_err(sql)?;
        insert_message(
            &tx,
            &MessageRow::notice(&chat, notice, at_ms, ("release", 1.0, knowledge_version)),
        )
        .map_err(sql)?;
        set_chat_state(&tx, &chat, ChatState::Bot, at_ms)?;
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    fn due_reminders(&self, before_ms: i64) -> StoreResult<Vec<HandoffRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE state = 'waiting' AND reminded_ms IS NULL AND created_ms <= ?1 ORDER BY id"
            ))
            .map_err(sql)?;
        let rows = statement
            .query_map(params![before_ms], handoff_of)
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn remind(
        &self,
        handoff: i64,
        text: &str,
        at_ms: i64,
        knowledge_version: &str,
    ) -> StoreResult<bool> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(sql)?;
        let Some(chat) = handoff_chat(&tx, handoff, "state = 'waiting' AND reminded_ms IS NULL")?
        else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE handoffs SET reminded_ms = ?2 WHERE id = ?1",
            params![handoff, at_ms],
        )
        .map_err(sql)?;
        insert_message(
            &tx,
            &MessageRow::notice(&chat, text, at_ms, ("hold", 0.0, knowledge_version)),
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    fn record_knowledge(
        &self,
        version: &KnowledgeVersion,
        source: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        self.lock()
            .execute(
                "INSERT INTO knowledge_versions (hash, loaded_ms, source, entries, flows) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![version.hash, at_ms, source, version.entries as i64, version.flows as i64],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn knowledge_versions(&self) -> StoreResult<Vec<KnowledgeRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT hash, loaded_ms, source, entries, flows FROM knowledge_versions ORDER BY id")
            .map_err(sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok(KnowledgeRecord {
                    hash: row.get(0)?,
                    loaded_ms: row.get(1)?,
                    source: row.get(2)?,
                    entries: row.get::<_, i64>(3)? as usize,
                    flows: row.get::<_, i64>(4)? as usize,
                })
            })
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn add_agent(&self, name: &str, role: &str, token_hash: &str, at_ms: i64) -> StoreResult<bool> {
        let added = self
            .lock()
            .execute(
                "INSERT INTO agents (name, role, token_hash, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, role, token_hash, at_ms],
            )
            .map_err(sql)?;
        Ok(added == 1)
    }

    fn agent_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<AgentRecord>> {
        self.lock()
            .query_row(
                "SELECT name, role FROM agents WHERE token_hash = ?1",
                params![token_hash],
                |row| {
                    Ok(AgentRecord {
                        name: row.get(0)?,
                        role: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sql)
    }

    fn agent_reply(
        &self,
        handoff: i64,
        agent: &str,
        text: &str,
        at_ms: i64,
    ) -> StoreResult<Result<i64, AgentRefused>> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(sql)?;
        let chat = match held_by(&tx, handoff, agent).map_err(sql)? {
            Ok(chat) => chat,
            Err(refused) => return Ok(Err(refused)),
        };
        tx.execute(
            "INSERT INTO messages (channel, chat_id, sender, text, at_ms, agent) VALUES (?1, ?2, 'agent', ?3, ?4, ?5)",
            params![chat.channel(), chat.id(), text, at_ms, agent],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql)?;
        Ok(Ok(id))
    }

    fn add_note(
        &self,
        handoff: i64,
        agent: &str,
        text: &str,
        at_ms: i64,
    ) -> StoreResult<Result<(), AgentRefused>> {
        let connection = self.lock();
        let chat: Option<(String, String)> = connection
            .query_row(
                "SELECT channel, chat_id FROM handoffs WHERE id = ?1",
                params![handoff],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sql)?;
        // Any agent may leave a note on any handoff: notes are for whoever comes next.
        let Some((channel, chat_id)) = chat else {
            return Ok(Err(AgentRefused::Missing));
        };
        connection
            .execute(
                "INSERT INTO notes (channel, chat_id, handoff_id, agent, text, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![channel, chat_id, handoff, agent, text, at_ms],
            )
            .map_err(sql)?;
        Ok(Ok(()))
    }

    fn notes(&self, chat: &ChatKey) -> StoreResult<Vec<NoteRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT handoff_id, agent, text, at_ms FROM notes WHERE channel = ?1 AND chat_id = ?2 ORDER BY id")
            .map_err(sql)?;
        let rows = statement
            .query_map(params![chat.channel(), chat.id()], |row| {
                Ok(NoteRecord {
                    handoff: row.get(0)?,
                    agent: row.get(1)?,
                    text: row.get(2)?,
                    at_ms: row.get(3)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn close(&self, closing: &Closing) -> StoreResult<Result<(), AgentRefused>> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(sql)?;
        let chat = match held_by(&tx, closing.handoff, closing.agent).map_err(sql)? {
            Ok(chat) => chat,
            Err(refused) => return Ok(Err(refused)),
        };
        tx.execute(
            "UPDATE handoffs SET state = 'closed', ended_ms = ?2 WHERE id = ?1",
            params![closing.handoff, closing.at_ms],
        )
        .map_err(sql)?;
        let case: Option<i64> = tx
            .query_row(
                "SELECT case_id FROM handoffs WHERE id = ?1",
                params![closing.handoff],
                |row| row.get(0),
            )
            .map_err(sql)?;
        if let Some(case) = case {
            tx.execute(
                "UPDATE cases SET status = 'closed', outcome = ?2, responsible = ?3, agent = ?4, closed_ms = ?5 WHERE id = ?1",
                params![case, closing.outcome, closing.responsible, closing.agent, closing.at_ms],
            )
            .map_err(sql)?;
        }
        insert_message(
            &tx,
            &MessageRow::notice(
                &chat,
                closing.rating_request,
                closing.at_ms,
                ("rating", 1.0, closing.knowledge_version),
            ),
        )
        .map_err(sql)?;
        let state = ChatState::Rating {
            handoff: closing.handoff,
            agent: closing.agent.to_string(),
        };
        set_chat_state(&tx, &chat, state, closing.at_ms)?;
        tx.commit().map_err(sql)?;
        Ok(Ok(()))
    }

    fn ratings(&self) -> StoreResult<Vec<RatingRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT handoff_id, agent, score, at_ms FROM ratings ORDER BY id")
            .map_err(sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok(RatingRecord {
                    handoff: row.get(0)?,
                    agent: row.get(1)?,
                    score: row.get(2)?,
                    at_ms: row.get(3)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn seen(&self, chat: &ChatKey, source_id: &str) -> StoreResult<bool> {
        self.lock()
            .query_row(
                "SELECT 1 FROM messages WHERE channel = ?1 AND chat_id = ?2 AND source_id = ?3",
                params![chat.channel(), chat.id(), source_id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(sql)
    }

    fn post_message(&self, message: &NewMessage) -> StoreResult<i64> {
        let delivered_ms = (message.from == Sender::Buyer).then_some(message.at_ms);
        insert_message(
            &self.lock(),
            &MessageRow {
                chat: message.chat,
                sender: message.from,
                text: message.text,
                at_ms: message.at_ms,
                trace: message
                    .knowledge_version
                    .map(|version| ("notice", None, 1.0, version)),
                attachments: "[]",
                choices: "[]",
                agent: message.agent,
                source_id: message.source_id,
                delivered_ms,
            },
        )
        .map_err(sql)
    }

    fn pending_chats(&self, channel: &str) -> StoreResult<Vec<ChatKey>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT DISTINCT channel, chat_id FROM messages
                 WHERE channel = ?1 AND delivered_ms IS NULL AND undeliverable IS NULL
                   AND sender <> 'buyer'
                 ORDER BY chat_id",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![channel], |row| chat_of(row, 0))
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn unanswered(&self, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE sender = 'buyer' AND text != ''
                   AND (act = 'clarify' OR handoff_reason IN ('low_confidence', 'repeated'))
                 ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(sql)?;
        let rows = statement
            .query_map(params![limit as i64], message_of)
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn undelivered(&self, chat: &ChatKey) -> StoreResult<Vec<StoredMessage>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE channel = ?1 AND chat_id = ?2 AND delivered_ms IS NULL AND undeliverable IS NULL
                   AND sender <> 'buyer'
                 ORDER BY id"
            ))
            .map_err(sql)?;
        let rows = statement
            .query_map(params![chat.channel(), chat.id()], message_of)
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn mark_delivered(&self, message: i64, at_ms: i64) -> StoreResult<()> {
        self.lock()
            .execute(
                "UPDATE messages SET delivered_ms = ?2 WHERE id = ?1 AND delivered_ms IS NULL",
                params![message, at_ms],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn mark_undeliverable(&self, message: i64, reason: &str) -> StoreResult<()> {
        self.lock()
            .execute(
                "UPDATE messages SET undeliverable = ?2 WHERE id = ?1 AND delivered_ms IS NULL",
                params![message, reason],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn hold_part(&self, part: &HeldPart) -> StoreResult<()> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO held_parts (channel, chat_id, source_id, album, text, attachments)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![part.chat.channel(), part.chat.id(), part.source_id, part.album, part.text,
                        json(&part.attachments)],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn held_parts(&self, channel: &str) -> StoreResult<Vec<HeldPart>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT channel, chat_id, source_id, album, text, attachments FROM held_parts
                 WHERE channel = ?1 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![channel], |row| {
                Ok(HeldPart {
                    chat: chat_of(row, 0)?,
                    source_id: row.get(2)?,
                    album: row.get(3)?,
                    text: row.get(4)?,
                    attachments: from_json(row.get(5)?),
                })
            })
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    fn release_album(&self, chat: &ChatKey, album: &str) -> StoreResult<()> {
        self.lock()
            .execute(
                "DELETE FROM held_parts WHERE channel = ?1 AND chat_id = ?2 AND album = ?3",
                params![chat.channel(), chat.id(), album],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn check_health(&self, at_ms: i64) -> StoreResult<()> {
        if let Some(file) = &self.file {
            file.still_there()?;
        }
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO health (id, checked_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_ms = ?1",
                params![at_ms],
            )
            .map_err(sql)?;
        connection
            .query_row("SELECT max(id) FROM messages", [], |_| Ok(()))
            .map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str) -> ChatKey {
        ChatKey::parse("telegram", id).unwrap()
    }

    fn post(store: &SqliteStore, chat: &ChatKey, from: Sender, source_id: Option<&str>) -> i64 {
        store
            .post_message(&NewMessage {
                chat,
                from,
                text: "您好",
                at_ms: 1,
                source_id,
                agent: None,
                knowledge_version: None,
            })
            .unwrap()
    }

    #[test]
    fn outbound_messages_wait_in_the_outbox_until_delivered() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (a, b) = (chat("1"), chat("2"));
        post(&store, &a, Sender::Buyer, Some("m1"));
        let first = post(&store, &a, Sender::Agent, None);
        let second = post(&store, &a, Sender::Bot, None);
        post(&store, &b, Sender::Bot, None);
        assert_eq!(store.pending_chats("telegram").unwrap(), [a.clone(), b]);
        assert!(store.pending_chats("http").unwrap().is_empty());
        let pending: Vec<i64> = store
            .undelivered(&a)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(pending, [first, second]);
        store.mark_delivered(first, 5).unwrap();
        let pending: Vec<i64> = store
            .undelivered(&a)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(pending, [second]);
        let delivered = store.messages(&a, 0).unwrap();
        assert_eq!(delivered[1].delivered_ms, Some(5));
    }

    #[test]
    fn an_undeliverable_message_is_kept_with_its_reason_and_leaves_the_outbox() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (a, b) = (chat("1"), chat("2"));
        let refused = post(&store, &a, Sender::Bot, None);
        let other = post(&store, &b, Sender::Bot, None);
        store.mark_undeliverable(refused, "blocked").unwrap();
        assert_eq!(
            store.pending_chats("telegram").unwrap(),
            std::slice::from_ref(&b)
        );
        assert!(store.undelivered(&a).unwrap().is_empty());
        assert_eq!(store.undelivered(&b).unwrap()[0].id, other);
        let kept = &store.messages(&a, 0).unwrap()[0];
        assert_eq!(kept.undeliverable.as_deref(), Some("blocked"));
        assert_eq!(kept.delivered_ms, None);
        // A later message to the same chat is tried again.
        let later = post(&store, &a, Sender::Bot, None);
        assert_eq!(store.undelivered(&a).unwrap()[0].id, later);
        // A delivered message is never marked.
        store.mark_delivered(other, 5).unwrap();
        store.mark_undeliverable(other, "blocked").unwrap();
        assert_eq!(store.messages(&b, 0).unwrap()[0].undeliverable, None);
    }

    #[test]
    fn a_source_id_is_seen_once_per_chat() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert!(!store.seen(&chat("1"), "m7").unwrap());
        post(&store, &chat("1"), Sender::Buyer, Some("m7"));
        assert!(store.seen(&chat("1"), "m7").unwrap());
        assert!(!store.seen(&chat("2"), "m7").unwrap());
        let again = store.post_message(&NewMessage {
            chat: &chat("1"),
            from: Sender::Buyer,
            text: "again",
            at_ms: 2,
            source_id: Some("m7"),
            agent: None,
            knowledge_version: None,
        });
        assert!(again.is_err(), "the same message is stored once");
    }

    #[test]
    fn messages_stored_before_the_outbox_count_as_delivered() {
        let mut connection = Connection::open_in_memory().unwrap();
        Migrations::from_slice(&MIGRATIONS[..1])
            .to_latest(&mut connection)
            .unwrap();
        connection
            .execute(
                "INSERT INTO messages (channel, chat_id, sender, text, at_ms) VALUES ('telegram', '1', 'bot', '您好', 3)",
                [],
            )
            .unwrap();
        let store = SqliteStore::with_connection(connection).unwrap();
        assert!(store.pending_chats("telegram").unwrap().is_empty());
        assert_eq!(
            store.messages(&chat("1"), 0).unwrap()[0].delivered_ms,
            Some(3)
        );
    }
}
