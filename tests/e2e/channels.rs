//! Every shipped flow's transcript cases (`flows/*/*.test.yaml`) through the real channel path
//! of `influxify serve` in test mode, and what reached the provider compared with what the
//! transcript expects, turn by turn, with the designer's own checks:
//!
//! - over Messenger: signed webhooks into the real messenger plugin; the bot's replies read at a
//!   fake Graph API (Send API, sender actions and the User Profile API, which answers with the
//!   case's `user:` profile);
//! - over the web chat: a session with the case's profile, posted messages, replies from the
//!   server-sent event stream.
//!
//! Plugin actions are answered by the test file's `mocks` (registered per conversation through
//! `/testing/v1`), `advance` moves the server's test clock, operators act through the admin API,
//! and `node` / `flow` / `status` / `vars` are read from the admin API's inspection. One server
//! per test file (its flow directory is the bot, the flow it tests the entry); each case has a
//! fresh user. Cases without `advance` run concurrently; the others one at a time, since the
//! clock is the server's.
//!
//! `CHANNELS_ONLY=feedback` runs only the test files whose path contains it; `CHANNELS_LOG=info`
//! sets the servers' log level (`error` by default).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use influxify_core::ConversationState;
use influxify_core::conversation::Outbound;
use influxify_designer::project;
use influxify_designer::runner::{self, describe_input, render_message};
use influxify_designer::session::Input;
use influxify_designer::spec::{Case, TestFile};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::http_server::{HttpServer, Request, Response};
use crate::serve::{APP_SECRET, install_messenger, signature};
use crate::served::{MASTER_KEY, Served, WebChatUser, http, serve_with};
use crate::{KillOnDrop, free_port, root};

const ADMIN_KEY: &str = "ifx_channels-e2e-admin-key";
/// The Facebook page the fake webhooks come from.
const PAGE_ID: &str = "106123456789012";
const PAGE_TOKEN: &str = "page-token";
const GRAPH_VERSION: &str = "v25.0";
/// Cases of one server that run at once (those without `advance`).
const WORKERS: usize = 4;
/// The longest wait for the web chat's events of one turn.
const WAIT: Duration = Duration::from_secs(10);

/// The next end user's number (PSIDs and web chat message ids are unique in the run).
static NEXT_USER: AtomicU64 = AtomicU64::new(1);

fn sha256(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---- The fake Graph API ----

type Profiles = Arc<Mutex<HashMap<String, Map<String, Value>>>>;

/// Meta's Graph API as the messenger plugin uses it: the Send API (messages and sender
/// actions) and the User Profile API, answered from the profiles the cases register.
struct FakeGraph {
    server: HttpServer,
    profiles: Profiles,
}

fn graph_error(message: &str, kind: &str, code: u32) -> Response {
    Response::json(
        400,
        &json!({"error": {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEf"}}),
    )
}

fn graph_answer(request: &Request, profiles: &Profiles, sent: &AtomicU64) -> Response {
    if request.query("access_token") != Some(PAGE_TOKEN) {
        return graph_error("Invalid OAuth access token.", "OAuthException", 190);
    }
    let prefix = format!("/{GRAPH_VERSION}/");
    let Some(object) = request.path.strip_prefix(&prefix) else {
        return graph_error("Unknown path components", "OAuthException", 2500);
    };
    match (request.method.as_str(), object) {
        ("POST", "me/messages") => {
            let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                return graph_error("Invalid JSON", "OAuthException", 100);
            };
            let recipient = body["recipient"]["id"].clone();
            if body.get("sender_action").is_some() {
                Response::json(200, &json!({ "recipient_id": recipient }))
            } else if body.get("message").is_some() {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                Response::json(
                    200,
                    &json!({ "recipient_id": recipient, "message_id": format!("m_sent{n}") }),
                )
            } else {
                graph_error(
                    "(#100) Must send either message or sender action",
                    "OAuthException",
                    100,
                )
            }
        }
        ("GET", psid) if !psid.contains('/') => {
            let known = profiles.lock().unwrap().get(psid).cloned();
            let Some(profile) = known else {
                return graph_error(
                    &format!(
                        "Unsupported get request. Object with ID '{psid}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
                    ),
                    "GraphMethodException",
                    100,
                );
            };
            let fields = request
                .query("fields")
                .unwrap_or("first_name,last_name,profile_pic");
            let mut answer = Map::new();
            for field in fields.split(',').map(str::trim) {
                if let Some(value) = profile.get(field) {
                    answer.insert(field.to_string(), value.clone());
                }
            }
            answer.insert("id".into(), psid.into());
            Response::json(200, &Value::Object(answer))
        }
        _ => graph_error("Unknown path components", "OAuthException", 2500),
    }
}

impl FakeGraph {
    fn start() -> FakeGraph {
        let profiles = Profiles::default();
        let known = profiles.clone();
        let sent = AtomicU64::new(0);
        let server = HttpServer::start(move |request| graph_answer(request, &known, &sent));
        FakeGraph { server, profiles }
    }

    /// The Send API bodies addressed to `psid`, in order.
    fn sends_to(&self, psid: &str) -> Vec<Value> {
        let path = format!("/{GRAPH_VERSION}/me/messages");
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["recipient"]["id"] == psid)
            .collect()
    }

    /// The User Profile API requests for `psid`.
    fn profile_requests(&self, psid: &str) -> usize {
        let path = format!("/{GRAPH_VERSION}/{psid}");
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    }
}

/// A message as the user sees it: `text`, quick replies (`{title, payload}`) and buttons
/// (`{title, payload}` or `{title, url}`); the rest is left at the defaults.
fn seen(text: &str, quick_replies: &Value, buttons: &Value) -> Outbound {
    let pick = |list: &Value, fields: &[&str]| -> Vec<Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let mut kept = Map::new();
                for field in fields {
                    if let Some(value) = item.get(*field).filter(|v| !v.is_null()) {
                        kept.insert(field.to_string(), value.clone());
                    }
                }
                Value::Object(kept)
            })
            .collect()
    };
    let message = json!({
        "text": text,
        "quick_replies": pick(quick_replies, &["title", "payload"]),
        "buttons": pick(buttons, &["title", "payload", "url"]),
    });
    serde_json::from_value(message.clone()).unwrap_or_else(|e| panic!("{message}: {e}"))
}

/// A Send API message as the user sees it: the text (a button template's text), the quick
/// replies and the buttons.
fn graph_message(body: &Value) -> Outbound {
    let message = &body["message"];
    let template = &message["attachment"]["payload"];
    let text = message["text"]
        .as_str()
        .or_else(|| template["text"].as_str())
        .unwrap_or_default();
    seen(text, &message["quick_replies"], &template["buttons"])
}

// ---- One served bot in test mode ----

/// `influxify serve` in test mode on one flow directory, entering one flow.
struct Bot {
    served: Served,
    /// The flow new conversations start in.
    entry: String,
    /// How far the server's clock is ahead of the wall clock.
    offset_ms: AtomicU64,
}

impl Bot {
    fn start(work: &Path, flows: &Path, entry: &str, plugins: &Path) -> Bot {
        std::fs::create_dir_all(work).unwrap();
        let config = format!(
            "[server]\nplayground = false\n\
             [bot]\nname = \"{entry}\"\nflows = {flows:?}\nentry = \"{entry}\"\n\
             [plugins]\ndir = {plugins:?}\n\
             [store]\ndata = \"data\"\n\
             [logs]\nlevel = \"{}\"\n\
             [testing]\nenabled = true\n\
             [[admin.keys]]\nname = \"e2e\"\nscope = \"admin\"\nsha256 = \"{}\"\n",
            std::env::var("CHANNELS_LOG").unwrap_or_else(|_| "error".into()),
            sha256(ADMIN_KEY),
        );
        let path = work.join("influxify.toml");
        std::fs::write(&path, config).unwrap();
        let args: Vec<OsString> = vec!["--config".into(), path.into()];
        let served = serve_with(
            &args,
            &[
                ("INFLUXIFY_TESTING", "1"),
                ("INFLUXIFY_SECRET_MESSENGER_APP_SECRET", APP_SECRET),
                ("INFLUXIFY_SECRET_MESSENGER_PAGE_TOKEN", PAGE_TOKEN),
            ],
        );
        Bot {
            served,
            entry: entry.to_string(),
            offset_ms: AtomicU64::new(0),
        }
    }

    /// The server's time (webhooks carry it, as Messenger's would).
    fn now_ms(&self) -> u64 {
        wall_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    /// An admin or test-mode API call: the status and the JSON answer.
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut headers = vec![("authorization", format!("Bearer {ADMIN_KEY}"))];
        if body.is_some() {
            headers.push(("content-type", "application/json".into()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, answer) = http(&self.served.addr, method, path, &headers, body.as_bytes());
        let json = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
        (status, json)
    }

    fn expect(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        match self.api(method, path, body) {
            (200, answer) => Ok(answer),
            (status, answer) => Err(format!("{method} {path} was answered {status}: {answer}")),
        }
    }

    fn advance(&self, by: Duration) -> Result<(), String> {
        let answer = self.expect(
            "POST",
            "/testing/v1/clock/advance",
            Some(json!({ "ms": by.as_millis() as u64 })),
        )?;
        let offset = answer["offset_ms"].as_u64().ok_or("no offset_ms")?;
        self.offset_ms.fetch_max(offset, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until every effect of what was sent so far has run.
    fn quiesce(&self) -> Result<(), String> {
        self.expect("POST", "/testing/v1/quiesce", None).map(|_| ())
    }

    fn register_mocks(&self, channel: &str, user: &str, layers: Vec<Value>) -> Result<(), String> {
        let path = format!("/testing/v1/conversations/{channel}/{user}/mocks");
        match self.api("PUT", &path, Some(json!({ "layers": layers }))) {
            (200, _) => Ok(()),
            (status, answer) => Err(format!("the mocks were refused ({status}): {answer}")),
        }
    }

    /// The calls and sends of a conversation so far.
    fn record(&self, channel: &str, user: &str) -> Result<Value, String> {
        self.expect(
            "GET",
            &format!("/testing/v1/conversations/{channel}/{user}/record"),
            None,
        )
    }

    /// Waits until the runtime is idle and the conversation has no effect left to run (or is
    /// paused with one): under load a quiesce has been seen to answer while a timer's turn still
    /// had a send to make, so the conversation's own outbox is the last word.
    fn settle(&self, channel: &str, user: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.quiesce()?;
            let settled = match self.inspect(channel, user)? {
                Some(detail) => {
                    detail["outbox"].as_array().is_none_or(Vec::is_empty)
                        || detail["record"]["paused"].is_string()
                }
                None => true,
            };
            if settled {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the conversation still had effects to run after 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin API's view of a conversation; `None` before it exists.
    fn inspect(&self, channel: &str, user: &str) -> Result<Option<Value>, String> {
        match self.api(
            "GET",
            &format!("/admin/v1/conversations/{channel}/{user}"),
            None,
        ) {
            (200, detail) => Ok(Some(detail)),
            (404, _) => Ok(None),
            (status, answer) => Err(format!("inspecting was answered {status}: {answer}")),
        }
    }

    fn operator(&self, channel: &str, user: &str, input: &Input) -> Result<(), String> {
        let base = format!("/admin/v1/conversations/{channel}/{user}");
        match input {
            Input::Operator(text) => self
                .expect(
                    "POST",
                    &format!("{base}/messages"),
                    Some(json!({ "text": text })),
                )
                .map(|_| ()),
            _ => self
                .expect("POST", &format!("{base}/resume"), None)
                .map(|_| ()),
        }
    }
}

// ---- End users on the two channels ----

/// What a tap hits among the messages the user has seen.
enum Tapped {
    QuickReply(String),
    Button(String),
}

/// The quick reply or button with `payload` of the latest message that offers it.
fn find_tap(received: &[Outbound], payload: &str) -> Option<Tapped> {
    received.iter().rev().find_map(|message| {
        let quick = message
            .quick_replies
            .iter()
            .find(|q| q.payload == payload)
            .map(|q| Tapped::QuickReply(q.title.clone()));
        quick.or_else(|| {
            message
                .buttons
                .iter()
                .find(|b| b.payload.as_deref() == Some(payload))
                .map(|b| Tapped::Button(b.title.clone()))
        })
    })
}

/// An end user on a channel.
trait EndUser {
    /// The channel's name in conversation keys.
    fn channel(&self) -> &'static str;
    /// The user's id on it.
    fn id(&self) -> &str;
    /// The user types `text`.
    fn say(&mut self, bot: &Bot, text: &str) -> Result<(), String>;
    /// The user taps what offers `payload`.
    fn tap(&mut self, bot: &Bot, payload: &str) -> Result<(), String>;
    /// The bot's messages since the last call, once the runtime is idle; the engine handed
    /// `delivered` of them to the channel.
    fn replies(&mut self, delivered: usize) -> Vec<Outbound>;
    /// What is worth knowing about the channel when a turn fails.
    fn notes(&self) -> Vec<String>;
}

struct MessengerUser<'g> {
    psid: String,
    graph: &'g FakeGraph,
    /// Send API messages seen so far.
    seen: usize,
    received: Vec<Outbound>,
    mids: u64,
}

impl<'g> MessengerUser<'g> {
    fn new(graph: &'g FakeGraph, profile: Map<String, Value>) -> Self {
        let n = NEXT_USER.fetch_add(1, Ordering::SeqCst);
        let psid = format!("{}", 24_000_000_000_000_000u64 + n);
        graph.profiles.lock().unwrap().insert(psid.clone(), profile);
        MessengerUser {
            psid,
            graph,
            seen: 0,
            received: Vec::new(),
            mids: 0,
        }
    }

    fn mid(&mut self) -> String {
        self.mids += 1;
        format!("m_{}_{}", self.psid, self.mids)
    }

    /// Posts a signed webhook carrying `event`, from the user to the page, at the server's time.
    fn post(&self, bot: &Bot, mut event: Value) -> Result<(), String> {
        let at = bot.now_ms();
        event["sender"] = json!({ "id": self.psid });
        event["recipient"] = json!({ "id": PAGE_ID });
        event["timestamp"] = at.into();
        let body = json!({
            "object": "page",
            "entry": [{ "id": PAGE_ID, "time": at, "messaging": [event] }],
        })
        .to_string();
        let headers = [
            ("content-type", "application/json".to_string()),
            ("x-hub-signature-256", signature(body.as_bytes())),
        ];
        match http(
            &bot.served.addr,
            "POST",
            "/channels/messenger/webhook",
            &headers,
            body.as_bytes(),
        ) {
            (200, _) => Ok(()),
            (status, answer) => Err(format!("the webhook was answered {status}: {answer}")),
        }
    }
}

impl EndUser for MessengerUser<'_> {
    fn channel(&self) -> &'static str {
        "messenger"
    }

    fn id(&self) -> &str {
        &self.psid
    }

    fn say(&mut self, bot: &Bot, text: &str) -> Result<(), String> {
        let event = json!({ "message": { "mid": self.mid(), "text": text } });
        self.post(bot, event)
    }

    fn tap(&mut self, bot: &Bot, payload: &str) -> Result<(), String> {
        // As Messenger sends a tap: a quick reply's title as the text beside its payload, a
        // button's as a postback; a payload nothing offered (the persistent menu) as a postback.
        let mid = self.mid();
        let event = match find_tap(&self.received, payload) {
            Some(Tapped::QuickReply(title)) => json!({
                "message": { "mid": mid, "text": title, "quick_reply": { "payload": payload } }
            }),
            Some(Tapped::Button(title)) => {
                json!({ "postback": { "mid": mid, "title": title, "payload": payload } })
            }
            None => json!({ "postback": { "mid": mid, "title": payload, "payload": payload } }),
        };
        self.post(bot, event)
    }

    fn replies(&mut self, _delivered: usize) -> Vec<Outbound> {
        // Once the runtime is idle, every send has had the Graph API's answer.
        let sends: Vec<Value> = self
            .graph
            .sends_to(&self.psid)
            .into_iter()
            .filter(|b| b.get("message").is_some())
            .collect();
        let new: Vec<Outbound> = sends.iter().skip(self.seen).map(graph_message).collect();
        self.seen = sends.len();
        self.received.extend(new.iter().cloned());
        new
    }

    fn notes(&self) -> Vec<String> {
        let typing = self
            .graph
            .sends_to(&self.psid)
            .iter()
            .filter(|b| b.get("sender_action").is_some())
            .count();
        vec![format!(
            "Messenger: {} User Profile API request(s), {typing} sender action(s) so far",
            self.graph.profile_requests(&self.psid)
        )]
    }
}

struct WebChat {
    user: WebChatUser,
    received: Vec<Outbound>,
    posts: u64,
    /// Typing indicators seen so far.
    typing: usize,
}

impl WebChat {
    fn open(bot: &Bot, profile: &Map<String, Value>) -> Self {
        let request = if profile.is_empty() {
            String::new()
        } else {
            json!({ "profile": profile }).to_string()
        };
        WebChat {
            user: WebChatUser::open_with(&bot.served.addr, request.as_bytes()),
            received: Vec::new(),
            posts: 0,
            typing: 0,
        }
    }

    fn post(&mut self, mut body: Value) -> Result<(), String> {
        self.posts += 1;
        body["id"] = format!("post-{}", self.posts).into();
        match self.user.post(body) {
            (202, _) => Ok(()),
            (status, answer) => Err(format!("the message was answered {status}: {answer}")),
        }
    }
}

impl EndUser for WebChat {
    fn channel(&self) -> &'static str {
        "webchat"
    }

    fn id(&self) -> &str {
        &self.user.user
    }

    fn say(&mut self, _bot: &Bot, text: &str) -> Result<(), String> {
        self.post(json!({ "text": text }))
    }

    fn tap(&mut self, _bot: &Bot, payload: &str) -> Result<(), String> {
        // As the page posts a tap: the payload, with the title as the text.
        let title = match find_tap(&self.received, payload) {
            Some(Tapped::QuickReply(title) | Tapped::Button(title)) => title,
            None => payload.to_string(),
        };
        self.post(json!({ "text": title, "payload": payload }))
    }

    fn replies(&mut self, delivered: usize) -> Vec<Outbound> {
        let began = Instant::now();
        let mut new = Vec::new();
        while new.len() < delivered {
            let Some(event) = self.user.next_event(WAIT.saturating_sub(began.elapsed())) else {
                break;
            };
            if event.event == "typing" {
                self.typing += 1;
                continue;
            }
            let data = &event.data;
            let text = data["text"].as_str().unwrap_or_default();
            new.push(seen(text, &data["quick_replies"], &data["buttons"]));
        }
        self.received.extend(new.iter().cloned());
        new
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "web chat: {} typing indicator(s) so far",
            self.typing
        )]
    }
}

// ---- Cases ----

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// A turn's failure, as the designer's runner shows it.
fn turn_failure(turn: usize, said: &str, problems: &[String], transcript: &str) -> String {
    let mut out = format!("turn {}: {said}\n", turn + 1);
    for problem in problems {
        out.push_str(&indent(problem, "  "));
    }
    if !transcript.is_empty() {
        out.push_str("  conversation before this turn:\n");
        out.push_str(&indent(transcript, "    "));
    }
    out
}

/// What the engine recorded for the conversation since `seen` (calls, sends): the actions
/// called, how many messages the channel took, and the failed sends.
struct Recorded {
    calls: Vec<String>,
    delivered: usize,
    failed: Vec<String>,
}

fn recorded(record: &Value, seen: &mut (usize, usize)) -> Recorded {
    let calls = record["calls"].as_array().cloned().unwrap_or_default();
    let sends = record["sends"].as_array().cloned().unwrap_or_default();
    let new_calls = calls.iter().skip(seen.0);
    let new_sends = sends.iter().skip(seen.1);
    let result = Recorded {
        calls: new_calls
            .map(|c| c["action"].as_str().unwrap_or_default().to_string())
            .collect(),
        delivered: new_sends.clone().filter(|s| s["error"].is_null()).count(),
        failed: new_sends
            .filter(|s| !s["error"].is_null())
            .map(|s| {
                format!(
                    "the engine's send of “{}” failed: {}",
                    s["text"].as_str().unwrap_or_default(),
                    s["error"].as_str().unwrap_or_default()
                )
            })
            .collect(),
    };
    *seen = (calls.len(), sends.len());
    result
}

/// Plays `case` as `user`, turn by turn; the first turn that differs, explained.
fn play(bot: &Bot, spec: &TestFile, case: &Case, user: &mut dyn EndUser) -> Result<(), String> {
    let channel = user.channel();
    let id = user.id().to_string();
    let layers = vec![
        serde_json::to_value(&case.mocks).unwrap(),
        serde_json::to_value(&spec.mocks).unwrap(),
    ];
    bot.register_mocks(channel, &id, layers)?;
    let mut transcript = String::new();
    let mut seen = (0, 0);
    for (t, turn) in case.turns.iter().enumerate() {
        let input = runner::turn_input(turn).map_err(|e| format!("turn {}: {e}", t + 1))?;
        let said = describe_input(&input);
        let acted = match &input {
            Input::User(text) => user.say(bot, text),
            Input::Tap(payload) => user.tap(bot, payload),
            Input::Advance(by) => bot.advance(*by),
            Input::Operator(_) | Input::Resume => bot.operator(channel, &id, &input),
            Input::Reset => Err("a reset is not a turn of a test file".into()),
        };
        if let Err(why) = acted.and_then(|()| bot.settle(channel, &id)) {
            return Err(turn_failure(t, &said, &[why], &transcript));
        }
        let record = recorded(&bot.record(channel, &id)?, &mut seen);
        let messages = user.replies(record.delivered);
        let mut notes = record.failed;
        let state = match bot.inspect(channel, &id)? {
            Some(detail) => {
                if let Some(paused) = detail["record"]["paused"].as_str() {
                    notes.push(format!("the conversation is paused: {paused}"));
                }
                for item in detail["outbox"].as_array().into_iter().flatten() {
                    if let Some(error) = item["last_error"].as_str() {
                        notes.push(format!("a pending effect failed: {error}"));
                    }
                }
                notes.push(format!(
                    "the server says: node {}, waiting {}, recent events {}, {} pending effect(s)",
                    detail["record"]["state"]["node"],
                    detail["record"]["state"]["waiting"],
                    detail["record"]["recent"],
                    detail["outbox"].as_array().map_or(0, Vec::len)
                ));
                serde_json::from_value(detail["record"]["state"].clone())
                    .map_err(|e| format!("the conversation's state does not read: {e}"))?
            }
            None => ConversationState::new(&bot.entry),
        };
        notes.extend(user.notes());
        let calls: Vec<&str> = record.calls.iter().map(String::as_str).collect();
        let problems = runner::check_outcome(turn, &messages, &calls, &state, &notes);
        if !problems.is_empty() {
            return Err(turn_failure(t, &said, &problems, &transcript));
        }
        transcript.push_str(&format!("{said}\n"));
        for message in &messages {
            let _ = writeln!(transcript, "  bot › {}", render_message(message));
        }
    }
    Ok(())
}

/// How one case went on one channel.
struct Outcome {
    file: String,
    case: String,
    channel: &'static str,
    failure: Option<String>,
}

#[derive(Clone, Copy)]
enum Channel {
    Messenger,
    WebChat,
}

fn run_case(
    bot: &Bot,
    graph: &FakeGraph,
    spec: &TestFile,
    case: &Case,
    channel: Channel,
) -> Option<String> {
    let profile = case.user.clone().unwrap_or_else(|| spec.user.clone());
    let played = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match channel {
        Channel::Messenger => play(bot, spec, case, &mut MessengerUser::new(graph, profile)),
        Channel::WebChat => play(bot, spec, case, &mut WebChat::open(bot, &profile)),
    }));
    match played {
        Ok(result) => result.err(),
        Err(panic) => Some(format!(
            "the test panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Runs every case of the test file `file` on both channels against one server.
fn run_file(file: &Path, work: &Path, plugins: &Path, graph: &FakeGraph) -> Vec<Outcome> {
    let name = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    let whole = |why: String| {
        vec![Outcome {
            file: name.clone(),
            case: "(the whole file)".into(),
            channel: "both",
            failure: Some(why),
        }]
    };
    let dir = project::dir_of(file);
    let compilation = project::compile_dir(&dir, None).unwrap();
    let Some(flows) = &compilation.flows else {
        return whole(format!("the flows of {} do not compile", dir.display()));
    };
    let spec: TestFile = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let entry = match runner::flow_under_test(file, &spec, flows) {
        Ok(entry) => entry,
        Err(why) => return whole(why),
    };
    let stem = file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('.', "-");
    let bot = Bot::start(&work.join(stem), &dir, &entry, plugins);

    let jobs: Vec<(usize, Channel)> = (0..spec.cases.len())
        .flat_map(|i| [(i, Channel::Messenger), (i, Channel::WebChat)])
        .collect();
    let timed = |i: usize| spec.cases[i].turns.iter().any(|t| t.advance.is_some());
    let (sequential, concurrent): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(i, _)| timed(*i));
    let results = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                while let Some(&(i, channel)) = concurrent.get(next.fetch_add(1, Ordering::SeqCst))
                {
                    let failure = run_case(&bot, graph, &spec, &spec.cases[i], channel);
                    results.lock().unwrap().push((i, channel, failure));
                }
            });
        }
    });
    // Time moves for the whole server: cases that advance it run alone.
    for &(i, channel) in &sequential {
        let failure = run_case(&bot, graph, &spec, &spec.cases[i], channel);
        results.lock().unwrap().push((i, channel, failure));
    }
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, channel, _)| (*i, *channel as u8));
    results
        .into_iter()
        .map(|(i, channel, failure)| Outcome {
            file: name.clone(),
            case: spec.cases[i].name.clone(),
            channel: match channel {
                Channel::Messenger => "messenger",
                Channel::WebChat => "webchat",
            },
            failure,
        })
        .collect()
}

/// The shipped transcript test files (only those whose path contains `CHANNELS_ONLY` when it
/// is set, to run a few while working on them).
fn test_files() -> Vec<PathBuf> {
    let found = project::find(&[root().join("flows")]).unwrap();
    assert!(!found.tests.is_empty(), "no transcript tests under flows/");
    let only = std::env::var("CHANNELS_ONLY").unwrap_or_default();
    found
        .tests
        .into_iter()
        .filter(|file| file.to_string_lossy().contains(&only))
        .collect()
}

#[test]
fn every_shipped_transcript_case_holds_over_messenger_and_the_web_chat() {
    let began = Instant::now();
    let graph = FakeGraph::start();
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    install_messenger(&plugins, &graph.server.url);
    let files = test_files();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let running: Vec<_> = files
            .iter()
            .map(|file| {
                let (work, plugins, graph) = (work.path(), &plugins, &graph);
                scope.spawn(move || run_file(file, work, plugins, graph))
            })
            .collect();
        running
            .into_iter()
            .flat_map(|r| r.join().expect("a test file's run panicked"))
            .collect()
    });

    let mut report = String::new();
    for outcome in &outcomes {
        let verdict = if outcome.failure.is_some() {
            "FAIL"
        } else {
            "ok  "
        };
        let _ = writeln!(
            report,
            "{verdict} [{}] {} › {}",
            outcome.channel, outcome.file, outcome.case
        );
    }
    for outcome in outcomes.iter().filter(|o| o.failure.is_some()) {
        let _ = writeln!(
            report,
            "\n--- [{}] {} › {}\n{}",
            outcome.channel,
            outcome.file,
            outcome.case,
            outcome.failure.as_deref().unwrap_or_default()
        );
    }
    for channel in ["messenger", "webchat"] {
        let all: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.channel == channel || o.channel == "both")
            .collect();
        let passed = all.iter().filter(|o| o.failure.is_none()).count();
        let _ = writeln!(
            report,
            "{passed} of {} cases passed over {channel}",
            all.len()
        );
    }
    let _ = writeln!(report, "({:.1} s)", began.elapsed().as_secs_f64());
    println!("{report}");
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    assert_eq!(
        failed, 0,
        "{failed} transcript case(s) failed over the channels:\n{report}"
    );
}

/// Starts `influxify serve` in `work` with `env`; its exit status and standard error, or what
/// it wrote to standard error until `until` appeared there (then it is stopped).
fn serve_briefly(work: &Path, env: &[(&str, &str)], until: &str) -> (Option<i32>, String) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_influxify"));
    command
        .args(["serve", "--addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--config".as_ref(), work.join("influxify.toml").as_os_str()])
        .env("INFLUXIFY_MASTER_KEY", MASTER_KEY)
        .env_remove("INFLUXIFY_TESTING")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = KillOnDrop(command.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut said = String::new();
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(30) {
        match seen.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                said += &line;
                said.push('\n');
                if line.contains(until) {
                    return (None, said);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().unwrap();
                return (status.code(), said);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    panic!("the server neither stopped nor said `{until}` within 30 s:\n{said}");
}

#[test]
fn test_mode_needs_the_setting_and_the_variable_and_says_so_loudly() {
    let work = tempfile::tempdir().unwrap();
    let flows = work.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("hello.yaml"),
        "id: hello\nstart: hi\nnodes:\n  hi: { kind: end, text: Hi. }\n",
    )
    .unwrap();
    let config = |testing: bool| {
        let text = format!(
            "[bot]\nflows = \"flows\"\n[store]\ndata = \"data\"\n[plugins]\ndir = \"plugins\"\n\
             [testing]\nenabled = {testing}\n"
        );
        std::fs::write(work.path().join("influxify.toml"), text).unwrap();
    };

    // Only the setting, or only the variable: refused, saying what is missing.
    config(true);
    let (status, said) = serve_briefly(work.path(), &[], "serving on");
    assert_eq!(status, Some(2), "{said}");
    assert!(said.contains("INFLUXIFY_TESTING=1"), "{said}");
    assert!(said.contains("never be on in production"), "{said}");
    config(false);
    let (status, said) = serve_briefly(work.path(), &[("INFLUXIFY_TESTING", "1")], "serving on");
    assert_eq!(status, Some(2), "{said}");
    assert!(said.contains("`[testing] enabled = true`"), "{said}");

    // Both: it starts, with a loud warning.
    config(true);
    let (status, said) = serve_briefly(work.path(), &[("INFLUXIFY_TESTING", "1")], "serving on");
    assert_eq!(status, None, "{said}");
    assert!(said.contains("TEST MODE IS ON"), "{said}");

    // Neither: no test routes.
    let served = crate::served::serve(work.path(), "hello", &work.path().join("plugins"), &[]);
    let (status, _) = http(&served.addr, "POST", "/testing/v1/quiesce", &[], b"");
    assert_eq!(status, 404);
}
