//! Outbound HTTP, run by the host: a small request builder ([`get`], [`post`], [`request`]) and
//! the [`Response`].
//!
//! The host checks every URL (and every redirect) against the manifest's `[grants] http`
//! origins, caps the response body, clamps the timeout to the call's deadline and counts the
//! requests against `http_calls`. Secrets are injected by the host, by name
//! ([`RequestBuilder::secret`]): the plugin never sees their values.
//!
//! ```no_run
//! # use influxify_plugin_sdk::{http, Error};
//! # fn f() -> Result<(), Error> {
//! use influxify_plugin_sdk::http::Placement;
//!
//! let response = http::post("https://api.example.com/v1/items")
//!     .secret("example_token", Placement::Bearer)
//!     .json(&serde_json::json!({ "name": "ada" }))
//!     .timeout_ms(5_000)
//!     .send()?
//!     .error_for_status()?;
//! let created: serde_json::Value = response.json()?;
//! # Ok(()) }
//! ```
//!
//! For the host's raw [`HttpError`] (to tell a timeout from a transport failure), call
//! `influxify_plugin_sdk::bindings::influxify::plugin::http::send` directly.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::influxify::plugin::http as wit;

/// The host's own HTTP error, which converts into [`Error`] (see [`RequestBuilder::send`]).
pub use wit::HttpError;
/// Where the host puts a secret's value: `Bearer` (`Authorization: Bearer <secret>`),
/// `Header(name)` or `Query(name)`.
pub use wit::SecretPlacement as Placement;

/// A `GET` request to `url`.
pub fn get(url: impl Into<String>) -> RequestBuilder {
    request("GET", url)
}

/// A `POST` request to `url`.
pub fn post(url: impl Into<String>) -> RequestBuilder {
    request("POST", url)
}

/// A `PUT` request to `url`.
pub fn put(url: impl Into<String>) -> RequestBuilder {
    request("PUT", url)
}

/// A `PATCH` request to `url`.
pub fn patch(url: impl Into<String>) -> RequestBuilder {
    request("PATCH", url)
}

/// A `DELETE` request to `url`.
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    request("DELETE", url)
}

/// A request with any `method` to `url` (an absolute `https://` URL, or a granted `http://` one).
pub fn request(method: impl Into<String>, url: impl Into<String>) -> RequestBuilder {
    RequestBuilder {
        request: wit::Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            secret: None,
            timeout_ms: None,
        },
        error: None,
    }
}

/// A request being built; [`RequestBuilder::send`] sends it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    request: wit::Request,
    /// A failure while building (a body that would not serialize), reported by `send`.
    error: Option<Error>,
}

impl RequestBuilder {
    /// Adds a header (headers may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push((name.into(), value.into()));
        self
    }

    /// Appends a query parameter to the URL, percent-encoded.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        let url = &mut self.request.url;
        let separator = if url.contains('?') { '&' } else { '?' };
        url.push(separator);
        percent_encode(name, url);
        url.push('=');
        percent_encode(value, url);
        self
    }

    /// Sets the body to `value` as JSON, with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.request.body = Some(body);
                self.header("Content-Type", "application/json")
            }
            Err(e) => {
                self.error = Some(Error::permanent(format!(
                    "the request body cannot be serialized: {e}"
                )));
                self
            }
        }
    }

    /// Sets the raw body (set a `Content-Type` header to go with it).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = Some(body.into());
        self
    }

    /// Sets the body to `application/x-www-form-urlencoded` pairs.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let mut body = String::new();
        for (i, (name, value)) in pairs.iter().enumerate() {
            if i > 0 {
                body.push('&');
            }
            percent_encode(name, &mut body);
            body.push('=');
            percent_encode(value, &mut body);
        }
        self.request.body = Some(body.into_bytes());
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Has the host inject secret `name` at `placement`. The manifest says which hosts each
    /// secret may be sent to; a secret that is not granted makes the request fail as
    /// [`HttpError::Denied`].
    pub fn secret(mut self, name: impl Into<String>, placement: Placement) -> Self {
        self.request.secret = Some(wit::SecretUse {
            name: name.into(),
            placement,
        });
        self
    }

    /// Gives up after `timeout_ms` milliseconds (the host clamps it to the call's deadline,
    /// which is also the default).
    pub fn timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.request.timeout_ms = Some(timeout_ms);
        self
    }

    /// Sends the request and waits for the whole response. Host errors become the SDK's
    /// [`Error`]: timeouts and transport failures are retryable, requests the manifest does not
    /// allow (or an exhausted request budget) are misconfigurations, an oversized response is
    /// permanent. Any status is a response: see [`Response::error_for_status`].
    pub fn send(self) -> Result<Response, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let method = self.request.method.clone();
        let url = redact_query(&self.request.url);
        wit::send(&self.request)
            .map(Response::from)
            .map_err(|e| Error::from(e).context(format_args!("{method} {url}")))
    }
}

/// A whole HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, as received.
    pub headers: Vec<(String, String)>,
    /// The body (at most the manifest's `response_bytes`).
    pub body: Vec<u8>,
}

impl From<wit::Response> for Response {
    fn from(response: wit::Response) -> Self {
        Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced by `�`).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body, parsed as JSON into `T`; a body that does not parse is [`Error::Permanent`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::permanent(format!(
                "the response (status {}) is not the JSON expected: {e}",
                self.status
            ))
        })
    }

    /// The response if its status is 2xx (or 3xx), else an error of the kind the status
    /// suggests: 408, 425, 429 and 5xx are retryable, 401 and 403 are misconfigurations (bad
    /// credentials or grants), other 4xx are permanent. The message has the status and the
    /// start of the body.
    pub fn error_for_status(self) -> Result<Self, Error> {
        let status = self.status;
        if status < 400 {
            return Ok(self);
        }
        let mut body = self.text();
        if body.len() > 200 {
            let mut end = 200;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        let message = format!("HTTP status {status}: {}", body.trim());
        Err(match status {
            408 | 425 | 429 | 500.. => Error::Retryable(message),
            401 | 403 => Error::Misconfigured(message),
            _ => Error::Permanent(message),
        })
    }
}

/// Appends `text` to `out`, percent-encoding all but the unreserved characters of RFC 3986.
fn percent_encode(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// The URL without its query (which may carry personal data), for error messages.
fn redact_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_encoded() {
        let request = get("https://api.example.com/search")
            .query("q", "café & co")
            .query("page", "2")
            .request;
        assert_eq!(
            request.url,
            "https://api.example.com/search?q=caf%C3%A9%20%26%20co&page=2"
        );
        let form = post("https://x").form(&[("a", "1 2"), ("b", "=")]).request;
        assert_eq!(form.body.as_deref(), Some(&b"a=1%202&b=%3D"[..]));
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let response = |status| Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"nope".to_vec(),
        };
        assert!(response(200).error_for_status().is_ok());
        assert!(response(304).error_for_status().is_ok());
        assert!(matches!(
            response(429).error_for_status(),
            Err(Error::Retryable(_))
        ));
        assert!(matches!(
            response(503).error_for_status(),
            Err(Error::Retryable(_))
        ));
        assert!(matches!(
            response(401).error_for_status(),
            Err(Error::Misconfigured(_))
        ));
        assert!(
            matches!(response(404).error_for_status(), Err(Error::Permanent(m)) if m == "HTTP status 404: nope")
        );
        assert_eq!(response(200).header("content-type"), Some("text/plain"));
    }

    #[test]
    fn host_errors_map_to_error_kinds() {
        assert!(matches!(
            Error::from(HttpError::Timeout),
            Error::Retryable(_)
        ));
        assert!(matches!(
            Error::from(HttpError::Transport("dns".into())),
            Error::Retryable(_)
        ));
        assert!(matches!(
            Error::from(HttpError::Denied("no".into())),
            Error::Misconfigured(_)
        ));
        assert!(matches!(
            Error::from(HttpError::TooLarge),
            Error::Permanent(_)
        ));
    }
}
