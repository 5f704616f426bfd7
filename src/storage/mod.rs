//! Where conversations, messages, cases, handoffs and knowledge versions are kept. The `Store`
//! trait is what the rest of the program uses; `sqlite` is the embedded default (a PostgreSQL
//! store for several bot instances would implement the same trait). Stores are synchronous:
//! async callers use `spawn_blocking`.
//!
//! A turn is stored in one transaction (buyer message, replies, state, case, handoff), so a
//! crash loses either the whole turn or nothing.

pub mod sqlite;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bot::KnowledgeVersion;
use crate::conversation::{ChatKey, Conversation, Inbound, Outcome};
use crate::dialog::Attachment;
use crate::engine::Considered;

pub use sqlite::SqliteStore;

/// A store failure (I/O, corruption, a bug in a query). Never caused by buyer input.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    Buyer,
    Bot,
    Agent,
}

impl Sender {
    pub fn as_str(self) -> &'static str {
        match self {
            Sender::Buyer => "buyer",
            Sender::Bot => "bot",
            Sender::Agent => "agent",
        }
    }

    fn parse(text: &str) -> Sender {
        match text {
            "buyer" => Sender::Buyer,
            "agent" => Sender::Agent,
            _ => Sender::Bot,
        }
    }
}

/// A stored message, inbound or outbound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    pub id: i64,
    #[serde(skip)]
    pub chat: ChatKey,
    pub from: Sender,
    pub text: String,
    pub at_ms: i64,
    /// For bot messages: what it did, about which topic, how sure, from which knowledge.
    pub act: Option<String>,
    pub topic: Option<String>,
    pub confidence: Option<f32>,
    pub knowledge_version: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The agent who wrote it, for agent messages.
    pub agent: Option<String>,
    /// What the message offers to pick by number, in order (a clarify's topics, a flow
    /// step's options; a channel may show them as buttons); empty for other messages.
    pub choices: Vec<String>,
    /// When the message reached its recipient: a buyer's message when it reached us, a reply
    /// when its channel handed it over. `None` while an outbound message waits in the outbox.
    pub delivered_ms: Option<i64>,
    /// Why the channel refused the message for good (`blocked`: the buyer blocked the bot …):
    /// it is kept but never tried again.
    pub undeliverable: Option<String>,
}

/// A photo of an album, kept from the moment the channel is told it arrived until its album's
/// turn is stored: Telegram sends an album's next photo only once the last is acknowledged,
/// so the bot must acknowledge before the album is complete, and a restart must not lose it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldPart {
    pub chat: ChatKey,
    /// The channel's id of the photo's message.
    pub source_id: String,
    pub album: String,
    /// Its caption.
    pub text: String,
    pub attachments: Vec<Attachment>,
}

/// A handoff in the queue or done with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandoffRecord {
    pub id: i64,
    #[serde(skip)]
    pub chat: ChatKey,
    pub created_ms: i64,
    pub reason: String,
    pub priority: String,
    /// waiting, claimed, released, closed or cancelled.
    pub state: String,
    pub agent: Option<String>,
    pub summary: String,
    pub candidates: Vec<Considered>,
    pub collected: BTreeMap<String, String>,
    pub evidence: Vec<Attachment>,
    pub case_id: Option<i64>,
    pub reminded_ms: Option<i64>,
}

/// A recorded after-sales case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseRecord {
    pub id: i64,
    #[serde(skip)]
    pub chat: ChatKey,
    pub created_ms: i64,
    pub kind: String,
    pub order: Option<String>,
    pub description: Option<String>,
    pub remedy: Option<String>,
    pub responsible: String,
    pub evidence: Vec<Attachment>,
    pub collected: BTreeMap<String, String>,
    pub status: String,
    /// How an agent closed it, and who.
    pub outcome: Option<String>,
    pub agent: Option<String>,
}

/// A knowledge version the bot served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeRecord {
    pub hash: String,
    pub loaded_ms: i64,
    /// Who or what changed it: start-up, a file edit, the git commit.
    pub source: String,
    pub entries: usize,
    pub flows: usize,
}

/// One handled message, to be stored whole.
pub struct Turn<'a> {
    pub chat: &'a ChatKey,
    pub inbound: &'a Inbound,
    pub outcome: &'a Outcome,
    pub knowledge_version: &'a str,
    /// The channel's id of the buyer's message (a Telegram message id), stored with it so the
    /// same message delivered twice is handled once (see `Store::seen`).
    pub source_id: Option<&'a str>,
    /// The channel hands the replies over in its answer to this message (HTTP): they are
    /// stored delivered. Otherwise they wait in the outbox (Telegram).
    pub replies_delivered: bool,
}

/// A message stored outside a buyer's turn: a notice the bot sends on a channel's event
/// (a welcome, a note on a message kind it can't read), an agent's reply.
pub struct NewMessage<'a> {
    pub chat: &'a ChatKey,
    pub from: Sender,
    pub text: &'a str,
    pub at_ms: i64,
    /// The channel's id of the buyer's message this answers, if any (see `Store::seen`).
    pub source_id: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub knowledge_version: Option<&'a str>,
}

/// What storing a turn created.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    pub handoff: Option<i64>,
    pub case: Option<i64>,
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRefused {
    Missing,
    /// Another agent holds it (their name).
    HeldBy(String),
    /// It is no longer waiting (closed, cancelled, released).
    NotWaiting(String),
}

/// An agent of the console (`xiaoer agent add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRecord {
    pub name: String,
    /// `agent`, or `editor` (may also change the knowledge base).
    pub role: String,
}

/// A note an agent left on a chat for the next shift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoteRecord {
    pub handoff: i64,
    pub agent: String,
    pub text: String,
    pub at_ms: i64,
}

/// A buyer's 1–5 rating of a closed chat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatingRecord {
    pub handoff: i64,
    pub agent: String,
    pub score: u8,
    pub at_ms: i64,
}

/// Why an agent's action on a handoff was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRefused {
    Missing,
    /// The agent does not hold the chat: another does (their name), or nobody.
    NotHolder(Option<String>),
}

/// How an agent closes a handoff.
pub struct Closing<'a> {
    pub handoff: i64,
    pub agent: &'a str,
    pub outcome: &'a str,
    pub responsible: &'a str,
    /// Sent to the buyer: the request to rate the service.
    pub rating_request: &'a str,
    pub knowledge_version: &'a str,
    pub at_ms: i64,
}

/// Everything the program keeps.
pub trait Store: Send + Sync {
    /// The chat's conversation; a new chat starts with the bot.
    fn conversation(&self, chat: &ChatKey) -> StoreResult<Conversation>;
    /// Stores a turn atomically: the buyer's message, the replies, the next state, the case
    /// and the handoff (linked to each other), updates of the open handoff.
    fn commit_turn(&self, turn: &Turn) -> StoreResult<Committed>;
    /// The chat's messages with an id above `after`, oldest first.
    fn messages(&self, chat: &ChatKey, after: i64) -> StoreResult<Vec<StoredMessage>>;
    /// Whether the chat has had a turn (the HTTP API counts reads of unknown chats as guesses).
    fn chat_exists(&self, chat: &ChatKey) -> StoreResult<bool>;
    fn handoff(&self, id: i64) -> StoreResult<Option<HandoffRecord>>;
    /// Waiting and claimed handoffs: urgent first, then oldest first.
    fn open_handoffs(&self) -> StoreResult<Vec<HandoffRecord>>;
    fn cases(&self) -> StoreResult<Vec<CaseRecord>>;
    /// Gives the chat of a waiting handoff to `agent`; the chat's state becomes `agent`.
    fn claim(&self, handoff: i64, agent: &str, at_ms: i64)
        -> StoreResult<Result<(), ClaimRefused>>;
    /// Hands the chat back to the bot and ends the handoff; `notice` tells the buyer.
    fn release(
        &self,
        handoff: i64,
        notice: &str,
        knowledge_version: &str,
        at_ms: i64,
    ) -> StoreResult<bool>;
    /// Waiting handoffs created at or before `before_ms` that got no reminder yet.
    fn due_reminders(&self, before_ms: i64) -> StoreResult<Vec<HandoffRecord>>;
    /// Sends the reminder of a waiting handoff (stored as a bot message to its chat) and marks
    /// it reminded, in one transaction; false if it was claimed or reminded meanwhile.
    fn remind(
        &self,
        handoff: i64,
        text: &str,
        at_ms: i64,
        knowledge_version: &str,
    ) -> StoreResult<bool>;
    /// Records a knowledge version the bot started serving.
    fn record_knowledge(
        &self,
        version: &KnowledgeVersion,
        source: &str,
        at_ms: i64,
    ) -> StoreResult<()>;
    fn knowledge_versions(&self) -> StoreResult<Vec<KnowledgeRecord>>;

    /// Adds an agent with the hash of its token; false if the name is taken.
    fn add_agent(&self, name: &str, role: &str, token_hash: &str, at_ms: i64) -> StoreResult<bool>;
    fn agent_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<AgentRecord>>;
    /// Stores an agent's message to the chat of a handoff the agent holds.
    fn agent_reply(
        &self,
        handoff: i64,
        agent: &str,
        text: &str,
        at_ms: i64,
    ) -> StoreResult<Result<i64, AgentRefused>>;
    fn add_note(
        &self,
        handoff: i64,
        agent: &str,
        text: &str,
        at_ms: i64,
    ) -> StoreResult<Result<(), AgentRefused>>;
    /// The notes on every handoff of a chat, oldest first.
    fn notes(&self, chat: &ChatKey) -> StoreResult<Vec<NoteRecord>>;
    /// Closes a handoff the agent holds: the case gets its outcome and responsible party, the
    /// buyer is asked to rate the service, and the chat goes back to the bot.
    fn close(&self, closing: &Closing) -> StoreResult<Result<(), AgentRefused>>;
    fn ratings(&self) -> StoreResult<Vec<RatingRecord>>;
    /// The buyer's messages the bot could not place (it handed off unsure, or asked which
    /// topic was meant), newest first, at most `limit`.
    fn unanswered(&self, limit: usize) -> StoreResult<Vec<StoredMessage>>;
    /// Whether a message with this channel id was already stored for the chat (a channel
    /// that redelivers after a restart sees its message handled once).
    fn seen(&self, chat: &ChatKey, source_id: &str) -> StoreResult<bool>;
    /// Stores a message outside a turn; an outbound one waits in the outbox. Returns its id.
    fn post_message(&self, message: &NewMessage) -> StoreResult<i64>;
    /// The chats of `channel` with outbound messages waiting for delivery.
    fn pending_chats(&self, channel: &str) -> StoreResult<Vec<ChatKey>>;
    /// The chat's outbound messages waiting for delivery, oldest first.
    fn undelivered(&self, chat: &ChatKey) -> StoreResult<Vec<StoredMessage>>;
    /// Records that a message reached the buyer.
    fn mark_delivered(&self, message: i64, at_ms: i64) -> StoreResult<()>;
    /// Records that the channel refused an undelivered message for good, and why; it leaves
    /// the outbox but stays in the chat's messages.
    fn mark_undeliverable(&self, message: i64, reason: &str) -> StoreResult<()>;

    /// Keeps an album's photo until `release_album`; the same photo kept twice is kept once.
    fn hold_part(&self, part: &HeldPart) -> StoreResult<()>;
    /// The parts a channel holds, in arrival order (what a restart must still handle).
    fn held_parts(&self, channel: &str) -> StoreResult<Vec<HeldPart>>;
    /// Forgets the parts of an album whose turn is stored.
    fn release_album(&self, chat: &ChatKey, album: &str) -> StoreResult<()>;

    /// Proves the store takes a write now (`/health`): a small committed write, a read where
    /// new messages go, and the file written still the one at its path.
    fn check_health(&self, at_ms: i64) -> StoreResult<()>;
}
