//! The soak run (RELIABILITY.md): the release server under concurrent buyers for a while,
//! killed with SIGKILL every minute and restarted on the same data folder, while agents claim,
//! reply to and close handoffs and editors change the knowledge base (examples added through
//! the console, a file edited on disk). At the end every chat is read back through the API: a
//! message the server answered (200 with its replies) must be stored with exactly those
//! replies, and every agent reply and example the API acknowledged must be kept.
//!
//!     cargo run --release --example soak -- [--minutes 10] [--clients 200] [--kill-every-s 60]
//!
//! It builds the release binary first, works in a temporary folder (a copy of `knowledge/` and
//! `dialogs/`, a new data folder), and exits 1 if anything acknowledged was lost or any
//! request got a 5xx. Traffic goes only to 127.0.0.1, each client from its own loopback
//! address (buyers have their own; the API throttles per address); the run stops by itself.
//! Unix only. Not part of `cargo test`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

#[derive(Parser, Clone)]
#[command(about = "Soak run: buyers, agents and editors against a server killed every minute")]
struct Args {
    /// How long the buyers keep coming.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Buyers at once.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Seconds between two kills of the server (SIGKILL, then a restart).
    #[arg(long, default_value_t = 60)]
    kill_every_s: u64,
    /// Longest pause of a buyer between two messages, in milliseconds (drawn from 0..this).
    #[arg(long, default_value_t = 500)]
    think_ms: u64,
    /// Keep the temporary folder (data, knowledge copy, server log) and print where it is.
    #[arg(long)]
    keep: bool,
}

/// Questions buyers ask (the shop's topics, in both languages, some off-topic).
const QUESTIONS: &[&str] = &[
    "能开发票吗",
    "发什么快递",
    "几天能到",
    "包邮吗",
    "可以七天无理由退货吗",
    "退款多久到账",
    "羊毛鞋怎么选尺码",
    "红色M码还有吗",
    "这款是正品吗",
    "支持花呗分期吗",
    "什么时候发货",
    "我想改一下收货地址",
    "订单能备注吗",
    "你好",
    "谢谢",
    "保温杯能装开水吗",
    "退货运费谁出",
    "can I get an invoice",
    "how long does shipping take",
    "do you accept cash on delivery",
    "今天天气怎么样",
    "你们老板是谁",
];

/// After-sales conversations: what a buyer says, step by step (`None`: a photo).
const FLOWS: &[&[Option<&str>]] = &[
    &[
        Some("收到的杯子碎了"),
        Some("订单号 2026112312345678"),
        None,
        Some("2"),
    ],
    &[
        Some("少发了一件"),
        Some("2026112387654321"),
        Some("袜子少了一双"),
    ],
    &[
        Some("发错货了 我买的红色 收到的是灰色"),
        Some("订单 2026112311112222"),
        None,
    ],
    &[
        Some("鞋子开胶了"),
        Some("20261123 3333 4444"),
        None,
        Some("1"),
    ],
    &[
        Some("快递怎么还没到 都一个星期了"),
        Some("2026112355556666"),
    ],
    &[Some("我想取消订单"), Some("2026112377778888"), Some("算了")],
];

/// Asking for a person, then a word while waiting.
const PERSON: &[&str] = &["转人工", "在吗"];

/// What an agent writes (passes the phrasing rules: checked at start).
const AGENT_REPLY: &str = "您好，我是客服小二，已经看到您的消息，马上为您处理。";

/// Tallies of the run.
#[derive(Default)]
struct Counts {
    /// Requests other than buyer messages that got no answer (new chat ids, polls, agents).
    others_unanswered: AtomicU64,
    sent: AtomicU64,
    /// Buyer messages answered with a status other than 200.
    buyer_statuses: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    timed_out: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
    chats: AtomicU64,
    polls: AtomicU64,
    claims: AtomicU64,
    claim_conflicts: AtomicU64,
    closes: AtomicU64,
    examples_refused: AtomicU64,
    disk_edits: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One message a buyer sent: its text (empty with a photo) and the replies if it was answered.
#[derive(Debug, Clone)]
struct Turn {
    text: String,
    replies: Option<Vec<String>>,
}

/// One buyer conversation.
#[derive(Debug, Default)]
struct ChatLog {
    id: String,
    turns: Vec<Turn>,
}

/// An agent reply the API acknowledged.
#[derive(Debug)]
struct AgentReply {
    chat_id: String,
    message_id: i64,
}

/// What went wrong with a request that got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NoAnswer {
    Refused,
    Reset,
    TimedOut,
}

/// Every HTTP request of the run, buyers', agents' and the editor's.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// An HTTP client from one loopback address.
#[derive(Clone)]
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(port: u16, from: Ipv4Addr) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(IpAddr::V4(from)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector);
        Http {
            client,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// One request; the status and the body as JSON (Null when it is not JSON).
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), NoAnswer> {
        add(&REQUESTS);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(bytes)).expect("a valid request");
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    NoAnswer::Refused
                } else {
                    NoAnswer::Reset
                }
            })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| NoAnswer::Reset)?;
            Ok((
                status,
                serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null),
            ))
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .unwrap_or(Err(NoAnswer::TimedOut))
    }
}

/// A small random number generator (SplitMix64); each client its own seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// What the clients share: where the server is, when to stop, the tallies and the windows
/// in which the server was down (killed until ready again).
struct Run {
    port: u16,
    deadline: Instant,
    stop_agents: AtomicBool,
    counts: Counts,
    latencies_ms: Mutex<Vec<u32>>,
    started: Instant,
    /// (killed at, ready at), seconds since `started`.
    down: Mutex<Vec<(f64, f64)>>,
    /// Seconds since `started` of each request that got no answer.
    failures_at: Mutex<Vec<f64>>,
}

impl Run {
    /// A buyer message that got no answer.
    fn note_failure(&self, failure: NoAnswer) {
        add(match failure {
            NoAnswer::Refused => &self.counts.refused,
            NoAnswer::Reset => &self.counts.reset,
            NoAnswer::TimedOut => &self.counts.timed_out,
        });
        let at = self.started.elapsed().as_secs_f64();
        self.failures_at.lock().unwrap().push(at);
    }

    /// Any other request that got no answer.
    fn note_other_failure(&self) {
        add(&self.counts.others_unanswered);
        let at = self.started.elapsed().as_secs_f64();
        self.failures_at.lock().unwrap().push(at);
    }

    fn note_status(&self, status: u16) {
        if status >= 500 {
            add(&self.counts.status_5xx);
        } else if status >= 400 {
            add(&self.counts.status_4xx);
        }
    }
}

/// The loopback address of client `n` of a group (127.G.x.y).
fn loopback(group: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, group, (n / 250) as u8, (n % 250) as u8 + 1)
}

/// Sends one buyer message until it gets an HTTP answer (or the run's grace ends): each try
/// counts as sent; only a 200 with replies counts as answered.
async fn say(run: &Run, http: &Http, log: &mut ChatLog, text: &str, photo: bool) {
    let mut body = json!({ "chat_id": log.id, "text": text });
    if photo {
        body["attachments"] = json!([{ "kind": "photo", "id": "AgADsoak" }]);
    }
    let give_up = run.deadline + Duration::from_secs(60);
    loop {
        add(&run.counts.sent);
        let started = Instant::now();
        let result = http
            .call("POST", "/api/chat", None, Some(body.clone()))
            .await;
        let answered = match &result {
            Ok((200, answer)) => answer["replies"].as_array().map(|replies| {
                replies
                    .iter()
                    .map(|r| r.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            }),
            _ => None,
        };
        log.turns.push(Turn {
            text: text.to_string(),
            replies: answered.clone(),
        });
        match result {
            Ok((200, _)) if answered.is_some() => {
                add(&run.counts.answered);
                let ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
                run.latencies_ms.lock().unwrap().push(ms);
                return;
            }
            Ok((status, _)) => {
                run.note_status(status);
                add(&run.counts.buyer_statuses);
                return;
            }
            Err(failure) => run.note_failure(failure),
        }
        if Instant::now() > give_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A new chat id from the server, retried through a restart.
async fn new_chat(run: &Run, http: &Http) -> Option<String> {
    while Instant::now() < run.deadline {
        match http.call("POST", "/api/chat/new", None, None).await {
            Ok((200, body)) => return body["chat_id"].as_str().map(str::to_string),
            Ok((status, _)) => run.note_status(status),
            Err(_) => run.note_other_failure(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Polls the chat for an agent's message, as a waiting buyer's page does, for a while.
async fn wait_for_agent(run: &Run, http: &Http, chat_id: &str) {
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        add(&run.counts.polls);
        let path = format!("/api/chat/{chat_id}/messages?after=0");
        match http.call("GET", &path, None, None).await {
            Ok((200, body)) => {
                let messages = body["messages"].as_array().cloned().unwrap_or_default();
                if messages.iter().any(|m| m["from"] == "agent") {
                    return;
                }
            }
            Ok((status, _)) => run.note_status(status),
            Err(_) => run.note_other_failure(),
        }
    }
}

/// One buyer: conversation after conversation until the deadline, each in a new chat.
async fn buyer(run: Arc<Run>, n: usize, think_ms: u64) -> Vec<ChatLog> {
    let http = Http::new(run.port, loopback(1, n));
    let mut dice = Dice(n as u64 * 7919 + 1);
    let mut chats = Vec::new();
    while Instant::now() < run.deadline {
        let Some(id) = new_chat(&run, &http).await else {
            break;
        };
        add(&run.counts.chats);
        let mut log = ChatLog {
            id,
            ..ChatLog::default()
        };
        let think = |dice: &mut Dice| Duration::from_millis(dice.below(think_ms));
        match dice.below(10) {
            0..=5 => {
                for _ in 0..=dice.below(4) {
                    let question = QUESTIONS[dice.below(QUESTIONS.len() as u64) as usize];
                    say(&run, &http, &mut log, question, false).await;
                    tokio::time::sleep(think(&mut dice)).await;
                }
            }
            6..=8 => {
                let flow = FLOWS[dice.below(FLOWS.len() as u64) as usize];
                for step in flow {
                    say(&run, &http, &mut log, step.unwrap_or(""), step.is_none()).await;
                    tokio::time::sleep(think(&mut dice)).await;
                }
            }
            _ => {
                for text in PERSON {
                    say(&run, &http, &mut log, text, false).await;
                    tokio::time::sleep(think(&mut dice)).await;
                }
                if log.turns.iter().any(|t| t.replies.is_some()) {
                    wait_for_agent(&run, &http, &log.id).await;
                }
            }
        }
        chats.push(log);
    }
    chats
}

/// One agent: takes waiting handoffs (and its own claimed ones), replies and closes them.
async fn agent(run: Arc<Run>, n: usize, name: String, token: String) -> Vec<AgentReply> {
    let http = Http::new(run.port, loopback(2, n));
    let mut replies = Vec::new();
    while !run.stop_agents.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queue = match http
            .call("GET", "/api/agent/handoffs", Some(&token), None)
            .await
        {
            Ok((200, body)) => body["handoffs"].as_array().cloned().unwrap_or_default(),
            Ok((status, _)) => {
                run.note_status(status);
                continue;
            }
            Err(_) => {
                run.note_other_failure();
                continue;
            }
        };
        for handoff in queue.iter().take(8) {
            let (Some(id), Some(chat_id)) = (handoff["id"].as_i64(), handoff["chat_id"].as_str())
            else {
                continue;
            };
            let mine = handoff["state"] == "claimed" && handoff["agent"] == name.as_str();
            if handoff["state"] != "waiting" && !mine {
                continue;
            }
            if !mine {
                let path = format!("/api/agent/handoffs/{id}/claim");
                match http.call("POST", &path, Some(&token), None).await {
                    Ok((200, _)) => add(&run.counts.claims),
                    Ok((409, _)) => {
                        add(&run.counts.claim_conflicts);
                        continue;
                    }
                    Ok((status, _)) => {
                        run.note_status(status);
                        continue;
                    }
                    Err(_) => {
                        run.note_other_failure();
                        break;
                    }
                }
            }
            let path = format!("/api/agent/handoffs/{id}/reply");
            let body = json!({ "text": AGENT_REPLY });
            match http.call("POST", &path, Some(&token), Some(body)).await {
                Ok((200, answer)) => {
                    if let Some(message_id) = answer["id"].as_i64() {
                        replies.push(AgentReply {
                            chat_id: chat_id.to_string(),
                            message_id,
                        });
                    }
                }
                Ok((status, _)) => {
                    run.note_status(status);
                    continue;
                }
                Err(_) => {
                    run.note_other_failure();
                    break;
                }
            }
            let path = format!("/api/agent/handoffs/{id}/close");
            let body = json!({ "outcome": "已回复买家，问题已处理", "responsible": "shop" });
            match http.call("POST", &path, Some(&token), Some(body)).await {
                Ok((200, _)) => add(&run.counts.closes),
                Ok((status, _)) => run.note_status(status),
                Err(_) => {
                    run.note_other_failure();
                    break;
                }
            }
        }
    }
    replies
}

/// The editor: every few seconds an example for the invoice entry through the console (the
/// texts acknowledged are returned), and every 25 s an example written into shipping.toml on
/// disk, in place, as a text editor saves.
async fn editor(run: Arc<Run>, token: String, kb: PathBuf) -> Vec<String> {
    let http = Http::new(run.port, loopback(3, 0));
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    let mut last_disk_edit = Instant::now();
    while !run.stop_agents.load(Ordering::Relaxed) && Instant::now() < run.deadline {
        tokio::time::sleep(Duration::from_secs(7)).await;
        n += 1;
        let text = format!("第{n}次问一下发票能开公司抬头吗");
        let body = json!({ "entry": "invoice", "text": text });
        match http
            .call("POST", "/api/agent/examples", Some(&token), Some(body))
            .await
        {
            Ok((200, _)) => acknowledged.push(text),
            Ok((status, _)) => {
                run.note_status(status);
                add(&run.counts.examples_refused);
            }
            Err(_) => {
                run.note_other_failure();
                add(&run.counts.examples_refused);
            }
        }
        if last_disk_edit.elapsed() >= Duration::from_secs(25) {
            last_disk_edit = Instant::now();
            let path = kb.join("shipping.toml");
            let example = format!("第{n}回想问你们发哪家快递");
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Some(edited) = xiaoer::knowledge::add_example(&text, "courier", &example) {
                    if std::fs::write(&path, edited).is_ok() {
                        add(&run.counts.disk_edits);
                    }
                }
            }
        }
    }
    acknowledged
}

/// The server process, started and killed on one port and data folder.
struct Server {
    binary: PathBuf,
    root: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    fn args(&self) -> Vec<String> {
        let at = |name: &str| self.root.join(name).display().to_string();
        vec![
            "serve".into(),
            "--addr".into(),
            format!("127.0.0.1:{}", self.port),
            "--data".into(),
            at("data"),
            "--kb".into(),
            at("knowledge"),
            "--dialogs".into(),
            at("dialogs"),
        ]
    }

    /// Starts the server and waits until it listens; tries again while the port is not yet
    /// free. Returns how long that took.
    fn start(&mut self) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..40 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.root.join("server.log"))?;
            let mut command = Command::new(&self.binary);
            command
                .args(self.args())
                .current_dir(&self.root)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log);
            for (name, _) in std::env::vars() {
                if name.starts_with("XIAOER_") || name.starts_with("TELEGRAM_") {
                    command.env_remove(name);
                }
            }
            let mut child = command.spawn().context("starting xiaoer serve")?;
            let stdout = child.stdout.take().context("the server's stdout")?;
            let (ready, listening) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    if line.starts_with("xiaoer listening on") {
                        let _ = ready.send(());
                    }
                }
            });
            if listening.recv_timeout(Duration::from_secs(120)).is_ok() {
                self.child = Some(child);
                self.starts += 1;
                return Ok(started.elapsed());
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!(
            "the server did not start; see {}/server.log",
            self.root.display()
        )
    }

    /// SIGKILL: no shutdown, no flush, as a power cut of the process.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing the server")?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the server to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sends a signal to our own child process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }
}

/// Copies the `*.toml` files of `from` into `to`.
fn copy_toml(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for file in std::fs::read_dir(from)? {
        let path = file?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(())
}

/// A port free now on 127.0.0.1.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `xiaoer agent add NAME --role ROLE --data DIR` (through the running server's control
/// socket); returns the token, the last line it prints.
fn add_agent(server: &Server, name: &str, role: &str) -> Result<String> {
    let data = server.root.join("data");
    let output = Command::new(&server.binary)
        .args(["agent", "add", name, "--role", role, "--data"])
        .arg(&data)
        .current_dir(&server.root)
        .output()?;
    if !output.status.success() {
        bail!("agent add: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8(output.stdout)?;
    Ok(stdout.lines().last().unwrap_or_default().trim().to_string())
}

fn build_release_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "xiaoer"])
        .current_dir(manifest)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(manifest.join("target/release/xiaoer"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let knowledge = xiaoer::knowledge::load_dir(&manifest.join("knowledge")).0;
    let violations = xiaoer::phrasing::check(&knowledge.phrasing, AGENT_REPLY);
    if !violations.is_empty() {
        bail!("the agents' reply breaks the phrasing rules: {violations:?}");
    }
    let binary = build_release_binary()?;
    let temporary = tempfile::Builder::new().prefix("xiaoer-soak-").tempdir()?;
    let root = temporary.path().to_path_buf();
    copy_toml(&manifest.join("knowledge"), &root.join("knowledge"))?;
    copy_toml(&manifest.join("dialogs"), &root.join("dialogs"))?;
    let mut server = Server {
        binary,
        root: root.clone(),
        port: free_port()?,
        child: None,
        starts: 0,
    };
    let first_start = server.start()?;
    println!(
        "soak: {} clients for {} min, SIGKILL every {} s; server on 127.0.0.1:{} (ready in {:.1} s), folder {}",
        args.clients,
        args.minutes,
        args.kill_every_s,
        server.port,
        first_start.as_secs_f64(),
        root.display()
    );
    let tokens = [
        ("soak-agent-1", "agent"),
        ("soak-agent-2", "agent"),
        ("soak-editor", "editor"),
    ]
    .map(|(name, role)| add_agent(&server, name, role).map(|t| (name.to_string(), t)));
    let [agent_1, agent_2, editor_token] = tokens;
    let (agent_1, agent_2, (_, editor_token)) = (agent_1?, agent_2?, editor_token?);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(soak(&args, &mut server, [agent_1, agent_2], editor_token))?;
    server.stop();
    if args.keep {
        let kept = temporary.keep();
        println!("kept {}", kept.display());
    }
    if !report {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the buyers, agents, editor and killer; then kills once more, restarts, reads every
/// chat back and prints the figures. True when nothing acknowledged was lost and no request
/// got a 5xx.
async fn soak(
    args: &Args,
    server: &mut Server,
    agents: [(String, String); 2],
    editor_token: String,
) -> Result<bool> {
    let started = Instant::now();
    let run = Arc::new(Run {
        port: server.port,
        deadline: started + Duration::from_secs_f64(args.minutes * 60.0),
        stop_agents: AtomicBool::new(false),
        counts: Counts::default(),
        latencies_ms: Mutex::new(Vec::new()),
        started,
        down: Mutex::new(Vec::new()),
        failures_at: Mutex::new(Vec::new()),
    });
    let buyers: Vec<_> = (0..args.clients)
        .map(|n| tokio::spawn(buyer(run.clone(), n, args.think_ms)))
        .collect();
    let agent_tasks: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(n, (name, token))| tokio::spawn(agent(run.clone(), n, name, token)))
        .collect();
    let kb = server.root.join("knowledge");
    let editor_task = tokio::spawn(editor(run.clone(), editor_token, kb.clone()));

    // The killer, on this task: SIGKILL every `kill_every_s`, restart at once.
    let mut next_kill = started + Duration::from_secs(args.kill_every_s);
    while next_kill < run.deadline {
        tokio::time::sleep_until(next_kill.into()).await;
        kill_and_restart(&run, server).await?;
        next_kill += Duration::from_secs(args.kill_every_s);
    }
    let mut chats = Vec::new();
    for task in buyers {
        chats.extend(task.await?);
    }
    let sending_s = started.elapsed().as_secs_f64();
    run.stop_agents.store(true, Ordering::Relaxed);
    let mut agent_replies = Vec::new();
    for task in agent_tasks {
        agent_replies.extend(task.await?);
    }
    let examples = editor_task.await?;
    // Whatever was acknowledged last must survive a kill too.
    kill_and_restart(&run, server).await?;
    let readback = read_back(server.port, &chats, &agent_replies).await?;
    let served = served_version(server.port, &agents_token(server)?).await;
    Ok(report(
        args, &run, server, sending_s, &chats, &readback, &examples, &kb, served,
    ))
}

/// A token to read the served knowledge version with.
fn agents_token(server: &Server) -> Result<String> {
    add_agent(server, "soak-reader", "agent")
}

async fn kill_and_restart(run: &Run, server: &mut Server) -> Result<()> {
    let killed_at = run.started.elapsed().as_secs_f64();
    server.kill()?;
    // Starting blocks on the child's first line: off the async workers.
    tokio::task::block_in_place(|| server.start())?;
    let ready_at = run.started.elapsed().as_secs_f64();
    run.down.lock().unwrap().push((killed_at, ready_at));
    println!(
        "  {:>5.0} s: killed, ready again in {:.2} s ({} sent, {} answered)",
        killed_at,
        ready_at - killed_at,
        run.counts.sent.load(Ordering::Relaxed),
        run.counts.answered.load(Ordering::Relaxed),
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

/// What reading every chat back found.
#[derive(Default)]
struct Readback {
    /// Answered messages found with their buyer text and exactly their replies.
    stored: u64,
    /// Answered but not found whole (chat id, text, why).
    lost: Vec<(String, String, String)>,
    /// Buyer messages in the store.
    buyer_messages: u64,
    /// Buyer messages stored although the request got no answer (the kill came after the
    /// commit and before the response).
    stored_unanswered: u64,
    agent_replies_stored: u64,
    agent_replies_lost: Vec<(String, i64)>,
    agent_replies_acknowledged: u64,
}

/// Reads each chat's messages (each from its own loopback address, so the reads of chats that
/// never stored a message are not throttled) and checks every answered turn and every
/// acknowledged agent reply against them.
async fn read_back(port: u16, chats: &[ChatLog], agent_replies: &[AgentReply]) -> Result<Readback> {
    let mut by_chat: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for reply in agent_replies {
        by_chat
            .entry(&reply.chat_id)
            .or_default()
            .push(reply.message_id);
    }
    let mut readback = Readback {
        agent_replies_acknowledged: agent_replies.len() as u64,
        ..Readback::default()
    };
    for (n, chat) in chats.iter().enumerate() {
        let http = Http::new(port, loopback(4 + (n / 60_000) as u8, n % 60_000));
        let path = format!("/api/chat/{}/messages?after=0", chat.id);
        let stored = match http.call("GET", &path, None, None).await {
            Ok((200, body)) => body["messages"].as_array().cloned().unwrap_or_default(),
            other => bail!("reading chat {} back: {other:?}", chat.id),
        };
        check_chat(chat, &stored, &mut readback);
        for id in by_chat.remove(chat.id.as_str()).unwrap_or_default() {
            let found = stored
                .iter()
                .any(|m| m["id"] == id && m["from"] == "agent" && m["text"] == AGENT_REPLY);
            if found {
                readback.agent_replies_stored += 1;
            } else {
                readback.agent_replies_lost.push((chat.id.clone(), id));
            }
        }
    }
    for (chat, ids) in by_chat {
        for id in ids {
            readback.agent_replies_lost.push((chat.to_string(), id));
        }
    }
    Ok(readback)
}

/// Finds each answered turn, in order, as a buyer message followed at once by exactly its
/// replies (one transaction stores them together, so nothing can come between).
fn check_chat(chat: &ChatLog, stored: &[Value], readback: &mut Readback) {
    let from = |i: usize| stored[i]["from"].as_str().unwrap_or_default();
    let text = |i: usize| stored[i]["text"].as_str().unwrap_or_default();
    let buyer_messages = (0..stored.len()).filter(|&i| from(i) == "buyer").count() as u64;
    readback.buyer_messages += buyer_messages;
    let mut cursor = 0;
    let mut answered = 0;
    for turn in &chat.turns {
        let Some(replies) = &turn.replies else {
            continue;
        };
        answered += 1;
        let whole = |i: usize| {
            from(i) == "buyer"
                && text(i) == turn.text
                && i + replies.len() < stored.len()
                && replies
                    .iter()
                    .enumerate()
                    .all(|(k, reply)| from(i + 1 + k) == "bot" && text(i + 1 + k) == reply)
        };
        match (cursor..stored.len()).find(|&i| whole(i)) {
            Some(i) => {
                readback.stored += 1;
                cursor = i + 1 + replies.len();
            }
            None => {
                let why = match (cursor..stored.len())
                    .find(|&i| from(i) == "buyer" && text(i) == turn.text)
                {
                    Some(_) => "stored without its replies",
                    None => "not stored",
                };
                readback
                    .lost
                    .push((chat.id.clone(), turn.text.clone(), why.to_string()));
            }
        }
    }
    readback.stored_unanswered += buyer_messages.saturating_sub(answered);
}

/// The knowledge version the server serves, and its last refused reload.
async fn served_version(port: u16, token: &str) -> Option<Value> {
    let http = Http::new(port, loopback(3, 1));
    match http
        .call("GET", "/api/agent/knowledge", Some(token), None)
        .await
    {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints the figures; true when nothing acknowledged was lost and nothing got a 5xx.
#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    run: &Run,
    server: &Server,
    sending_s: f64,
    chats: &[ChatLog],
    readback: &Readback,
    examples: &[String],
    kb: &Path,
    served: Option<Value>,
) -> bool {
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let counts = &run.counts;
    let (sent, answered) = (count(&counts.sent), count(&counts.answered));
    let mut latencies = run.latencies_ms.lock().unwrap().clone();
    latencies.sort_unstable();
    let down = run.down.lock().unwrap().clone();
    let downtime: f64 = down.iter().map(|(a, b)| b - a).sum();
    let failures = run.failures_at.lock().unwrap().clone();
    let outside = failures
        .iter()
        .filter(|&&at| !down.iter().any(|&(a, b)| at >= a - 0.5 && at <= b + 2.0))
        .count();
    let invoice = std::fs::read_to_string(kb.join("invoice.toml")).unwrap_or_default();
    let examples_kept = examples
        .iter()
        .filter(|e| invoice.contains(e.as_str()))
        .count();
    let hash_on_disk = xiaoer::bot::content_hash(&[kb, &kb.with_file_name("dialogs")]);
    let served_hash = served
        .as_ref()
        .and_then(|v| v["version"]["hash"].as_str())
        .unwrap_or("?");
    let refused_reload = served
        .as_ref()
        .map(|v| v["last_refused_reload"].clone())
        .unwrap_or(Value::Null);
    let requests = REQUESTS.load(Ordering::Relaxed);
    println!();
    println!(
        "clients {}, {:.1} min of sending, {} server starts: {} SIGKILLs during the run and 1 \
         before reading back, {:.1} s down in all",
        args.clients,
        sending_s / 60.0,
        server.starts,
        down.len() - 1,
        downtime
    );
    println!(
        "HTTP requests {requests} ({:.1}/s); without an answer besides buyer messages: {} \
         (of all without an answer, {} outside a kill window); 4xx {}, 5xx {}",
        requests as f64 / sending_s,
        count(&counts.others_unanswered),
        outside,
        count(&counts.status_4xx),
        count(&counts.status_5xx)
    );
    println!(
        "buyer messages: sent {sent}, answered {answered} ({:.1}/s), stored {}, lost {}",
        answered as f64 / sending_s,
        readback.stored,
        readback.lost.len()
    );
    println!(
        "  unanswered {}: {} refused, {} reset, {} timed out, {} answered with a 4xx or 5xx or without replies",
        sent - answered,
        count(&counts.refused),
        count(&counts.reset),
        count(&counts.timed_out),
        count(&counts.buyer_statuses)
    );
    println!(
        "  stored buyer messages {} ({} committed though unanswered: the kill came between commit and response)",
        readback.buyer_messages, readback.stored_unanswered
    );
    println!(
        "  answered latency ms: p50 {}, p95 {}, p99 {}, max {}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
    println!(
        "chats {} ({} read back), polls {}",
        count(&counts.chats),
        chats.len(),
        count(&counts.polls)
    );
    println!(
        "agents: {} claims ({} lost to the other agent), replies acknowledged {}, stored {}, lost {}; {} closed",
        count(&counts.claims),
        count(&counts.claim_conflicts),
        readback.agent_replies_acknowledged,
        readback.agent_replies_stored,
        readback.agent_replies_lost.len(),
        count(&counts.closes)
    );
    println!(
        "knowledge: {} console examples acknowledged, {} in the file; {} refused or unanswered; {} edits on disk; served version {} {} the files on disk; last refused reload {}",
        examples.len(),
        examples_kept,
        count(&counts.examples_refused),
        count(&counts.disk_edits),
        served_hash,
        if served_hash == hash_on_disk { "is" } else { "is NOT" },
        refused_reload
    );
    for (chat, text, why) in readback.lost.iter().take(20) {
        println!("  LOST {chat}: {text:?} {why}");
    }
    for (chat, id) in readback.agent_replies_lost.iter().take(20) {
        println!("  LOST agent reply {id} in {chat}");
    }
    readback.lost.is_empty()
        && readback.agent_replies_lost.is_empty()
        && examples_kept == examples.len()
        && count(&counts.status_5xx) == 0
}
