//! The playground: a page for bot designers at `/playground`. It draws the flows of the
//! published version, chats with the bot through the web chat channel, highlights the node
//! the conversation is at, shows its variables, and starts it over.
//!
//! Routes: `GET /playground` (the page, its script and style beside it, all embedded: the
//! page loads nothing from elsewhere), `GET /playground/api/flows[?version=HASH]` (the flows
//! laid out for drawing, `drawing`), `GET /playground/api/state` and
//! `POST /playground/api/reset` (the web chat session's conversation, authenticated with its
//! token as `?token=` or `Authorization: Bearer`). The API answers in JSON, errors as
//! `{"error": "..."}`.

mod drawing;
mod layout;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use influxify_core::conversation::{Status, Waiting};
use influxify_runtime::RuntimeError;
use influxify_store::{ConversationKey, StoreError, StoredConversation};
use serde::Serialize;

use crate::AppState;
use crate::reply::{error, json};
use crate::webchat::CHANNEL;

pub use drawing::{BoxKind, Drawing, DrawnBox, DrawnEdge};

const PAGE: &str = include_str!("playground/index.html");
const SCRIPT: &str = include_str!("playground/app.js");
const STYLE: &str = include_str!("playground/style.css");

/// The page talks only to this server: no script, style or connection goes elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The playground's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/playground", get(|| async { asset(PAGE, "text/html") }))
        .route(
            "/playground/app.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .route(
            "/playground/style.css",
            get(|| async { asset(STYLE, "text/css") }),
        )
        .route("/playground/api/flows", get(flows))
        .route("/playground/api/state", get(state))
        .route("/playground/api/reset", post(reset))
}

/// One of the embedded files, never cached stale: a new build serves a new page.
fn asset(body: &'static str, mime: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{mime}; charset=utf-8")),
            (header::CACHE_CONTROL, "no-cache".into()),
            (
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY.into(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        ],
        body,
    )
        .into_response()
}

/// Why a playground request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No web chat token came with the request.
    #[error(
        "a web chat session token is required (`?token=TOKEN` or `Authorization: Bearer TOKEN`); open a session with POST /webchat/sessions"
    )]
    NoToken,
    /// The token is not one this server signed.
    #[error(
        "the web chat session token is not valid; open a new session with POST /webchat/sessions"
    )]
    BadToken,
    /// Nothing is published yet.
    #[error("no flow version is published yet")]
    NoVersion,
    /// The asked-for version is not stored.
    #[error("flow version `{0}` is not stored")]
    UnknownVersion(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime refused or failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NoToken | ApiError::BadToken => StatusCode::UNAUTHORIZED,
            ApiError::NoVersion | ApiError::UnknownVersion(_) => StatusCode::NOT_FOUND,
            ApiError::Runtime(RuntimeError::Refused(_)) => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::Runtime(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Store(_) | ApiError::Runtime(RuntimeError::Store(_)) => {
                // Store errors name keys and files: they go to the log, not to the page.
                tracing::error!(error = %self, "a playground request failed");
                error(status, "the store could not be read; see the server's log")
            }
            _ => error(status, &self.to_string()),
        }
    }
}

/// `value` as a 200 JSON answer, or the error's answer.
fn respond<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(err) => err.into_response(),
    }
}

// ---- flows ---------------------------------------------------------------------------------

/// The flows of one version, laid out for drawing.
#[derive(Debug, Serialize)]
pub struct FlowsView {
    /// The version's content hash.
    pub version: String,
    /// Whether it is the newest version (new conversations start on it).
    pub head: bool,
    /// The flow the page shows first: the bot's entry flow (or the first, if this version has
    /// no such flow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The size of every box of the drawings, in pixels: `[width, height]`.
    pub box_size: [u32; 2],
    /// The flows, in the order they were published.
    pub flows: Vec<Drawing>,
}

/// `GET /playground/api/flows[?version=HASH]`: the flows of the newest version, or of `HASH`
/// (the version a conversation is pinned to).
async fn flows(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    respond(flows_view(&app, query.get("version").map(String::as_str)))
}

fn flows_view(app: &AppState, version: Option<&str>) -> Result<FlowsView, ApiError> {
    let registry = app.runtime.registry();
    let head = registry.head()?.ok_or(ApiError::NoVersion)?;
    let version = version.unwrap_or(&head).to_string();
    if app.runtime.store().version(&version)?.is_none() {
        return Err(ApiError::UnknownVersion(version));
    }
    let set = registry.flows(&version)?;
    Ok(FlowsView {
        head: version == head,
        version,
        entry: set
            .get(app.runtime.entry_flow())
            .map(|flow| flow.id.clone())
            .or_else(|| set.iter().next().map(|flow| flow.id.clone())),
        box_size: [layout::NODE_WIDTH, layout::NODE_HEIGHT],
        flows: set
            .iter()
            .map(|flow| drawing::draw(&flow.source, &flow.file))
            .collect(),
    })
}

// ---- session state -------------------------------------------------------------------------

/// Where a web chat session's conversation is.
#[derive(Debug, Serialize)]
pub struct StateView {
    /// The web chat user.
    pub user: String,
    /// Whether the conversation exists (the user wrote, or the page sent a profile).
    pub started: bool,
    /// The flow version it is pinned to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The flow it started in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The flow it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The node it is at (none before the first message and after a reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `new`, `active`, `handed_off`, `ended` or `failed`.
    pub status: &'static str,
    /// Why it failed, or why it is paused (a send that failed for good).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it waits for: `reply`, `plugin`, `timer` or `operator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<&'static str>,
    /// Its variables (the user's profile as `user`).
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// The subflow calls it will return from, outermost first, as `flow:node`.
    pub stack: Vec<String>,
    /// Turns taken so far.
    pub turns: u64,
}

impl StateView {
    fn of(user: String, record: Option<StoredConversation>) -> Self {
        let Some(record) = record else {
            return StateView {
                user,
                started: false,
                version: None,
                entry: None,
                flow: None,
                node: None,
                status: "new",
                error: None,
                waiting: None,
                variables: serde_json::Map::new(),
                stack: Vec::new(),
                turns: 0,
            };
        };
        let state = record.state;
        let (status, failure) = match state.status {
            Status::Active => ("active", None),
            Status::HandedOff => ("handed_off", None),
            Status::Ended => ("ended", None),
            Status::Failed { error } => ("failed", Some(error)),
        };
        StateView {
            user,
            started: true,
            version: Some(record.version),
            entry: Some(state.entry),
            flow: Some(state.flow),
            node: state.node,
            status,
            error: failure.or(record.paused),
            waiting: state.waiting.as_ref().map(waiting),
            variables: state.vars,
            stack: state
                .stack
                .iter()
                .map(|f| format!("{}:{}", f.flow, f.node))
                .collect(),
            turns: record.turns,
        }
    }
}

fn waiting(waiting: &Waiting) -> &'static str {
    match waiting {
        Waiting::Reply { .. } => "reply",
        Waiting::Plugin { .. } => "plugin",
        Waiting::Timer { .. } => "timer",
        Waiting::Operator => "operator",
    }
}

/// The web chat user a request's token belongs to.
fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| query.get("token").map(String::as_str))
        .ok_or(ApiError::NoToken)?;
    app.webchat.user_of(token).ok_or(ApiError::BadToken)
}

/// `GET /playground/api/state?token=TOKEN`: where the session's conversation is.
async fn state(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    respond(state_view(&app, &headers, &query))
}

fn state_view(
    app: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<StateView, ApiError> {
    let user = authenticate(app, headers, query)?;
    let key = ConversationKey::new(CHANNEL, user.clone());
    let record = app.runtime.store().conversation(&key)?;
    Ok(StateView::of(user, record))
}

// ---- reset ---------------------------------------------------------------------------------

/// What a reset did.
#[derive(Debug, Serialize)]
pub struct ResetView {
    /// Whether there was a conversation to start over (it is, once its writer runs).
    pub reset: bool,
}

/// `POST /playground/api/reset?token=TOKEN`: starts the session's conversation over
/// (variables forgotten, profile kept); the next message starts the entry flow again.
async fn reset(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    respond(reset_session(&app, &headers, &query).await)
}

async fn reset_session(
    app: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<ResetView, ApiError> {
    let user = authenticate(app, headers, query)?;
    let key = ConversationKey::new(CHANNEL, user);
    match app.runtime.reset(&key).await {
        Ok(()) => Ok(ResetView { reset: true }),
        // Nothing said yet: there is nothing to start over.
        Err(RuntimeError::UnknownConversation(_)) => Ok(ResetView { reset: false }),
        Err(err) => Err(err.into()),
    }
}
