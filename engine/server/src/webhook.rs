//! Channel webhooks: a GET is a handshake the channel plugin answers; a POST is checked and
//! parsed by the plugin, its events ingested durably, and only then acknowledged with 200.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use influxify_core::Event;
use influxify_core::conversation::{Attachment, Referral, UserMessage};
use influxify_plugin_host::channel_types::{self, HttpRequest, InboundEvent, InboundKind};
use influxify_plugin_host::{Kind, PluginError};
use influxify_store::{ConversationKey, Inbound};

use crate::AppState;

/// Webhook parses wait here for one of the host's instance slots that effects leave free
/// ([`crate::effects::EFFECT_SLOTS`]), instead of failing as busy.
static WEBHOOK_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(
    influxify_plugin_host::MAX_CONCURRENT_CALLS as usize - crate::effects::EFFECT_SLOTS,
);

fn request(
    method: &str,
    query: HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> HttpRequest {
    HttpRequest {
        method: method.to_string(),
        path: String::new(),
        query: query.into_iter().collect(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// Whether `channel` is a loaded channel plugin.
fn is_channel(state: &AppState, channel: &str) -> bool {
    state
        .plugins
        .plugin(channel)
        .is_some_and(|p| p.manifest().plugin.kind == Kind::Channel)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// `GET /channels/{channel}/webhook`: the channel's handshake.
pub async fn verify(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !is_channel(&state, &channel) {
        return text(StatusCode::NOT_FOUND, format!("no channel `{channel}`"));
    }
    let request = request("GET", query, &headers, &[]);
    let plugins = state.plugins.clone();
    let answer =
        tokio::task::spawn_blocking(move || plugins.channel_verify(&channel, &request)).await;
    match answer {
        Ok(Ok(Some(reply))) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::FORBIDDEN);
            (status, reply.body).into_response()
        }
        Ok(Ok(None)) => text(StatusCode::BAD_REQUEST, "not a handshake"),
        Ok(Err(err)) => failure(&err),
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// `POST /channels/{channel}/webhook`: events in, acknowledged once durable.
pub async fn receive(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_channel(&state, &channel) {
        return text(StatusCode::NOT_FOUND, format!("no channel `{channel}`"));
    }
    let started = std::time::Instant::now();
    let request = request("POST", query, &headers, &body);
    // Inline on the async worker: a parse takes tens of microseconds and the host stops it at
    // `WEBHOOK_TIME` (1 s), while a hand-off to the blocking pool cost more than the call
    // (measured: about 10% of the CPU in thread wake-ups at 9,000 requests/s).
    let parsed = {
        let _slot = WEBHOOK_SLOTS.acquire().await;
        state.plugins.channel_parse(&channel, &request)
    };
    let events = match parsed {
        Ok(events) => events,
        Err(err) => {
            state
                .metrics
                .webhook_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return failure(&err);
        }
    };
    let inbound: Vec<Inbound> = events
        .into_iter()
        .map(|e| to_inbound(&channel, e, state.human_silence_ms))
        .collect();
    match crate::inbound::accept(&state, inbound, started).await {
        Ok(_) => text(StatusCode::OK, "ok"),
        Err(err) => {
            tracing::error!(channel, error = %err, "webhook events could not be stored; the channel will redeliver");
            text(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// A plugin's refusal as an HTTP answer: a bad signature or payload is the sender's fault.
fn failure(err: &PluginError) -> Response {
    match err {
        PluginError::InvalidInput(why) => text(StatusCode::FORBIDDEN, why.clone()),
        PluginError::Misconfigured(why) => {
            tracing::error!(error = %why, "channel misconfigured");
            text(StatusCode::INTERNAL_SERVER_ERROR, "channel misconfigured")
        }
        other => text(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

/// A channel's referral as the runtime's.
fn referral(referral: channel_types::Referral) -> Referral {
    Referral {
        reference: referral.reference,
        source: referral.source,
        ad_id: referral.ad_id,
    }
}

/// A channel's event as the runtime's: a tap is its payload with its title beside it, an
/// attachment is never text, and a referral is context, never an answer.
fn to_inbound(channel: &str, event: InboundEvent, human_silence_ms: u64) -> Inbound {
    let message = match event.kind {
        InboundKind::PersonReplied => {
            return Inbound::new(
                ConversationKey::new(channel, event.user_id),
                event.event_id,
                match event.timestamp_ms {
                    0 => influxify_runtime::clock::now_ms(),
                    at => at,
                },
                Event::PersonReplied {
                    silence_ms: human_silence_ms,
                },
            );
        }
        InboundKind::Text(text) => UserMessage::text(text),
        InboundKind::QuickReply((title, payload)) => UserMessage::tap(title, payload),
        InboundKind::Postback(postback) => UserMessage {
            referral: postback.referral.map(referral),
            ..UserMessage::tap(postback.title, postback.payload)
        },
        InboundKind::Attachments((text, attachments)) => UserMessage {
            text,
            attachments: attachments
                .into_iter()
                .map(|a| Attachment {
                    kind: a.kind,
                    url: a.url,
                    title: a.title,
                    latitude: a.coordinates.map(|c| c.0),
                    longitude: a.coordinates.map(|c| c.1),
                    sticker_id: a.sticker_id,
                })
                .collect(),
            ..UserMessage::default()
        },
        InboundKind::Referral(r) => UserMessage {
            referral: Some(referral(r)),
            ..UserMessage::default()
        },
    };
    // The contract: a channel's timestamp is the provider's, the same on every redelivery;
    // 0 when the provider gives none, and then the host's clock stands in.
    let provider_time = event.timestamp_ms != 0;
    let account = event.account;
    let inbound = Inbound::new(
        ConversationKey::new(channel, event.user_id),
        event.event_id,
        if provider_time {
            event.timestamp_ms
        } else {
            influxify_runtime::clock::now_ms()
        },
        Event::User(message),
    )
    .with_account(account);
    if provider_time {
        inbound.with_provider_time()
    } else {
        inbound
    }
}
