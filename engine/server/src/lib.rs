//! The HTTP front of the engine (the only crate that knows HTTP): channel webhooks at
//! `/channels/{channel}/webhook` go through the channel's plugin (handshake, signature check,
//! parsing) into the durable runtime, and are answered only once the events are durable;
//! replies go out through the same plugin (`effects`). The web chat channel (`webchat`) is
//! first-party: sessions, posted messages and replies streamed as server-sent events.
//! `/healthz` says the process is up.
//!
//! Status: the first piece of `influxify serve` (issue 6 brings configuration, the admin API,
//! metrics, privacy operations and the playground).

mod effects;
mod reply;
pub mod webchat;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use influxify_plugin_host::PluginHost;
use influxify_runtime::Runtime;

pub use effects::ChannelEffects;
pub use webchat::WebChat;

/// The largest webhook body accepted, in bytes (Messenger batches stay far below).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The durable runtime.
    pub runtime: Runtime,
    /// The plugins (channels among them).
    pub plugins: Arc<PluginHost>,
    /// The web chat channel's sessions and reply streams.
    pub webchat: Arc<WebChat>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/channels/{channel}/webhook",
            get(webhook::verify).post(webhook::receive),
        )
        .route("/webchat/sessions", post(webchat::open_session))
        .route("/webchat/messages", post(webchat::post_message))
        .route("/webchat/events", get(webchat::events))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
