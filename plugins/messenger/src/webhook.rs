//! Webhook POSTs: the signature, then the envelope
//! `{"object":"page","entry":[{"id","time","messaging":[event...]}]}`, every entry and every
//! event of it.
//!
//! | event | becomes |
//! |---|---|
//! | `message` with `quick_reply.payload` | `quick-reply((text, payload))` (the title is the text) |
//! | `message` with `attachments` | `attachments((text, [{kind, url, title, coordinates, sticker-id}]))`: an image with a `sticker_id` (a like is one) is a `sticker`, a location has its coordinates |
//! | `message` with `text` only | `text(text)` |
//! | `postback` | `postback({title, payload, referral})`: one event, the referral (Get Started from an m.me link) as context |
//! | `referral` | `referral({ref, source, ad-id})` |
//! | `message.is_echo`, `delivery`, `read`, anything else | acknowledged, not routed |
//!
//! Entries' `standby` (another app owns the thread) and `changes` (the dashboard's test
//! button) are acknowledged and not routed. An event that cannot be understood (no
//! `sender.id`, a field of the wrong type) is logged and skipped: the others of the batch are
//! still delivered, and the webhook is answered 200 (a refused batch would be redelivered with
//! every good event in it, and never processed). The dedup key is the message's `mid` (postbacks
//! have one since API v11); postbacks without one and referrals get a stable hash of the
//! sender, the timestamp and the payload ([`stable_id`]). Unknown fields are ignored; a body
//! that is not JSON, or not this envelope, is `invalid-input`.

use influxify_plugin_sdk::channel::{
    Attachment, HttpRequest, InboundEvent, InboundKind, Postback as PostbackOut,
    Referral as ReferralOut,
};
use influxify_plugin_sdk::{Error, crypto, debug, warn};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::hash::stable_id;

/// The app secret the host signs with (signatures only).
pub const APP_SECRET: &str = "messenger_app_secret";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// The webhook body.
#[derive(Deserialize)]
struct Webhook {
    #[serde(default)]
    object: Option<String>,
    entry: Vec<serde_json::Value>,
}

/// One entry: a page's events, each decoded on its own so that one odd event does not lose
/// the others.
#[derive(Deserialize)]
struct Entry {
    /// The page's id (a string; numbers are accepted too).
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    time: Option<u64>,
    #[serde(default)]
    messaging: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    standby: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    changes: Option<Vec<IgnoredAny>>,
}

/// One event of `messaging`: its kind is told by which field it has.
#[derive(Deserialize)]
struct Messaging {
    #[serde(default)]
    sender: Option<Party>,
    #[serde(default)]
    recipient: Option<Party>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    postback: Option<Postback>,
    #[serde(default)]
    referral: Option<Referral>,
}

#[derive(Deserialize)]
struct Party {
    id: String,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    is_echo: bool,
    /// On an echo: the app that sent the message (absent or another app's: a person, e.g. in
    /// the Page Inbox).
    #[serde(default)]
    app_id: Option<serde_json::Value>,
    #[serde(default)]
    quick_reply: Option<QuickReplyTap>,
    #[serde(default)]
    attachments: Option<Vec<AttachmentIn>>,
}

#[derive(Deserialize)]
struct QuickReplyTap {
    payload: String,
}

#[derive(Deserialize)]
struct AttachmentIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<AttachmentPayload>,
    /// Shared links (`fallback`) have their URL here in older payloads.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct AttachmentPayload {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    coordinates: Option<Coordinates>,
    #[serde(default)]
    title: Option<String>,
    /// Set on stickers (and the like button), which arrive as `image`s.
    #[serde(default)]
    sticker_id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Coordinates {
    lat: f64,
    long: f64,
}

#[derive(Deserialize)]
struct Postback {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    referral: Option<Referral>,
}

#[derive(Deserialize)]
struct Referral {
    #[serde(rename = "ref", default)]
    reference: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    ad_id: Option<String>,
}

impl From<Referral> for ReferralOut {
    fn from(referral: Referral) -> Self {
        ReferralOut {
            reference: referral.reference,
            source: referral.source,
            ad_id: referral.ad_id,
        }
    }
}

/// Checks the signature, then turns the body into events.
pub fn parse(request: &HttpRequest) -> Result<Vec<InboundEvent>, Error> {
    check_signature(request)?;
    let webhook: Webhook = serde_json::from_slice(&request.body)
        .map_err(|e| Error::invalid_input(format!("the body is not a Messenger webhook: {e}")))?;
    if let Some(object) = webhook.object.as_deref()
        && object != "page"
    {
        warn!("a webhook for `{object}` (not `page`) was acknowledged and ignored");
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    let mut ignored = 0usize;
    let pages = crate::send::pages();
    for entry in webhook.entry {
        let entry: Entry = match serde_json::from_value(entry) {
            Ok(entry) => entry,
            Err(err) => {
                warn!("a webhook entry that is not a Messenger entry was skipped: {err}");
                ignored += 1;
                continue;
            }
        };
        ignored += entry.standby.as_ref().map_or(0, Vec::len);
        ignored += entry.changes.as_ref().map_or(0, Vec::len);
        let page = entry.id.as_ref().and_then(|id| match id {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        if let Some(pages) = &pages
            && !page.as_ref().is_some_and(|p| pages.contains(p))
        {
            // Never answered with another page's token: acknowledged, not routed.
            warn!(
                "events for page `{}`, which is not among the `pages` this channel serves, were acknowledged and not routed",
                page.as_deref().unwrap_or("(none)")
            );
            ignored += entry.messaging.as_ref().map_or(0, Vec::len);
            continue;
        }
        for event in entry.messaging.unwrap_or_default() {
            let before = events.len();
            match serde_json::from_value::<Messaging>(event) {
                Ok(event) => convert(event, entry.time, page.as_deref(), &mut events),
                Err(err) => {
                    warn!("a webhook event that is not a Messenger event was skipped: {err}")
                }
            }
            if events.len() == before {
                ignored += 1;
            }
        }
    }
    if ignored > 0 {
        debug!("acknowledged {ignored} webhook event(s) that are not user input");
    }
    Ok(events)
}

/// `X-Hub-Signature-256: sha256=<hex>` over the raw body, checked by the host.
fn check_signature(request: &HttpRequest) -> Result<(), Error> {
    let Some(header) = request.header(SIGNATURE_HEADER) else {
        let legacy = if request.header("X-Hub-Signature").is_some() {
            " (only the SHA-256 signature is accepted, not the legacy X-Hub-Signature)"
        } else {
            ""
        };
        return Err(Error::invalid_input(format!(
            "the request has no {SIGNATURE_HEADER} header{legacy}"
        )));
    };
    let Some(signature) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(crypto::from_hex)
    else {
        return Err(Error::invalid_input(format!(
            "the {SIGNATURE_HEADER} header is not `sha256=<hex>`"
        )));
    };
    if !crypto::verify_hmac_sha256(APP_SECRET, &request.body, &signature)? {
        return Err(Error::invalid_input(
            "the signature does not match the body",
        ));
    }
    Ok(())
}

/// Adds the events `event` stands for (none for what is not user input, or cannot be routed).
fn convert(
    event: Messaging,
    entry_time: Option<u64>,
    page: Option<&str>,
    out: &mut Vec<InboundEvent>,
) {
    let provider_time = event.timestamp.or(entry_time);
    // No time from Meta: 0, and the host uses its own clock (never ours: the timestamp must be
    // the same on a redelivery).
    let timestamp_ms = provider_time.unwrap_or(0);
    let time_text = timestamp_ms.to_string();
    if let Some(message) = event.message.as_ref().filter(|m| m.is_echo) {
        return person_replied(message, event.recipient.as_ref(), timestamp_ms, out, page);
    }
    let routed = match (&event.message, &event.postback, &event.referral) {
        (Some(message), _, _) => has_content(message),
        (None, Some(_), _) | (None, None, Some(_)) => true,
        _ => false,
    };
    if !routed {
        return;
    }
    let Some(sender) = event.sender.filter(|s| !s.id.is_empty()) else {
        warn!("a webhook event without `sender.id` was skipped");
        return;
    };
    let user_id = sender.id;
    let mut push = |event_id: String, kind: InboundKind| {
        out.push(InboundEvent {
            user_id: user_id.clone(),
            event_id,
            timestamp_ms,
            kind,
            account: page.map(str::to_string),
        });
    };
    if let Some(message) = event.message {
        let id = |what: &str, payload: &str| {
            message.mid.clone().unwrap_or_else(|| {
                stable_id(
                    what,
                    &[user_id.as_bytes(), time_text.as_bytes(), payload.as_bytes()],
                )
            })
        };
        let attachments: Vec<Attachment> = message
            .attachments
            .iter()
            .flatten()
            .map(attachment)
            .collect();
        if let Some(tap) = &message.quick_reply {
            let title = message.text.clone().unwrap_or_else(|| tap.payload.clone());
            push(
                id("quick-reply", &tap.payload),
                InboundKind::QuickReply((title, tap.payload.clone())),
            );
        } else if !attachments.is_empty() {
            let urls: Vec<&str> = attachments
                .iter()
                .map(|a| a.url.as_deref().unwrap_or(&a.kind))
                .collect();
            push(
                id("attachments", &urls.join("\n")),
                InboundKind::Attachments((message.text.clone(), attachments)),
            );
        } else if let Some(text) = &message.text {
            push(id("message", text), InboundKind::Text(text.clone()));
        }
    } else if let Some(postback) = event.postback {
        let payload = postback.payload.unwrap_or_default();
        let event_id = postback.mid.unwrap_or_else(|| {
            stable_id(
                "postback",
                &[user_id.as_bytes(), time_text.as_bytes(), payload.as_bytes()],
            )
        });
        let title = postback.title.unwrap_or_else(|| payload.clone());
        push(
            event_id,
            InboundKind::Postback(PostbackOut {
                title,
                payload,
                referral: postback.referral.map(ReferralOut::from),
            }),
        );
    } else if let Some(referral) = event.referral {
        let reference = referral.reference.clone().unwrap_or_default();
        let event_id = stable_id(
            "referral",
            &[
                user_id.as_bytes(),
                time_text.as_bytes(),
                reference.as_bytes(),
            ],
        );
        push(event_id, InboundKind::Referral(referral.into()));
    }
}

/// An echo of a message the page sent: the bot's own (its app's id, the `app_id` setting) is
/// not routed; one another app sent (a person answering in the Page Inbox) becomes
/// `person-replied` for the user it went to. Without the `app_id` setting the bot cannot tell
/// its own echoes apart, and echoes are not routed.
fn person_replied(
    message: &Message,
    recipient: Option<&Party>,
    timestamp_ms: u64,
    out: &mut Vec<InboundEvent>,
    page: Option<&str>,
) {
    let Some(own) = influxify_plugin_sdk::config::get("app_id") else {
        return;
    };
    let sender_app = message.app_id.as_ref().map(|id| match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if sender_app.as_deref() == Some(own.trim()) {
        return;
    }
    let (Some(user), Some(mid)) = (recipient.filter(|r| !r.id.is_empty()), &message.mid) else {
        return;
    };
    out.push(InboundEvent {
        user_id: user.id.clone(),
        event_id: format!("{mid}:echo"),
        timestamp_ms,
        kind: InboundKind::PersonReplied,
        account: page.map(str::to_string),
    });
}

/// Whether a (non-echo) message has something to route: a quick reply, text or attachments.
fn has_content(message: &Message) -> bool {
    message.quick_reply.is_some()
        || message.text.is_some()
        || message.attachments.as_ref().is_some_and(|a| !a.is_empty())
}

/// An attachment: its type, URL, title, coordinates (a location) and sticker id (a sticker or
/// a like, which Messenger sends as an `image`).
fn attachment(attachment: &AttachmentIn) -> Attachment {
    let payload = attachment.payload.as_ref();
    let geo = payload
        .and_then(|p| p.coordinates.as_ref())
        .map(|c| format!("geo:{},{}", c.lat, c.long));
    let url = payload
        .and_then(|p| p.url.clone())
        .or_else(|| attachment.url.clone())
        .or(geo);
    let sticker_id = payload
        .and_then(|p| p.sticker_id.as_ref())
        .and_then(|id| match id {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let coordinates = payload
        .and_then(|p| p.coordinates.as_ref())
        .map(|c| (c.lat, c.long));
    let kind = match (&sticker_id, &coordinates) {
        (Some(_), _) => "sticker".to_string(),
        (None, Some(_)) => "location".to_string(),
        _ => attachment.kind.clone(),
    };
    Attachment {
        kind,
        url,
        title: attachment
            .title
            .clone()
            .or_else(|| payload.and_then(|p| p.title.clone())),
        coordinates,
        sticker_id,
    }
}
