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

use std::sync::{Arc, Mutex};

use crate::http_server::{HttpServer, Request, Response};

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

/// The server.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: HttpServer,
    /// The access token the Sheets API accepts.
    accepted: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server that accepts the access token `accepted`.
    pub fn start(accepted: &str) -> Server {
        let (http, listener) = HttpServer::bind();
        let server = Server {
            url: http.url.clone(),
            http,
            accepted: Arc::new(Mutex::new(accepted.to_string())),
        };
        let handle = server.clone();
        listener.serve(move |request| {
            let (status, body) = handle.answer(request);
            Response::new(status, body).header("content-type", "application/json; charset=UTF-8")
        });
        server
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.http.requests()
    }

    /// The Sheets reads seen so far.
    pub fn reads(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.line.starts_with("GET /v4/spreadsheets/"))
            .collect()
    }

    /// The token refreshes seen so far.
    pub fn refreshes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.line.starts_with("POST /token "))
            .collect()
    }

    fn answer(&self, request: &Request) -> (u16, String) {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/token") => self.token(&request.text()),
            ("GET", path) if path.starts_with("/v4/spreadsheets/") => {
                self.values_get(request, path)
            }
            _ => (404, "not found".to_string()),
        }
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
    fn values_get(&self, request: &Request, path: &str) -> (u16, String) {
        let expected = format!("Bearer {}", self.accepted.lock().unwrap());
        if request.header("authorization") != Some(expected.as_str()) {
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
