//! xiaoer (店小二): a customer-service bot for online shops.
//!
//! # Codemap
//! - `normalize`  — one text normalisation for index and queries (NFKC, 繁→简, slang, fillers).
//! - `analyze`    — characters with pinyin, jieba words, sound bigrams, English stems.
//! - `knowledge`  — the knowledge base in `knowledge/`: entries, lexicon, templates; `load_dir`.
//! - `catalog`    — the product catalog and its lookups (product, colour, size, stock).
//! - `shop`       — the shop's own rules named once (`shop.toml`: hours, cut-off, thresholds),
//!   filled into answers and templates at load as `{shop.NAME}`.
//! - `meaning`    — word vectors and synonym groups (general Chinese, built in from `assets/`).
//! - `similarity` — the score of two questions in [0, 1] (re-ranking, `xiaoer similarity`).
//! - `matcher`    — the in-RAM tantivy index; `find` ranks entries for a question.
//! - `sizing`     — a size from the buyer's measurements (身高, 体重, 脚长, usual size) and a
//!   size chart's ranges.
//! - `reply`      — renders answers, product-aware answers, clarify and handoff texts.
//! - `phrasing`   — the approved-phrasing check every outgoing text passes.
//! - `engine`     — one message in, decision and reply out (matching and rendering).
//! - `dialog`     — after-sales flows from `dialogs/`: steps, checks of answers, endings.
//! - `case`       — after-sales cases a flow records for the weekly review.
//! - `handoff`    — why and how urgently a chat goes to a person; the agent's summary line.
//! - `auth`       — secrets made at random: agent tokens (stored only as a hash) and HTTP chat
//!   ids (144 bits, base64url).
//! - `throttle`   — wrong guesses counted per key in a window, then a block (pure, time passed
//!   in); not to be confused with `channels::telegram::throttle`, which paces sends.
//! - `hours`      — service hours: are agents at their desks, when are they back.
//! - `bot`        — knowledge base + index + flows + their version, swapped whole on reload.
//! - `conversation` — a chat's state and memory; `handle` turns a message into an `Outcome`:
//!   the only orchestrator of a conversation. Pure.
//! - `audit`      — `kb check`'s checks on the built engine: examples another entry answers,
//!   repeated and near-copy examples.
//! - `eval`       — evaluation sets and their figures.
//! - `storage`    — the `Store` trait and its SQLite implementation (the only SQL): one
//!   process holds the file (exclusive locking, no `-shm`), a damaged file is refused at open.
//! - `service`    — the running bot: per-chat ordered turns (load, handle, commit), knowledge
//!   reload with atomic swap, reminders for unclaimed handoffs. The async shell of the core.
//!   `service::edit`: console edits of a knowledge file, written atomically and only over the
//!   file they were made from; `service::last_good`: the last version that went live, kept in
//!   the data folder and served when a start finds the folders invalid.
//! - `health`     — what `/health` checks: the store takes a write (and the last chat was
//!   stored), the knowledge answers; checked at most once a second.
//! - `channels`   — adapters: `cli` (terminal), `http` (axum: `/api/chat`, JSON errors on
//!   every route), `console` (the agents' API and web page under `/api/agent` and `/console`),
//!   `guard` (the HTTP side's defences: client address, throttles of wrong chat ids and
//!   tokens, security headers), `listener` (our accept loop over hyper: header, body and idle
//!   timeouts, a connection cap that closes the longest idle first), `control` (the local
//!   socket `agent add` uses while the server runs).
//!   `telegram` (teloxide: long polling or a webhook route; our own per-chat lanes instead of teloxide's
//!   `Dispatcher`, so an update is acknowledged only once its turn is stored; an outbox that
//!   delivers what the store holds undelivered, in order per chat, with retries, within
//!   Telegram's rate limits).
//! - `config`     — settings; the only module that reads the environment.
//!
//! # Invariants
//! - Buyer input never produces `Err`: empty, huge, unreadable or unmatched text becomes a
//!   clarify or handoff reply.
//! - Every text the bot sends comes from `knowledge/` (an entry's answer or a template) or
//!   `dialogs/` (a flow's prompt), and passes `phrasing::check` before it leaves.
//! - `knowledge::load_dir` and `dialog::load_dir` are the only core functions that read files
//!   (`bot` also hashes them); the core knows no tokio, axum or SQL: `service` is the async
//!   shell, `storage` holds every SQL string behind the `Store` trait.
//! - One turn (buyer message, replies, state, case, handoff) is stored in one transaction.
//! - Knowledge changes one at a time: console edits hold one lock from reading a file to
//!   writing it, reloads another, so an edit never overwrites another and a version serving
//!   is never replaced by an older one. An edit is acknowledged only once a version serving it
//!   is live.
//! - A push channel sends only what is stored: an outbound message stays undelivered in the
//!   store (`delivered_ms` empty) until the channel has handed it over, so none is lost. One
//!   the channel refuses for good (the buyer blocked the bot) stays too, marked
//!   `undeliverable` with the reason, and is not tried again.
//! - Index and queries share one normaliser and one analyzer.
//! - An HTTP chat is reached only by its id, a secret too long to guess
//!   (`ChatKey::parse_http`), and only ever an `http` chat; every HTTP error body is JSON.

pub mod analyze;
pub mod audit;
pub mod auth;
pub mod bot;
pub mod case;
pub mod catalog;
pub mod channels;
pub mod config;
pub mod conversation;
pub mod dialog;
pub mod engine;
mod error;
pub mod eval;
pub mod handoff;
pub mod health;
pub mod hours;
pub mod knowledge;
pub mod matcher;
pub mod meaning;
pub mod normalize;
pub mod phrasing;
pub mod reply;
pub mod service;
pub mod shop;
pub mod similarity;
pub mod sizing;
pub mod storage;
pub mod throttle;

pub use error::{Error, Result};
