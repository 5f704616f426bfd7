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
