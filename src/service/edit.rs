//! Writing a knowledge file the console edited: only if it is still what the edit was made
//! from, and atomically (a temporary file in the same folder, synced, renamed over the file,
//! the folder synced), so a reload or a crash sees the old file or the new one, never a part.
//! Serialising edits is the caller's (`Service` holds one lock per knowledge folder); this
//! module never reads anything but the file it replaces.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Why a file was not replaced.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteRefused {
    /// The file on disk is no longer the one the edit was made from (someone else edited it):
    /// it was left as they wrote it.
    Changed(PathBuf),
    /// Reading, writing, syncing or renaming failed.
    Failed(String),
}

/// A knowledge file as read for an edit: its text and the digest of its bytes.
pub struct Read {
    pub text: String,
    digest: [u8; 32],
}

/// Reads `path` for an edit.
pub fn read(path: &Path) -> Result<Read, WriteRefused> {
    let bytes = std::fs::read(path).map_err(|e| failed(path, e))?;
    let digest = Sha256::digest(&bytes).into();
    let text = String::from_utf8(bytes)
        .map_err(|_| WriteRefused::Failed(format!("{}: not UTF-8 text", path.display())))?;
    Ok(Read { text, digest })
}

/// Replaces `path` with `text` if its bytes are still those of `read`; the file is whole and
/// on disk when this returns Ok.
pub fn replace(path: &Path, read: &Read, text: &str) -> Result<(), WriteRefused> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staged = folder.join(staged_name(path));
    let result = write_synced(&staged, text)
        .and_then(|()| {
            // The window between this check and the rename is a few microseconds; an editor's
            // save landing inside it is the one case left to the later version.
            let now = std::fs::read(path).map_err(|e| failed(path, e))?;
            if <[u8; 32]>::from(Sha256::digest(&now)) != read.digest {
                return Err(WriteRefused::Changed(path.to_path_buf()));
            }
            std::fs::rename(&staged, path).map_err(|e| failed(path, e))
        })
        .and_then(|()| sync_folder(folder));
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

/// A hidden name beside `path` that no other write uses and no loader reads (not `*.toml`).
fn staged_name(path: &Path) -> String {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.{}-{n}.edit", std::process::id())
}

fn write_synced(path: &Path, text: &str) -> Result<(), WriteRefused> {
    let mut file = File::create_new(path).map_err(|e| failed(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| failed(path, e))
}

/// Makes a rename in `folder` durable (Unix: sync the folder itself).
fn sync_folder(folder: &Path) -> Result<(), WriteRefused> {
    #[cfg(unix)]
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| failed(folder, e))?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

fn failed(path: &Path, error: std::io::Error) -> WriteRefused {
    WriteRefused::Failed(format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invoice.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_unchanged_file_is_replaced_and_nothing_else_is_left_in_the_folder() {
        let (dir, path) = folder_with("old\n");
        let read = read(&path).unwrap();
        assert_eq!(read.text, "old\n");
        replace(&path, &read, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(names(dir.path()), ["invoice.toml"]);
    }

    #[test]
    fn a_file_someone_changed_after_it_was_read_is_left_as_they_wrote_it() {
        let (dir, path) = folder_with("old\n");
        let read = read(&path).unwrap();
        std::fs::write(&path, "edited by hand\n").unwrap();
        assert_eq!(
            replace(&path, &read, "new\n"),
            Err(WriteRefused::Changed(path.clone()))
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "edited by hand\n");
        assert_eq!(names(dir.path()), ["invoice.toml"], "no staged file left");
    }

    #[test]
    fn a_file_removed_after_it_was_read_is_not_written_back() {
        let (dir, path) = folder_with("old\n");
        let read = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            replace(&path, &read, "new\n"),
            Err(WriteRefused::Failed(_))
        ));
        assert!(names(dir.path()).is_empty());
    }
}
