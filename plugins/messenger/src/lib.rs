//! The built-in Facebook Messenger channel.
//!
//! - `verify`: the webhook's GET handshake. `?hub.mode=subscribe&hub.verify_token=T&hub.challenge=X`
//!   answers 200 with `X`, byte for byte, when `T` is the `verify_token` setting; any other GET
//!   carrying `hub.*` parameters answers 403. Requests without them are not handshakes (`None`).
//! - `parse`: the body must be signed (`X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the
//!   raw body keyed by the app secret `messenger_app_secret`, checked by the host: the plugin
//!   never holds it); a missing or wrong signature is `invalid-input` and nothing is parsed.
//!   Every entry and every event becomes an event: text, quick-reply taps, postbacks,
//!   attachments, referrals ([`webhook`]). Echoes, receipts, `standby` and the dashboard's
//!   `changes` are acknowledged and not routed.
//! - `send`: the Send API, `POST {graph_base}/{api_version}/me/messages` with the page token
//!   `messenger_page_token` added by the host as `access_token` ([`send`]); `act`: a sender
//!   action (a typing indicator, a seen mark) through the same endpoint, without waiting;
//!   `profile`: the User Profile API, `GET {graph_base}/{api_version}/{psid}?fields=...`, only
//!   the fields asked for.

mod hash;
mod send;
mod split;
mod webhook;

use influxify_plugin_sdk::channel::{
    Channel, Delivery, HttpReply, HttpRequest, InboundEvent, OutboundMessage, SenderAction,
};
use influxify_plugin_sdk::{Context, Error, config, warn};

/// The channel.
struct Messenger;

impl Channel for Messenger {
    fn verify(request: HttpRequest) -> Option<HttpReply> {
        verify(&request)
    }

    fn parse(request: HttpRequest) -> Result<Vec<InboundEvent>, Error> {
        webhook::parse(&request)
    }

    fn send(message: OutboundMessage, ctx: &Context) -> Result<Delivery, Error> {
        send::send(&message, ctx)
    }

    fn act(
        user_id: String,
        account: Option<String>,
        action: SenderAction,
        _ctx: &Context,
    ) -> Result<(), Error> {
        send::act(&user_id, account.as_deref(), action)
    }

    fn profile(
        user_id: String,
        account: Option<String>,
        fields: Vec<String>,
        _ctx: &Context,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        send::profile(&user_id, account.as_deref(), &fields)
    }
}

influxify_plugin_sdk::channel!(Messenger);

/// The handshake Meta makes when the webhook is set up.
fn verify(request: &HttpRequest) -> Option<HttpReply> {
    let handshake = request.method.eq_ignore_ascii_case("GET")
        && request
            .query
            .iter()
            .any(|(name, _)| name.starts_with("hub."));
    if !handshake {
        return None;
    }
    let forbidden = || Some(HttpReply::text(403, "forbidden"));
    let expected = config::get("verify_token").unwrap_or_default();
    if expected.is_empty() {
        warn!("the setting `verify_token` is not set: webhook handshakes are refused");
        return forbidden();
    }
    let token = request.query_param("hub.verify_token").unwrap_or_default();
    if request.query_param("hub.mode") != Some("subscribe") || !same(token, &expected) {
        return forbidden();
    }
    match request.query_param("hub.challenge") {
        Some(challenge) => Some(HttpReply::text(200, challenge)),
        None => forbidden(),
    }
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
