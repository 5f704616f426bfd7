//! Everything the bot knows, loaded as one unit: the knowledge base with its index, the dialog
//! flows, and the version they form. A reload builds a new `Bot` and swaps it whole, so a
//! reader never sees entries of one version with flows of another.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Thresholds;
use crate::dialog::{self, Flows};
use crate::engine::Engine;
use crate::knowledge::{self, Diagnostic};
use crate::{Error, Result};

/// How often `Bot::load` reads folders that changed while it read them before giving up.
const MAX_READS: usize = 3;

/// Identifies the files a `Bot` was built from, so a transcript line can be traced to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeVersion {
    /// First 16 hex digits of the SHA-256 over both folders' `*.toml` names and contents.
    pub hash: String,
    pub entries: usize,
    pub flows: usize,
    /// Each file with its digest, to tell which files a reload changed.
    #[serde(skip)]
    pub files: Vec<(PathBuf, [u8; 32])>,
}

pub struct Bot {
    pub engine: Engine,
    pub flows: Flows,
    pub version: KnowledgeVersion,
}

impl Bot {
    /// Loads and validates both folders and builds the index; any diagnostic refuses.
    ///
    /// The version names exactly the bytes that were read: the files are digested before and
    /// after reading, and read again when they changed in between (an edit landing mid-read).
    /// Should they keep changing, the digests from before are kept, so the version differs
    /// from the folder and the next reload reads it again: a change is never taken as served.
    pub fn load(kb_dir: &Path, dialogs_dir: &Path, thresholds: Thresholds) -> Result<Bot> {
        let dirs = [kb_dir, dialogs_dir];
        let mut files = file_digests(&dirs);
        let (mut knowledge_base, mut flows, mut diagnostics) = check_dirs(kb_dir, dialogs_dir);
        for _ in 0..MAX_READS {
            let after = file_digests(&dirs);
            if after == files {
                break;
            }
            files = after;
            (knowledge_base, flows, diagnostics) = check_dirs(kb_dir, dialogs_dir);
        }
        if !diagnostics.is_empty() {
            let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            return Err(Error::InvalidKnowledge {
                path: kb_dir.to_path_buf(),
                count: diagnostics.len(),
                listing: listing.join("\n"),
            });
        }
        let version = KnowledgeVersion {
            hash: hash_of(&files),
            files,
            entries: knowledge_base.entries.len(),
            flows: flows.flows.len(),
        };
        let engine = Engine::build(knowledge_base, thresholds)?;
        Ok(Bot {
            engine,
            flows,
            version,
        })
    }
}

/// Reads and validates the knowledge base and the flows (the flows against the entries).
pub fn check_dirs(
    kb_dir: &Path,
    dialogs_dir: &Path,
) -> (knowledge::KnowledgeBase, Flows, Vec<Diagnostic>) {
    let (knowledge_base, mut diagnostics) = knowledge::load_dir(kb_dir);
    let (flows, flow_diagnostics) = dialog::load_dir(dialogs_dir, &knowledge_base);
    diagnostics.extend(flow_diagnostics);
    (knowledge_base, flows, diagnostics)
}

/// SHA-256 over the sorted `*.toml` files of the folders (names and bytes), as 16 hex digits.
pub fn content_hash(dirs: &[&Path]) -> String {
    hash_of(&file_digests(dirs))
}

/// The content hash of files already digested (see `content_hash`).
fn hash_of(files: &[(PathBuf, [u8; 32])]) -> String {
    let mut hasher = Sha256::new();
    for (path, digest) in files {
        hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(digest);
    }
    hex(&hasher.finalize())
}

/// Each `*.toml` file of the folders with the SHA-256 of its bytes, sorted by folder and name.
pub fn file_digests(dirs: &[&Path]) -> Vec<(PathBuf, [u8; 32])> {
    let mut digests = Vec::new();
    for dir in dirs {
        // An unreadable folder hashes as empty; `check_dirs` reports it.
        for path in knowledge::toml_files(dir).unwrap_or_default() {
            let digest = Sha256::digest(std::fs::read(&path).unwrap_or_default());
            digests.push((path, digest.into()));
        }
    }
    digests
}

/// The files that differ between two digest lists (added, removed or edited), by name.
pub fn changed_files(old: &[(PathBuf, [u8; 32])], new: &[(PathBuf, [u8; 32])]) -> Vec<String> {
    let mut changed: Vec<String> = old
        .iter()
        .filter(|entry| !new.contains(entry))
        .chain(new.iter().filter(|entry| !old.contains(entry)))
        .map(|(path, _)| path.display().to_string())
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

fn hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
