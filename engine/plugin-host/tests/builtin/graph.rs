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
//! - `GET /v25.0/{psid}?fields=...` is the User Profile API: the fields asked of [`PROFILE`].
//! - Any other path is Graph's unknown-path error.
//!
//! It records every request, with when it came.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::http_server::{HttpServer, Request, Response};

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

/// A scripted answer: status and body.
pub type Answer = (u16, String);

/// The server.
#[derive(Debug, Clone)]
pub struct Graph {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The page token it accepts.
    token: String,
    http: HttpServer,
    script: Arc<Mutex<VecDeque<Option<Answer>>>>,
}

impl Graph {
    /// Starts a server that accepts the page token `token`.
    pub fn start(token: &str) -> Graph {
        let (http, listener) = HttpServer::bind();
        let graph = Graph {
            url: http.url.clone(),
            token: token.to_string(),
            http,
            script: Arc::default(),
        };
        let handle = graph.clone();
        listener.serve(move |request| {
            let (status, body) = handle.answer(request);
            Response::new(status, body).header("content-type", "application/json; charset=UTF-8")
        });
        graph
    }

    /// The next requests' answers, in order (`None`: the ordinary answer).
    pub fn script(&self, answers: impl IntoIterator<Item = Option<Answer>>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.http.requests()
    }

    /// The JSON bodies seen so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests().iter().map(Request::json).collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.http.clear();
    }

    fn answer(&self, request: &Request) -> Answer {
        if request.method == "GET"
            && let Some(psid) = request.path.strip_prefix("/v25.0/")
            && !psid.contains('/')
        {
            return self.profile(request, psid);
        }
        if request.method != "POST" || request.path != "/v25.0/me/messages" {
            return (
                400,
                graph_error(2500, None, "Unknown path components: /me/message"),
            );
        }
        if request.query("access_token") != Some(self.token.as_str()) {
            return (400, SEND_INVALID_TOKEN.trim_end().to_string());
        }
        if let Some(Some(answer)) = self.script.lock().unwrap().pop_front() {
            return answer;
        }
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
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

    /// The User Profile API: `GET /v25.0/{psid}?fields=...` answers the fields asked of
    /// [`PROFILE`] (Meta answers only those, with the `id`).
    fn profile(&self, request: &Request, psid: &str) -> Answer {
        if request.query("access_token") != Some(self.token.as_str()) {
            return (400, SEND_INVALID_TOKEN.trim_end().to_string());
        }
        let mut answer = serde_json::json!({ "id": psid });
        for field in request.query("fields").unwrap_or_default().split(',') {
            if let Some(value) = PROFILE.iter().find(|(name, _)| *name == field) {
                answer[field] = value.1.into();
            }
        }
        (200, answer.to_string())
    }
}

/// The profile every user of the fake Graph has.
pub const PROFILE: [(&str, &str); 3] = [
    ("first_name", "Ada"),
    ("last_name", "Lovelace"),
    ("locale", "en_GB"),
];
