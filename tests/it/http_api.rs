//! The HTTP surface under hostile use, as an attacker or a careless client would try it:
//! guessed chat ids, a walk over chat ids, Telegram chats through `/api/chat`, malformed
//! requests on every route, missing security headers, a flood of wrong agent tokens, and
//! control characters in what agents send.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use xiaoer::conversation::ChatKey;

use crate::support::{chat_id, send_from, Answer, TestBot};

const ATTACKER: &str = "192.0.2.1:40000";
const BUYER: &str = "198.51.100.7:40000";
const AGENT: &str = "203.0.113.9:40000";

/// A JSON request from `address` (with `Authorization: Bearer token` when given).
async fn call(
    bot: &TestBot,
    address: &str,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Answer {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("authorization", value.as_str()));
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    send_from(bot.router(), address, method, uri, &headers, body).await
}

/// Asserts `answer` is an error of `status` with a JSON body `{"error": "…"}`.
#[track_caller]
fn assert_json_error(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert!(
        answer
            .header("content-type")
            .starts_with("application/json"),
        "{what}: content-type {:?}",
        answer.header("content-type")
    );
    assert!(
        answer.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        answer.body
    );
}

#[tokio::test]
async fn short_or_odd_chat_ids_are_refused_and_the_server_issues_strong_ones() {
    let bot = TestBot::new();
    for weak in [
        "1",
        "42",
        "web-5f2c9a",
        &"a".repeat(21),
        &"a".repeat(129),
        "aaaaaaaaaaaaaaaaaaaaaaaaa.b",
        "telegram:123456789012345678901234",
    ] {
        let said = call(
            &bot,
            BUYER,
            None,
            "POST",
            "/api/chat",
            Some(json!({"chat_id": weak, "text": "能开发票吗"})),
        )
        .await;
        assert_json_error(&said, 400, weak);
        let error = said.body["error"].as_str().unwrap();
        assert!(
            error.contains("22") && error.contains("POST /api/chat/new"),
            "the refusal says what a chat id must be and where to get one: {error}"
        );
        let uri = format!("/api/chat/{weak}/messages");
        let read = call(&bot, BUYER, None, "GET", &uri, None).await;
        assert_json_error(&read, 400, &uri);
    }

    let first = call(&bot, BUYER, None, "POST", "/api/chat/new", None).await;
    let second = call(&bot, BUYER, None, "POST", "/api/chat/new", None).await;
    let issued = first.body["chat_id"].as_str().unwrap().to_string();
    assert_eq!(first.status, 200);
    assert_ne!(issued, second.body["chat_id"].as_str().unwrap());
    assert!(ChatKey::parse_http(&issued).is_some(), "{issued}");
    let said = call(
        &bot,
        BUYER,
        None,
        "POST",
        "/api/chat",
        Some(json!({"chat_id": issued, "text": "能开发票吗"})),
    )
    .await;
    assert_eq!(said.body["topic"], "invoice", "{}", said.body);
    let uri = format!("/api/chat/{issued}/messages");
    let read = call(&bot, BUYER, None, "GET", &uri, None).await;
    assert_eq!(read.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn walking_over_chat_ids_is_throttled_per_address_and_polling_ones_own_chat_is_not() {
    let bot = TestBot::new();
    bot.say("mine", "我的手机号是13800000000，地址是文三路100号")
        .await;
    let mine = format!("/api/chat/{}/messages", chat_id("mine"));
    for _ in 0..100 {
        let polled = call(&bot, BUYER, None, "GET", &mine, None).await;
        assert_eq!(polled.status, 200, "polling one's own chat never blocks");
    }

    let mut statuses = Vec::new();
    for n in 0..1000 {
        let guess = format!(
            "/api/chat/{}/messages?after=0",
            chat_id(&format!("guess{n}"))
        );
        let answer = call(&bot, ATTACKER, None, "GET", &guess, None).await;
        if answer.status == 429 {
            assert_json_error(&answer, 429, &guess);
            assert_eq!(answer.header("retry-after"), "300");
        } else {
            assert_eq!(answer.body["messages"], json!([]), "{guess}");
        }
        statuses.push(answer.status);
    }
    assert!(statuses[..20].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    let blocked = call(&bot, ATTACKER, None, "GET", &mine, None).await;
    assert_eq!(
        blocked.status, 429,
        "a blocked address reads no chat, not even a real one"
    );
    let polled = call(&bot, BUYER, None, "GET", &mine, None).await;
    assert_eq!(polled.body["messages"].as_array().unwrap().len(), 2);

    bot.clock.advance_s(301);
    let later = call(&bot, ATTACKER, None, "GET", &mine, None).await;
    assert_eq!(later.status, 200, "the block ends: {}", later.body);
}

#[tokio::test]
async fn telegram_chats_are_never_reachable_through_the_chat_api() {
    let bot = TestBot::new();
    let telegram_id = "123456789012345678901234";
    let telegram = ChatKey::parse("telegram", telegram_id).unwrap();
    bot.service
        .receive(telegram.clone(), "我的手机号是13800000000".into(), vec![])
        .await
        .unwrap();
    let state_before = bot.store().conversation(&telegram).unwrap().state;
    let uri = format!("/api/chat/{telegram_id}/messages");
    let read = call(&bot, BUYER, None, "GET", &uri, None).await;
    assert_eq!(
        (read.status, read.body["messages"].clone()),
        (200, json!([]))
    );
    let said = call(
        &bot,
        BUYER,
        None,
        "POST",
        "/api/chat",
        Some(json!({"chat_id": telegram_id, "text": "我不要了，取消订单"})),
    )
    .await;
    assert_eq!(said.status, 200);
    let on_telegram = bot.store().messages(&telegram, 0).unwrap();
    assert!(
        on_telegram.iter().all(|m| !m.text.contains("取消订单")),
        "the Telegram chat is untouched"
    );
    assert_eq!(
        bot.store().conversation(&telegram).unwrap().state,
        state_before
    );
}

#[tokio::test]
async fn every_bad_request_on_every_route_gets_a_json_error() {
    let bot = TestBot::new();
    let token = bot.add_agent("alice", "editor");
    bot.say("r1", "转人工").await;
    let oversized = "很".repeat(100_000);
    let strong = chat_id("r1");
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("GET", "/nowhere".into(), None, 404),
        ("GET", "/api/agent/nowhere".into(), None, 404),
        ("GET", "/api/chat/a/b/c".into(), None, 404),
        ("DELETE", "/api/chat".into(), None, 405),
        ("GET", "/api/chat".into(), None, 405),
        ("GET", "/api/chat/new".into(), None, 405),
        ("POST", "/health".into(), None, 405),
        ("POST", "/console".into(), None, 405),
        ("PUT", "/api/agent/handoffs/1".into(), None, 405),
        ("GET", "/api/agent/handoffs/1/claim".into(), None, 405),
        ("GET", "/api/agent/handoffs/abc".into(), None, 400),
        ("POST", "/api/agent/handoffs/abc/claim".into(), None, 400),
        ("POST", "/api/agent/handoffs/1.5/close".into(), None, 400),
        (
            "GET",
            "/api/agent/handoffs/99999999999999999999999".into(),
            None,
            400,
        ),
        (
            "GET",
            format!("/api/chat/{strong}/messages?after=x"),
            None,
            400,
        ),
        (
            "GET",
            format!("/api/chat/{strong}/messages?after=1&after=2"),
            None,
            400,
        ),
        ("GET", "/api/agent/cases?kind=a&kind=b".into(), None, 400),
        (
            "GET",
            "/api/agent/cases.csv?week=a&week=b".into(),
            None,
            400,
        ),
        (
            "POST",
            "/api/chat".into(),
            Some(json!({"chat_id": strong, "text": oversized})),
            413,
        ),
        (
            "POST",
            "/api/agent/handoffs/1/reply".into(),
            Some(json!({"text": oversized})),
            413,
        ),
        (
            "POST",
            "/api/agent/examples".into(),
            Some(json!({"entry": "invoice", "text": oversized})),
            413,
        ),
    ];
    for (method, uri, body, status) in cases {
        let answer = call(&bot, AGENT, Some(&token), method, &uri, body).await;
        let what = format!("{method} {uri}");
        assert_json_error(&answer, status, &what);
        assert_eq!(answer.header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(answer.header("referrer-policy"), "no-referrer", "{what}");
    }
}

#[tokio::test]
async fn agent_answers_are_never_cached_and_the_console_runs_only_its_own_files() {
    let bot = TestBot::new();
    let token = bot.add_agent("alice", "agent");
    for (who, status) in [(Some(token.as_str()), 200), (None, 401)] {
        let answer = call(&bot, AGENT, who, "GET", "/api/agent/handoffs", None).await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.header("cache-control"), "no-store");
    }

    let page = call(&bot, AGENT, None, "GET", "/console", None).await;
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy:?}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    let html = page.body.as_str().unwrap();
    assert!(html.contains(r#"<script src="/console.js"></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/console.css">"#));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    assert!(
        !html.contains("<style") && !html.contains("style="),
        "no inline style"
    );
    assert!(
        !html.contains("http-equiv"),
        "the policy is a header, not a <meta>"
    );
    let handler = regex_like_inline_handler(html);
    assert!(handler.is_none(), "an inline event handler: {handler:?}");

    for (path, kind) in [
        ("/console.js", "text/javascript"),
        ("/console.css", "text/css"),
    ] {
        let file = call(&bot, AGENT, None, "GET", path, None).await;
        assert_eq!(file.status, 200, "{path}");
        assert!(file.header("content-type").starts_with(kind), "{path}");
        assert_eq!(file.header("x-content-type-options"), "nosniff");
    }
    let health = call(&bot, AGENT, None, "GET", "/health", None).await;
    assert_eq!(health.header("x-content-type-options"), "nosniff");
    assert_eq!(health.header("referrer-policy"), "no-referrer");
}

/// The first attribute like ` onclick=` in `html`, which a strict policy would not run.
fn regex_like_inline_handler(html: &str) -> Option<String> {
    html.split([' ', '\n', '\t'])
        .find(|word| {
            word.starts_with("on")
                && word.split_once('=').is_some_and(|(name, _)| {
                    name.len() > 2 && name.bytes().all(|b| b.is_ascii_lowercase())
                })
        })
        .map(str::to_string)
}

/// Everything logged at `warn` and above while it is held, on this thread.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[tokio::test]
async fn a_thousand_wrong_tokens_are_throttled_and_logged_and_a_right_token_elsewhere_works() {
    let bot = TestBot::new();
    let token = bot.add_agent("alice", "agent");
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let mut statuses = Vec::new();
    for n in 0..1000 {
        let wrong = format!("{n:064x}");
        let answer = call(&bot, ATTACKER, Some(&wrong), "GET", "/api/agent/me", None).await;
        if answer.status == 429 {
            assert_json_error(&answer, 429, &wrong);
            assert_eq!(answer.header("retry-after"), "60");
        } else {
            assert_json_error(&answer, 401, &wrong);
        }
        statuses.push(answer.status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    let blocked = call(&bot, ATTACKER, Some(&token), "GET", "/api/agent/me", None).await;
    assert_eq!(
        blocked.status, 429,
        "a blocked address is not let in at all"
    );
    let elsewhere = call(&bot, AGENT, Some(&token), "GET", "/api/agent/me", None).await;
    assert_eq!(
        (elsewhere.status, elsewhere.body["name"].as_str()),
        (200, Some("alice"))
    );

    let logged = log.text();
    let refusals = logged.matches("sign-in refused").count();
    assert_eq!(
        refusals, 11,
        "the ten allowed failures and the one that blocked are logged, once each: {logged}"
    );
    assert!(logged.contains("192.0.2.1"), "{logged}");
    assert!(logged.contains("address blocked"), "{logged}");
    assert!(
        !logged.contains(&format!("{:064x}", 3)) && !logged.contains(&token),
        "no token is ever logged: {logged}"
    );

    bot.clock.advance_s(61);
    let later = call(&bot, ATTACKER, Some(&token), "GET", "/api/agent/me", None).await;
    assert_eq!(later.status, 200, "the block ends after a minute");
}

#[tokio::test]
async fn agent_texts_with_control_characters_are_refused_and_buyer_texts_stored_whole() {
    let bot = TestBot::new();
    let token = bot.add_agent("alice", "agent");
    bot.say("c1", "转人工").await;
    let id = bot.handoff_of(&token, "c1").await;
    bot.act(&token, id, "claim", None).await;
    for (action, body, control) in [
        ("reply", json!({"text": "您好\u{0}"}), "U+0000"),
        (
            "reply",
            json!({"text": "您好\u{1b}[2J\u{1b}[31m请付款"}),
            "U+001B",
        ),
        ("reply", json!({"text": "您好\u{9b}31m"}), "U+009B"),
        ("reply", json!({"text": "您好\r覆盖"}), "U+000D"),
        ("note", json!({"text": "记一下\u{7}"}), "U+0007"),
        (
            "close",
            json!({"outcome": "已退款\u{1b}]0;title\u{7}", "responsible": "shop"}),
            "U+001B",
        ),
    ] {
        let answer = call(
            &bot,
            AGENT,
            Some(&token),
            "POST",
            &format!("/api/agent/handoffs/{id}/{action}"),
            Some(body.clone()),
        )
        .await;
        assert_json_error(&answer, 400, &body.to_string());
        let error = answer.body["error"].as_str().unwrap();
        assert!(error.contains(control), "{error}");
    }
    assert_eq!(
        bot.buyer_sees("c1").await.len(),
        2,
        "nothing refused reached the buyer"
    );
    let fine = call(
        &bot,
        AGENT,
        Some(&token),
        "POST",
        &format!("/api/agent/handoffs/{id}/reply"),
        Some(json!({"text": "您好，已为您查询：\r\n\t1. 明天发货"})),
    )
    .await;
    assert_eq!(fine.status, 200, "{}", fine.body);
    let sent = bot.buyer_sees("c1").await;
    assert_eq!(sent.last().unwrap().1, "您好，已为您查询：\n\t1. 明天发货");

    let hostile = "能开发票吗\u{0}\u{1b}[31m";
    let answered = bot.say("c2", hostile).await;
    assert_eq!(answered["topic"], "invoice", "{answered}");
    let stored = bot.store().messages(&TestBot::chat("c2"), 0).unwrap();
    assert_eq!(stored[0].text, hostile, "a buyer's message is stored whole");
}
