//! The library's error type. Buyer input never produces one: only files, configuration and
//! the index can fail.

use std::path::PathBuf;

/// Everything the core can fail with; each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("knowledge base at {path} has {count} problem(s):\n{listing}")]
    InvalidKnowledge {
        path: PathBuf,
        count: usize,
        listing: String,
    },
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("traditional→simplified converter: {0}")]
    Converter(String),
    #[error("{0}")]
    Config(String),
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
