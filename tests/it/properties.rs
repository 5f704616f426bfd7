//! Properties that hold for any input, checked on generated ones (proptest, stable Rust): the
//! normaliser, the knowledge and flow parsers, the phrasing check, the similarity score and
//! the HTTP API never panic nor answer with a 5xx, whatever they are given. Inputs mix
//! arbitrary Unicode with the pieces real messages and files are made of (shop words,
//! fillers, slang, placeholders, rule phrases, TOML syntax) and with mutations of the shipped
//! files. A failure is shrunk to the smallest input that still fails, and that input is
//! printed (and kept in `proptest-regressions/` so the next run tries it first).

use std::fmt::Debug;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use serde_json::{json, Value};

use crate::support::{engine, repo_path, send_from, KnowledgeCopy, TestBot};

/// Runs `test` on `cases` inputs drawn from `strategy` (`PROPTEST_CASES` overrides the count
/// for a longer search); panics with the minimal failing input.
#[track_caller]
fn for_all<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let default = Config::default();
    let config = Config {
        cases: match std::env::var_os("PROPTEST_CASES") {
            Some(_) => default.cases,
            None => cases,
        },
        source_file: Some(file!()),
        ..default
    };
    if let Err(failure) = TestRunner::new(config).run(&strategy, test) {
        panic!("{failure}");
    }
}

/// Pieces of buyer messages and of the files: shop words and their odd forms (full width,
/// traditional, anonymised placeholders), punctuation, emoji, combining marks, characters
/// whose case folding changes their length, control characters, TOML syntax.
const PIECES: &[&str] = &[
    "发票",
    "开發票",
    "能开发票吗",
    "退货",
    "转人工",
    "人工",
    "投诉",
    "快递",
    "到哪了",
    "第二个",
    "选2",
    "2",
    "１２３",
    "123456789012345678",
    "订单号",
    "[订单x]",
    "[数字1]",
    "［金额２］",
    "[地址",
    "]",
    "［",
    "］",
    "[[",
    "ＣＡＮ Ｕ",
    "can u ship",
    "don't",
    "’",
    "invoice",
    "REFUND",
    "😀",
    "🇨🇳",
    "\u{fe0f}",
    "\u{200b}",
    "\u{200d}",
    "\u{301}",
    "\u{307}",
    "İ",
    "ß",
    "ﬁ",
    "ǅ",
    "Ⅻ",
    "㍿",
    "\u{0}",
    "\u{7}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\r\n",
    "\n",
    "\t",
    " ",
    "　",
    "。",
    "？",
    "！！！",
    "…",
    "~",
    "\\",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "#",
    "=",
    "[[entry]]",
    "[[step]]",
    "[[end]]",
    "[[step.choice]]",
    "id = ",
    "examples = [",
    "\"x\",",
    "answer = ",
    "collect = \"choice\"",
    "next = ",
    "{ }",
    "1979-05-27T07:32:00Z",
    "inf",
    "nan",
    "0x7f",
    "\\u0000",
    "\\uD800",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
];

/// `PIECES`, the lexicon's words and the phrasing rules' phrases.
fn pieces() -> &'static [String] {
    static PIECES_WITH_DATA: OnceLock<Vec<String>> = OnceLock::new();
    PIECES_WITH_DATA.get_or_init(|| {
        let knowledge_base = engine().knowledge_base();
        let lexicon = &knowledge_base.lexicon;
        let rules = &knowledge_base.phrasing;
        let mut pieces: Vec<String> = PIECES.iter().map(|p| p.to_string()).collect();
        pieces.extend(lexicon.fillers.iter().cloned());
        pieces.extend(lexicon.greetings.iter().cloned());
        pieces.extend(lexicon.anger.iter().cloned());
        pieces.extend(lexicon.leave.iter().cloned());
        pieces.extend(
            lexicon
                .slang
                .iter()
                .flat_map(|(a, b)| [a.clone(), b.clone()]),
        );
        pieces.extend(rules.allowed.iter().cloned());
        for rule in &rules.rule {
            pieces.extend(rule.phrases.iter().cloned());
            pieces.extend(rule.phrases.iter().map(|p| p.to_uppercase()));
            pieces.extend(rule.must_contain.iter().cloned());
        }
        pieces
    })
}

/// A text: arbitrary Unicode, or pieces of real messages with arbitrary characters between.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => select(pieces()),
        1 => any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        1 => any::<String>(),
        2 => prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat()),
    ]
}

/// A long text (up to `max` pieces): what a buyer pastes.
fn long_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(pieces()), 0..max).prop_map(|pieces| pieces.concat())
}

// --- normaliser ---------------------------------------------------------------------------

#[test]
fn normalised_text_is_words_and_single_spaces_and_normalising_again_changes_nothing() {
    let normalizer = engine().normalizer();
    let lexicon = &engine().knowledge_base().lexicon;
    for_all(256, text(), |text| {
        let once = normalizer.normalize(&text);
        prop_assert!(
            !once.chars().any(char::is_control),
            "control character in {once:?}"
        );
        prop_assert_eq!(
            &once,
            &once.split_whitespace().collect::<Vec<_>>().join(" "),
            "not single-spaced"
        );
        let twice = normalizer.normalize(&once);
        // Two known exceptions. A message of greetings only keeps them, fillers dropped
        // (有人吗 hello → 有人 hello), which may no longer be all greetings. And the slang rules
        // run once, longest first, so one rule's output can leave another's phrase
        // (有木有有木有 → 有没有有没有 → 有没有没, with 没有 again): folding until nothing changes
        // would move the fitted matcher (RELIABILITY.md).
        let greeting_kept = lexicon
            .greetings
            .iter()
            .any(|g| xiaoer::normalize::contains_phrase(&once, g));
        let slang_left =
            (lexicon.slang.keys()).any(|from| !from.is_ascii() && once.contains(from.as_str()));
        if !greeting_kept && !slang_left {
            prop_assert_eq!(twice, once, "not idempotent");
        }
        Ok(())
    });
}

// --- knowledge and flow files -------------------------------------------------------------

/// The shipped TOML files of `folder`, as (name, text).
fn shipped(folder: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo_path(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// One edit of a file: at a position, delete up to some characters, insert a text.
type Edit = (Index, usize, String);

/// Applies `edits` to `text`, each at a character boundary.
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for (at, delete, insert) in edits {
        let mut start = at.index(text.len() + 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let end = text[start..]
            .char_indices()
            .nth(*delete)
            .map_or(text.len(), |(i, _)| start + i);
        text.replace_range(start..end, insert);
    }
    text
}

/// A file of `folder` with a few edits, or arbitrary text.
fn file_text(folder: &'static str) -> impl Strategy<Value = String> {
    let edit = (any::<Index>(), 0..40usize, text());
    let mutated = (select(shipped(folder)), prop::collection::vec(edit, 1..4))
        .prop_map(|((_, text), edits)| mutate(&text, &edits));
    prop_oneof![3 => mutated, 1 => text()]
}

/// A diagnostic's line is 0 (the file) or a line of the text, or just past its end.
fn check_line(text: &str, line: usize) -> TestCaseResult {
    let lines = text.split('\n').count();
    prop_assert!(line <= lines + 1, "line {line} of {lines}");
    Ok(())
}

#[test]
fn any_text_reads_as_entries_or_a_diagnostic_at_a_line_of_it() {
    for_all(256, file_text("knowledge"), |text| {
        if let Err(diagnostic) = xiaoer::knowledge::parse_str(Path::new("x.toml"), &text) {
            check_line(&text, diagnostic.location.line)?;
        }
        Ok(())
    });
}

#[test]
fn any_text_reads_as_a_flow_or_a_diagnostic_at_a_line_of_it() {
    for_all(256, file_text("dialogs"), |text| {
        if let Err(diagnostic) = xiaoer::dialog::parse_str(Path::new("x.toml"), &text) {
            check_line(&text, diagnostic.location.line)?;
        }
        Ok(())
    });
}

/// The entry files of `knowledge/` with their ids.
fn entry_files() -> Vec<(String, Vec<String>)> {
    shipped("knowledge")
        .into_iter()
        .filter_map(|(name, text)| {
            let entries = xiaoer::knowledge::parse_str(Path::new(&name), &text).ok()?;
            let ids: Vec<String> = entries.iter().map(|e| e.id.as_str().to_string()).collect();
            (!ids.is_empty()).then_some((text, ids))
        })
        .collect()
}

#[test]
fn any_example_added_to_a_shipped_entry_reads_back_as_its_first_example() {
    let files = entry_files();
    assert!(files.len() >= 5, "entry files found: {}", files.len());
    let case = (select(files), any::<Index>(), text());
    for_all(256, case, |((file, ids), which, example)| {
        let id = which.get(&ids);
        let edited = xiaoer::knowledge::add_example(&file, id, &example);
        prop_assert!(edited.is_some(), "entry {id} not found");
        let edited = edited.unwrap();
        let before = xiaoer::knowledge::parse_str(Path::new("x.toml"), &file).unwrap();
        let after = xiaoer::knowledge::parse_str(Path::new("x.toml"), &edited);
        prop_assert!(after.is_ok(), "{:?}", after.err());
        for (old, new) in before.iter().zip(after.unwrap()) {
            if old.id.as_str() == id {
                prop_assert_eq!(&new.examples[0], &example);
                prop_assert_eq!(&new.examples[1..], &old.examples[..]);
            } else {
                prop_assert_eq!(&new.examples, &old.examples);
            }
        }
        Ok(())
    });
}

#[test]
fn adding_an_example_to_any_text_never_breaks_a_file_that_read() {
    let id = prop_oneof![
        select(vec!["invoice", "x", "a b", "\"", ""]).prop_map(String::from),
        text()
    ];
    for_all(
        256,
        (file_text("knowledge"), id, text()),
        |(file, id, example)| {
            let Some(edited) = xiaoer::knowledge::add_example(&file, &id, &example) else {
                return Ok(());
            };
            let Ok(before) = xiaoer::knowledge::parse_str(Path::new("x.toml"), &file) else {
                return Ok(());
            };
            let after = xiaoer::knowledge::parse_str(Path::new("x.toml"), &edited);
            prop_assert!(after.is_ok(), "{:?}", after.err());
            let after = after.unwrap();
            let entry = after.iter().find(|e| e.id.as_str() == id);
            prop_assert!(
                entry.is_some_and(|e| e.examples.first() == Some(&example)),
                "the example went elsewhere: {after:?}"
            );
            prop_assert_eq!(after.len(), before.len());
            Ok(())
        },
    );
}

// --- phrasing -----------------------------------------------------------------------------

#[test]
fn every_phrasing_violation_names_a_span_of_the_text_on_character_boundaries() {
    let rules = &engine().knowledge_base().phrasing;
    for_all(256, text(), |text| {
        let violations = xiaoer::phrasing::check(rules, &text)
            .into_iter()
            .chain(xiaoer::phrasing::check_fragment(rules, &text));
        for violation in violations {
            let span = violation.span.clone();
            prop_assert!(span.start <= span.end && span.end <= text.len(), "{span:?}");
            prop_assert!(
                text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                "{span:?} splits a character"
            );
            prop_assert_eq!(&text[span], violation.found.as_str());
        }
        Ok(())
    });
}

// --- similarity ---------------------------------------------------------------------------

/// Asserts every score is a number in [0, 1].
fn check_scores(pairs: &[(String, String)]) -> TestCaseResult {
    let scores = engine().similarity_scores(pairs);
    prop_assert_eq!(scores.len(), pairs.len());
    for score in scores {
        prop_assert!((0.0..=1.0).contains(&score), "score {score}");
    }
    Ok(())
}

#[test]
fn the_similarity_of_any_two_texts_is_in_zero_to_one() {
    let pairs = prop::collection::vec((text(), text()), 1..4);
    for_all(256, pairs, |mut pairs| {
        let same = pairs[0].0.clone();
        pairs.push((same.clone(), same));
        check_scores(&pairs)
    });
}

#[test]
fn the_similarity_of_long_pasted_texts_is_in_zero_to_one() {
    // Up to ~4,000 characters each, twice what the matcher reads of a message.
    for_all(12, (long_text(1500), long_text(1500)), |pair| {
        check_scores(&[pair])
    });
}

// --- the HTTP API -------------------------------------------------------------------------

/// Who a request claims to be.
#[derive(Debug, Clone)]
enum Sender {
    Anonymous,
    Agent,
    Editor,
    /// `Authorization` with this value.
    Header(String),
}

/// A request as a careless or hostile client sends it. `CHAT` in the path or body stands for
/// a chat that exists, `HANDOFF` for its open handoff (new for each case).
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    content_type: Option<String>,
    sender: Sender,
    body: Vec<u8>,
    /// The client's IPv4 address, so throttles of one case do not decide the next.
    address: [u8; 4],
}

/// Percent-encodes every byte but the unreserved ones, as a client building a URL would.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A path segment: a word of the API, a placeholder, a number at the edges of i64, a
/// URL-safe run (a chat id or not), or anything percent-encoded.
fn segment() -> impl Strategy<Value = String> {
    let known = select(vec![
        "api",
        "chat",
        "new",
        "messages",
        "agent",
        "handoffs",
        "claim",
        "reply",
        "note",
        "close",
        "release",
        "cases",
        "cases.csv",
        "unanswered",
        "examples",
        "ratings",
        "answers",
        "knowledge",
        "flows",
        "me",
        "health",
        "console",
        "console.js",
        "CHAT",
        "HANDOFF",
        "0",
        "-1",
        "1.5",
        "9223372036854775807",
        "99999999999999999999",
        "%FF",
        "%00",
        "%2F",
        "%",
        "..",
        ".",
        "",
    ])
    .prop_map(String::from);
    prop_oneof![
        4 => known,
        1 => "[A-Za-z0-9_-]{0,140}",
        1 => text().prop_map(|t| percent_encode(&t)),
    ]
}

/// `?key=value&…`, or nothing: the API's own keys and values, and anything encoded or not.
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        select(vec!["after", "week", "kind", "responsible", "x", ""]).prop_map(String::from),
        text().prop_map(|t| percent_encode(&t)),
    ];
    let value = prop_oneof![
        select(vec![
            "0",
            "-1",
            "1e3",
            "99999999999999999999",
            "2026-W48",
            "2026-W99",
            "W48",
            "shop",
            "damaged_item",
            "%zz",
            "%",
            "",
        ])
        .prop_map(String::from),
        text().prop_map(|t| percent_encode(&t)),
    ];
    let part = (key, value).prop_map(|(key, value)| format!("{key}={value}"));
    prop_oneof![
        1 => Just(String::new()),
        1 => prop::collection::vec(part, 0..4).prop_map(|parts| format!("?{}", parts.join("&"))),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => select(vec![
            "chat_id", "text", "attachments", "kind", "id", "entry", "outcome", "responsible",
        ])
        .prop_map(String::from),
        1 => text(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
        select(vec![
            "CHAT", "photo", "document", "shop", "courier", "invoice"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn attachments() -> impl Strategy<Value = Vec<Value>> {
    let kind = prop_oneof![
        select(vec!["photo", "document"]).prop_map(String::from),
        text()
    ];
    let id = prop_oneof![Just("AgAD-file-1".to_string()), text()];
    prop::collection::vec(
        (kind, id).prop_map(|(kind, id)| json!({ "kind": kind, "id": id })),
        0..3,
    )
}

/// The body a route takes, with arbitrary values; `kind` names the route's body.
fn body_for(kind: &'static str) -> BoxedStrategy<Value> {
    match kind {
        "chat" => {
            let chat_id = prop_oneof![
                2 => Just("CHAT".to_string()),
                1 => "[A-Za-z0-9_-]{22,40}",
                1 => text(),
            ];
            let attachments = prop_oneof![3 => Just(Vec::new()), 1 => attachments()];
            (chat_id, text(), attachments)
                .prop_map(|(chat_id, text, attachments)| {
                    json!({ "chat_id": chat_id, "text": text, "attachments": attachments })
                })
                .boxed()
        }
        "text" => prop_oneof![Just("您好，我们马上为您处理".to_string()), text(),]
            .prop_map(|text| json!({ "text": text }))
            .boxed(),
        "close" => {
            let responsible = prop_oneof![
                select(vec!["shop", "courier", "buyer", "快递", "待定"]).prop_map(String::from),
                text(),
            ];
            (text(), responsible)
                .prop_map(|(outcome, responsible)| {
                    json!({ "outcome": outcome, "responsible": responsible })
                })
                .boxed()
        }
        "example" => (select(vec!["invoice", "delivery_time", "nothing"]), text())
            .prop_map(|(entry, text)| json!({ "entry": entry, "text": text }))
            .boxed(),
        _ => json_value().boxed(),
    }
}

/// A body: the route's own with arbitrary values, any JSON, any bytes, nothing, or one over
/// the size limit.
fn body(kind: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let oversized = format!(
        r#"{{"chat_id": "CHAT", "text": "{}"}}"#,
        "x".repeat(300_000)
    );
    prop_oneof![
        6 => body_for(kind).prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => Just(Vec::new()),
        1 => Just(oversized.into_bytes()),
    ]
}

/// The API's routes: method, path (`{}` takes a segment) and the kind of body.
const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/api/chat", "chat"),
    ("POST", "/api/chat/new", "none"),
    ("GET", "/api/chat/{}/messages", "none"),
    ("GET", "/health", "none"),
    ("GET", "/console", "none"),
    ("GET", "/api/agent/me", "none"),
    ("GET", "/api/agent/handoffs", "none"),
    ("GET", "/api/agent/handoffs/{}", "none"),
    ("POST", "/api/agent/handoffs/{}/claim", "none"),
    ("POST", "/api/agent/handoffs/{}/reply", "text"),
    ("POST", "/api/agent/handoffs/{}/note", "text"),
    ("POST", "/api/agent/handoffs/{}/close", "close"),
    ("POST", "/api/agent/handoffs/{}/release", "none"),
    ("GET", "/api/agent/cases", "none"),
    ("GET", "/api/agent/cases.csv", "none"),
    ("GET", "/api/agent/unanswered", "none"),
    ("POST", "/api/agent/examples", "example"),
    ("GET", "/api/agent/ratings", "none"),
    ("GET", "/api/agent/answers", "none"),
    ("GET", "/api/agent/knowledge", "none"),
    ("GET", "/api/agent/flows", "none"),
];

fn request() -> impl Strategy<Value = Request> {
    let any_method = prop_oneof![
        3 => select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]).prop_map(String::from),
        1 => "[A-Z]{1,10}",
    ];
    let id = prop_oneof![3 => Just("HANDOFF".to_string()), 1 => segment()];
    let chat = prop_oneof![3 => Just("CHAT".to_string()), 1 => segment()];
    // A route with its own method and body most of the time; anything anywhere otherwise.
    let on_route = (
        select(ROUTES),
        prop::option::weighted(0.2, any_method.clone()),
        id,
        chat,
    )
        .prop_flat_map(|((method, route, kind), other_method, id, chat)| {
            let segment = if route.contains("chat") { chat } else { id };
            let path = route.replace("{}", &segment);
            let method = other_method.unwrap_or_else(|| method.to_string());
            (Just(method), Just(path), body(kind))
        });
    let anywhere = (
        any_method,
        prop::collection::vec(segment(), 0..6).prop_map(|s| format!("/{}", s.join("/"))),
        body("any"),
    );
    let content_type = prop_oneof![
        6 => Just(Some("application/json".to_string())),
        1 => Just(None),
        2 => select(vec![
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ])
        .prop_map(|c| Some(c.to_string())),
        1 => "[ -~]{0,40}".prop_map(Some),
    ];
    let sender = prop_oneof![
        1 => Just(Sender::Anonymous),
        3 => Just(Sender::Agent),
        2 => Just(Sender::Editor),
        1 => "[ -~]{0,60}".prop_map(Sender::Header),
    ];
    (
        prop_oneof![4 => on_route, 1 => anywhere],
        query(),
        content_type,
        sender,
        any::<[u8; 4]>(),
    )
        .prop_map(
            |((method, path, body), query, content_type, sender, address)| Request {
                method,
                path: path + &query,
                content_type,
                sender,
                body,
                address,
            },
        )
}

/// A bot over a copy of `knowledge/` (an editor's example may go live), with two agents.
struct Fixture {
    bot: TestBot,
    agent: String,
    editor: String,
    chats: std::sync::atomic::AtomicUsize,
    _knowledge: KnowledgeCopy,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let knowledge = KnowledgeCopy::new(name);
        let kb = knowledge.dir.clone();
        let bot = TestBot::with_settings(move |s| s.kb = kb);
        let agent = bot.add_agent("alice", "agent");
        let editor = bot.add_agent("erin", "editor");
        Fixture {
            bot,
            agent,
            editor,
            chats: Default::default(),
            _knowledge: knowledge,
        }
    }

    /// A new chat handed to a person (every other one claimed by the agent): its id and its
    /// handoff's.
    async fn waiting_chat(&self) -> (String, String) {
        let n = self
            .chats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let label = format!("waiting{n}");
        self.bot.say(&label, "转人工").await;
        let handoff = self.bot.handoff_of(&self.agent, &label).await;
        if n % 2 == 1 {
            let (status, body) = self.bot.act(&self.agent, handoff, "claim", None).await;
            assert_eq!(status, 200, "{body}");
        }
        (crate::support::chat_id(&label), handoff.to_string())
    }

    /// Sends `request` with `CHAT` and `HANDOFF` filled in (see `deliver`).
    async fn send(&self, request: &Request) -> Option<(u16, String, Value)> {
        let (chat, handoff) = self.waiting_chat().await;
        let fill = |text: &str| text.replace("CHAT", &chat).replace("HANDOFF", &handoff);
        let body = match std::str::from_utf8(&request.body) {
            Ok(text) => fill(text).into_bytes(),
            Err(_) => request.body.clone(),
        };
        let filled = Request {
            path: fill(&request.path),
            body,
            ..request.clone()
        };
        self.deliver(&filled).await
    }

    /// Sends `request` as it is; returns the status, the content type and the body as JSON (a
    /// JSON string when it is not JSON), or None when no client could send it (an invalid URI).
    async fn deliver(&self, request: &Request) -> Option<(u16, String, Value)> {
        axum::http::Uri::try_from(request.path.as_str()).ok()?;
        let authorization = match &request.sender {
            Sender::Anonymous => None,
            Sender::Agent => Some(format!("Bearer {}", self.agent)),
            Sender::Editor => Some(format!("Bearer {}", self.editor)),
            Sender::Header(value) => Some(value.clone()),
        };
        let mut headers = Vec::new();
        if let Some(content_type) = &request.content_type {
            headers.push(("content-type", content_type.as_str()));
        }
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        let [a, b, c, d] = request.address;
        let address = format!("{a}.{b}.{c}.{d}:40000");
        let answer = send_from(
            self.bot.router(),
            &address,
            &request.method,
            &request.path,
            &headers,
            request.body.clone(),
        )
        .await;
        let content_type = answer.header("content-type").to_string();
        Some((answer.status, content_type, answer.body))
    }
}

#[test]
fn no_request_gets_a_server_error_and_every_refusal_is_json() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = Fixture::new("prop-requests");
    for_all(512, request(), |request| {
        let Some((status, content_type, body)) = runtime.block_on(fixture.send(&request)) else {
            return Ok(());
        };
        prop_assert!(status < 500, "{status}: {body}");
        if status >= 400 && request.method != "HEAD" {
            prop_assert!(
                content_type.starts_with("application/json"),
                "{status} as {content_type:?}: {body}"
            );
            prop_assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{status} without an error: {body}"
            );
        }
        Ok(())
    });
}

#[test]
fn any_buyer_message_is_answered_or_refused_with_a_reason_and_stored_as_answered() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = Fixture::new("prop-chats");
    let message = (
        prop_oneof![3 => text(), 1 => long_text(3000)],
        prop_oneof![3 => Just(Vec::new()), 1 => attachments()],
    );
    let conversation = ("[A-Za-z0-9_-]{22,30}", prop::collection::vec(message, 1..6));
    let buyer = |method: &str, path: String, body: Vec<u8>| Request {
        method: method.into(),
        path,
        content_type: Some("application/json".into()),
        sender: Sender::Anonymous,
        body,
        address: [198, 51, 100, 7],
    };
    for_all(64, conversation, |(chat_id, messages)| {
        runtime.block_on(async {
            // What the buyer was told, as the store should hold it: (from, text).
            let mut answered: Vec<(String, String)> = Vec::new();
            for (text, attachments) in &messages {
                let body = json!({ "chat_id": chat_id, "text": text, "attachments": attachments });
                let request = buyer("POST", "/api/chat".into(), body.to_string().into_bytes());
                let (status, _, answer) = fixture.deliver(&request).await.unwrap();
                if status != 200 {
                    prop_assert!((400..500).contains(&status), "{status}: {answer}");
                    prop_assert!(answer["error"].as_str().is_some(), "{status}: {answer}");
                    continue;
                }
                let replies = answer["replies"].as_array();
                prop_assert!(replies.is_some(), "no replies: {answer}");
                answered.push(("buyer".into(), text.clone()));
                for reply in replies.unwrap() {
                    let reply = reply.as_str().unwrap_or_default();
                    prop_assert!(!reply.trim().is_empty(), "an empty reply: {answer}");
                    answered.push(("bot".into(), reply.to_string()));
                }
            }
            if answered.is_empty() {
                return Ok(());
            }
            let uri = format!("/api/chat/{chat_id}/messages?after=0");
            let (status, _, read) = fixture
                .deliver(&buyer("GET", uri, Vec::new()))
                .await
                .unwrap();
            prop_assert_eq!(status, 200, "{}", read);
            let stored: Vec<(String, String)> = read["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["from"].as_str().unwrap().into(),
                        m["text"].as_str().unwrap().into(),
                    )
                })
                .collect();
            prop_assert_eq!(stored, answered);
            Ok(())
        })
    });
}
