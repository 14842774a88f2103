//! The HTTP front of the engine (the only crate that knows HTTP): channel webhooks at
//! `/channels/{channel}/webhook` go through the channel's plugin (handshake, signature check,
//! parsing) into the durable runtime, and are answered only once the events are durable;
//! replies go out through the same plugin (`effects`). The web chat channel (`webchat`) is
//! first-party: sessions, posted messages and replies streamed as server-sent events. The admin
//! API (`/admin/v1`, `/openapi.json`), the privacy operations, metrics (`/metrics`, `/healthz`,
//! `/readyz`) and the bot designer's playground (`/playground`) are served beside them.

pub mod admin;
pub mod audit;
pub mod background;
pub mod config;
mod effects;
mod files;
mod inbound;
pub mod metrics;
pub mod openapi;
pub mod playground;
pub mod privacy;
mod reply;
pub mod secrets;
pub mod testing;
pub mod transcripts;
pub mod webchat;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use influxify_plugin_host::PluginHost;
use influxify_runtime::Runtime;

use crate::config::ServerSettings;

pub use effects::ChannelEffects;
pub use metrics::Metrics;
pub use webchat::WebChat;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The durable runtime.
    pub runtime: Runtime,
    /// The plugins (channels among them).
    pub plugins: Arc<PluginHost>,
    /// The web chat channel's sessions and reply streams.
    pub webchat: Arc<WebChat>,
    /// The server's measurements.
    pub metrics: Arc<Metrics>,
    /// How effects reach users (in-chat command confirmations go out this way too).
    pub effects: Arc<ChannelEffects>,
    /// Admin keys, secrets, the plugins directory.
    pub admin: Arc<admin::Admin>,
    /// Export, erasure, restriction, retention, the audit log.
    pub privacy: Arc<privacy::Privacy>,
    /// Test mode (`[testing]`), when it is on: never in production.
    pub testing: Option<Arc<testing::Testing>>,
    /// How long the bot keeps quiet after a person answered a user from the channel, in ms
    /// (`[bot] human_silence`).
    pub human_silence_ms: u64,
}

/// The routes, with the body limit and request timeout of `settings`.
pub fn router(state: AppState, settings: &ServerSettings) -> Router {
    let timeout = settings.request_timeout.std();
    let bounded = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/channels/{channel}/webhook",
            get(webhook::verify).post(webhook::receive),
        )
        .route("/webchat/sessions", post(webchat::open_session))
        .route("/webchat/messages", post(webchat::post_message))
        .merge(admin::routes())
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => reply::error(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "the request took too long; try again",
                    ),
                }
            },
        ));
    // The event stream stays open as long as the page listens.
    let streams = Router::new().route("/webchat/events", get(webchat::events));
    let bounded = if settings.playground {
        bounded.merge(playground::routes())
    } else {
        bounded
    };
    let bounded = if state.testing.is_some() {
        bounded.merge(testing::routes())
    } else {
        bounded
    };
    bounded
        .merge(streams)
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.body_limit_bytes,
        ))
        .with_state(state)
}

/// `GET /readyz`: ready while the runtime accepts writes.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.runtime.broken() {
        None => (axum::http::StatusCode::OK, "ready").into_response(),
        Some(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}"),
        )
            .into_response(),
    }
}
