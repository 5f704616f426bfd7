//! The files of the last knowledge version that went live, kept in the data folder so that a
//! start with a broken `knowledge/` or `dialogs/` serves them instead of not starting:
//!
//! ```text
//! DATA/knowledge-last-good/current               the version's hash
//! DATA/knowledge-last-good/<hash>/knowledge/*.toml
//! DATA/knowledge-last-good/<hash>/dialogs/*.toml
//! ```
//!
//! A version's folder is written in full (files synced) under a temporary name and renamed,
//! then `current` is replaced the same way, then older folders are removed: a crash at any
//! point leaves `current` naming a whole version. Never touches the folders it copies.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::bot::{content_hash, Bot, KnowledgeVersion};
use crate::config::Thresholds;

/// The folder under the data folder that holds the last good version.
pub const FOLDER: &str = "knowledge-last-good";

/// Where the last good version is kept.
#[derive(Debug, Clone)]
pub struct LastGood {
    root: PathBuf,
}

impl LastGood {
    /// The last good version kept under `data` (in `data/knowledge-last-good`).
    pub fn in_data(data: &Path) -> LastGood {
        LastGood {
            root: data.join(FOLDER),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps the files of `kb` and `dialogs` as the last good version, if they still are
    /// `version` (an edit may have landed since they were loaded: then the next version that
    /// goes live is kept instead). Returns whether they were kept.
    pub fn keep(
        &self,
        kb: &Path,
        dialogs: &Path,
        version: &KnowledgeVersion,
    ) -> std::io::Result<bool> {
        let folder = self.root.join(&version.hash);
        if !folder.is_dir() {
            std::fs::create_dir_all(&self.root)?;
            let staged =
                self.root
                    .join(format!(".{}.{}.partial", version.hash, std::process::id()));
            let _ = std::fs::remove_dir_all(&staged);
            let copied = copy_toml(kb, &staged.join("knowledge"))
                .and_then(|()| copy_toml(dialogs, &staged.join("dialogs")));
            let same = copied.as_ref().is_ok_and(|()| {
                content_hash(&[&staged.join("knowledge"), &staged.join("dialogs")]) == version.hash
            });
            if !same {
                let _ = std::fs::remove_dir_all(&staged);
                return copied.map(|()| false);
            }
            sync_folder(&staged.join("knowledge"))?;
            sync_folder(&staged.join("dialogs"))?;
            sync_folder(&staged)?;
            std::fs::rename(&staged, &folder)?;
        }
        let current = self.root.join(".current.partial");
        let mut file = File::create(&current)?;
        file.write_all(version.hash.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&current, self.root.join("current"))?;
        sync_folder(&self.root)?;
        self.remove_all_but(&version.hash);
        Ok(true)
    }

    /// The last good version, loaded; None when none was kept. A kept version that no longer
    /// loads or has other contents than its name says is an error.
    pub fn load(&self, thresholds: Thresholds) -> crate::Result<Option<Bot>> {
        let hash = match std::fs::read_to_string(self.root.join("current")) {
            Ok(hash) => hash.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(crate::Error::Io {
                    path: self.root.join("current"),
                    source,
                })
            }
        };
        let folder = self.root.join(&hash);
        let bot = Bot::load(
            &folder.join("knowledge"),
            &folder.join("dialogs"),
            thresholds,
        )?;
        if bot.version.hash != hash {
            return Err(crate::Error::Config(format!(
                "{}: the files are not version {hash} (changed by hand?)",
                folder.display()
            )));
        }
        Ok(Some(bot))
    }

    /// Removes every kept folder but `hash`'s (older versions, partial copies).
    fn remove_all_but(&self, hash: &str) {
        let Ok(listing) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in listing.flatten() {
            let path = entry.path();
            if path.is_dir() && entry.file_name() != hash {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Copies the `*.toml` files of `from` into a new folder `to`, each synced.
fn copy_toml(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for path in crate::knowledge::toml_files(from)? {
        let target = to.join(path.file_name().unwrap_or_default());
        std::fs::copy(&path, &target)?;
        File::open(&target)?.sync_all()?;
    }
    Ok(())
}

fn sync_folder(folder: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(folder)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(folder: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(folder)
    }

    #[test]
    fn a_kept_version_loads_as_the_same_version_and_replaces_the_one_before() {
        let data = tempfile::tempdir().unwrap();
        let last_good = LastGood::in_data(data.path());
        assert!(last_good.load(Thresholds::default()).unwrap().is_none());
        let bot = Bot::load(&repo("knowledge"), &repo("dialogs"), Thresholds::default()).unwrap();
        let older = KnowledgeVersion {
            hash: "0123456789abcdef".into(),
            ..bot.version.clone()
        };
        std::fs::create_dir_all(last_good.root().join(&older.hash)).unwrap();
        assert!(last_good
            .keep(&repo("knowledge"), &repo("dialogs"), &bot.version)
            .unwrap());
        let kept = last_good.load(Thresholds::default()).unwrap().unwrap();
        assert_eq!(kept.version.hash, bot.version.hash);
        let mut names: Vec<String> = std::fs::read_dir(last_good.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [bot.version.hash.clone(), "current".to_string()]);
    }

    #[test]
    fn files_that_are_no_longer_the_version_loaded_are_not_kept() {
        let data = tempfile::tempdir().unwrap();
        let last_good = LastGood::in_data(data.path());
        let bot = Bot::load(&repo("knowledge"), &repo("dialogs"), Thresholds::default()).unwrap();
        let stale = KnowledgeVersion {
            hash: "0123456789abcdef".into(),
            ..bot.version
        };
        assert!(!last_good
            .keep(&repo("knowledge"), &repo("dialogs"), &stale)
            .unwrap());
        assert!(last_good.load(Thresholds::default()).unwrap().is_none());
    }
}
