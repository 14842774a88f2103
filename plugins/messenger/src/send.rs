//! The Send API: `POST {graph_base}/{api_version}/me/messages`, the page token added by the host
//! as the `access_token` query parameter.
//!
//! - The message is checked against Messenger's limits first (at most 13 quick replies, titles
//!   of at most 20 characters, payloads of at most 1000; 1 to 3 buttons; a text that is not
//!   empty); a message beyond them is `invalid-input` and nothing is sent: nothing is truncated.
//! - `messaging_type` follows the message's origin and the 24-hour window since the user's
//!   last message (`last-user-message-ms`) ([`messaging_type`]): a reply is `RESPONSE`, a
//!   proactive message (a timer, a resumed conversation) `UPDATE`, both only inside the window;
//!   an operator's reply is `RESPONSE` inside it and `MESSAGE_TAG` with `HUMAN_AGENT` for up to
//!   7 days. Anything else is a `permanent` error that says why, and no request is made. The
//!   tags Meta retired on 2026-04-27 are refused the same way.
//! - The plugin never waits: a typing indicator is a sender action of its own ([`act`]), and
//!   the engine waits before the message.
//! - A text over 2000 characters is split on sentence boundaries into several messages
//!   ([`split`]); quick replies and buttons go with the last, whose text is at most 640
//!   characters when it is a button template. How many parts went out is kept in the user's kv
//!   under the call's idempotency key until all have, so that a retry does not send them again.
//! - Errors are classified on Graph's `error.code` / `error_subcode` ([`classify`]).

use influxify_plugin_sdk::channel::{Button, Delivery, Origin, OutboundMessage, SenderAction};
use influxify_plugin_sdk::http::{self, Placement, Response};
use influxify_plugin_sdk::kv::{self, Scope};
use influxify_plugin_sdk::{Context, Error, clock, config, secrets, warn};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use unicode_segmentation::UnicodeSegmentation;

use crate::split::split;

/// The page access token, added by the host as `access_token`.
pub const PAGE_TOKEN: &str = "messenger_page_token";
/// With `pages` set (one app, many pages), page `ID`'s token is this prefix and `ID`.
pub const PAGE_TOKEN_PREFIX: &str = "messenger_page_token_";

/// The pages this channel serves, when the `pages` setting lists them (comma-separated page
/// ids): each with its own token. Unset: one page, with [`PAGE_TOKEN`].
pub fn pages() -> Option<Vec<String>> {
    let pages = config::get("pages")?;
    let pages: Vec<String> = pages
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    (!pages.is_empty()).then_some(pages)
}

/// The name of the token to send from `account` (the page the user wrote to) with: its own
/// with `pages` set, and never another page's; [`PAGE_TOKEN`] otherwise.
fn page_token(account: Option<&str>) -> Result<String, Error> {
    let name = match (pages(), account) {
        (None, _) => PAGE_TOKEN.to_string(),
        (Some(pages), Some(page)) if pages.iter().any(|p| p == page) => {
            format!("{PAGE_TOKEN_PREFIX}{page}")
        }
        (Some(_), Some(page)) => {
            return Err(Error::misconfigured(format!(
                "page `{page}` is not among the `pages` this channel serves; nothing was sent"
            )));
        }
        (Some(_), None) => {
            return Err(Error::misconfigured(
                "the channel serves several `pages`, and this conversation has no page; nothing \
                 was sent",
            ));
        }
    };
    if !secrets::available(&name) {
        return Err(Error::misconfigured(format!(
            "the page access token `{name}` is not configured"
        )));
    }
    Ok(name)
}
/// The Graph API unless `graph_base` says otherwise.
const DEFAULT_GRAPH_BASE: &str = "https://graph.facebook.com";
/// The Graph API version unless `api_version` says otherwise.
const DEFAULT_API_VERSION: &str = "v25.0";
/// How long after the user's last message a business may answer without a tag.
pub const WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest text of one message.
const MAX_TEXT: usize = 2000;
/// The longest text of a button template.
const MAX_BUTTON_TEXT: usize = 640;
/// The most quick replies on a message.
const MAX_QUICK_REPLIES: usize = 13;
/// The most buttons on a button template.
const MAX_BUTTONS: usize = 3;
/// The longest quick-reply or button title, in graphemes.
const MAX_TITLE: usize = 20;
/// The longest quick-reply or postback payload.
const MAX_PAYLOAD: usize = 1000;
/// How long after the user's last message a person may answer with the `HUMAN_AGENT` tag.
pub const HUMAN_AGENT_WINDOW_MS: u64 = 7 * WINDOW_MS;
/// The tags Meta retired on 2026-04-27 (sends with them fail with Graph error 100).
const RETIRED_TAGS: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
];
/// The most messages one text is split into (the manifest grants as many requests, plus one).
const MAX_PARTS: usize = 10;

/// Delivers `message`.
pub fn send(message: &OutboundMessage, ctx: &Context) -> Result<Delivery, Error> {
    let user = recipient(&message.user_id)?;
    let parts = plan(message)?;
    let (messaging_type, tag) = messaging_type(message, clock::now_ms())?;
    let endpoint = endpoint("me/messages")?;
    let token = page_token(message.account.as_deref())?;
    let progress = Progress::new(ctx, parts.len());
    let done = progress.done();
    let mut message_id = None;
    for (i, part) in parts.iter().enumerate().skip(done) {
        let mut body = json!({
            "recipient": {"id": user},
            "messaging_type": messaging_type,
            "message": part,
        });
        if let Some(tag) = &tag {
            body["tag"] = tag.as_str().into();
        }
        message_id = post(&endpoint, &token, &body).map_err(|err| {
            if i > 0 {
                err.context(format_args!("part {} of {}", i + 1, parts.len()))
            } else {
                err
            }
        })?;
        progress.record(i + 1);
    }
    Ok(Delivery { message_id })
}

/// A sender action (`typing_on`, `typing_off`, `mark_seen`): one request, no waiting.
pub fn act(user: &str, account: Option<&str>, action: SenderAction) -> Result<(), Error> {
    let user = recipient(user)?;
    let token = page_token(account)?;
    let action = match action {
        SenderAction::TypingOn => "typing_on",
        SenderAction::TypingOff => "typing_off",
        SenderAction::MarkSeen => "mark_seen",
    };
    let endpoint = endpoint("me/messages")?;
    post(
        &endpoint,
        &token,
        &json!({"recipient": {"id": user}, "sender_action": action}),
    )
    .map(|_| ())
}

/// The fields of the User Profile API a bot may ask for.
const PROFILE_FIELDS: [&str; 7] = [
    "first_name",
    "last_name",
    "name",
    "profile_pic",
    "locale",
    "timezone",
    "gender",
];

/// The User Profile API: `GET {graph_base}/{api_version}/{psid}?fields=...`, only the fields
/// asked for (and only those Meta documents); the answer keeps only them.
pub fn profile(
    user: &str,
    account: Option<&str>,
    fields: &[String],
) -> Result<serde_json::Map<String, Value>, Error> {
    let user = recipient(user)?;
    if !user.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid_input(
            "a page-scoped user id is letters and digits",
        ));
    }
    let wanted: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| PROFILE_FIELDS.contains(f))
        .collect();
    if wanted.is_empty() {
        return Ok(serde_json::Map::new());
    }
    let token = page_token(account)?;
    let response = http::get(endpoint(user)?)
        .query("fields", &wanted.join(","))
        .secret(token, Placement::Query("access_token".into()))
        .send()?;
    if !response.is_success() {
        return Err(classify(&response).context("the User Profile API failed"));
    }
    let mut answer: serde_json::Map<String, Value> = response
        .json()
        .map_err(|err| err.context("the User Profile API's answer"))?;
    answer.retain(|field, value| wanted.contains(&field.as_str()) && !value.is_null());
    Ok(answer)
}

fn recipient(user: &str) -> Result<&str, Error> {
    let user = user.trim();
    if user.is_empty() {
        return Err(Error::invalid_input("the message has no recipient"));
    }
    Ok(user)
}

/// `messaging_type` (and the tag) for `message` at `now`: by its origin, inside the windows
/// Messenger allows; outside them a `permanent` error that says why.
pub fn messaging_type(
    message: &OutboundMessage,
    now: u64,
) -> Result<(&'static str, Option<String>), Error> {
    let hours = || now.saturating_sub(message.last_user_message_ms.unwrap_or(0)) / 3_600_000;
    if let Some(tag) = &message.tag {
        check_tag(tag)?;
        return Ok(("MESSAGE_TAG", Some(tag.clone())));
    }
    let inside = !message.outside_window(WINDOW_MS, now);
    match message.origin {
        Origin::Reply if inside => Ok(("RESPONSE", None)),
        Origin::Proactive if inside => Ok(("UPDATE", None)),
        Origin::Operator if inside => Ok(("RESPONSE", None)),
        Origin::Operator if !message.outside_window(HUMAN_AGENT_WINDOW_MS, now) => {
            Ok(("MESSAGE_TAG", Some("HUMAN_AGENT".to_string())))
        }
        Origin::Operator => Err(Error::permanent(format!(
            "outside the 7-day window: the user last wrote {} days ago, and Messenger lets a \
             person answer (tag `HUMAN_AGENT`) for 7 days only; nothing was sent",
            hours() / 24
        ))),
        Origin::Reply | Origin::Proactive => Err(Error::permanent(format!(
            "outside the 24-hour window: the user last wrote {} hours ago, and only a person may \
             answer now (an operator's message goes out with `HUMAN_AGENT` for 7 days); nothing \
             was sent",
            hours()
        ))),
    }
}

/// The Graph API's URL of `path`, from the settings.
fn endpoint(path: &str) -> Result<String, Error> {
    let base = config::get_or("graph_base", DEFAULT_GRAPH_BASE);
    let base = base.trim().trim_end_matches('/');
    if !base.starts_with("https://") && !base.starts_with("http://") {
        return Err(Error::misconfigured(format!(
            "the setting `graph_base` is not an http(s) URL: `{base}`"
        )));
    }
    let version = config::get_or("api_version", DEFAULT_API_VERSION);
    let version = version.trim();
    let valid = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    if !valid {
        return Err(Error::misconfigured(format!(
            "the setting `api_version` is not a Graph API version like `v25.0`: `{version}`"
        )));
    }
    Ok(format!("{base}/{version}/{path}"))
}

/// A message tag: upper-case letters and underscores (`HUMAN_AGENT`), and not retired.
fn check_tag(tag: &str) -> Result<(), Error> {
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(Error::invalid_input(format!(
            "`{tag}` is not a Messenger message tag (`HUMAN_AGENT`)"
        )));
    }
    if RETIRED_TAGS.contains(&tag) {
        return Err(Error::permanent(format!(
            "the message tag `{tag}` was retired by Meta on 2026-04-27 (Graph error 100); \
             nothing was sent"
        )));
    }
    Ok(())
}

/// The `message` objects to send, in order, after checking Messenger's limits.
fn plan(message: &OutboundMessage) -> Result<Vec<Value>, Error> {
    if message.text.trim().is_empty() {
        return Err(Error::invalid_input(
            "the message's text is empty; Messenger refuses empty messages",
        ));
    }
    let quick_replies = quick_replies(message)?;
    let buttons = buttons(message)?;
    let last_max = if buttons.is_empty() {
        MAX_TEXT
    } else {
        MAX_BUTTON_TEXT
    };
    let mut texts = split(&message.text, MAX_TEXT, last_max);
    if texts.len() > MAX_PARTS {
        return Err(Error::invalid_input(format!(
            "the text is {} characters: more than {MAX_PARTS} messages of at most {MAX_TEXT}",
            message.text.chars().count()
        )));
    }
    let last = texts.pop().unwrap_or_default();
    let mut parts: Vec<Value> = texts.into_iter().map(|t| json!({"text": t})).collect();
    let mut final_part = if buttons.is_empty() {
        json!({"text": last})
    } else {
        json!({"attachment": {"type": "template", "payload": {
            "template_type": "button",
            "text": last,
            "buttons": buttons,
        }}})
    };
    if !quick_replies.is_empty() {
        final_part["quick_replies"] = Value::Array(quick_replies);
    }
    parts.push(final_part);
    Ok(parts)
}

fn quick_replies(message: &OutboundMessage) -> Result<Vec<Value>, Error> {
    if message.quick_replies.len() > MAX_QUICK_REPLIES {
        return Err(Error::invalid_input(format!(
            "the message has {} quick replies; Messenger allows {MAX_QUICK_REPLIES}",
            message.quick_replies.len()
        )));
    }
    message
        .quick_replies
        .iter()
        .map(|reply| {
            check_title(&reply.title)?;
            check_payload(&reply.payload)?;
            Ok(json!({"content_type": "text", "title": reply.title, "payload": reply.payload}))
        })
        .collect()
}

fn buttons(message: &OutboundMessage) -> Result<Vec<Value>, Error> {
    if message.buttons.len() > MAX_BUTTONS {
        return Err(Error::invalid_input(format!(
            "the message has {} buttons; Messenger allows 1 to {MAX_BUTTONS}",
            message.buttons.len()
        )));
    }
    message
        .buttons
        .iter()
        .map(|button| match button {
            Button::Postback((title, payload)) => {
                check_title(title)?;
                check_payload(payload)?;
                Ok(json!({"type": "postback", "title": title, "payload": payload}))
            }
            Button::Url((title, url)) => {
                check_title(title)?;
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(Error::invalid_input(format!(
                        "the button `{title}` links to `{url}`, which is not an http(s) URL"
                    )));
                }
                Ok(json!({"type": "web_url", "url": url, "title": title}))
            }
        })
        .collect()
}

fn check_title(title: &str) -> Result<(), Error> {
    if title.trim().is_empty() {
        return Err(Error::invalid_input("a quick reply or button has no title"));
    }
    let length = title.graphemes(true).count();
    if length > MAX_TITLE {
        return Err(Error::invalid_input(format!(
            "the title \"{title}\" is {length} characters; Messenger allows {MAX_TITLE}"
        )));
    }
    Ok(())
}

fn check_payload(payload: &str) -> Result<(), Error> {
    if payload.is_empty() {
        return Err(Error::invalid_input(
            "a quick reply or button has no payload",
        ));
    }
    let length = payload.chars().count();
    if length > MAX_PAYLOAD {
        return Err(Error::invalid_input(format!(
            "a payload is {length} characters; Messenger allows {MAX_PAYLOAD}"
        )));
    }
    Ok(())
}

/// What the Send API answers.
#[derive(Deserialize)]
struct Sent {
    #[serde(default)]
    message_id: Option<String>,
}

/// One Send API request; the message's id on success.
fn post(endpoint: &str, token: &str, body: &Value) -> Result<Option<String>, Error> {
    let response = http::post(endpoint)
        .secret(token, Placement::Query("access_token".into()))
        .json(body)
        .send()?;
    if !response.is_success() {
        return Err(classify(&response));
    }
    match response.json::<Sent>() {
        Ok(sent) => Ok(sent.message_id),
        Err(err) => {
            // Sent all the same: failing would send it again.
            warn!("the Send API's answer has no message id: {err}");
            Ok(None)
        }
    }
}

/// Graph's error body.
#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    fbtrace_id: Option<String>,
}

impl GraphError {
    /// `#190/1234567 OAuthException: Invalid OAuth access token. (fbtrace_id ...)`.
    fn describe(&self) -> String {
        let mut text = format!("Graph API error #{}", self.code.unwrap_or(0));
        if let Some(subcode) = self.error_subcode {
            text.push_str(&format!("/{subcode}"));
        }
        if let Some(kind) = &self.kind {
            text.push_str(&format!(" {kind}"));
        }
        if let Some(message) = &self.message {
            let message: String = message.chars().take(300).collect();
            text.push_str(&format!(": {message}"));
        }
        if let Some(trace) = &self.fbtrace_id {
            text.push_str(&format!(" (fbtrace_id {trace})"));
        }
        text
    }
}

/// A failed Send API response as an error: Graph answers 400 whatever the cause, so the kind
/// comes from `error.code` / `error_subcode`, and from the status only for other codes.
pub fn classify(response: &Response) -> Error {
    let Ok(GraphErrorBody { error }) = serde_json::from_slice::<GraphErrorBody>(&response.body)
    else {
        return match response.clone().error_for_status() {
            Err(err) => err.context("the Send API failed"),
            Ok(_) => Error::permanent(format!("the Send API answered status {}", response.status)),
        };
    };
    let what = error.describe();
    match (error.code, error.error_subcode) {
        (Some(190), _) => Error::misconfigured(format!(
            "invalid page token: the Graph API refused the page access token (expired, \
             revoked or for another page): {what}"
        )),
        (_, Some(2018278)) => Error::permanent(format!(
            "outside the 24-hour window: only a message with a tag may go out now: {what}"
        )),
        (Some(10), Some(1893063)) => Error::misconfigured(format!(
            "the page is temporarily restricted from sending messages (check the page's \
             quality in Meta Business Suite): {what}"
        )),
        (_, Some(2018065 | 2018108)) => Error::permanent(format!(
            "the user cannot be messaged now (blocked the page, or no conversation yet): {what}"
        )),
        (Some(10), _) => Error::permanent(format!("not allowed: {what}")),
        (Some(551), _) | (_, Some(1545041)) => {
            Error::permanent(format!("the person is not available: {what}"))
        }
        (Some(613 | 4), _) => Error::retryable(format!("rate limited: {what}")),
        (Some(2 | 1200), _) => Error::retryable(format!("temporary failure: {what}")),
        (Some(100), _) => Error::permanent(format!("invalid parameter: {what}")),
        _ => match response.status {
            408 | 429 | 500.. => Error::retryable(what),
            401 | 403 => Error::misconfigured(what),
            _ => Error::permanent(what),
        },
    }
}

/// How many parts of a split text went out, in the user's kv under the call's idempotency key,
/// while some have not. Only texts of several parts are tracked; kv failures are logged and
/// ignored (at worst a retry sends parts again).
struct Progress {
    key: Option<String>,
    parts: usize,
}

#[derive(Serialize, Deserialize)]
struct Done {
    done: usize,
    parts: usize,
}

impl Progress {
    fn new(ctx: &Context, parts: usize) -> Self {
        let key = (parts > 1).then(|| format!("sent/{}", ctx.idempotency_key()));
        Progress { key, parts }
    }

    /// Parts already sent by an earlier attempt of the same effect.
    fn done(&self) -> usize {
        let Some(key) = &self.key else { return 0 };
        match kv::get_json::<Done>(Scope::User, key) {
            Ok(Some(done)) if done.parts == self.parts && done.done < self.parts => done.done,
            Ok(_) => 0,
            Err(err) => {
                warn!("cannot read which parts of a long text went out: {err}");
                0
            }
        }
    }

    /// `done` parts have gone out.
    fn record(&self, done: usize) {
        let Some(key) = &self.key else { return };
        let result = if done >= self.parts {
            kv::delete(Scope::User, key)
        } else {
            kv::set_json(
                Scope::User,
                key,
                &Done {
                    done,
                    parts: self.parts,
                },
            )
        };
        if let Err(err) = result {
            warn!("cannot record which parts of a long text went out: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn graph(code: i64, subcode: Option<i64>) -> Response {
        let mut error =
            json!({"message": "m", "type": "OAuthException", "code": code, "fbtrace_id": "T"});
        if let Some(subcode) = subcode {
            error["error_subcode"] = subcode.into();
        }
        response(400, &json!({ "error": error }).to_string())
    }

    #[test]
    fn graph_errors_are_classified_by_code() {
        let err = classify(&graph(190, Some(1234567)));
        assert!(
            matches!(&err, Error::Misconfigured(m) if m.starts_with("invalid page token") && m.contains("#190/1234567 OAuthException: m (fbtrace_id T)")),
            "{err:?}"
        );
        for (code, subcode) in [(10, Some(2018278)), (100, Some(2018278)), (10, None)] {
            assert!(
                matches!(classify(&graph(code, subcode)), Error::Permanent(_)),
                "{code}"
            );
        }
        assert!(
            matches!(classify(&graph(10, Some(2018278))), Error::Permanent(m) if m.contains("24-hour"))
        );
        for (code, subcode) in [(551, None), (200, Some(1545041)), (100, None)] {
            assert!(
                matches!(classify(&graph(code, subcode)), Error::Permanent(_)),
                "{code}"
            );
        }
        for code in [613, 4, 2, 1200] {
            assert!(
                matches!(classify(&graph(code, None)), Error::Retryable(_)),
                "{code}"
            );
        }
        // Other codes and non-Graph bodies go by the status.
        assert!(matches!(
            classify(&response(500, r#"{"error":{"code":1,"message":"x"}}"#)),
            Error::Retryable(_)
        ));
        assert!(matches!(
            classify(&response(400, r#"{"error":{"code":368,"message":"x"}}"#)),
            Error::Permanent(_)
        ));
        assert!(matches!(
            classify(&response(502, "<html>Bad gateway</html>")),
            Error::Retryable(_)
        ));
    }

    #[test]
    fn tags_are_upper_case_words_and_not_retired() {
        assert!(check_tag("HUMAN_AGENT").is_ok());
        assert!(check_tag("human_agent").is_err());
        assert!(check_tag("").is_err());
        for retired in RETIRED_TAGS {
            assert!(
                matches!(check_tag(retired), Err(Error::Permanent(m)) if m.contains("2026-04-27")),
                "{retired}"
            );
        }
    }

    #[test]
    fn the_messaging_type_follows_the_origin_and_the_windows() {
        const HOUR: u64 = 3_600_000;
        let now = 1_000 * WINDOW_MS;
        let message = |origin, hours_ago: u64| {
            let mut message = OutboundMessage::text("1", "hi");
            message.origin = origin;
            message.last_user_message_ms = Some(now - hours_ago * HOUR);
            message
        };
        let kind = |origin, hours| messaging_type(&message(origin, hours), now);
        assert_eq!(kind(Origin::Reply, 1).unwrap(), ("RESPONSE", None));
        assert_eq!(kind(Origin::Proactive, 23).unwrap(), ("UPDATE", None));
        assert_eq!(kind(Origin::Operator, 2).unwrap(), ("RESPONSE", None));
        assert_eq!(
            kind(Origin::Operator, 6 * 24).unwrap(),
            ("MESSAGE_TAG", Some("HUMAN_AGENT".to_string()))
        );
        assert!(
            matches!(kind(Origin::Operator, 8 * 24), Err(Error::Permanent(m)) if m.contains("7-day"))
        );
        for origin in [Origin::Reply, Origin::Proactive] {
            assert!(matches!(kind(origin, 25), Err(Error::Permanent(m)) if m.contains("24-hour")));
        }
        let mut unknown = OutboundMessage::text("1", "hi");
        unknown.origin = Origin::Proactive;
        assert_eq!(messaging_type(&unknown, now).unwrap(), ("UPDATE", None));
    }
}
