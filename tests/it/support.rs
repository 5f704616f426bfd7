//! Shared fixtures: the engine over the real knowledge base, built once per test binary.

use std::path::PathBuf;
use std::sync::OnceLock;

use xiaoer::config::Thresholds;
use xiaoer::engine::Engine;

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The engine over `knowledge/` with the default thresholds.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::load(&repo_path("knowledge"), Thresholds::default()).expect("knowledge/ loads")
    })
}

/// A copy of `knowledge/` in its own temporary folder, removed when dropped.
pub struct KnowledgeCopy {
    pub dir: PathBuf,
}

impl KnowledgeCopy {
    /// Copies `knowledge/` into a folder named after `name` and this process.
    pub fn new(name: &str) -> KnowledgeCopy {
        let dir = std::env::temp_dir().join(format!("xiaoer-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in std::fs::read_dir(repo_path("knowledge")).unwrap() {
            let path = file.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        KnowledgeCopy { dir }
    }

    /// Replaces the first `from` in `file` by `to`; `from` must be there.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} is not in {file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// The 1-based line of the first line of `file` equal to `line`.
    pub fn line_of(&self, file: &str, line: &str) -> usize {
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap();
        text.lines()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} is not a line of {file}"))
            + 1
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for KnowledgeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the `xiaoer` binary from the repository root; returns stdout, stderr and success.
pub fn run_xiaoer(args: &[&str]) -> (String, String, bool) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xiaoer"))
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .expect("xiaoer runs");
    (
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}
