//! Channel plugins: webhooks in, messages out. Implement [`Channel`] for a type and export it
//! with [`channel!`](crate::channel!); the crate's manifest says `kind = "channel"`.
//!
//! - [`Channel::verify`] answers a provider's handshake (Messenger's `GET` verification);
//! - [`Channel::parse`] checks a webhook's signature ([`crypto`](crate::crypto)) and turns it
//!   into [`InboundEvent`]s;
//! - [`Channel::send`] delivers an [`OutboundMessage`] (with [`http`](crate::http)).
//!
//! ```no_run
//! use influxify_plugin_sdk::channel::*;
//! use influxify_plugin_sdk::{Context, Error, crypto, http};
//!
//! struct Hooks;
//!
//! impl Channel for Hooks {
//!     fn parse(request: HttpRequest) -> Result<Vec<InboundEvent>, Error> {
//!         let signature = request.header("x-signature").and_then(crypto::from_hex);
//!         let signed = signature.is_some_and(|s| {
//!             crypto::verify_hmac_sha256("hooks_secret", &request.body, &s).unwrap_or(false)
//!         });
//!         if !signed {
//!             return Err(Error::invalid_input("bad signature"));
//!         }
//!         let text = String::from_utf8_lossy(&request.body).into_owned();
//!         Ok(vec![InboundEvent {
//!             user_id: request.query_param("user").unwrap_or_default().to_string(),
//!             event_id: crypto::to_hex(&request.body[..request.body.len().min(16)]),
//!             // The provider's own time, the same on a redelivery; 0 if it gives none
//!             // (never `clock::now_ms()`: the host finds redeliveries by this time).
//!             timestamp_ms: request
//!                 .query_param("ts")
//!                 .and_then(|ts| ts.parse().ok())
//!                 .unwrap_or(0),
//!             kind: InboundKind::Text(text),
//!             account: None,
//!         }])
//!     }
//!
//!     fn send(message: OutboundMessage, _ctx: &Context) -> Result<Delivery, Error> {
//!         http::post("https://hooks.example.com/send")
//!             .secret("hooks_token", http::Placement::Bearer)
//!             .json(&serde_json::json!({ "to": message.user_id, "text": message.text }))
//!             .send()?
//!             .error_for_status()?;
//!         Ok(Delivery { message_id: None })
//!     }
//! }
//!
//! influxify_plugin_sdk::channel!(Hooks);
//! ```

use crate::Context;
use crate::Error;
use crate::bindings::influxify::plugin::types::{CallContext, Error as WitError};
use crate::channel_bindings::exports::influxify::plugin::channel::Guest;

pub use crate::channel_bindings::exports::influxify::plugin::channel::{
    Attachment, Button, Delivery, HttpReply, HttpRequest, InboundEvent, InboundKind, Origin,
    OutboundMessage, Postback, QuickReply, Referral, SenderAction,
};

/// A channel: what a channel plugin implements. Export it with
/// [`channel!`](crate::channel!).
pub trait Channel {
    /// Answers a handshake (Messenger's `GET` verification); `None` when the request is not one
    /// (the default).
    fn verify(request: HttpRequest) -> Option<HttpReply> {
        let _ = request;
        None
    }

    /// Checks the request's signature and turns it into events (possibly none: deliveries,
    /// reads, echoes are acknowledged but not routed). A bad signature is an error and nothing
    /// is processed.
    fn parse(request: HttpRequest) -> Result<Vec<InboundEvent>, Error>;

    /// Delivers one message. Never sleeps: a typing pause is the engine's (see
    /// [`Channel::act`]).
    fn send(message: OutboundMessage, ctx: &Context) -> Result<Delivery, Error>;

    /// Shows a typing indicator or a seen mark: one request, no waiting. The default shows
    /// nothing (a channel without them).
    fn act(
        user_id: String,
        account: Option<String>,
        action: SenderAction,
        ctx: &Context,
    ) -> Result<(), Error> {
        let _ = (user_id, account, action, ctx);
        Ok(())
    }

    /// The fields of the user's profile named in `fields` that the provider has, as a JSON
    /// object. The default: a channel without profiles (`{}`).
    fn profile(
        user_id: String,
        account: Option<String>,
        fields: Vec<String>,
        ctx: &Context,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        let _ = (user_id, account, fields, ctx);
        Ok(serde_json::Map::new())
    }
}

impl<T: Channel> Guest for T {
    fn verify(request: HttpRequest) -> Option<HttpReply> {
        <T as Channel>::verify(request)
    }

    fn parse(request: HttpRequest) -> Result<Vec<InboundEvent>, WitError> {
        <T as Channel>::parse(request).map_err(WitError::from)
    }

    fn send(message: OutboundMessage, context: CallContext) -> Result<Delivery, WitError> {
        <T as Channel>::send(message, &Context::from(context)).map_err(WitError::from)
    }

    fn act(
        user_id: String,
        account: Option<String>,
        action: SenderAction,
        context: CallContext,
    ) -> Result<(), WitError> {
        <T as Channel>::act(user_id, account, action, &Context::from(context))
            .map_err(WitError::from)
    }

    fn profile(
        user_id: String,
        account: Option<String>,
        fields: Vec<String>,
        context: CallContext,
    ) -> Result<String, WitError> {
        <T as Channel>::profile(user_id, account, fields, &Context::from(context))
            .map(|profile| serde_json::Value::Object(profile).to_string())
            .map_err(WitError::from)
    }
}

/// Exports a type implementing [`Channel`](crate::channel::Channel) as the component's
/// `channel` interface:
///
/// ```ignore
/// influxify_plugin_sdk::channel!(Messenger);
/// ```
///
/// Use it once per plugin.
#[macro_export]
macro_rules! channel {
    ($channel:ident) => {
        $crate::channel_bindings::export_channel!($channel with_types_in $crate::channel_bindings);
    };
}

impl HttpRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl HttpReply {
    /// A reply with `status` and a `text/plain` body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpReply {
            status,
            headers: vec![("Content-Type".to_string(), "text/plain".to_string())],
            body: body.into().into_bytes(),
        }
    }
}

impl OutboundMessage {
    /// A plain text message to `user_id` answering the user, without quick replies, buttons or
    /// tag, and
    /// with the user's last message unknown (treated as inside any reply window).
    pub fn text(user_id: impl Into<String>, text: impl Into<String>) -> Self {
        OutboundMessage {
            user_id: user_id.into(),
            text: text.into(),
            quick_replies: Vec::new(),
            buttons: Vec::new(),
            tag: None,
            origin: Origin::Reply,
            account: None,
            last_user_message_ms: None,
        }
    }

    /// Whether the user's last message is older than `window_ms` at `now_ms` (Messenger's
    /// 24-hour window: `24 * 60 * 60 * 1000`). An unknown last message
    /// ([`last_user_message_ms`](OutboundMessage::last_user_message_ms) `None`) is inside.
    pub fn outside_window(&self, window_ms: u64, now_ms: u64) -> bool {
        self.last_user_message_ms
            .is_some_and(|last| now_ms.saturating_sub(last) > window_ms)
    }
}
