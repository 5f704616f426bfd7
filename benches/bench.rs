//! How fast and how big, side by side with baselines run in the same process (issue 8).
//!
//!     cargo bench --bench bench             # everything, a few minutes on 2 cores
//!     cargo bench --bench bench -- --quick  # smaller runs, to check the harness works
//!     cargo bench --bench bench -- --only e2e   # one section: matching, e2e, startup or reload
//!
//! 1. Matching: per-question latency (p50/p99/max) and questions/s on one core, for the real
//!    knowledge base and synthetic ones of 1,000 and 10,000 entries, beside a naive baseline
//!    (strsim against every example question); index build time and resident memory, each
//!    size built in a fresh process.
//! 2. Quality at size: the held-out evaluation on each base (distractors must not steal answers).
//! 3. End to end: `xiaoer serve` on loopback with SQLite, N concurrent chats through
//!    `/api/chat`: messages/s, p50/p99, and a count of what was stored.
//! 4. Startup: process start to first answer, real base and 10,000 entries.
//! 5. Reload: resident memory of a service on the real base after 0, 10, 25, 50 and 100
//!    knowledge reloads (a file touched before each, so each one rebuilds), with a few chats
//!    answered between them, as `xiaoer serve` does: memory must stay flat.
//!
//! Synthetic bases: the real entries plus product FAQ entries (item × model × attribute for 50
//! goods outside the sample catalog, 20 attributes, 50 models), 12 phrasings each, written to a
//! temporary folder with the real lexicon, catalog and replies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use xiaoer::config::Thresholds;
use xiaoer::engine::{Decision, Engine};
use xiaoer::eval::{parse_cases, Case, Report};

/// The same allocator as `xiaoer` (src/main.rs), so the figures are the server's.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const ATTRIBUTES: &[(&str, &str)] = &[
    ("材质成分", "material"),
    ("产地", "origin"),
    ("保修期", "warranty"),
    ("清洗方法", "cleaning"),
    ("重量", "weight"),
    ("尺寸规格", "dimensions"),
    ("适用季节", "season"),
    ("适合人群", "intended wearer"),
    ("包装方式", "packaging"),
    ("防水性能", "waterproofing"),
    ("起球情况", "pilling"),
    ("掉色情况", "colour fastness"),
    ("保暖程度", "warmth"),
    ("透气性", "breathability"),
    ("机洗方式", "machine washing"),
    ("赠品", "free gift"),
    ("生产日期", "production date"),
    ("保质期", "shelf life"),
    ("气味", "smell"),
    ("配件", "accessories"),
];

const MODELS: &[(&str, &str)] = &[
    ("经典款", "classic"),
    ("加绒款", "fleece-lined"),
    ("新款", "new"),
    ("儿童款", "kids"),
    ("情侣款", "couples"),
    ("限量款", "limited"),
    ("轻薄款", "lightweight"),
    ("加厚款", "thick"),
    ("复古款", "retro"),
    ("简约款", "minimal"),
    ("运动款", "sport"),
    ("商务款", "business"),
    ("迷你款", "mini"),
    ("大号款", "large"),
    ("礼盒款", "gift box"),
    ("春季款", "spring"),
    ("冬季款", "winter"),
    ("纯色款", "plain"),
    ("印花款", "printed"),
    ("条纹款", "striped"),
    ("格子款", "checked"),
    ("刺绣款", "embroidered"),
    ("联名款", "collab"),
    ("基础款", "basic"),
    ("宽松款", "loose"),
    ("修身款", "slim"),
    ("高帮款", "high-top"),
    ("低帮款", "low-top"),
    ("长款", "long"),
    ("短款", "short"),
    ("男款", "men's"),
    ("女款", "women's"),
    ("婴儿款", "baby"),
    ("老人款", "seniors'"),
    ("学生款", "student"),
    ("户外款", "outdoor"),
    ("居家款", "home"),
    ("旅行款", "travel"),
    ("办公款", "office"),
    ("节日款", "festive"),
    ("森系款", "forest"),
    ("日系款", "japanese"),
    ("韩版款", "korean"),
    ("国潮款", "guochao"),
    ("北欧款", "nordic"),
    ("极简款", "ultra-minimal"),
    ("奢华款", "luxury"),
    ("环保款", "eco"),
    ("手工款", "handmade"),
    ("定制款", "custom"),
];

/// Goods of a bigger shop, none in the sample catalog (catalog names are masked to 商品, so
/// FAQ entries per catalog product would be indistinguishable by design).
const ITEMS: &[(&str, &str)] = &[
    ("保温壶", "flask"),
    ("雨伞", "umbrella"),
    ("双肩包", "backpack"),
    ("钱包", "wallet"),
    ("手套", "gloves"),
    ("棒球帽", "cap"),
    ("枕头", "pillow"),
    ("毛毯", "blanket"),
    ("睡衣", "pyjamas"),
    ("浴巾", "bath towel"),
    ("茶杯", "teacup"),
    ("饭盒", "lunch box"),
    ("水壶", "kettle"),
    ("台灯", "desk lamp"),
    ("闹钟", "alarm clock"),
    ("笔记本", "notebook"),
    ("钢笔", "fountain pen"),
    ("书包", "school bag"),
    ("行李箱", "suitcase"),
    ("腰带", "belt"),
    ("领带", "tie"),
    ("手表", "watch"),
    ("墨镜", "sunglasses"),
    ("耳机", "earphones"),
    ("充电宝", "power bank"),
    ("数据线", "charging cable"),
    ("手机壳", "phone case"),
    ("鼠标垫", "mouse pad"),
    ("坐垫", "seat cushion"),
    ("抱枕", "throw pillow"),
    ("床单", "bed sheet"),
    ("被套", "duvet cover"),
    ("窗帘", "curtain"),
    ("地毯", "rug"),
    ("衣架", "hanger"),
    ("收纳盒", "storage box"),
    ("香薰", "aroma diffuser"),
    ("蜡烛", "candle"),
    ("花瓶", "vase"),
    ("相框", "photo frame"),
    ("围裙", "apron"),
    ("砧板", "chopping board"),
    ("汤锅", "soup pot"),
    ("炒锅", "wok"),
    ("菜刀", "kitchen knife"),
    ("牙刷", "toothbrush"),
    ("毛巾", "towel"),
    ("拖把", "mop"),
    ("雨衣", "raincoat"),
    ("冰袖", "arm sleeves"),
];

const PHRASINGS: &[&str] = &[
    "{m}{p}的{a}是什么",
    "{p}{m}{a}怎么样",
    "请问{m}的{p}{a}",
    "想问下{p}（{m}）{a}",
    "{m}{p} {a}？",
    "{a} {m} {p}",
    "亲 {m}{p}{a}呢",
    "{p}{m}的{a}能说下吗",
    "{m}那个{p}{a}如何",
    "了解一下{m}{p}的{a}",
    "what about the {ae} of the {me} {pe}",
    "{me} {pe} {ae}?",
];

/// Phrasings never in the index: the queries for the synthetic entries.
const QUERIES: &[&str] = &[
    "{p}{m}{a}咋样啊",
    "{m}款式的{p} {a}有介绍吗",
    "tell me the {ae} for the {me} {pe}",
];

fn fill(
    template: &str,
    product: (&str, &str),
    model: (&str, &str),
    attribute: (&str, &str),
) -> String {
    template
        .replace("{p}", product.0)
        .replace("{pe}", product.1)
        .replace("{m}", model.0)
        .replace("{me}", model.1)
        .replace("{a}", attribute.0)
        .replace("{ae}", attribute.1)
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Writes a knowledge base of `entries` entries (the real ones plus synthetic FAQ entries)
/// into `dir`; returns one never-indexed query per synthetic entry (with its id), at most 300.
fn synthetic_base(dir: &Path, entries: usize) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    for file in std::fs::read_dir("knowledge").unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let real = Engine::load(dir, Thresholds::default())
        .unwrap()
        .knowledge_base()
        .entries
        .len();
    let mut queries = Vec::new();
    let mut text = String::new();
    let synthetic = entries.saturating_sub(real);
    for n in 0..synthetic {
        let attribute = ATTRIBUTES[n % ATTRIBUTES.len()];
        let product = ITEMS[(n / ATTRIBUTES.len()) % ITEMS.len()];
        let model = MODELS[(n / (ATTRIBUTES.len() * ITEMS.len())) % MODELS.len()];
        let id = format!("faq_{n}");
        let examples: Vec<String> = PHRASINGS
            .iter()
            .map(|t| toml_string(&fill(t, product, model, attribute)))
            .collect();
        let title = format!("{}{}的{}", model.0, product.0, attribute.0);
        let _ = write!(
            text,
            "[[entry]]\nid = \"{id}\"\ntitle = {}\ntitle_en = {}\npolicy = \"Product FAQ (synthetic).\"\nsource = \"benches/bench.rs\"\n\
             examples = [{}]\nanswer = {}\nanswer_en = {}\n\n",
            toml_string(&title),
            toml_string(&format!("{} of the {} {}", attribute.1, model.1, product.1)),
            examples.join(", "),
            toml_string(&format!("您好，{title}请以商品详情页「{}」一栏为准；如需进一步确认，请您告诉我们，我们马上为您核实。", attribute.0)),
            toml_string(&format!("Hello, please see the {} section of the {} {} product page; for more detail, just tell us and we will check right away.", attribute.1, model.1, product.1)),
        );
        if n % 500 == 499 || n + 1 == synthetic {
            std::fs::write(dir.join(format!("synthetic_{:03}.toml", n / 500)), &text).unwrap();
            text.clear();
        }
        if queries.len() < 300 && n % (synthetic / 300).max(1) == 0 {
            let query = fill(QUERIES[n % QUERIES.len()], product, model, attribute);
            queries.push((query, id));
        }
    }
    queries
}

fn percentile(times: &[Duration], q: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn time_each(questions: &[&str], mut answer: impl FnMut(&str)) -> Vec<Duration> {
    questions
        .iter()
        .map(|q| {
            let started = Instant::now();
            answer(q);
            started.elapsed()
        })
        .collect()
}

fn row(name: &str, times: &[Duration]) -> f64 {
    let total: Duration = times.iter().sum();
    let qps = times.len() as f64 / total.as_secs_f64();
    println!(
        "  {name:<34} {:>9.1} {:>9.1} {:>10.1} {:>11.0}",
        us(percentile(times, 0.50)),
        us(percentile(times, 0.99)),
        us(*times.iter().max().unwrap()),
        qps
    );
    qps
}

/// Resident memory now and at peak, in MiB (Linux).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// In a child process: builds the engine over `dir` and prints build ms and memory.
fn measure_build(dir: &Path) {
    let (before, _) = memory_mib();
    let started = Instant::now();
    let engine = Engine::load(dir, Thresholds::default()).unwrap();
    let build = started.elapsed();
    let (after, peak) = memory_mib();
    std::hint::black_box(&engine);
    println!(
        "{} {:.1} {:.1} {:.1}",
        engine.knowledge_base().entries.len(),
        build.as_secs_f64() * 1000.0,
        after - before,
        peak
    );
}

fn build_in_child(dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--measure-build"])
        .arg(dir)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() != 4 {
        return format!("build failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    format!(
        "{} entries: build {} ms, +{} MiB resident (peak {} MiB)",
        parts[0], parts[1], parts[2], parts[3]
    )
}

fn quality(engine: &Engine, cases: &[Case]) -> Report {
    let mut report = Report::default();
    for case in cases
        .iter()
        .filter(|c| c.split.as_deref() == Some("heldout"))
    {
        report.add(case, &engine.ask(&case.text));
    }
    report
}

fn matching(quick: bool, cases: &[Case]) {
    println!("\n## Matching (one core, release build)");
    let sizes: &[usize] = if quick {
        &[0, 1_000]
    } else {
        &[0, 1_000, 10_000]
    };
    let eval_questions: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    for &size in sizes {
        let dir = std::env::temp_dir().join(format!("xiaoer-bench-{size}-{}", std::process::id()));
        let (dir, queries) = if size == 0 {
            (PathBuf::from("knowledge"), Vec::new())
        } else {
            let queries = synthetic_base(&dir, size);
            (dir, queries)
        };
        println!("\n### {}", build_in_child(&dir));
        let engine = Engine::load(&dir, Thresholds::default()).unwrap();
        let mut questions = eval_questions.clone();
        questions.extend(queries.iter().map(|(q, _)| q.as_str()));
        let examples: Vec<String> = engine
            .knowledge_base()
            .entries
            .iter()
            .flat_map(|e| e.examples.iter().map(|x| engine.normalizer().normalize(x)))
            .collect();
        println!(
            "  {} questions ({} evaluation + {} synthetic), {} example questions indexed",
            questions.len(),
            eval_questions.len(),
            queries.len(),
            examples.len()
        );
        println!(
            "  {:<34} {:>9} {:>9} {:>10} {:>11}",
            "per question", "p50 µs", "p99 µs", "max µs", "questions/s"
        );
        for q in questions.iter().take(50) {
            std::hint::black_box(engine.ask(q)); // warm caches
        }
        let xiaoer = row(
            "xiaoer ask (full reply)",
            &time_each(&questions, |q| {
                std::hint::black_box(engine.ask(q));
            }),
        );
        // The naive baseline is slow at size: time it on a sample.
        let sample: Vec<&str> = questions
            .iter()
            .step_by((questions.len() / 120).max(1))
            .copied()
            .collect();
        let naive = row(
            "naive strsim over all examples",
            &time_each(&sample, |q| {
                let q = engine.normalizer().normalize(q);
                let best = examples
                    .iter()
                    .map(|x| strsim::normalized_levenshtein(&q, x))
                    .fold(0.0, f64::max);
                std::hint::black_box(best);
            }),
        );
        println!(
            "  throughput: xiaoer {:.1}× the naive baseline",
            xiaoer / naive
        );
        let report = quality(&engine, cases);
        println!(
            "  held-out quality: precision {:.3}, coverage {:.3}, handoff recall {:.3}",
            report.precision(),
            report.coverage(),
            report.handoff_recall()
        );
        if !queries.is_empty() {
            let right = queries
                .iter()
                .filter(|(q, id)| {
                    let reply = engine.ask(q);
                    reply.action == Decision::Answer
                        && reply.topic.as_ref().map(|t| t.as_str()) == Some(id.as_str())
                })
                .count();
            println!(
                "  synthetic FAQ queries answered with their entry: {right} of {}",
                queries.len()
            );
        }
        drop(engine);
        if size > 0 {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// A `xiaoer serve` child on a free loopback port.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(kb: &Path, data: &Path) -> (Server, Duration) {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_xiaoer"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--kb")
            .arg(kb)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string();
        let server = Server { child, addr };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut connection = Connection::open(&server.addr).await;
            connection
                .chat(&bench_chat_id("startup"), "能开发票吗")
                .await;
        });
        (server, started.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The id of the bench's chat `label`: long enough for the API (22+ URL-safe characters).
fn bench_chat_id(label: &str) -> String {
    format!("bench-{label}-0123456789abcdefghij")
}

/// One keep-alive HTTP/1.1 connection: a buyer's chat.
struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Connection {
    async fn open(addr: &str) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        Connection {
            reader: BufReader::new(read),
            writer,
        }
    }

    /// Sends one message to the chat with this id; returns the number of replies.
    async fn chat(&mut self, chat: &str, text: &str) -> usize {
        let body = serde_json::json!({ "chat_id": chat, "text": text }).to_string();
        let request = format!(
            "POST /api/chat HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(request.as_bytes()).await.unwrap();
        let mut length = 0;
        let mut status = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            if status.is_empty() {
                status = line.clone();
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.unwrap();
        assert!(
            status.contains(" 200 "),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        reply["replies"].as_array().map_or(0, Vec::len)
    }
}

fn end_to_end(quick: bool, cases: &[Case]) {
    println!("\n## End to end: xiaoer serve on loopback, SQLite persistence, N concurrent chats");
    println!(
        "  {:>5} {:>9} {:>10} {:>9} {:>9} {:>22}",
        "chats", "messages", "msgs/s", "p50 ms", "p99 ms", "stored (sent/replies)"
    );
    let questions: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let plan: &[(usize, usize)] = if quick {
        &[(1, 50), (50, 4)]
    } else {
        &[(1, 500), (50, 100), (500, 10)]
    };
    for &(chats, per_chat) in plan {
        let data =
            std::env::temp_dir().join(format!("xiaoer-bench-e2e-{chats}-{}", std::process::id()));
        let (server, _) = Server::start(Path::new("knowledge"), &data);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let results: Vec<(Vec<Duration>, usize)> = runtime.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..chats {
                let addr = server.addr.clone();
                let questions = questions.clone();
                tasks.push(tokio::spawn(async move {
                    let mut connection = Connection::open(&addr).await;
                    let mut times = Vec::new();
                    let mut replies = 0;
                    for m in 0..per_chat {
                        let text = &questions[(c * 7 + m * 13) % questions.len()];
                        let sent = Instant::now();
                        replies += connection.chat(&bench_chat_id(&c.to_string()), text).await;
                        times.push(sent.elapsed());
                    }
                    (times, replies)
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        });
        let elapsed = started.elapsed();
        drop(server);
        let times: Vec<Duration> = results.iter().flat_map(|(t, _)| t.clone()).collect();
        let replies: usize = results.iter().map(|(_, r)| r).sum();
        let store = xiaoer::storage::SqliteStore::open_dir(&data).unwrap();
        use xiaoer::storage::Store;
        let (mut stored_buyer, mut stored_bot) = (0, 0);
        for c in 0..chats {
            let chat =
                xiaoer::conversation::ChatKey::parse_http(&bench_chat_id(&c.to_string())).unwrap();
            for message in store.messages(&chat, 0).unwrap() {
                match message.from {
                    xiaoer::storage::Sender::Buyer => stored_buyer += 1,
                    _ => stored_bot += 1,
                }
            }
        }
        let sent = times.len();
        let verdict = if stored_buyer == sent && stored_bot == replies {
            "all"
        } else {
            "LOST"
        };
        println!(
            "  {chats:>5} {sent:>9} {:>10.0} {:>9.2} {:>9.2}   {verdict}: {stored_buyer}/{sent} {stored_bot}/{replies}",
            sent as f64 / elapsed.as_secs_f64(),
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&data);
        // A lost message is a bug, not a figure: the run fails (CI's smoke run relies on it).
        assert_eq!(verdict, "all", "messages were lost at {chats} chats");
    }
}

fn startup(quick: bool) {
    println!("\n## Startup: process start to first answer (xiaoer serve)");
    let sizes: &[usize] = if quick { &[0] } else { &[0, 10_000] };
    for &size in sizes {
        let dir =
            std::env::temp_dir().join(format!("xiaoer-bench-start-{size}-{}", std::process::id()));
        let kb = if size == 0 {
            PathBuf::from("knowledge")
        } else {
            synthetic_base(&dir, size);
            dir.clone()
        };
        let data = std::env::temp_dir().join(format!(
            "xiaoer-bench-start-data-{size}-{}",
            std::process::id()
        ));
        let (server, took) = Server::start(&kb, &data);
        drop(server);
        println!(
            "  {}: {:.2} s",
            if size == 0 {
                "real base".to_string()
            } else {
                format!("{size} entries")
            },
            took.as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(&data);
        if size > 0 {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// A copy of `knowledge/` to touch, removed when dropped.
struct KnowledgeCopy(PathBuf);

impl Drop for KnowledgeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn reload(quick: bool, cases: &[Case]) {
    use std::sync::Arc;
    use xiaoer::service::{Service, SystemClock};
    println!("\n## Reload: resident memory across knowledge reloads (real base, in process)");
    let (total, marks): (usize, &[usize]) = if quick {
        (10, &[0, 5, 10])
    } else {
        (100, &[0, 10, 25, 50, 100])
    };
    let copy = KnowledgeCopy(
        std::env::temp_dir().join(format!("xiaoer-bench-reload-{}", std::process::id())),
    );
    std::fs::create_dir_all(&copy.0).unwrap();
    for file in std::fs::read_dir("knowledge").unwrap() {
        let path = file.unwrap().path();
        std::fs::copy(&path, copy.0.join(path.file_name().unwrap())).unwrap();
    }
    let settings = xiaoer::config::Settings {
        kb: copy.0.clone(),
        dialogs: PathBuf::from("dialogs"),
        ..Default::default()
    };
    let bot = xiaoer::bot::Bot::load(&settings.kb, &settings.dialogs, settings.thresholds).unwrap();
    let store = xiaoer::storage::SqliteStore::open_in_memory().unwrap();
    let service =
        Arc::new(Service::new(bot, Arc::new(store), Arc::new(SystemClock), settings).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        for n in 0..=total {
            if marks.contains(&n) {
                let (resident, peak) = memory_mib();
                println!(
                    "  after {n:>3} reloads: {resident:>6.1} MiB resident (peak {peak:.1} MiB)"
                );
            }
            if n == total {
                break;
            }
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(copy.0.join("invoice.toml"))
                .unwrap();
            std::io::Write::write_all(&mut file, format!("# reload {n}\n").as_bytes()).unwrap();
            // As `xiaoer serve`: the reload on a blocking thread while chats are answered.
            let reloading = tokio::task::spawn_blocking({
                let service = service.clone();
                move || service.reload_if_changed()
            });
            let mut chats = tokio::task::JoinSet::new();
            for chat in 0..4 {
                let service = service.clone();
                let text = cases[(n * 4 + chat) % cases.len()].text.clone();
                chats.spawn(async move {
                    let chat =
                        xiaoer::conversation::ChatKey::parse("http", &format!("r{chat}")).unwrap();
                    service.receive(chat, text, Vec::new()).await.unwrap();
                });
            }
            chats.join_all().await;
            assert!(reloading.await.unwrap(), "reload {n} rebuilt the bot");
        }
    });
    println!(
        "  {:.0} ms per reload",
        started.elapsed().as_secs_f64() * 1000.0 / total as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(index) = args.iter().position(|a| a == "--measure-build") {
        return measure_build(Path::new(&args[index + 1]));
    }
    // `--write-base N DIR`: writes a synthetic base to look at or profile.
    if let Some(index) = args.iter().position(|a| a == "--write-base") {
        synthetic_base(
            Path::new(&args[index + 2]),
            args[index + 1].parse().unwrap(),
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    let (cases, _) = parse_cases(&std::fs::read_to_string("tests/data/eval.jsonl").unwrap());
    println!("# xiaoer benchmarks{}", if quick { " (quick)" } else { "" });
    // `--only matching|e2e|startup|reload`: one section, to compare a change quickly.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let runs = |section: &str| only.is_none_or(|o| o == section);
    if runs("matching") {
        matching(quick, &cases);
    }
    if runs("e2e") {
        end_to_end(quick, &cases);
    }
    if runs("startup") {
        startup(quick);
    }
    if runs("reload") {
        reload(quick, &cases);
    }
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}
