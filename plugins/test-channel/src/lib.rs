//! A channel plugin for the plugin host's tests: a simplified Messenger.
//!
//! - `verify`: `GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=X` answers 200 with `X`
//!   when `T` is the `verify_token` setting, 403 otherwise; any other request is not a
//!   handshake (`None`).
//! - `parse`: the body must be signed, `x-signature: sha256=<hex>` being HMAC-SHA256 of the raw
//!   body keyed by secret `channel_secret` (checked by the host: the plugin never holds it). A
//!   missing or wrong signature is `invalid-input` and nothing is parsed; a secret that is not
//!   configured is `misconfigured`. The body is
//!   `{"events": [{"user", "id", "ts", "text"} | {"user", "id", "ts", "payload", "title"} |
//!   {"user", "id", "ts", "delivery": true}]}`: text, quick replies, and delivery receipts
//!   (acknowledged, not routed). Malformed JSON, or an event of none of these shapes, is
//!   `invalid-input`. A body may also ask for misbehaviour, after the signature check, to test
//!   how the host runs parses on warm instances: `"misbehave": "count"` answers one text event
//!   whose text is how many parses this instance has run (its memory keeps the count), `"spin"`
//!   never returns, `"trap"` panics, `"grow"` keeps 12 MiB of memory and parses normally.
//! - `send`: `POST {base_url}/messages` with `{"to", "text", "quick_replies": [{"title",
//!   "payload"}]}`, the secret `channel_token` as bearer token and the call's idempotency key as
//!   `Idempotency-Key`; the answer's `message_id` is the delivery's. 408/429/5xx are retryable,
//!   401/403 misconfigured, other 4xx permanent.

use influxify_plugin_sdk::channel::{
    Channel, Delivery, HttpReply, HttpRequest, InboundEvent, InboundKind, OutboundMessage,
};
use influxify_plugin_sdk::http::Placement;
use influxify_plugin_sdk::{Context, Error, config, crypto, http, warn};
use serde::Deserialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The webhook's body.
#[derive(Deserialize)]
struct Webhook {
    events: Vec<Event>,
    #[serde(default)]
    misbehave: Option<String>,
}

/// Parses this instance has run.
static PARSES: AtomicU32 = AtomicU32::new(0);

/// Memory `grow` keeps.
static KEPT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// One event of a webhook: its kind is told by which of `text`, `payload` or `delivery` it has.
#[derive(Deserialize)]
struct Event {
    user: String,
    id: String,
    ts: u64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    delivery: bool,
}

impl Event {
    /// The routed event, or `None` for a delivery receipt.
    fn into_inbound(self) -> Result<Option<InboundEvent>, Error> {
        let kind = match (self.text, self.payload) {
            _ if self.delivery => return Ok(None),
            (Some(text), None) => InboundKind::Text(text),
            (None, Some(payload)) => {
                let title = self.title.unwrap_or_else(|| payload.clone());
                InboundKind::QuickReply((title, payload))
            }
            _ => {
                return Err(Error::invalid_input(format!(
                    "event `{}` must have exactly one of `text`, `payload` or `delivery`",
                    self.id
                )));
            }
        };
        Ok(Some(InboundEvent {
            user_id: self.user,
            event_id: self.id,
            timestamp_ms: self.ts,
            kind,
            account: None,
        }))
    }
}

/// What the provider answers to a send.
#[derive(Deserialize)]
struct Sent {
    #[serde(default)]
    message_id: Option<String>,
}

/// The channel.
struct TestChannel;

impl Channel for TestChannel {
    fn verify(request: HttpRequest) -> Option<HttpReply> {
        if !request.method.eq_ignore_ascii_case("GET")
            || request.query_param("hub.mode") != Some("subscribe")
        {
            return None;
        }
        let Some(expected) = config::get("verify_token") else {
            warn!("the setting `verify_token` is not set: handshakes are refused");
            return Some(HttpReply::text(403, "forbidden"));
        };
        if request.query_param("hub.verify_token") != Some(expected.as_str()) {
            return Some(HttpReply::text(403, "forbidden"));
        }
        Some(match request.query_param("hub.challenge") {
            Some(challenge) => HttpReply::text(200, challenge),
            None => HttpReply::text(400, "missing hub.challenge"),
        })
    }

    fn parse(request: HttpRequest) -> Result<Vec<InboundEvent>, Error> {
        let Some(header) = request.header("x-signature") else {
            return Err(Error::invalid_input(
                "the request has no x-signature header",
            ));
        };
        let Some(signature) = header.strip_prefix("sha256=").and_then(crypto::from_hex) else {
            return Err(Error::invalid_input(
                "the x-signature header is not `sha256=<hex>`",
            ));
        };
        if !crypto::verify_hmac_sha256("channel_secret", &request.body, &signature)? {
            return Err(Error::invalid_input(
                "the signature does not match the body",
            ));
        }
        let webhook: Webhook = serde_json::from_slice(&request.body)
            .map_err(|e| Error::invalid_input(format!("the body is not a webhook: {e}")))?;
        let parses = PARSES.fetch_add(1, Ordering::Relaxed) + 1;
        match webhook.misbehave.as_deref() {
            None => {}
            Some("count") => {
                return Ok(vec![InboundEvent {
                    user_id: "counter".into(),
                    event_id: format!("parse-{parses}"),
                    timestamp_ms: 0,
                    kind: InboundKind::Text(parses.to_string()),
                    account: None,
                }]);
            }
            Some("spin") => loop {
                std::hint::black_box(parses);
            },
            Some("trap") => panic!("test-channel panics on purpose"),
            Some("grow") => {
                if let Ok(mut kept) = KEPT.lock() {
                    *kept = vec![1; 12 * 1024 * 1024];
                }
            }
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "unknown misbehaviour `{other}`"
                )));
            }
        }
        let mut events = Vec::with_capacity(webhook.events.len());
        for event in webhook.events {
            events.extend(event.into_inbound()?);
        }
        Ok(events)
    }

    fn send(message: OutboundMessage, ctx: &Context) -> Result<Delivery, Error> {
        let base = config::require("base_url")?;
        let quick_replies: Vec<serde_json::Value> = message
            .quick_replies
            .iter()
            .map(|q| serde_json::json!({ "title": q.title, "payload": q.payload }))
            .collect();
        let body = serde_json::json!({
            "to": message.user_id,
            "text": message.text,
            "quick_replies": quick_replies,
        });
        let response = http::post(format!("{}/messages", base.trim_end_matches('/')))
            .secret("channel_token", Placement::Bearer)
            .header("Idempotency-Key", ctx.idempotency_key())
            .json(&body)
            .send()?
            .error_for_status()?;
        let sent: Sent = response.json()?;
        Ok(Delivery {
            message_id: sent.message_id,
        })
    }
}

influxify_plugin_sdk::channel!(TestChannel);
