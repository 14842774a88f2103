//! The web chat channel, first-party because it holds live connections: a page (the playground,
//! or a site that embeds the bot) opens a session and gets a user id with a signed token, posts
//! the user's messages over HTTP, and receives the bot's replies as server-sent events while
//! they are produced. Replies sent while no page listens wait in a short per-user buffer;
//! reconnecting with `Last-Event-ID` replays what was missed.
//!
//! Routes: `POST /webchat/sessions`, `POST /webchat/messages` (bearer token),
//! `GET /webchat/events` (bearer token, or `?token=` since `EventSource` cannot set headers).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::stream::{self, Stream};
use influxify_core::Event;
use influxify_core::conversation::{Outbound, UserMessage};
use influxify_runtime::clock::now_ms;
use influxify_store::{ConversationKey, Inbound, Ingested};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::AppState;
use crate::inbound::Accepted;
use crate::reply::{error, json};

/// The channel name conversations on the web chat carry.
pub const CHANNEL: &str = "webchat";

/// Replies kept per user for a page that reconnects.
const REPLAY: usize = 64;
/// Above this many mailboxes, idle ones are dropped when a new one is made.
const MAX_MAILBOXES: usize = 10_000;
/// Users whose mailbox nobody listened to for this long are forgotten; replies older than this
/// are not replayed.
const IDLE: Duration = Duration::from_secs(15 * 60);
/// [`IDLE`] in milliseconds.
const IDLE_MS: u64 = 15 * 60 * 1000;
/// The longest message text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// The longest quick-reply payload or client message id accepted, in bytes.
const MAX_ID_BYTES: usize = 256;

/// One thing sent to a page: a message or a typing indicator.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    /// Position in the user's stream (the SSE event id).
    seq: u64,
    /// `message` or `typing`.
    kind: String,
    /// The event's JSON.
    data: String,
    /// The effect's idempotency key, so that a repeated effect is shown once.
    key: String,
    /// When it was sent (milliseconds since the Unix epoch): it is replayed for [`IDLE`].
    #[serde(default)]
    at: u64,
}

/// The replay buffer on disk: the last [`REPLAY`] deliveries of each user for [`IDLE`], so that
/// a page reconnecting after a restart (or a crash) gets every reply once. Keys are
/// `[user length u16][user][seq u64]`; the stream's id prefix is kept under [`BOOT_KEY`]. Made
/// durable with the store's flushes (a delivery is written before its effect is removed from
/// the outbox); erased with the user.
#[derive(Debug)]
struct Replay {
    tree: sled::Tree,
}

/// Where the replay tree keeps the event-id prefix (a user key is never this short).
const BOOT_KEY: &[u8] = b"boot";

impl Replay {
    fn prefix(user: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(2 + user.len() + 8);
        key.extend_from_slice(&u16::try_from(user.len()).unwrap_or(u16::MAX).to_be_bytes());
        key.extend_from_slice(user.as_bytes());
        key
    }

    fn key(user: &str, seq: u64) -> Vec<u8> {
        let mut key = Replay::prefix(user);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// The user's deliveries still worth replaying, oldest first (expired ones are removed).
    fn load(&self, user: &str, now: u64) -> Vec<Delivery> {
        let mut kept = Vec::new();
        for (key, value) in self.tree.scan_prefix(Replay::prefix(user)).flatten() {
            match serde_json::from_slice::<Delivery>(&value) {
                Ok(delivery) if now.saturating_sub(delivery.at) < IDLE_MS => kept.push(delivery),
                _ => {
                    let _ = self.tree.remove(key);
                }
            }
        }
        kept
    }

    fn store(&self, user: &str, delivery: &Delivery) {
        match serde_json::to_vec(delivery) {
            Ok(value) => {
                if let Err(err) = self.tree.insert(Replay::key(user, delivery.seq), value) {
                    tracing::error!(error = %err, "a web chat reply was not kept for replay");
                }
            }
            Err(err) => tracing::error!(error = %err, "a web chat reply was not kept for replay"),
        }
    }

    fn remove(&self, user: &str, seq: u64) {
        let _ = self.tree.remove(Replay::key(user, seq));
    }

    fn forget(&self, user: &str) {
        for (key, _) in self.tree.scan_prefix(Replay::prefix(user)).flatten() {
            let _ = self.tree.remove(key);
        }
    }

    /// Removes every delivery older than [`IDLE`]; how many.
    fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        for (key, value) in self.tree.iter().flatten() {
            if key.as_ref() == BOOT_KEY {
                continue;
            }
            let expired = serde_json::from_slice::<Delivery>(&value)
                .map_or(true, |d| now.saturating_sub(d.at) >= IDLE_MS);
            if expired && self.tree.remove(key).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

struct Mailbox {
    next: u64,
    recent: VecDeque<Delivery>,
    live: broadcast::Sender<Delivery>,
    touched: Instant,
}

impl Mailbox {
    fn new() -> Self {
        Mailbox {
            next: 1,
            recent: VecDeque::new(),
            live: broadcast::channel(REPLAY).0,
            touched: Instant::now(),
        }
    }
}

/// Sessions and live reply streams of the web chat.
pub struct WebChat {
    key: hmac::Key,
    /// This process's event-id prefix: a page reconnecting with an id from an earlier process
    /// gets everything buffered since this one started.
    boot: String,
    users: Mutex<HashMap<String, Mailbox>>,
    /// Set when the server stops: open event streams end, so that shutdown is not held up.
    closing: tokio::sync::watch::Sender<bool>,
    /// The replay buffer on disk, when the web chat has one (`serve` does).
    replay: Option<Replay>,
}

impl std::fmt::Debug for WebChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebChat").finish_non_exhaustive()
    }
}

/// Why the web chat could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebChatError {
    /// No randomness.
    #[error("the system random generator failed")]
    Random,
    /// The replay buffer's store failed.
    #[error("the web chat replay buffer: {0}")]
    Store(String),
    /// The session key could not be read from or stored in the secrets.
    #[error("the web chat session key: {0}")]
    Secrets(String),
}

/// A new session: the user id and the token that proves it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    /// The user id (the conversation's user on channel `webchat`).
    pub user: String,
    /// The bearer token for `/webchat/messages` and `/webchat/events`.
    pub token: String,
}

impl WebChat {
    /// A web chat signing session tokens with `key`.
    pub fn with_key(key: &[u8]) -> Self {
        let mut boot = [0u8; 4];
        let _ = SystemRandom::new().fill(&mut boot);
        WebChat {
            boot: boot.iter().map(|b| format!("{b:02x}")).collect(),
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            users: Mutex::new(HashMap::new()),
            closing: tokio::sync::watch::channel(false).0,
            replay: None,
        }
    }

    /// Keeps the replay buffer in `db`'s `webchat_replay` tree, so that it outlives restarts:
    /// the event-id prefix is kept there too, and replies older than 15 minutes are swept now.
    pub fn with_replay(mut self, db: &sled::Db) -> Result<Self, WebChatError> {
        let tree = db
            .open_tree("webchat_replay")
            .map_err(|err| WebChatError::Store(err.to_string()))?;
        match tree.get(BOOT_KEY) {
            Ok(Some(boot)) => self.boot = String::from_utf8_lossy(&boot).into_owned(),
            Ok(None) => {
                tree.insert(BOOT_KEY, self.boot.as_bytes())
                    .map_err(|err| WebChatError::Store(err.to_string()))?;
            }
            Err(err) => return Err(WebChatError::Store(err.to_string())),
        }
        let replay = Replay { tree };
        let swept = replay.sweep(now_ms());
        if swept > 0 {
            tracing::info!(
                swept,
                "expired web chat replies removed from the replay buffer"
            );
        }
        self.replay = Some(replay);
        Ok(self)
    }

    /// Removes replies older than 15 minutes from the replay buffer on disk; how many.
    pub fn sweep_replay(&self) -> usize {
        self.replay.as_ref().map_or(0, |r| r.sweep(now_ms()))
    }

    /// The user's mailbox, made (and its replay buffer read from disk) when needed.
    fn mailbox<'m>(&self, users: &'m mut HashMap<String, Mailbox>, user: &str) -> &'m mut Mailbox {
        if users.len() > MAX_MAILBOXES && !users.contains_key(user) {
            users.retain(|_, m| m.live.receiver_count() > 0 || m.touched.elapsed() < IDLE);
        }
        users.entry(user.to_string()).or_insert_with(|| {
            let mut mailbox = Mailbox::new();
            if let Some(replay) = &self.replay {
                let kept = replay.load(user, now_ms());
                mailbox.next = kept.last().map_or(1, |d| d.seq + 1);
                mailbox.recent = kept.into();
            }
            mailbox
        })
    }

    /// Ends every open event stream (the server is stopping; pages reconnect with
    /// `Last-Event-ID` to the next process).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A web chat whose session key is the sealed secret `webchat_session_key` (created on
    /// first use), so that tokens outlive restarts and a copy of the data cannot forge them.
    pub fn sealed(secrets: &crate::secrets::SealedSecrets) -> Result<Self, WebChatError> {
        use influxify_plugin_host::{Secret, SecretStore};
        const NAME: &str = "webchat_session_key";
        let stored = secrets
            .get(NAME)
            .map_err(|err| WebChatError::Secrets(err.to_string()))?;
        if let Some(Secret::Value { value }) = stored {
            return Ok(WebChat::with_key(value.as_bytes()));
        }
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| WebChatError::Random)?;
        let value: String = key.iter().map(|b| format!("{b:02x}")).collect();
        secrets
            .set(
                NAME,
                &Secret::Value {
                    value: value.clone(),
                },
            )
            .map_err(|err| WebChatError::Secrets(err.to_string()))?;
        Ok(WebChat::with_key(value.as_bytes()))
    }

    /// Opens a session for a new user.
    pub fn session(&self) -> Result<Session, WebChatError> {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| WebChatError::Random)?;
        let user: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("{user}.{}", self.sign(&user));
        Ok(Session { user, token })
    }

    fn sign(&self, user: &str) -> String {
        let tag = hmac::sign(&self.key, format!("influxify-webchat:{user}").as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// The user a token belongs to, if it is genuine.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let (user, signature) = token.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        hmac::verify(
            &self.key,
            format!("influxify-webchat:{user}").as_bytes(),
            &signature,
        )
        .ok()?;
        Some(user.to_string())
    }

    /// Shows the user's page a typing indicator for `ms` (the runtime waits that long before
    /// the message). `key` is the message's idempotency key.
    pub fn typing(&self, user: &str, ms: u64, key: &str) {
        let typing = serde_json::json!({ "ms": ms }).to_string();
        self.push(user, "typing", typing, &format!("{key}:typing"));
    }

    /// Hands a bot message to the user's page (or its replay buffer). `key` is the effect's
    /// idempotency key: a repeat is dropped.
    pub async fn deliver(&self, user: &str, message: &Outbound, key: &str) {
        let data = serde_json::json!({
            "text": message.text,
            "quick_replies": message.quick_replies,
            "buttons": message.buttons,
            "key": key,
        });
        self.push(user, "message", data.to_string(), key);
    }

    fn push(&self, user: &str, kind: &'static str, data: String, key: &str) {
        let Ok(mut users) = self.users.lock() else {
            return;
        };
        let mailbox = self.mailbox(&mut users, user);
        if mailbox.recent.iter().any(|d| d.key == key) {
            return;
        }
        let delivery = Delivery {
            seq: mailbox.next,
            kind: kind.to_string(),
            data,
            key: key.to_string(),
            at: now_ms(),
        };
        mailbox.next += 1;
        mailbox.touched = Instant::now();
        if mailbox.recent.len() == REPLAY
            && let Some(oldest) = mailbox.recent.pop_front()
            && let Some(replay) = &self.replay
        {
            replay.remove(user, oldest.seq);
        }
        if let Some(replay) = &self.replay {
            replay.store(user, &delivery);
        }
        mailbox.recent.push_back(delivery.clone());
        let _ = mailbox.live.send(delivery);
    }

    /// Forgets the replies kept for `key`'s user (an erasure).
    pub fn forget(&self, key: &ConversationKey) {
        if key.channel != CHANNEL {
            return;
        }
        // The open stream stays (the page is told the erasure is done); what it could replay
        // goes.
        if let Ok(mut users) = self.users.lock()
            && let Some(mailbox) = users.get_mut(&key.user)
        {
            mailbox.recent.clear();
        }
        if let Some(replay) = &self.replay {
            replay.forget(&key.user);
        }
    }

    /// What was sent after `after`, then everything sent from now on.
    fn subscribe(
        &self,
        user: &str,
        after: u64,
    ) -> (VecDeque<Delivery>, broadcast::Receiver<Delivery>) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let mailbox = self.mailbox(&mut users, user);
        mailbox.touched = Instant::now();
        let missed = mailbox
            .recent
            .iter()
            .filter(|d| d.seq > after)
            .cloned()
            .collect();
        (missed, mailbox.live.subscribe())
    }
}

/// The bearer token of a request: the `Authorization` header, or `?token=`.
fn token<'a>(headers: &'a HeaderMap, query: &'a HashMap<String, String>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| query.get("token").map(String::as_str))
}

fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, Response> {
    let Some(token) = token(headers, query) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "a web chat session token is required (`Authorization: Bearer TOKEN`); open a session with POST /webchat/sessions",
        ));
    };
    state.webchat.user_of(token).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "the web chat session token is not valid; open a new session with POST /webchat/sessions",
        )
    })
}

/// What a page may say about its user when it opens a session.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Profile fields the flows read as `user.*` (e.g. `first_name`): short strings only.
    #[serde(default)]
    pub profile: serde_json::Map<String, serde_json::Value>,
}

/// The most profile fields a page may set, and their longest value in bytes.
const MAX_PROFILE_FIELDS: usize = 16;

/// `POST /webchat/sessions`: a new user and its token; an optional JSON body
/// `{"profile": {"first_name": "Ada"}}` sets what flows read as `user.*`.
pub async fn open_session(State(state): State<AppState>, body: Bytes) -> Response {
    let request: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the session request is not valid JSON of the form {{\"profile\": {{\"first_name\": \"...\"}}}}: {err}"
                    ),
                );
            }
        }
    };
    let bad_field = request
        .profile
        .iter()
        .find(|(k, v)| k.len() > 64 || v.as_str().is_none_or(|s| s.len() > MAX_ID_BYTES));
    if request.profile.len() > MAX_PROFILE_FIELDS || bad_field.is_some() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "a profile has at most {MAX_PROFILE_FIELDS} fields, each a string of at most {MAX_ID_BYTES} bytes"
            ),
        );
    }
    let session = match state.webchat.session() {
        Ok(session) => session,
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    };
    if !request.profile.is_empty() {
        let inbound = Inbound::new(
            ConversationKey::new(CHANNEL, session.user.clone()),
            format!("profile:{}", session.user),
            now_ms(),
            Event::Profile {
                profile: request.profile,
            },
        );
        if let Err(err) = state.runtime.ingest(vec![inbound]).await {
            tracing::error!(error = %err, "a web chat profile could not be stored");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session could not be stored; try again",
            );
        }
    }
    json(StatusCode::CREATED, &session)
}

/// What a page posts: a text, or a tapped quick reply or button (`payload`, with its title as
/// `text`), and optionally its own id so that a retried post is processed once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostedMessage {
    /// What the user typed (or the title of what they tapped).
    #[serde(default)]
    pub text: Option<String>,
    /// The payload of a tapped quick reply or button.
    #[serde(default)]
    pub payload: Option<String>,
    /// The page's id for this message; a repeat of an id is not processed again.
    #[serde(default)]
    pub id: Option<String>,
}

/// `POST /webchat/messages`: the user's message, acknowledged once durable.
pub async fn post_message(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let user = match authenticate(&state, &headers, &query) {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the message as JSON (`Content-Type: application/json`)",
        );
    }
    let posted: PostedMessage = match serde_json::from_slice(&body) {
        Ok(posted) => posted,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the message is not valid JSON of the form {{\"text\": \"...\"}}: {err}"),
            );
        }
    };
    if let Err(why) = check(&posted) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &why);
    }
    // Dedup ids are unique per channel: the page's own id is scoped by its user.
    let id = match posted.id {
        Some(id) => format!("c:{user}:{id}"),
        None => match state.webchat.session() {
            // A fresh random id: the user part of a new session is 128 random bits.
            Ok(fresh) => format!("s:{}", fresh.user),
            Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        },
    };
    let message = UserMessage {
        text: posted.text,
        payload: posted.payload,
        ..UserMessage::default()
    };
    let inbound = vec![Inbound::new(
        ConversationKey::new(CHANNEL, user),
        id.clone(),
        now_ms(),
        Event::User(message),
    )];
    match crate::inbound::accept(&state, inbound, started).await {
        Ok(Accepted::Nothing) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "id": id, "duplicate": false }),
        ),
        Ok(Accepted::Ingested(ingested)) => {
            let duplicate = matches!(ingested.first(), Some(Ingested::Duplicate));
            let restricted = matches!(ingested.first(), Some(Ingested::Restricted));
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "id": id, "duplicate": duplicate, "restricted": restricted }),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "a web chat message could not be stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the message could not be stored; try again",
            )
        }
    }
}

fn check(posted: &PostedMessage) -> Result<(), String> {
    let text = posted.text.as_deref().unwrap_or("");
    let payload = posted.payload.as_deref().unwrap_or("");
    if text.trim().is_empty() && payload.is_empty() {
        return Err("the message needs a `text` (or a `payload`)".into());
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "the text is {} bytes long; at most {MAX_TEXT_BYTES} are accepted",
            text.len()
        ));
    }
    if payload.len() > MAX_ID_BYTES || posted.id.as_deref().unwrap_or("").len() > MAX_ID_BYTES {
        return Err(format!(
            "a `payload` or `id` may be at most {MAX_ID_BYTES} bytes long"
        ));
    }
    Ok(())
}

/// `GET /webchat/events`: the bot's replies as server-sent events (`message`, `typing`).
pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let user = match authenticate(&state, &headers, &query) {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('-'))
        .filter(|(boot, _)| *boot == state.webchat.boot)
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or(0);
    let (missed, live) = state.webchat.subscribe(&user, after);
    let closing = state.webchat.closing.subscribe();
    Sse::new(stream_of(
        missed,
        live,
        closing,
        after,
        state.webchat.boot.clone(),
    ))
    .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    .into_response()
}

fn stream_of(
    missed: VecDeque<Delivery>,
    live: broadcast::Receiver<Delivery>,
    closing: tokio::sync::watch::Receiver<bool>,
    after: u64,
    boot: String,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(
        (missed, live, closing, after, boot),
        |(mut missed, mut live, mut closing, mut last, boot)| async move {
            let delivery = loop {
                if let Some(delivery) = missed.pop_front() {
                    break delivery;
                }
                if *closing.borrow() {
                    return None;
                }
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(delivery) if delivery.seq > last => break delivery,
                        Ok(_) => continue,
                        // Too slow: end the stream; the page reconnects with Last-Event-ID and
                        // the buffer replays what it missed.
                        Err(_) => return None,
                    },
                    _ = closing.changed() => return None,
                }
            };
            last = delivery.seq;
            let event = SseEvent::default()
                .id(format!("{boot}-{}", delivery.seq))
                .event(delivery.kind)
                .data(delivery.data);
            Some((Ok(event), (missed, live, closing, last, boot)))
        },
    )
}
