//! xiaoer (店小二): a customer-service bot for online shops.
//!
//! # Codemap
//! - `normalize`  — one text normalisation for index and queries (NFKC, 繁→简, slang, fillers).
//! - `analyze`    — characters with pinyin, jieba words, sound bigrams, English stems.
//! - `knowledge`  — the knowledge base in `knowledge/`: entries, lexicon, templates; `load_dir`.
//! - `catalog`    — the product catalog and its lookups (product, colour, size, stock).
//! - `similarity` — the score of two questions in [0, 1] (re-ranking, `xiaoer similarity`).
//! - `matcher`    — the in-RAM tantivy index; `find` ranks entries for a question.
//! - `reply`      — renders answers, product-aware answers, clarify and handoff texts.
//! - `phrasing`   — the approved-phrasing check every outgoing text passes.
//! - `engine`     — message in, decision and reply out: the only orchestrator.
//! - `audit`      — `kb check`'s checks on the built engine: examples another entry answers,
//!   repeated and near-copy examples.
//! - `eval`       — evaluation sets and their figures.
//! - `config`     — settings; the only module that reads the environment.
//!
//! # Invariants
//! - Buyer input never produces `Err`: empty, huge, unreadable or unmatched text becomes a
//!   clarify or handoff reply.
//! - Every text the bot sends comes from `knowledge/` (an entry's answer or a template).
//! - `knowledge::load_dir` is the only core function that reads files; the rest is pure.
//! - Index and queries share one normaliser and one analyzer.

pub mod analyze;
pub mod audit;
pub mod catalog;
pub mod channels;
pub mod config;
pub mod engine;
mod error;
pub mod eval;
pub mod knowledge;
pub mod matcher;
pub mod normalize;
pub mod phrasing;
pub mod reply;
pub mod similarity;

pub use error::{Error, Result};
