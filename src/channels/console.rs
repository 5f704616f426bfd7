//! The agents' side of `xiaoer serve`: a JSON API under `/api/agent` (every route needs
//! `Authorization: Bearer TOKEN` of an agent added with `xiaoer agent add`) and the web page
//! at `/console` that uses it. Agents see the queue, open a handoff with its transcript, claim
//! it, reply through the chat's own channel (after the phrasing check), leave notes, close the
//! case or hand the chat back to the bot. Names of flows come from `dialogs/` through the API,
//! so the page hard-codes none.
//!
//! Wrong tokens are throttled per address and logged (the address, never the token); agent
//! responses are never cached; the page runs under a strict Content-Security-Policy (its
//! script and styles are files of their own, no inline script), never inside a frame.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::map_response;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::token_hash;
use crate::channels::guard::{self, client_address};
use crate::channels::http::{rfc3339, ApiError, ApiState, Path, Query};
use crate::dialog::{Collect, Flow, Party};
use crate::phrasing;
use crate::reply;
use crate::service::{EditRefused, Service};
use crate::storage::{
    AgentRecord, AgentRefused, CaseRecord, ClaimRefused, Closing, HandoffRecord, Store,
};

/// Longest agent reply or note.
const MAX_AGENT_TEXT_CHARS: usize = 4000;
/// How many recent unplaced questions the unanswered view groups.
const UNANSWERED_WINDOW: usize = 2000;
/// Questions this alike (Dice coefficient of their characters) fall into one group.
const GROUP_SIMILARITY: f64 = 0.55;

/// The console's routes (merged into the HTTP router).
pub fn routes() -> Router<ApiState> {
    let agent_api = Router::new()
        .route("/api/agent/me", get(me))
        .route("/api/agent/handoffs", get(queue))
        .route("/api/agent/handoffs/{id}", get(detail))
        .route("/api/agent/handoffs/{id}/claim", post(claim))
        .route("/api/agent/handoffs/{id}/reply", post(agent_reply))
        .route("/api/agent/handoffs/{id}/note", post(note))
        .route("/api/agent/handoffs/{id}/close", post(close))
        .route("/api/agent/handoffs/{id}/release", post(release))
        .route("/api/agent/cases", get(cases))
        .route("/api/agent/cases.csv", get(cases_csv))
        .route("/api/agent/unanswered", get(unanswered))
        .route("/api/agent/examples", post(add_example))
        .route("/api/agent/ratings", get(ratings))
        .route("/api/agent/answers", get(answers))
        .route("/api/agent/knowledge", get(knowledge))
        .route("/api/agent/flows", get(flows))
        .layer(map_response(guard::no_store));
    Router::new()
        .route("/console", get(page))
        .route("/console.js", get(script))
        .route("/console.css", get(styles))
        .merge(agent_api)
}

/// An agent signed in with a valid token.
pub struct SignedIn(pub AgentRecord);

/// Checks the bearer token. Wrong tokens count against the client's address: past
/// `guard::SIGN_INS` the address gets 429 for a while, whatever token it sends.
impl FromRequestParts<ApiState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let (service, sign_ins) = (&state.service, &state.guards.sign_ins);
        let address = client_address(parts);
        sign_ins
            .admit(address, service.clock().now_ms())
            .map_err(IntoResponse::into_response)?;
        let unauthorized = |message: &str| {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": message })),
            )
                .into_response()
        };
        let Some(token) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| !t.trim().is_empty())
        else {
            return Err(unauthorized(
                "sign in: send Authorization: Bearer <your agent token>",
            ));
        };
        let hash = token_hash(token);
        let agent = blocking(service, move |store| store.agent_by_token_hash(&hash))
            .await
            .map_err(IntoResponse::into_response)?;
        match agent {
            Some(agent) => Ok(SignedIn(agent)),
            None => {
                tracing::warn!(%address, "sign-in refused: unknown or revoked token");
                sign_ins
                    .fail(address, service.clock().now_ms())
                    .map_err(IntoResponse::into_response)?;
                Err(unauthorized("unknown or revoked token"))
            }
        }
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    service: &Arc<Service>,
    work: impl FnOnce(&dyn Store) -> crate::storage::StoreResult<T> + Send + 'static,
) -> Result<T, ApiError> {
    let store = service.store().clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn handoff_json(handoff: &HandoffRecord, now_ms: i64) -> Value {
    json!({
        "id": handoff.id,
        "chat_id": handoff.chat.id(),
        "channel": handoff.chat.channel(),
        "reason": handoff.reason,
        "priority": handoff.priority,
        "summary": handoff.summary,
        "waiting_s": ((now_ms - handoff.created_ms) / 1000).max(0),
        "created_at": rfc3339(handoff.created_ms),
        "state": handoff.state,
        "agent": handoff.agent,
        "candidates": handoff.candidates,
    })
}

fn case_json(case: &CaseRecord) -> Value {
    json!({
        "id": case.id,
        "chat_id": case.chat.id(),
        "channel": case.chat.channel(),
        "created_at": rfc3339(case.created_ms),
        "kind": case.kind,
        "order": case.order,
        "description": case.description,
        "remedy": case.remedy,
        "responsible": case.responsible,
        "evidence": case.evidence,
        "collected": case.collected,
        "status": case.status,
        "outcome": case.outcome,
        "agent": case.agent,
    })
}

/// The page, with the headers that keep it from running anything but its own script and
/// from being framed by another site.
async fn page() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, guard::CONSOLE_CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(include_str!("console.html")),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
        .into_response()
}

async fn styles() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn me(SignedIn(agent): SignedIn) -> Json<AgentRecord> {
    Json(agent)
}

async fn queue(State(service): State<Arc<Service>>, _: SignedIn) -> Result<Json<Value>, ApiError> {
    let now = service.clock().now_ms();
    let handoffs = blocking(&service, |store| store.open_handoffs()).await?;
    let listing: Vec<Value> = handoffs.iter().map(|h| handoff_json(h, now)).collect();
    Ok(Json(json!({ "handoffs": listing })))
}

async fn detail(
    State(service): State<Arc<Service>>,
    _: SignedIn,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let now = service.clock().now_ms();
    let found = blocking(&service, move |store| {
        let Some(handoff) = store.handoff(id)? else {
            return Ok(None);
        };
        let transcript = store.messages(&handoff.chat, 0)?;
        let notes = store.notes(&handoff.chat)?;
        let cases: Vec<CaseRecord> = store
            .cases()?
            .into_iter()
            .filter(|c| c.chat == handoff.chat)
            .collect();
        Ok(Some((handoff, transcript, notes, cases)))
    })
    .await?;
    let Some((handoff, transcript, notes, cases)) = found else {
        return Err(ApiError::NotFound(format!("no handoff {id}")));
    };
    let mut body = handoff_json(&handoff, now);
    let transcript: Vec<Value> = transcript
        .iter()
        .map(|m| {
            json!({
                "from": m.from, "text": m.text, "at": rfc3339(m.at_ms), "action": m.act,
                "topic": m.topic, "confidence": m.confidence, "agent": m.agent,
                "attachments": m.attachments, "knowledge_version": m.knowledge_version,
                "undeliverable": m.undeliverable,
            })
        })
        .collect();
    let (this_case, earlier): (Vec<&CaseRecord>, Vec<&CaseRecord>) =
        cases.iter().partition(|c| Some(c.id) == handoff.case_id);
    body["transcript"] = json!(transcript);
    body["collected"] = json!(handoff.collected);
    body["evidence"] = json!(handoff.evidence);
    body["case"] = this_case
        .first()
        .map(|c| case_json(c))
        .unwrap_or(Value::Null);
    body["earlier_cases"] = json!(earlier.iter().map(|c| case_json(c)).collect::<Vec<_>>());
    body["notes"] = json!(notes
        .iter()
        .map(|n| json!({"handoff": n.handoff, "agent": n.agent, "text": n.text, "at": rfc3339(n.at_ms)}))
        .collect::<Vec<_>>());
    Ok(Json(body))
}

fn refused(id: i64, refusal: AgentRefused) -> ApiError {
    match refusal {
        AgentRefused::Missing => ApiError::NotFound(format!("no handoff {id}")),
        AgentRefused::NotHolder(Some(holder)) => {
            ApiError::Conflict(format!("handoff {id} is held by {holder}"))
        }
        AgentRefused::NotHolder(None) => ApiError::Conflict(format!("claim handoff {id} first")),
    }
}

async fn claim(
    State(service): State<Arc<Service>>,
    SignedIn(agent): SignedIn,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let now = service.clock().now_ms();
    let name = agent.name.clone();
    match blocking(&service, move |store| store.claim(id, &name, now)).await? {
        Ok(()) => Ok(Json(
            json!({ "id": id, "state": "claimed", "agent": agent.name }),
        )),
        Err(ClaimRefused::Missing) => Err(ApiError::NotFound(format!("no handoff {id}"))),
        Err(ClaimRefused::HeldBy(holder)) => Err(ApiError::Conflict(format!(
            "handoff {id} is already held by {holder}"
        ))),
        Err(ClaimRefused::NotWaiting(state)) => Err(ApiError::Conflict(format!(
            "handoff {id} is {state}, no longer waiting"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
}

fn agent_text(body: Result<Json<TextBody>, JsonRejection>) -> Result<String, ApiError> {
    let Json(body) = body?;
    let text = body.text.trim().replace("\r\n", "\n");
    if text.is_empty() {
        return Err(ApiError::BadRequest("text is empty".into()));
    }
    if text.chars().count() > MAX_AGENT_TEXT_CHARS {
        return Err(ApiError::TooLarge(format!(
            "text is longer than {MAX_AGENT_TEXT_CHARS} characters"
        )));
    }
    refuse_controls("text", &text)?;
    Ok(text)
}

/// Refuses a text with a control character other than newline and tab (NUL, a terminal
/// escape, a bell …): it would reach a buyer's screen or a spreadsheet as it is.
fn refuse_controls(field: &str, text: &str) -> Result<(), ApiError> {
    let found = text
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'));
    match found {
        Some((position, control)) => Err(ApiError::BadRequest(format!(
            "{field} contains the control character U+{:04X} at character {}; only newlines \
             and tabs are allowed",
            u32::from(control),
            position + 1
        ))),
        None => Ok(()),
    }
}

/// Sends an agent's text to the buyer, unless it breaks a phrasing rule: then 422 with every
/// violation and its approved wording, and nothing is sent.
async fn agent_reply(
    State(service): State<Arc<Service>>,
    SignedIn(agent): SignedIn,
    Path(id): Path<i64>,
    body: Result<Json<TextBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let text = agent_text(body)?;
    let bot = service.bot();
    let violations = phrasing::check(&bot.engine.knowledge_base().phrasing, &text);
    if !violations.is_empty() {
        let listing: Vec<Value> = violations
            .iter()
            .map(|v| {
                json!({
                    "rule": v.rule, "message": v.message, "message_zh": v.message_zh,
                    "source": v.source, "found": v.found,
                    "start": v.span.start, "end": v.span.end, "replacement": v.replacement,
                })
            })
            .collect();
        let body = json!({ "error": "the reply breaks the shop's phrasing rules; nothing was sent", "violations": listing });
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
    }
    let now = service.clock().now_ms();
    let name = agent.name.clone();
    match blocking(&service, move |store| {
        store.agent_reply(id, &name, &text, now)
    })
    .await?
    {
        Ok(message) => Ok(Json(json!({ "id": message, "sent": true })).into_response()),
        Err(refusal) => Err(refused(id, refusal)),
    }
}

async fn note(
    State(service): State<Arc<Service>>,
    SignedIn(agent): SignedIn,
    Path(id): Path<i64>,
    body: Result<Json<TextBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let text = agent_text(body)?;
    let now = service.clock().now_ms();
    match blocking(&service, move |store| {
        store.add_note(id, &agent.name, &text, now)
    })
    .await?
    {
        Ok(()) => Ok(Json(json!({ "id": id, "noted": true }))),
        Err(refusal) => Err(refused(id, refusal)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    outcome: String,
    responsible: String,
}

async fn close(
    State(service): State<Arc<Service>>,
    SignedIn(agent): SignedIn,
    Path(id): Path<i64>,
    body: Result<Json<CloseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let outcome = body.outcome.trim().replace("\r\n", "\n");
    if outcome.is_empty() || outcome.chars().count() > MAX_AGENT_TEXT_CHARS {
        return Err(ApiError::BadRequest(
            "outcome: say in a few words how the case was resolved".into(),
        ));
    }
    refuse_controls("outcome", &outcome)?;
    let responsible = Party::parse(body.responsible.trim()).ok_or_else(|| {
        ApiError::BadRequest(
            "responsible must be shop, courier, buyer or undetermined (我方/快递/买家/待定)".into(),
        )
    })?;
    let bot = service.bot();
    let now = service.clock().now_ms();
    let result = blocking(&service, move |store| {
        let Some(handoff) = store.handoff(id)? else {
            return Ok(Err(AgentRefused::Missing));
        };
        let lang = store.conversation(&handoff.chat)?.memory.lang;
        let request = reply::template(bot.engine.knowledge_base(), "rating_request", lang, &[]);
        store.close(&Closing {
            handoff: id,
            agent: &agent.name,
            outcome: &outcome,
            responsible: responsible.as_str(),
            rating_request: &request,
            knowledge_version: &bot.version.hash,
            at_ms: now,
        })
    })
    .await?;
    match result {
        Ok(()) => Ok(Json(json!({ "id": id, "state": "closed" }))),
        Err(refusal) => Err(refused(id, refusal)),
    }
}

/// Hands the chat back to the bot: a waiting handoff by any agent, a claimed one only by its
/// holder (no agent takes a chat from another).
async fn release(
    State(service): State<Arc<Service>>,
    SignedIn(agent): SignedIn,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let bot = service.bot();
    let now = service.clock().now_ms();
    let released = blocking(&service, move |store| {
        let Some(handoff) = store.handoff(id)? else {
            return Ok(Err(ApiError::NotFound(format!("no handoff {id}"))));
        };
        if let Some(holder) = handoff
            .agent
            .filter(|h| handoff.state == "claimed" && *h != agent.name)
        {
            return Ok(Err(ApiError::Conflict(format!(
                "handoff {id} is held by {holder}"
            ))));
        }
        let lang = store.conversation(&handoff.chat)?.memory.lang;
        let notice = reply::template(bot.engine.knowledge_base(), "released", lang, &[]);
        if store.release(id, &notice, &bot.version.hash, now)? {
            Ok(Ok(()))
        } else {
            Ok(Err(ApiError::Conflict(format!(
                "handoff {id} is already closed or released"
            ))))
        }
    })
    .await?;
    released.map(|()| Json(json!({ "id": id, "state": "released" })))
}

#[derive(Deserialize, Default)]
struct CaseFilter {
    /// ISO week, `2026-W48`.
    week: Option<String>,
    kind: Option<String>,
    responsible: Option<String>,
}

/// ISO week of a moment in the shop's time zone (`2026-W48`); weeks start on Monday.
fn iso_week(at_ms: i64) -> String {
    use chrono::Datelike;
    let moment = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default()
        + chrono::Duration::hours(8);
    let week = moment.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

async fn filtered_cases(
    service: &Arc<Service>,
    filter: CaseFilter,
) -> Result<Vec<CaseRecord>, ApiError> {
    let responsible = match filter.responsible.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            Party::parse(text)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "responsible must be shop, courier, buyer or undetermined".into(),
                    )
                })?
                .as_str(),
        ),
    };
    let cases = blocking(service, |store| store.cases()).await?;
    Ok(cases
        .into_iter()
        .filter(|c| {
            filter
                .week
                .as_deref()
                .is_none_or(|w| w.is_empty() || iso_week(c.created_ms) == w)
        })
        .filter(|c| {
            filter
                .kind
                .as_deref()
                .is_none_or(|k| k.is_empty() || c.kind == k)
        })
        .filter(|c| responsible.is_none_or(|r| c.responsible == r))
        .collect())
}

async fn cases(
    State(service): State<Arc<Service>>,
    _: SignedIn,
    Query(filter): Query<CaseFilter>,
) -> Result<Json<Value>, ApiError> {
    let cases = filtered_cases(&service, filter).await?;
    let listing: Vec<Value> = cases
        .iter()
        .map(|c| {
            let mut value = case_json(c);
            value["week"] = json!(iso_week(c.created_ms));
            value
        })
        .collect();
    Ok(Json(json!({ "cases": listing })))
}

/// The weekly review's spreadsheet: one case per row.
async fn cases_csv(
    State(service): State<Arc<Service>>,
    _: SignedIn,
    Query(filter): Query<CaseFilter>,
) -> Result<Response, ApiError> {
    let cases = filtered_cases(&service, filter).await?;
    let mut csv = String::from("id,week,created_at,chat,kind,order,remedy,responsible,status,outcome,agent,description,evidence\n");
    for case in &cases {
        let evidence: Vec<&str> = case.evidence.iter().map(|a| a.id.as_str()).collect();
        let fields = [
            case.id.to_string(),
            iso_week(case.created_ms),
            rfc3339(case.created_ms),
            case.chat.to_string(),
            case.kind.clone(),
            case.order.clone().unwrap_or_default(),
            case.remedy.clone().unwrap_or_default(),
            case.responsible.clone(),
            case.status.clone(),
            case.outcome.clone().unwrap_or_default(),
            case.agent.clone().unwrap_or_default(),
            case.description.clone().unwrap_or_default(),
            evidence.join(" "),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cases.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// Quotes a CSV field; a leading =, +, - or @ is prefixed with ' so a spreadsheet never runs
/// a buyer's text as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The questions the bot could not place, grouped by similarity, biggest group first.
async fn unanswered(
    State(service): State<Arc<Service>>,
    _: SignedIn,
) -> Result<Json<Value>, ApiError> {
    let messages = blocking(&service, |store| store.unanswered(UNANSWERED_WINDOW)).await?;
    let bot = service.bot();
    let normalizer = bot.engine.normalizer();
    // Single-link grouping on shared characters: enough for a shop's daily volume, and
    // robust to the word-order changes that defeat edit distance.
    let mut groups: Vec<Group> = Vec::new();
    for message in &messages {
        let characters: BTreeSet<char> = normalizer
            .normalize(&message.text)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let home = groups.iter_mut().find(|(members, _, _)| {
            members
                .iter()
                .any(|m| dice(m, &characters) >= GROUP_SIMILARITY)
        });
        match home {
            Some((members, texts, _)) => {
                members.push(characters);
                texts.push(&message.text);
            }
            None => groups.push((vec![characters], vec![&message.text], message.at_ms)),
        }
    }
    groups.sort_by_key(|(_, texts, _)| std::cmp::Reverse(texts.len()));
    let listing: Vec<Value> = groups
        .iter()
        .map(|(_, texts, last)| {
            let ranking = bot.engine.ask(texts[0]);
            json!({
                "text": texts[0],
                "count": texts.len(),
                "examples": texts.iter().take(10).collect::<Vec<_>>(),
                "last_at": rfc3339(*last),
                "candidates": ranking.candidates,
            })
        })
        .collect();
    Ok(Json(json!({ "groups": listing })))
}

/// Unplaced questions alike: each member's characters, the texts, the newest time.
type Group<'a> = (Vec<BTreeSet<char>>, Vec<&'a str>, i64);

/// Ratings of one agent: count, sum, and (count, sum) per week.
type Tally = (u32, u32, BTreeMap<String, (u32, u32)>);

/// Dice coefficient of two character sets, in [0, 1].
fn dice(a: &BTreeSet<char>, b: &BTreeSet<char>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    2.0 * a.intersection(b).count() as f64 / (a.len() + b.len()) as f64
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleBody {
    entry: String,
    text: String,
}

/// An editor adds a question as a new example of an entry; it goes live like a file edit.
async fn add_example(
    State(service): State<Arc<Service>>,
    SignedIn(agent): SignedIn,
    body: Result<Json<ExampleBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    if agent.role != "editor" {
        return Err(ApiError::Forbidden(
            "only agents with the editor role may change the knowledge base".into(),
        ));
    }
    let Json(body) = body?;
    let text = body.text.trim().to_string();
    if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "an example is 1–200 characters on one line".into(),
        ));
    }
    let worker = service.clone();
    let result =
        tokio::task::spawn_blocking(move || worker.add_example(&body.entry, &text, &agent.name))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(version) => Ok(Json(json!({ "added": true, "knowledge_version": version }))),
        Err(EditRefused::Unknown(message)) => Err(ApiError::NotFound(message)),
        Err(EditRefused::Invalid(problems)) => Err(ApiError::Unprocessable(format!(
            "the edit was refused: {problems}"
        ))),
        Err(EditRefused::Conflict(message)) => Err(ApiError::Conflict(message)),
        Err(EditRefused::Failed(message)) => Err(ApiError::Internal(message)),
    }
}

/// Satisfaction per agent, overall and per week.
async fn ratings(
    State(service): State<Arc<Service>>,
    _: SignedIn,
) -> Result<Json<Value>, ApiError> {
    let ratings = blocking(&service, |store| store.ratings()).await?;
    let mut by_agent: BTreeMap<&str, Tally> = BTreeMap::new();
    for rating in &ratings {
        let entry = by_agent.entry(&rating.agent).or_default();
        entry.0 += 1;
        entry.1 += u32::from(rating.score);
        let week = entry.2.entry(iso_week(rating.at_ms)).or_default();
        week.0 += 1;
        week.1 += u32::from(rating.score);
    }
    let average =
        |count: u32, sum: u32| (f64::from(sum) / f64::from(count.max(1)) * 100.0).round() / 100.0;
    let listing: Vec<Value> = by_agent
        .iter()
        .map(|(agent, (count, sum, weeks))| {
            let weeks: Vec<Value> = weeks
                .iter()
                .map(|(week, (n, s))| json!({ "week": week, "ratings": n, "average": average(*n, *s) }))
                .collect();
            json!({ "agent": agent, "ratings": count, "average": average(*count, *sum), "weeks": weeks })
        })
        .collect();
    Ok(Json(json!({ "agents": listing })))
}

/// The knowledge base's approved answers, for inserting into a reply ("quick phrases").
async fn answers(State(service): State<Arc<Service>>, _: SignedIn) -> Json<Value> {
    let bot = service.bot();
    let listing: Vec<Value> = bot
        .engine
        .knowledge_base()
        .entries
        .iter()
        .map(|e| json!({ "id": e.id, "title": e.title, "title_en": e.title_en, "answer": e.answer, "answer_en": e.answer_en }))
        .collect();
    Json(json!({ "answers": listing }))
}

/// The after-sales flows from `dialogs/`: their titles (the page names a case's kind so) and
/// each choice step's options as the buyer was offered them, so the page shows what a buyer
/// picked in words (`remedy: exchange` → 换货 / Exchange), never the recorded code.
async fn flows(State(service): State<Arc<Service>>, _: SignedIn) -> Json<Value> {
    let bot = service.bot();
    let listing: Vec<Value> = bot.flows.flows.iter().map(flow_json).collect();
    Json(json!({ "flows": listing }))
}

fn flow_json(flow: &Flow) -> Value {
    let fields: serde_json::Map<String, Value> = flow
        .steps
        .iter()
        .map(|step| {
            let label = json!({ "zh": step.label.zh, "en": step.label.en });
            (step.id.clone(), label)
        })
        .collect();
    let mut options = serde_json::Map::new();
    for step in &flow.steps {
        let Collect::Choice(choices) = &step.collect else {
            continue;
        };
        let labels: serde_json::Map<String, Value> = choices
            .iter()
            .filter_map(|choice| {
                let label = step.option_label(&choice.value)?;
                Some((
                    choice.value.clone(),
                    json!({ "zh": label.zh, "en": label.en }),
                ))
            })
            .collect();
        options.insert(step.id.clone(), Value::Object(labels));
    }
    json!({
        "id": flow.id,
        "title": flow.title,
        "title_en": flow.title_en,
        "fields": fields,
        "options": options,
    })
}

/// The knowledge version serving, and why the last edit was refused, if it was.
async fn knowledge(State(service): State<Arc<Service>>, _: SignedIn) -> Json<Value> {
    Json(json!({
        "version": service.bot().version,
        "last_refused_reload": service.last_reload_problem(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn weeks_are_iso_weeks_in_beijing_time() {
        // 2026-11-22 23:30 Beijing is a Sunday (week 47); 2026-11-23 00:30 is Monday (week 48).
        assert_eq!(
            iso_week(1_795_392_000_000 - 30 * 60_000 - 8 * 3_600_000),
            "2026-W47"
        );
        assert_eq!(
            iso_week(1_795_392_000_000 + 30 * 60_000 - 8 * 3_600_000),
            "2026-W48"
        );
    }
}
