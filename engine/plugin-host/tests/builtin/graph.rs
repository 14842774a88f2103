//! A fake Graph API on 127.0.0.1 (a small real HTTP/1.1 server) for the Messenger Send API, as
//! `../shared/protocols.md` describes it: `POST /v25.0/me/messages?access_token=<page token>`.
//!
//! - A request without the page token it was started with gets the documented invalid-token
//!   error (`fixtures/messenger/send-error-invalid-token.json`, HTTP 400, code 190).
//! - Answers scripted with [`Graph::script`] come next, one per request, in order (`None`: the
//!   ordinary answer).
//! - A body without `recipient.id` gets a code-100 error; a `sender_action` gets
//!   `{"recipient_id"}`; a message gets the documented success
//!   (`fixtures/messenger/send-success-response.json`).
//! - Any other path is Graph's unknown-path error.
//!
//! It records every request, with when it came.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The documented success: `{"recipient_id", "message_id"}`.
pub const SEND_SUCCESS: &str = include_str!("fixtures/messenger/send-success-response.json");
/// The documented invalid-token error (code 190).
pub const SEND_INVALID_TOKEN: &str =
    include_str!("fixtures/messenger/send-error-invalid-token.json");

/// The `message_id` of [`SEND_SUCCESS`].
pub fn success_message_id() -> String {
    let success: serde_json::Value = serde_json::from_str(SEND_SUCCESS).unwrap();
    success["message_id"].as_str().unwrap().to_string()
}

/// A Graph error body with `code`, `error_subcode` and `message`, as Graph shapes them.
pub fn graph_error(code: i64, subcode: Option<i64>, message: &str) -> String {
    let mut error = serde_json::json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = subcode.into();
    }
    serde_json::json!({ "error": error }).to_string()
}

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST /v25.0/me/messages?access_token=... HTTP/1.1`.
    pub line: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A scripted answer: status and body.
pub type Answer = (u16, String);

/// The server.
#[derive(Debug, Clone)]
pub struct Graph {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The page token it accepts.
    token: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Option<Answer>>>>,
}

impl Graph {
    /// Starts a server that accepts the page token `token`.
    pub fn start(token: &str) -> Graph {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let graph = Graph {
            url,
            token: token.to_string(),
            seen: Arc::default(),
            script: Arc::default(),
        };
        let handle = graph.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handle = handle.clone();
                std::thread::spawn(move || handle.serve(stream));
            }
        });
        graph
    }

    /// The next requests' answers, in order (`None`: the ordinary answer).
    pub fn script(&self, answers: impl IntoIterator<Item = Option<Answer>>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The JSON bodies seen so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests().iter().map(Seen::json).collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let line = line.trim_end().to_string();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = header.trim_end().split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let seen = Seen {
            line: line.clone(),
            path: path.to_string(),
            query: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        let (status, body) = self.answer(&method, &seen);
        let mut out = stream;
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body.as_bytes());
    }

    fn answer(&self, method: &str, seen: &Seen) -> Answer {
        if method != "POST" || seen.path != "/v25.0/me/messages" {
            return (
                400,
                graph_error(2500, None, "Unknown path components: /me/message"),
            );
        }
        if seen.query("access_token") != Some(self.token.as_str()) {
            return (400, SEND_INVALID_TOKEN.trim_end().to_string());
        }
        if let Some(Some(answer)) = self.script.lock().unwrap().pop_front() {
            return answer;
        }
        let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
        let Some(recipient) = body["recipient"]["id"].as_str() else {
            return (
                400,
                graph_error(100, None, "(#100) The parameter recipient is required"),
            );
        };
        if body.get("sender_action").is_some() {
            return (
                200,
                serde_json::json!({ "recipient_id": recipient }).to_string(),
            );
        }
        (200, SEND_SUCCESS.trim_end().to_string())
    }
}
