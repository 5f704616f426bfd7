//! The HTTP chat API (axum): the channel every other channel and test can use.
//!
//! - `POST /api/chat/new` → `{"chat_id"}`: a new chat id, a random secret.
//! - `POST /api/chat` `{"chat_id", "text", "attachments"?}` → `{"replies", "action", "topic",
//!   "confidence", "state"}`
//! - `GET /api/chat/{chat_id}/messages?after=ID` → `{"messages": [{"id", "from", "text", "at"}]}`:
//!   what the chat received later (an agent's reply, a reminder while waiting).
//! - `GET /health` → 200 when the store takes a write and the knowledge answers, else 503
//!   naming what failed; the knowledge version serving and the last refused reload.
//!
//! A chat id is the buyer's session secret: the only way to a chat's messages, so it must be
//! too long to guess (`ChatKey::parse_http`: 22–128 URL-safe characters; `/api/chat/new`
//! issues one), and reads of chats that do not exist are throttled per address. Ids given
//! here only ever reach `http` chats, never a Telegram chat. Every error, the framework's
//! included (unknown route, wrong method, bad path or query), is JSON `{"error": …}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channels::guard::{self, ClientAddress, Guards};
use crate::conversation::{ChatKey, MAX_CHAT_ID_CHARS, MIN_SECRET_CHAT_ID_CHARS};
use crate::dialog::Attachment;
use crate::service::Service;

/// Longest text a buyer may send in one message; the bot reads only the first 2,000
/// characters (longer ones go to a person), but a message up to this size is stored whole.
pub const MAX_TEXT_CHARS: usize = 20_000;
const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_ATTACHMENTS: usize = 10;

/// What every route reaches: the running service and the throttles of wrong guesses.
/// Handlers that need only the service take `State<Arc<Service>>`.
#[derive(Clone)]
pub struct ApiState {
    pub service: Arc<Service>,
    pub guards: Arc<Guards>,
}

impl FromRef<ApiState> for Arc<Service> {
    fn from_ref(state: &ApiState) -> Arc<Service> {
        state.service.clone()
    }
}

/// The API's routes over a running service, the agent console's included.
pub fn router(service: Arc<Service>) -> Router {
    let state = ApiState {
        service,
        guards: Arc::new(Guards::default()),
    };
    Router::new()
        .route("/api/chat", post(chat))
        .route("/api/chat/new", post(new_chat))
        .route("/api/chat/{chat_id}/messages", get(messages))
        .route("/health", get(health))
        .merge(crate::channels::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(map_response(guard::common_headers))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see README.md for the HTTP API".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this route does not take that method".into())
}

/// `axum::extract::Path` whose rejection is a JSON 400.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "bad path: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// `axum::extract::Query` whose rejection is a JSON 400.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "bad query: {}",
                rejection.body_text()
            ))),
        }
    }
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
    MethodNotAllowed(String),
    /// Too many wrong guesses from one address; try again after `retry_after_s`.
    TooManyRequests {
        message: String,
        retry_after_s: u64,
    },
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
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, m),
            ApiError::TooManyRequests {
                message,
                retry_after_s,
            } => {
                let body = Json(serde_json::json!({ "error": message }));
                let retry_after = [(header::RETRY_AFTER, retry_after_s.to_string())];
                return (StatusCode::TOO_MANY_REQUESTS, retry_after, body).into_response();
            }
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
    ChatKey::parse_http(chat_id).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "chat_id must be a secret nobody can guess: {MIN_SECRET_CHAT_ID_CHARS}–{MAX_CHAT_ID_CHARS} \
             URL-safe characters (A–Z a–z 0–9 - _), random; POST /api/chat/new issues one"
        ))
    })
}

/// A new chat id: 144 random bits, for a web page that does not make its own.
async fn new_chat() -> Result<Json<serde_json::Value>, ApiError> {
    let chat_id = crate::auth::new_chat_id().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(serde_json::json!({ "chat_id": chat_id })))
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

/// The chat's messages after `after`. A read of a chat that does not exist counts as a wrong
/// guess of the reader's address; too many and the address waits.
async fn messages(
    State(state): State<ApiState>,
    Path(chat_id): Path<String>,
    Query(after): Query<After>,
    ClientAddress(address): ClientAddress,
) -> Result<Json<serde_json::Value>, ApiError> {
    let clock = state.service.clock().clone();
    state.guards.chat_guesses.admit(address, clock.now_ms())?;
    let chat = chat_key(&chat_id)?;
    let store = state.service.store().clone();
    let (stored, exists) = tokio::task::spawn_blocking(move || {
        let stored = store.messages(&chat, after.after)?;
        let exists = !stored.is_empty() || store.chat_exists(&chat)?;
        Ok::<_, crate::storage::StoreError>((stored, exists))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !exists {
        state.guards.chat_guesses.fail(address, clock.now_ms())?;
    }
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
