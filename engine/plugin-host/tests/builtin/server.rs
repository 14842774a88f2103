//! A fake Google Sheets API v4 and OAuth 2.0 token endpoint on 127.0.0.1 (a small real
//! HTTP/1.1 server), speaking the protocol as `../shared/protocols.md` describes it:
//!
//! - `GET /v4/spreadsheets/{id}/values/{range}` wants `Authorization: Bearer <accepted token>`
//!   (else 401 `UNAUTHENTICATED`); spreadsheet [`SPREADSHEET`] has the tabs `Sheet1` (the
//!   fixture `values-get.json`), `Orders` (ragged rows), `My Sheet`, `Empty` (no `values`),
//!   `Busy` (429 `RESOURCE_EXHAUSTED`) and `Broken` (500); any other tab is a 400
//!   `INVALID_ARGUMENT` (the fixture `error-bad-range.json`, naming the range). Spreadsheet
//!   [`FORBIDDEN`] is a 403, any other a 404.
//! - `POST /token` runs the refresh-token grant: with the known client and refresh token it
//!   hands out [`FRESH_TOKEN`], else 400 `invalid_grant`.
//!
//! It records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The spreadsheet the server knows.
pub const SPREADSHEET: &str = "1ShopOrders-9fQx";
/// A spreadsheet that exists but is not shared with the caller.
pub const FORBIDDEN: &str = "1NotShared";
/// The access token `/token` hands out.
pub const FRESH_TOKEN: &str = "fresh-token";
/// The OAuth client.
pub const CLIENT_ID: &str = "influxify.apps.googleusercontent.com";
/// Its secret.
pub const CLIENT_SECRET: &str = "client-secret";
/// The refresh token the token endpoint honours.
pub const REFRESH_TOKEN: &str = "1//refresh-me";

/// The `values-get.json` fixture (tab `Sheet1`).
pub const VALUES_GET: &str = include_str!("fixtures/values-get.json");
/// The `error-bad-range.json` fixture (a 400 for a missing tab).
pub const ERROR_BAD_RANGE: &str = include_str!("fixtures/error-bad-range.json");

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET /path?query HTTP/1.1`.
    pub line: String,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it was a token refresh.
    pub fn is_refresh(&self) -> bool {
        self.line.starts_with("POST /token ")
    }

    /// Whether it was a Sheets read.
    pub fn is_read(&self) -> bool {
        self.line.starts_with("GET /v4/spreadsheets/")
    }
}

/// The server.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it saw.
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The access token the Sheets API accepts.
    accepted: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server that accepts the access token `accepted`.
    pub fn start(accepted: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Server {
            url,
            seen: Arc::default(),
            accepted: Arc::new(Mutex::new(accepted.to_string())),
        };
        let handle = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handle = handle.clone();
                std::thread::spawn(move || handle.serve(stream));
            }
        });
        server
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The Sheets reads seen so far.
    pub fn reads(&self) -> Vec<Seen> {
        self.requests().into_iter().filter(Seen::is_read).collect()
    }

    /// The token refreshes seen so far.
    pub fn refreshes(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(Seen::is_refresh)
            .collect()
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
        let seen = Seen {
            line: line.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("/");
        let path = target.split('?').next().unwrap_or(target);
        let (status, body) = match (method, path) {
            ("POST", "/token") => self.token(&seen.body),
            ("GET", path) if path.starts_with("/v4/spreadsheets/") => self.values_get(&seen, path),
            _ => (404, "not found".to_string()),
        };
        let mut out = stream;
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body.as_bytes());
    }

    /// The refresh-token grant (form-encoded).
    fn token(&self, body: &str) -> (u16, String) {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some("refresh_token") {
            return (400, r#"{"error":"unsupported_grant_type"}"#.into());
        }
        if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
            return (
                401,
                r#"{"error":"invalid_client","error_description":"Unauthorized"}"#.into(),
            );
        }
        if field("refresh_token") != Some(REFRESH_TOKEN) {
            return (
                400,
                r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#
                    .into(),
            );
        }
        (
            200,
            serde_json::json!({
                "access_token": FRESH_TOKEN,
                "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/spreadsheets.readonly",
                "token_type": "Bearer",
            })
            .to_string(),
        )
    }

    /// `values.get`.
    fn values_get(&self, seen: &Seen, path: &str) -> (u16, String) {
        let expected = format!("Bearer {}", self.accepted.lock().unwrap());
        if seen.header("authorization") != Some(expected.as_str()) {
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
            );
        }
        let rest = &path["/v4/spreadsheets/".len()..];
        let Some((id, range)) = rest.split_once("/values/") else {
            return (404, "not found".into());
        };
        let (id, range) = (decode(id), decode(range));
        if id == FORBIDDEN {
            return google_error(
                403,
                "The caller does not have permission",
                "PERMISSION_DENIED",
            );
        }
        if id != SPREADSHEET {
            return google_error(404, "Requested entity was not found.", "NOT_FOUND");
        }
        let tab = range.split('!').next().unwrap_or("").trim_matches('\'');
        let values = match tab {
            "Sheet1" => return (200, VALUES_GET.to_string()),
            "Orders" => serde_json::json!([
                ["Order", "Status", "Ship Date", "Carrier", "Tracking URL"],
                [
                    "A-1001",
                    "Shipped",
                    "2025-12-30",
                    "DHL Express",
                    "https://track.example/dhl/JD0146"
                ],
                ["A-1002", "Processing", "2026-01-03"],
                [],
                ["a-1003", "Delivered", "2025-12-22", "UPS"],
                ["A-1004"],
                ["A-1001", "Returned", "2026-01-10", "DHL Express"],
            ]),
            "My Sheet" => serde_json::json!([["Name", "Plan"], ["Ada", "Pro"], ["Bo", "Free"]]),
            "Empty" => {
                return (
                    200,
                    serde_json::json!({"range": "Empty!A1:Z1000", "majorDimension": "ROWS"})
                        .to_string(),
                );
            }
            "Busy" => {
                return google_error(
                    429,
                    "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user' of service 'sheets.googleapis.com' for consumer 'project_number:1234'.",
                    "RESOURCE_EXHAUSTED",
                );
            }
            "Broken" => return google_error(500, "Internal error encountered.", "INTERNAL"),
            _ => {
                let mut error: serde_json::Value = serde_json::from_str(ERROR_BAD_RANGE).unwrap();
                error["error"]["message"] = format!("Unable to parse range: {range}").into();
                return (400, error.to_string());
            }
        };
        let rows = values.as_array().map_or(0, Vec::len);
        let answered = format!("{tab}!A1:E{rows}");
        (
            200,
            serde_json::json!({"range": answered, "majorDimension": "ROWS", "values": values})
                .to_string(),
        )
    }
}

/// Google's error shape.
fn google_error(code: u16, message: &str, status: &str) -> (u16, String) {
    (
        code,
        serde_json::json!({"error": {"code": code, "message": message, "status": status}})
            .to_string(),
    )
}

/// Percent-decodes a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = segment
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
