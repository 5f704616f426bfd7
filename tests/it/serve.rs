//! `xiaoer serve` as a process: killed in the middle of a flow and of a handoff and started
//! again on the same data, knowledge edited while it runs, an agent added while it runs.
//! Talks HTTP/1.1 over loopback on a port the server picks; agents are at their desks all day
//! (`support::ALL_DAY`), so no reply depends on the hour the test runs at.

use serde_json::Value;
use xiaoer::storage::{SqliteStore, Store};

use crate::support::{
    chat_id, eventually, repo_path, run_xiaoer, xiaoer_command, KnowledgeCopy, Server, TestBot,
};

const ORDER: &str = "2345678901234567";

fn reply_text(response: &Value) -> String {
    response["replies"].to_string()
}

#[test]
fn a_killed_server_resumes_flows_and_keeps_handoffs_and_messages() {
    let data = tempfile::tempdir().unwrap();
    let kb = repo_path("knowledge");
    let server = Server::start(data.path(), &kb, "");
    server.say("r1", "收到的杯子碎了");
    let at_photos = server.say("r1", ORDER);
    assert_eq!(at_photos["state"], "flow");
    let handed = server.say("r2", "转人工");
    assert_eq!(handed["state"], "waiting");
    let r1_messages = format!("/api/chat/{}/messages", chat_id("r1"));
    let (_, before) = server.request("GET", &r1_messages, "");
    let before = before["messages"].as_array().unwrap().clone();
    assert_eq!(before.len(), 4);
    server.kill();

    let server = Server::start(data.path(), &kb, "");
    let resumed = server.photo("r1", "crack-1");
    assert_eq!(resumed["state"], "flow", "{resumed}");
    assert!(
        reply_text(&resumed).contains("1. "),
        "the step after the photos asks for a remedy: {resumed}"
    );
    let done = server.say("r1", "2");
    assert_eq!(done["state"], "waiting", "{done}");
    let (_, after) = server.request("GET", &r1_messages, "");
    let after = after["messages"].as_array().unwrap();
    assert_eq!(
        &after[..4],
        &before[..],
        "nothing stored before the crash is lost or changed"
    );
    assert_eq!(after.len(), 8);
    let still = server.say("r2", "可以帮我写一份工作总结吗");
    assert_eq!(
        (still["state"].as_str(), still["action"].as_str()),
        (Some("waiting"), Some("hold"))
    );
    server.kill();

    let store = SqliteStore::open_dir(data.path()).unwrap();
    let queue = store.open_handoffs().unwrap();
    let chats: Vec<(&str, &str)> = queue
        .iter()
        .map(|h| (h.chat.id(), h.reason.as_str()))
        .collect();
    assert_eq!(
        chats,
        [
            (chat_id("r2").as_str(), "asked_for_person"),
            (chat_id("r1").as_str(), "flow_decision")
        ]
    );
    let case = store.cases().unwrap().pop().unwrap();
    assert_eq!(
        (case.order.as_deref(), case.remedy.as_deref()),
        (Some(ORDER), Some("exchange"))
    );
    assert_eq!(case.evidence.len(), 1);
    assert_eq!(
        store.knowledge_versions().unwrap().len(),
        2,
        "each start records its version"
    );
}

#[test]
fn an_edit_goes_live_without_a_restart_and_an_invalid_one_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let kb = KnowledgeCopy::new("reload");
    let server = Server::start(data.path(), &kb.dir, "");
    let before = server.say("k1", "能开发票吗");
    assert_eq!(before["topic"], "invoice");
    assert!(!reply_text(&before).contains("正规发票"));

    kb.edit(
        "invoice.toml",
        "都可以为您开具发票",
        "都可以为您开具正规发票",
    );
    assert!(
        eventually(|| reply_text(&server.say("k1", "能开发票吗")).contains("正规发票")),
        "the edited answer went live"
    );

    kb.edit(
        "invoice.toml",
        "都可以为您开具正规发票",
        "都可以给你开具正规发票",
    );
    let refused = eventually(|| {
        let (_, health) = server.request("GET", "/health", "");
        health["last_refused_reload"]["problems"]
            .as_str()
            .is_some_and(|p| p.contains("invoice.toml"))
    });
    assert!(refused, "the invalid edit is reported");
    let still = server.say("k1", "能开发票吗");
    assert!(
        reply_text(&still).contains("都可以为您开具正规发票"),
        "the last valid answer keeps serving: {still}"
    );
    server.kill();

    let versions = SqliteStore::open_dir(data.path())
        .unwrap()
        .knowledge_versions()
        .unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        versions[1].source.starts_with("file change: ")
            && versions[1].source.contains("invoice.toml"),
        "{versions:?}"
    );
    assert_ne!(versions[0].hash, versions[1].hash);
    let stored = SqliteStore::open_dir(data.path())
        .unwrap()
        .messages(&TestBot::chat("k1"), 0)
        .unwrap();
    let answered_with: Vec<&str> = stored
        .iter()
        .filter_map(|m| m.knowledge_version.as_deref())
        .collect();
    assert_eq!(answered_with.first(), Some(&versions[0].hash.as_str()));
    assert_eq!(
        answered_with.last(),
        Some(&versions[1].hash.as_str()),
        "each answer names the version that produced it"
    );
}

#[test]
fn a_restart_with_a_broken_file_serves_the_last_good_version_and_reports_the_problem() {
    let data = tempfile::tempdir().unwrap();
    let kb = KnowledgeCopy::new("last-good");
    let server = Server::start(data.path(), &kb.dir, "");
    let good = reply_text(&server.say("g1", "能开发票吗"));
    let (_, health) = server.request("GET", "/health", "");
    let good_version = health["knowledge_version"]["hash"].clone();
    server.kill();

    kb.edit("invoice.toml", "都可以为您开具发票", "都可以给你开具发票");
    let server = Server::start(data.path(), &kb.dir, "");
    let (_, health) = server.request("GET", "/health", "");
    assert_eq!(health["knowledge_version"]["hash"], good_version);
    assert!(
        health["last_refused_reload"]["problems"]
            .as_str()
            .is_some_and(|p| p.contains("invoice.toml")),
        "the broken file is reported: {health}"
    );
    assert_eq!(reply_text(&server.say("g2", "能开发票吗")), good);

    kb.edit("invoice.toml", "都可以给你开具发票", "都可以为您开具发票");
    assert!(
        eventually(|| {
            let (_, health) = server.request("GET", "/health", "");
            health["last_refused_reload"].is_null()
        }),
        "the refusal clears once the file is fixed"
    );
}

#[test]
fn a_broken_file_with_no_last_good_version_stops_the_start_with_its_problems() {
    let data = tempfile::tempdir().unwrap();
    let kb = KnowledgeCopy::new("no-last-good");
    kb.edit("invoice.toml", "都可以为您开具发票", "都可以给你开具发票");
    let output = xiaoer_command(None)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .arg("--kb")
        .arg(&kb.dir)
        .arg("--dialogs")
        .arg(repo_path("dialogs"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("xiaoer serve runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invoice.toml") && stderr.contains("no last good version"),
        "{stderr}"
    );
}

#[test]
fn an_agent_added_while_the_server_runs_signs_in_at_once() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &repo_path("knowledge"), "");
    let data_dir = data.path().to_str().unwrap();
    let (stdout, stderr, ok) = run_xiaoer(&["agent", "add", "小王", "--data", data_dir]);
    assert!(ok, "{stderr}");
    let token = stdout.lines().last().unwrap().trim();
    let (status, body) = server.request_as(token, "GET", "/api/agent/handoffs");
    assert_eq!(status, 200, "{body}");
    let (_, stderr, ok) = run_xiaoer(&["agent", "add", "小王", "--data", data_dir]);
    assert!(!ok);
    assert!(
        stderr.contains("an agent named 小王 already exists"),
        "{stderr}"
    );
    server.kill();

    // With the server gone, the store is opened directly.
    let (stdout, stderr, ok) = run_xiaoer(&["agent", "add", "小李", "--data", data_dir]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("added agent 小李"), "{stdout}");
}
