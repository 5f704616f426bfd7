//! The HTTP chat API (axum): the channel every other channel and test can use.
//!
//! - `POST /api/chat` `{"chat_id", "text", "attachments"?}` → `{"replies", "action", "topic",
//!   "confidence", "state"}`
//! - `GET /api/chat/{chat_id}/messages?after=ID` → `{"messages": [{"id", "from", "text", "at"}]}`:
//!   what the chat received later (an agent's reply, a reminder while waiting).
//! - `GET /health` → 200 when the store takes a write and the knowledge answers, else 503
//!   naming what failed; the knowledge version serving and the last refused reload.
//!
//! A chat id is the buyer's session secret (the shop's web widget makes a random one): it is
//! the only way to a chat's messages, and one chat's data never appears in another's.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::conversation::ChatKey;
use crate::dialog::Attachment;
use crate::service::Service;

/// Longest text a buyer may send in one message; the bot reads only the first 2,000
/// characters (longer ones go to a person), but a message up to this size is stored whole.
pub const MAX_TEXT_CHARS: usize = 20_000;
const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_ATTACHMENTS: usize = 10;

/// The API's routes over a running service, the agent console's included.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/chat", post(chat))
        .route("/api/chat/{chat_id}/messages", get(messages))
        .route("/health", get(health))
        .merge(crate::channels::console::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

/// A 4xx with a message for the caller, or an opaque 500 that is logged.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    TooLarge(String),
    NotFound(String),
    /// The action conflicts with the current state (a chat another agent holds).
    Conflict(String),
    /// Signed in, but the role does not allow it.
    Forbidden(String),
    /// Well-formed but refused on its content (an edit that would break the knowledge base).
    Unprocessable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; it has been logged".to_string(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
                "request body is larger than {MAX_BODY_BYTES} bytes"
            )),
            _ => ApiError::BadRequest(format!("invalid JSON request: {}", rejection.body_text())),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest {
    chat_id: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Serialize)]
struct ChatResponse {
    replies: Vec<String>,
    action: crate::conversation::Act,
    topic: Option<String>,
    confidence: f32,
    state: &'static str,
}

fn chat_key(chat_id: &str) -> Result<ChatKey, ApiError> {
    ChatKey::parse("http", chat_id).ok_or_else(|| {
        ApiError::BadRequest("chat_id must be 1–128 characters without control characters".into())
    })
}

async fn chat(
    State(service): State<Arc<Service>>,
    request: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Json<ChatResponse>, ApiError> {
    let Json(request) = request?;
    let chat = chat_key(&request.chat_id)?;
    if request.text.trim().is_empty() && request.attachments.is_empty() {
        return Err(ApiError::BadRequest(
            "text is empty: send the buyer's message, or an attachment".into(),
        ));
    }
    if request.text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::TooLarge(format!(
            "text is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if request.attachments.len() > MAX_ATTACHMENTS
        || request.attachments.iter().any(|a| {
            a.id.is_empty() || a.id.len() > 2048 || !matches!(a.kind.as_str(), "photo" | "document")
        })
    {
        return Err(ApiError::BadRequest(format!(
            "attachments: at most {MAX_ATTACHMENTS}, each {{\"kind\": \"photo\"|\"document\", \"id\": \"…\"}}"
        )));
    }
    let handled = service
        .receive(chat, request.text, request.attachments)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(ChatResponse {
        replies: handled.replies,
        action: handled.action,
        topic: handled.topic,
        confidence: handled.confidence,
        state: handled.state,
    }))
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: i64,
}

async fn messages(
    State(service): State<Arc<Service>>,
    Path(chat_id): Path<String>,
    Query(after): Query<After>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = chat_key(&chat_id)?;
    let store = service.store().clone();
    let stored = tokio::task::spawn_blocking(move || store.messages(&chat, after.after))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let messages: Vec<_> = stored
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "from": m.from,
                "text": m.text,
                "at": rfc3339(m.at_ms),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "messages": messages })))
}

/// 200 when the store takes a write and the knowledge answers, else 503 with what failed.
async fn health(State(service): State<Arc<Service>>) -> Response {
    let health = service.health().await;
    let bot = service.bot();
    let part = |result: &Result<(), String>| match result {
        Ok(()) => "ok".to_string(),
        Err(problem) => problem.clone(),
    };
    let mut body = serde_json::json!({
        "status": if health.is_ok() { "ok" } else { "failing" },
        "store": part(&health.store),
        "knowledge": part(&health.knowledge),
        "knowledge_version": bot.version,
        "last_refused_reload": service.last_reload_problem(),
    });
    if !health.is_ok() {
        body["error"] = health.problems().join("; ").into();
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(body).into_response()
}

/// A moment as RFC 3339 in UTC (`2026-11-23T03:00:00.000Z`).
pub fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
