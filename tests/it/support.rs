//! Shared fixtures: the engine over the real knowledge base, built once per test binary; the
//! bot behind its HTTP router, and requests to it as a buyer or as an agent; the binary as a
//! child process (`xiaoer_command`, `Server`), free of the developer's environment and of the
//! time of day.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// The id of the HTTP chat a test calls `label`: the label, then filler up to a strong id (the
/// API refuses ids shorter than 22 URL-safe characters), so a test reads `say("r1", …)` and
/// the console shows `r1-…`.
pub fn chat_id(label: &str) -> String {
    assert!(
        label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a chat label is URL-safe: {label:?}"
    );
    format!("{label}-0123456789abcdefghij")
}

/// A clock the test moves by hand.
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn set(&self, at_ms: i64) {
        self.0.store(at_ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance_s(&self, seconds: i64) {
        self.0
            .fetch_add(seconds * 1000, std::sync::atomic::Ordering::SeqCst);
    }
}

impl xiaoer::service::Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// 2026-11-23 at this Beijing hour and minute, in ms since the epoch.
pub fn beijing(hour: i64, minute: i64) -> i64 {
    1_795_392_000_000 + ((hour - 8) * 60 + minute) * 60_000
}

/// The bot over the real `knowledge/` and `dialogs/`, an in-memory store and a manual clock
/// (10:00 Beijing time, inside service hours), driven through the HTTP router.
pub struct TestBot {
    pub service: std::sync::Arc<xiaoer::service::Service>,
    pub clock: std::sync::Arc<ManualClock>,
    router: axum::Router,
}

impl TestBot {
    pub fn new() -> TestBot {
        TestBot::with_settings(|_| {})
    }

    /// A bot whose settings the test adjusts (a stricter answer threshold, other hours …).
    pub fn with_settings(adjust: impl FnOnce(&mut xiaoer::config::Settings)) -> TestBot {
        let mut settings = xiaoer::config::Settings {
            kb: repo_path("knowledge"),
            dialogs: repo_path("dialogs"),
            ..Default::default()
        };
        adjust(&mut settings);
        let bot = xiaoer::bot::Bot::load(&settings.kb, &settings.dialogs, settings.thresholds)
            .expect("knowledge/ and dialogs/ load");
        let store = xiaoer::storage::SqliteStore::open_in_memory().expect("in-memory store");
        let clock = std::sync::Arc::new(ManualClock(beijing(10, 0).into()));
        let service = std::sync::Arc::new(
            xiaoer::service::Service::new(bot, std::sync::Arc::new(store), clock.clone(), settings)
                .expect("service starts"),
        );
        let router = xiaoer::channels::http::router(service.clone());
        TestBot {
            service,
            clock,
            router,
        }
    }

    /// Sends a request to the router; returns the status and the JSON body.
    pub async fn request(
        &self,
        method: &str,
        uri: &str,
        body: Option<String>,
    ) -> (u16, serde_json::Value) {
        send(&self.router, method, uri, &[], body).await
    }

    /// Adds an agent to the store and returns its token.
    pub fn add_agent(&self, name: &str, role: &str) -> String {
        add_agent(self.store().as_ref(), name, role)
    }

    /// A request as an agent (`token` None: without Authorization).
    pub async fn agent(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        as_agent(&self.router, token, method, uri, body).await
    }

    /// `POST /api/agent/handoffs/{id}/{action}` (claim, reply, note, close, release) as an agent.
    pub async fn act(
        &self,
        token: &str,
        id: i64,
        action: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let uri = format!("/api/agent/handoffs/{id}/{action}");
        self.agent(Some(token), "POST", &uri, body).await
    }

    /// The open handoffs as the console lists them; panics unless the listing is answered.
    pub async fn queue(&self, token: &str) -> Vec<serde_json::Value> {
        let (status, body) = self
            .agent(Some(token), "GET", "/api/agent/handoffs", None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["handoffs"].as_array().unwrap().clone()
    }

    /// The id of the open handoff of the chat labelled `chat`.
    pub async fn handoff_of(&self, token: &str, chat: &str) -> i64 {
        let queue = self.queue(token).await;
        queue
            .iter()
            .find(|h| h["chat_id"] == chat_id(chat))
            .and_then(|h| h["id"].as_i64())
            .unwrap_or_else(|| panic!("no handoff for {chat}: {queue:?}"))
    }

    /// The messages a buyer of the chat labelled `chat` polls, as (from, text).
    pub async fn buyer_sees(&self, chat: &str) -> Vec<(String, String)> {
        let uri = format!("/api/chat/{}/messages", chat_id(chat));
        let (_, body) = self.request("GET", &uri, None).await;
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["from"].as_str().unwrap_or_default().to_string(),
                    m["text"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// A buyer message in the chat labelled `chat` (its id is `chat_id(chat)`) through
    /// `POST /api/chat`; panics unless it is answered with 200.
    pub async fn say(&self, chat: &str, text: &str) -> serde_json::Value {
        let body = serde_json::json!({ "chat_id": chat_id(chat), "text": text }).to_string();
        let (status, json) = self.request("POST", "/api/chat", Some(body)).await;
        assert_eq!(status, 200, "{text}: {json}");
        json
    }

    /// A photo in the chat labelled `chat` through `POST /api/chat`.
    pub async fn send_photo(&self, chat: &str, file_id: &str) -> serde_json::Value {
        let body = serde_json::json!({
            "chat_id": chat_id(chat),
            "text": "",
            "attachments": [{ "kind": "photo", "id": file_id }],
        })
        .to_string();
        let (status, json) = self.request("POST", "/api/chat", Some(body)).await;
        assert_eq!(status, 200, "{json}");
        json
    }

    pub fn store(&self) -> &std::sync::Arc<dyn xiaoer::storage::Store> {
        self.service.store()
    }

    /// The bot's HTTP router.
    pub fn router(&self) -> &axum::Router {
        &self.router
    }

    /// The key of the HTTP chat labelled `label`.
    pub fn chat(label: &str) -> xiaoer::conversation::ChatKey {
        xiaoer::conversation::ChatKey::parse_http(&chat_id(label)).unwrap()
    }
}

/// Sends one request through `router` with a JSON body (empty when None) and these headers;
/// returns the status and the body as JSON (a JSON string when it is not JSON: CSV, text).
pub async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(axum::body::Body::from(body.unwrap_or_default()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, json)
}

/// What came back from a request: status, headers, and the body as JSON (a JSON string when
/// it is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    /// The value of header `name`, or "" without it.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Sends a request through `router` as if from `address` (the peer a served router sees),
/// with these headers and body.
pub async fn send_from(
    router: &axum::Router,
    address: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(axum::body::Body::from(body)).unwrap();
    let peer: std::net::SocketAddr = address.parse().expect("an address with a port");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    Answer {
        status,
        headers,
        body,
    }
}

/// A request to the agents' API with `Authorization: Bearer token` (None: without it).
pub async fn as_agent(
    router: &axum::Router,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    send(router, method, uri, &headers, body.map(|b| b.to_string())).await
}

/// Adds an agent to `store` and returns its token.
pub fn add_agent(store: &dyn xiaoer::storage::Store, name: &str, role: &str) -> String {
    let token = xiaoer::auth::new_token().unwrap();
    let hash = xiaoer::auth::token_hash(&token);
    assert!(store.add_agent(name, role, &hash, 0).unwrap());
    token
}

/// The replies of a chat response, joined.
pub fn replies(response: &serde_json::Value) -> String {
    response["replies"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
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

/// The `xiaoer` binary, run from the repository root with none of the developer's shell: no
/// `XIAOER_*`, `TELEGRAM_*` or `RUST_LOG` (only `PATH`, `HOME` and `TMPDIR` are kept), and
/// settings from `settings` only (None: the defaults, whatever `xiaoer.toml` the checkout has).
pub fn xiaoer_command(settings: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xiaoer"));
    command.env_clear();
    for name in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let no_settings = repo_path("tests/data/no-such-settings.toml");
    command
        .arg("--config")
        .arg(settings.unwrap_or(&no_settings))
        .current_dir(repo_path(""));
    command
}

/// Runs the `xiaoer` binary from the repository root (see `xiaoer_command`); returns stdout,
/// stderr and success.
pub fn run_xiaoer(args: &[&str]) -> (String, String, bool) {
    let output = xiaoer_command(None)
        .args(args)
        .output()
        .expect("xiaoer runs");
    (
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

/// Settings for a `xiaoer serve` under test: agents at their desks all day, so no answer
/// depends on the hour the test runs at.
pub const ALL_DAY: &str = "[hours]\nshifts = [\"00:00-24:00\"]\n";

/// `xiaoer serve` as a child process on a port it picks, over `data`; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Serves `kb` and the real `dialogs/`, looking for edits every 200 ms, with agents at
    /// their desks all day (`ALL_DAY`) and `settings` (TOML); panics unless it starts.
    pub fn start(data: &Path, kb: &Path, settings: &str) -> Server {
        Server::spawn(data, kb, settings, |_| {})
            .unwrap_or_else(|stderr| panic!("xiaoer serve did not start:\n{stderr}"))
    }

    /// Like `start`, with `prepare` adjusting the command first (limits, environment); the
    /// error is what the server wrote to stderr when it exited instead of listening.
    pub fn spawn(
        data: &Path,
        kb: &Path,
        settings: &str,
        prepare: impl FnOnce(&mut Command),
    ) -> Result<Server, String> {
        std::fs::create_dir_all(data).unwrap();
        let settings_file = data.join("test-settings.toml");
        std::fs::write(
            &settings_file,
            format!("reload_interval_ms = 200\n{settings}\n{ALL_DAY}"),
        )
        .unwrap();
        let mut command = xiaoer_command(Some(&settings_file));
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--kb")
            .arg(kb)
            .arg("--dialogs")
            .arg(repo_path("dialogs"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        prepare(&mut command);
        let mut child = command.spawn().expect("xiaoer serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        // Read as it comes, so the child never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk) {
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        else {
            child.wait().unwrap();
            reader.join().unwrap();
            return Err(stderr.lock().unwrap().clone());
        };
        Ok(Server {
            addr: addr.to_string(),
            child,
            stderr,
        })
    }

    /// What the server has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// One HTTP/1.1 request on a connection of its own; the status and the JSON body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.send(method, path, "", body)
    }

    /// A request with `Authorization: Bearer token`, without a body.
    pub fn request_as(&self, token: &str, method: &str, path: &str) -> (u16, serde_json::Value) {
        self.send(
            method,
            path,
            &format!("Authorization: Bearer {token}\r\n"),
            "",
        )
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A buyer's message through `POST /api/chat`: the status and the JSON body.
    /// `chat` is a label: its id is `chat_id(chat)`.
    pub fn chat(&self, chat: &str, text: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "chat_id": chat_id(chat), "text": text }).to_string();
        self.request("POST", "/api/chat", &body)
    }

    /// A buyer's message; panics unless it is answered with 200.
    pub fn say(&self, chat: &str, text: &str) -> serde_json::Value {
        let (status, json) = self.chat(chat, text);
        assert_eq!(status, 200, "{json}");
        json
    }

    /// A buyer's photo through `POST /api/chat`; panics unless it is answered with 200.
    pub fn photo(&self, chat: &str, id: &str) -> serde_json::Value {
        let body = serde_json::json!({ "chat_id": chat_id(chat), "attachments": [{"kind": "photo", "id": id}] });
        let (status, json) = self.request("POST", "/api/chat", &body.to_string());
        assert_eq!(status, 200, "{json}");
        json
    }

    /// Ends the process without warning, as a crash or `kill -9` would.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `done` holds or 15 s pass; whether it held.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A store whose disk fills up when the test says so: from then on every write fails as
/// SQLite's does on a full disk, and what is stored can still be read.
pub struct DiskFull {
    inner: std::sync::Arc<dyn xiaoer::storage::Store>,
    full: std::sync::atomic::AtomicBool,
}

impl DiskFull {
    pub fn new(inner: std::sync::Arc<dyn xiaoer::storage::Store>) -> DiskFull {
        DiskFull {
            inner,
            full: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The disk is full from now on.
    pub fn fill(&self) {
        self.full.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn write(&self) -> xiaoer::storage::StoreResult<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(xiaoer::storage::StoreError(
                "database or disk is full (DiskFull, code 13)".into(),
            ));
        }
        Ok(())
    }
}

mod disk_full {
    use xiaoer::bot::KnowledgeVersion;
    use xiaoer::conversation::{ChatKey, Conversation};
    use xiaoer::storage::*;

    impl Store for super::DiskFull {
        fn conversation(&self, chat: &ChatKey) -> StoreResult<Conversation> {
            self.inner.conversation(chat)
        }
        fn commit_turn(&self, turn: &Turn) -> StoreResult<Committed> {
            self.write()?;
            self.inner.commit_turn(turn)
        }
        fn messages(&self, chat: &ChatKey, after: i64) -> StoreResult<Vec<StoredMessage>> {
            self.inner.messages(chat, after)
        }
        fn chat_exists(&self, chat: &ChatKey) -> StoreResult<bool> {
            self.inner.chat_exists(chat)
        }
        fn handoff(&self, id: i64) -> StoreResult<Option<HandoffRecord>> {
            self.inner.handoff(id)
        }
        fn open_handoffs(&self) -> StoreResult<Vec<HandoffRecord>> {
            self.inner.open_handoffs()
        }
        fn cases(&self) -> StoreResult<Vec<CaseRecord>> {
            self.inner.cases()
        }
        fn claim(&self, id: i64, agent: &str, at: i64) -> StoreResult<Result<(), ClaimRefused>> {
            self.write()?;
            self.inner.claim(id, agent, at)
        }
        fn release(&self, id: i64, notice: &str, version: &str, at: i64) -> StoreResult<bool> {
            self.write()?;
            self.inner.release(id, notice, version, at)
        }
        fn due_reminders(&self, before_ms: i64) -> StoreResult<Vec<HandoffRecord>> {
            self.inner.due_reminders(before_ms)
        }
        fn remind(&self, id: i64, text: &str, at: i64, version: &str) -> StoreResult<bool> {
            self.write()?;
            self.inner.remind(id, text, at, version)
        }
        fn record_knowledge(&self, v: &KnowledgeVersion, source: &str, at: i64) -> StoreResult<()> {
            self.write()?;
            self.inner.record_knowledge(v, source, at)
        }
        fn knowledge_versions(&self) -> StoreResult<Vec<KnowledgeRecord>> {
            self.inner.knowledge_versions()
        }
        fn add_agent(&self, name: &str, role: &str, hash: &str, at: i64) -> StoreResult<bool> {
            self.write()?;
            self.inner.add_agent(name, role, hash, at)
        }
        fn agent_by_token_hash(&self, hash: &str) -> StoreResult<Option<AgentRecord>> {
            self.inner.agent_by_token_hash(hash)
        }
        fn agent_reply(
            &self,
            id: i64,
            agent: &str,
            text: &str,
            at: i64,
        ) -> StoreResult<Result<i64, AgentRefused>> {
            self.write()?;
            self.inner.agent_reply(id, agent, text, at)
        }
        fn add_note(
            &self,
            id: i64,
            agent: &str,
            text: &str,
            at: i64,
        ) -> StoreResult<Result<(), AgentRefused>> {
            self.write()?;
            self.inner.add_note(id, agent, text, at)
        }
        fn notes(&self, chat: &ChatKey) -> StoreResult<Vec<NoteRecord>> {
            self.inner.notes(chat)
        }
        fn close(&self, closing: &Closing) -> StoreResult<Result<(), AgentRefused>> {
            self.write()?;
            self.inner.close(closing)
        }
        fn ratings(&self) -> StoreResult<Vec<RatingRecord>> {
            self.inner.ratings()
        }
        fn unanswered(&self, limit: usize) -> StoreResult<Vec<StoredMessage>> {
            self.inner.unanswered(limit)
        }
        fn seen(&self, chat: &ChatKey, source_id: &str) -> StoreResult<bool> {
            self.inner.seen(chat, source_id)
        }
        fn post_message(&self, message: &NewMessage) -> StoreResult<i64> {
            self.write()?;
            self.inner.post_message(message)
        }
        fn pending_chats(&self, channel: &str) -> StoreResult<Vec<ChatKey>> {
            self.inner.pending_chats(channel)
        }
        fn undelivered(&self, chat: &ChatKey) -> StoreResult<Vec<StoredMessage>> {
            self.inner.undelivered(chat)
        }
        fn mark_delivered(&self, message: i64, at_ms: i64) -> StoreResult<()> {
            self.write()?;
            self.inner.mark_delivered(message, at_ms)
        }
        fn mark_undeliverable(&self, message: i64, reason: &str) -> StoreResult<()> {
            self.write()?;
            self.inner.mark_undeliverable(message, reason)
        }
        fn hold_part(&self, part: &HeldPart) -> StoreResult<()> {
            self.write()?;
            self.inner.hold_part(part)
        }
        fn held_parts(&self, channel: &str) -> StoreResult<Vec<HeldPart>> {
            self.inner.held_parts(channel)
        }
        fn release_album(&self, chat: &ChatKey, album: &str) -> StoreResult<()> {
            self.write()?;
            self.inner.release_album(chat, album)
        }
        fn check_health(&self, at_ms: i64) -> StoreResult<()> {
            self.write()?;
            self.inner.check_health(at_ms)
        }
    }
}
