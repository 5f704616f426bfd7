//! `/health` tells the truth and the store refuses to start on a bad file: a full disk, a
//! database file replaced under the running server, damaged pages, an empty file. Mostly the
//! real binary (`support::Server`), with its limits set by the test.

use std::os::unix::process::CommandExt;
use std::sync::Arc;

use xiaoer::storage::{NewMessage, Sender, SqliteStore, Store};

use crate::support::{eventually, repo_path, send, DiskFull, ManualClock, Server};

/// The chat a test writes to.
fn chat() -> xiaoer::conversation::ChatKey {
    xiaoer::conversation::ChatKey::parse("http", "health-check-buyer").unwrap()
}

#[tokio::test]
async fn health_is_503_naming_the_store_while_it_takes_no_writes() {
    let settings = xiaoer::config::Settings {
        kb: repo_path("knowledge"),
        dialogs: repo_path("dialogs"),
        ..Default::default()
    };
    let bot = xiaoer::bot::Bot::load(&settings.kb, &settings.dialogs, settings.thresholds).unwrap();
    let store = Arc::new(DiskFull::new(Arc::new(
        SqliteStore::open_in_memory().unwrap(),
    )));
    let clock = Arc::new(ManualClock(crate::support::beijing(10, 0).into()));
    let service = xiaoer::service::Service::new(bot, store.clone(), clock, settings).unwrap();
    let router = xiaoer::channels::http::router(Arc::new(service));
    let (status, body) = send(&router, "GET", "/health", &[], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["store"].as_str()),
        (Some("ok"), Some("ok"))
    );
    assert_eq!(body["knowledge"], "ok");

    store.fill();
    let chat =
        serde_json::json!({"chat_id": crate::support::chat_id("health"), "text": "能开发票吗"});
    let (status, _) = send(&router, "POST", "/api/chat", &[], Some(chat.to_string())).await;
    assert_eq!(status, 500, "a chat fails while the disk is full");
    let (status, body) = send(&router, "GET", "/health", &[], None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failing");
    assert!(
        body["store"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().starts_with("store: "),
        "{body}"
    );
    assert_eq!(body["knowledge"], "ok");
}

#[test]
fn health_is_503_when_the_disk_is_full_and_chats_fail() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), &repo_path("knowledge"), "", |command| {
        // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
        // Files may not grow past 400 KB: the disk is full once the journal reaches it.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 400 * 1024,
                    rlim_max: 400 * 1024,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .unwrap();
    assert_eq!(server.request("GET", "/health", "").0, 200);
    let long_question = "我想问一下发票的事情，".repeat(150);
    let failed_at = (0..500).find(|n| server.chat(&format!("buyer-{n}"), &long_question).0 == 500);
    assert!(failed_at.is_some(), "the disk never filled up");
    // A small write may still fit where a chat's does not: health goes by the chats too.
    let (status, body) = server.request("GET", "/health", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failing");
    let store = body["store"].as_str().unwrap();
    assert!(
        store.contains("disk I/O error") || store.contains("full"),
        "{body}"
    );
    // The server lives on, and the log says why, with the cause.
    let logged = eventually(|| {
        let log = server.stderr();
        log.contains("the store does not take writes")
            && (log.contains("SystemIoFailure") || log.contains("DiskFull"))
    });
    assert!(logged, "{}", server.stderr());
    assert_eq!(server.request("GET", "/health", "").0, 503);
}

#[test]
fn health_is_503_when_the_database_file_is_replaced_under_the_server() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &repo_path("knowledge"), "");
    server.say("replaced-buyer", "能开发票吗");
    assert_eq!(server.request("GET", "/health", "").0, 200);
    let file = data.path().join("xiaoer.sqlite3");
    let restored = data.path().join("restored-backup.sqlite3");
    std::fs::write(&restored, b"").unwrap();
    std::fs::rename(&restored, &file).unwrap();
    let mut last = serde_json::Value::Null;
    let failing = eventually(|| {
        let (status, body) = server.request("GET", "/health", "");
        last = body;
        status == 503
    });
    assert!(failing, "health still says {last}");
    assert!(
        last["store"].as_str().unwrap().contains("was replaced"),
        "{last}"
    );
    std::fs::remove_file(&file).unwrap();
    std::thread::sleep(xiaoer::health::FRESH);
    let (_, body) = server.request("GET", "/health", "");
    assert!(
        body["store"].as_str().unwrap().contains("was removed"),
        "{body}"
    );
}

#[test]
fn the_server_maps_no_shared_memory_file_that_could_kill_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &repo_path("knowledge"), "");
    server.say("shm-buyer", "能开发票吗");
    assert!(
        data.path().join("xiaoer.sqlite3-wal").exists(),
        "the store journals"
    );
    assert!(
        !data.path().join("xiaoer.sqlite3-shm").exists(),
        "no -shm file: its index is in the server's memory"
    );
    // Nobody else writes the file while the server runs.
    let error = SqliteStore::open_dir(data.path())
        .err()
        .expect("the store is the server's");
    assert!(
        error.to_string().contains("in use by another process"),
        "{error}"
    );
}

/// A store in `dir` with 400 messages of 1 KB, closed.
fn store_with_history(dir: &std::path::Path) {
    let store = SqliteStore::open_dir(dir).unwrap();
    let text = "破".repeat(340);
    for n in 0..400 {
        store
            .post_message(&NewMessage {
                chat: &chat(),
                from: Sender::Buyer,
                text: &text,
                at_ms: n,
                source_id: None,
                agent: None,
                knowledge_version: None,
            })
            .unwrap();
    }
}

#[test]
fn a_damaged_database_is_refused_at_start_with_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    store_with_history(data.path());
    let file = data.path().join("xiaoer.sqlite3");
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 100 * 4096, "{} bytes", bytes.len());
    // Pages 20 to 40 overwritten, as a bad disk sector or a stray write would.
    bytes[20 * 4096..40 * 4096].fill(0x5a);
    std::fs::write(&file, &bytes).unwrap();
    let refused = Server::spawn(data.path(), &repo_path("knowledge"), "", |_| {})
        .err()
        .expect("the server refuses to start");
    assert!(refused.contains(&file.display().to_string()), "{refused}");
    assert!(refused.contains("is damaged"), "{refused}");
    assert!(refused.contains("Restore it from a backup"), "{refused}");

    // A file that is no database at all.
    std::fs::write(&file, "这不是数据库".repeat(1000)).unwrap();
    let refused = Server::spawn(data.path(), &repo_path("knowledge"), "", |_| {})
        .err()
        .expect("the server refuses to start");
    assert!(
        refused.contains("is damaged (file is not a database"),
        "{refused}"
    );
}

#[test]
fn an_empty_database_file_starts_with_a_warning_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("xiaoer.sqlite3");
    std::fs::write(&file, b"").unwrap();
    let server = Server::start(data.path(), &repo_path("knowledge"), "");
    let warned = eventually(|| {
        let log = server.stderr();
        log.contains("WARN")
            && log.contains("is empty (0 bytes)")
            && log.contains(&file.display().to_string())
    });
    assert!(warned, "{}", server.stderr());
    assert_eq!(server.request("GET", "/health", "").0, 200);

    // A store with history gives no such warning.
    server.kill();
    let server = Server::start(data.path(), &repo_path("knowledge"), "");
    assert_eq!(server.request("GET", "/health", "").0, 200);
    assert!(!server.stderr().contains("is empty"), "{}", server.stderr());
}
