//! A small real HTTP/1.1 server on 127.0.0.1 for the tests' fake services: one thread per
//! connection, one request each (line, headers, `content-length` body), recorded, answered with
//! what the handler returns and `connection: close`.

// Each test target uses a part of it.
#![allow(dead_code)]

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A request the server saw.
#[derive(Clone)]
pub struct Request {
    /// The request line: `GET /path?query HTTP/1.1`.
    pub line: String,
    /// `GET`, `POST`…
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body, as sent.
    pub body: Vec<u8>,
    /// When it had been read.
    pub at: Instant,
}

impl Request {
    /// A header's value (`name` in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// A query parameter's value, decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("line", &self.line)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish_non_exhaustive()
    }
}

/// The first value of `name` in `pairs`.
fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An answer: the status, headers (`content-length` and `connection: close` are added) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// `status` with `body` and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `status` with `value` as an `application/json` body.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, value.to_string()).header("content-type", "application/json")
    }

    /// The response with one more header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn write_to(&self, mut out: TcpStream) {
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&self.body);
    }
}

/// A running server (a handle: clones share it).
#[derive(Debug, Clone)]
pub struct HttpServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
}

/// A bound server that does not accept connections yet.
pub struct Listener {
    listener: TcpListener,
    server: HttpServer,
}

impl HttpServer {
    /// Starts a server that answers every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> HttpServer {
        let (server, listener) = HttpServer::bind();
        listener.serve(handler);
        server
    }

    /// Binds a server, for a handler that needs to know it: it serves once [`Listener::serve`]
    /// is called.
    pub fn bind() -> (HttpServer, Listener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = HttpServer {
            url: format!("http://{}", listener.local_addr().unwrap()),
            requests: Arc::default(),
            connections: Arc::default(),
        };
        let listener = Listener {
            listener,
            server: server.clone(),
        };
        (server, listener)
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }

    /// How many connections it accepted so far (with a request or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Listener {
    /// Accepts connections from now on, each on a thread, answering with `handler`.
    pub fn serve(self, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        let Listener { listener, server } = self;
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                server.connections.fetch_add(1, Ordering::SeqCst);
                let (server, handler) = (server.clone(), handler.clone());
                std::thread::spawn(move || {
                    let Some(request) = read(&stream) else {
                        return;
                    };
                    server.requests.lock().unwrap().push(request.clone());
                    handler(&request).write_to(stream);
                });
            }
        });
    }
}

/// Reads a request: its line, headers and `content-length` body (`None` if the line cannot be
/// read).
fn read(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
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
    let length: usize = find(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        path: path.to_string(),
        query: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        method,
        line,
        headers,
        body,
        at: Instant::now(),
    })
}
