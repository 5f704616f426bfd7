//! A fake Telegram Bot API on 127.0.0.1 (a port the OS picks), for the bot under test: getUpdates
//! hands out the updates a test scripts, with long polling and Telegram's offsets (an update is
//! gone once a later poll acknowledges it); sendMessage and the other calls are recorded; the
//! next sendMessage calls can be made to fail (429 with `retry_after`, 5xx), and a chat can
//! refuse the bot (403, as when the buyer blocked it).
//!
//! Our own small axum server rather than teremock: teremock drives a teloxide `Dispatcher` of
//! its own, while this bot polls and acknowledges updates itself and must meet 429s and 5xx.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// The bot's account as getMe tells it.
pub const BOT_ID: i64 = 99;
pub const BOT_USERNAME: &str = "xiaoer_shop_bot";
/// Any token: the fake takes every one.
pub const TOKEN: &str = "123456:test-token";

/// How a sendMessage call fails.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// 429 Too Many Requests, `retry_after` seconds.
    TooManyRequests(u32),
    /// A 5xx status.
    Server(u16),
}

/// A message the bot sent, as the buyer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub chat: i64,
    pub message_id: i64,
    pub text: String,
    /// Inline buttons: (label, callback data), one per row.
    pub buttons: Vec<(String, String)>,
    /// When the fake received it.
    pub at: Instant,
}

#[derive(Default)]
struct Fake {
    /// Every update ever scripted, in order.
    updates: Vec<Value>,
    /// Updates below this id were acknowledged and are never handed out again.
    acknowledged: i64,
    next_update_id: i64,
    next_message_id: i64,
    sent: Vec<Sent>,
    /// Every call after getUpdates: (method, parameters).
    calls: Vec<(String, Value)>,
    failures: VecDeque<Failure>,
    /// sendMessage calls answered, failed ones included.
    send_attempts: usize,
    /// Chats that refuse the bot (403 with this description), and how often they did.
    refusing: HashMap<i64, &'static str>,
    refused: HashMap<i64, usize>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    fake: Arc<Mutex<Fake>>,
    changed: Arc<Notify>,
}

impl FakeTelegram {
    /// Starts the fake on a free loopback port; it lives as long as the test's runtime.
    pub async fn start() -> FakeTelegram {
        let fake = FakeTelegram {
            url: String::new(),
            fake: Arc::new(Mutex::new(Fake {
                next_update_id: 1,
                next_message_id: 1000,
                ..Fake::default()
            })),
            changed: Arc::new(Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/{bot}/{method}", post(call))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeTelegram { url, ..fake }
    }

    fn fake(&self) -> MutexGuard<'_, Fake> {
        self.fake.lock().unwrap()
    }

    /// Scripts an update (its `update_id` is added); returns the id.
    pub fn push(&self, mut update: Value) -> i64 {
        let id = {
            let mut fake = self.fake();
            let id = fake.next_update_id;
            fake.next_update_id += 1;
            update["update_id"] = json!(id);
            fake.updates.push(update);
            id
        };
        self.changed.notify_waiters();
        id
    }

    /// A new message id in the fake's one sequence (buyers' and bot's messages alike).
    pub fn message_id(&self) -> i64 {
        let mut fake = self.fake();
        fake.next_message_id += 1;
        fake.next_message_id
    }

    /// Hands out an acknowledged update again, as Telegram does when the acknowledgement of
    /// a handled update was lost (the bot stopped before its next poll).
    pub fn forget_acknowledgement(&self, update_id: i64) {
        let mut fake = self.fake();
        fake.acknowledged = fake.acknowledged.min(update_id);
    }

    pub fn acknowledged(&self, update_id: i64) -> bool {
        self.fake().acknowledged > update_id
    }

    /// The next sendMessage calls fail, in this order.
    pub fn fail_next_sends(&self, failures: &[Failure]) {
        self.fake().failures.extend(failures.iter().copied());
    }

    /// Every sendMessage to `chat` is refused with 403 and this description (`Forbidden: bot
    /// was blocked by the user` …) until `accept`.
    pub fn refuse(&self, chat: i64, description: &'static str) {
        self.fake().refusing.insert(chat, description);
    }

    /// The chat takes messages again (the buyer unblocked the bot).
    pub fn accept(&self, chat: i64) {
        self.fake().refusing.remove(&chat);
    }

    /// How many sendMessage calls to `chat` were refused.
    pub fn refused(&self, chat: i64) -> usize {
        self.fake().refused.get(&chat).copied().unwrap_or(0)
    }

    pub fn send_attempts(&self) -> usize {
        self.fake().send_attempts
    }

    /// What the chat received, in order.
    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.fake()
            .sent
            .iter()
            .filter(|s| s.chat == chat)
            .cloned()
            .collect()
    }

    /// The calls of a method other than getUpdates and sendMessage, with their parameters.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.fake()
            .calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Waits until `done` holds, checking after every change; panics after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&FakeTelegram) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() && !done(self) {
                panic!("timed out waiting for {what}");
            }
        }
    }
}

async fn call(
    State(fake): State<FakeTelegram>,
    Path((_bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let params: Value = match content_type.split_once("boundary=") {
        // setWebhook goes as a form (it may carry a certificate).
        Some((_, boundary)) => form_fields(&body, boundary),
        None => serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    // Telegram reads method names in any case (teloxide sends `GetMe`).
    let method = canonical(&method);
    match method.as_str() {
        "getUpdates" => get_updates(&fake, &params).await,
        "sendMessage" => send_message(&fake, &params),
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "店小二", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false
        })),
        other => {
            fake.fake().calls.push((other.to_string(), params.clone()));
            fake.changed.notify_waiters();
            match other {
                "editMessageReplyMarkup" => ok(json!({
                    "message_id": params["message_id"], "date": 1_795_392_000,
                    "chat": chat_json(params["chat_id"].as_i64().unwrap_or(0)),
                    "text": "…"
                })),
                _ => ok(json!(true)),
            }
        }
    }
}

/// The text fields of a multipart form.
fn form_fields(body: &[u8], boundary: &str) -> Value {
    let body = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in body.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = value.trim_end_matches("\r\n");
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        fields.insert(name.to_string(), value);
    }
    Value::Object(fields)
}

/// `getMe` for `GetMe`, `getme` …
fn canonical(method: &str) -> String {
    const METHODS: &[&str] = &[
        "getUpdates",
        "sendMessage",
        "getMe",
        "deleteWebhook",
        "setWebhook",
        "answerCallbackQuery",
        "editMessageReplyMarkup",
    ];
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .map_or_else(|| method.to_string(), |m| m.to_string())
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

pub fn chat_json(chat: i64) -> Value {
    if chat < 0 {
        json!({"id": chat, "type": "supergroup", "title": "买家交流群"})
    } else {
        json!({"id": chat, "type": "private", "first_name": "买家"})
    }
}

async fn get_updates(fake: &FakeTelegram, params: &Value) -> Response {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let timeout = params["timeout"].as_u64().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let acknowledged_more = {
        let mut state = fake.fake();
        let more = offset > state.acknowledged;
        if more {
            state.acknowledged = offset;
        }
        more
    };
    if acknowledged_more {
        fake.changed.notify_waiters();
    }
    loop {
        let changed = fake.changed.notified();
        let pending: Vec<Value> = {
            let state = fake.fake();
            state
                .updates
                .iter()
                .filter(|u| u["update_id"].as_i64().unwrap() >= state.acknowledged)
                .cloned()
                .collect()
        };
        if !pending.is_empty() {
            return ok(Value::Array(pending));
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send_message(fake: &FakeTelegram, params: &Value) -> Response {
    let at = Instant::now();
    let chat = params["chat_id"].as_i64().expect("chat_id is a number");
    let mut state = fake.fake();
    state.send_attempts += 1;
    if let Some(&description) = state.refusing.get(&chat) {
        *state.refused.entry(chat).or_default() += 1;
        drop(state);
        fake.changed.notify_waiters();
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"ok": false, "error_code": 403, "description": description})),
        )
            .into_response();
    }
    if let Some(failure) = state.failures.pop_front() {
        drop(state);
        fake.changed.notify_waiters();
        return match failure {
            Failure::TooManyRequests(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({
                    "ok": false, "error_code": 429,
                    "description": format!("Too Many Requests: retry after {seconds}"),
                    "parameters": {"retry_after": seconds}
                })),
            )
                .into_response(),
            Failure::Server(status) => (
                StatusCode::from_u16(status).unwrap(),
                Json(json!({"ok": false, "error_code": status, "description": "Bad Gateway"})),
            )
                .into_response(),
        };
    }
    state.next_message_id += 1;
    let message_id = state.next_message_id;
    let text = params["text"].as_str().unwrap_or_default().to_string();
    let buttons = params["reply_markup"]["inline_keyboard"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                .map(|b| {
                    (
                        b["text"].as_str().unwrap_or_default().to_string(),
                        b["callback_data"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    state.sent.push(Sent {
        chat,
        message_id,
        text: text.clone(),
        buttons,
        at,
    });
    drop(state);
    fake.changed.notify_waiters();
    ok(json!({
        "message_id": message_id, "date": 1_795_392_000, "chat": chat_json(chat),
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "店小二", "username": BOT_USERNAME},
        "text": text
    }))
}
