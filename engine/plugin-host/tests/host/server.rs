//! A small real HTTP/1.1 server on 127.0.0.1 for the tests: it records every request and answers
//! by path (`/ok`, `/redirect?to=URL`, `/big?bytes=N`, `/slow?ms=N`, `/token`, `/protected`,
//! `/messages`), and counts the connections it accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET /path?query`.
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
}

/// The server.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it saw.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The access token `/protected` accepts (`/token` hands out `fresh-token`).
    pub accepted: Arc<Mutex<String>>,
    /// The status `/messages` answers (200, the default, with `{"message_id": "mid.1"}`).
    pub messages_status: Arc<Mutex<u16>>,
    /// How many connections it accepted (with a request or not).
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    /// Starts a server.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Server {
            url,
            seen: Arc::default(),
            accepted: Arc::new(Mutex::new("fresh-token".into())),
            messages_status: Arc::new(Mutex::new(200)),
            connections: Arc::default(),
        };
        let handle = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                handle.connections.fetch_add(1, Ordering::SeqCst);
                let handle = handle.clone();
                std::thread::spawn(move || handle.serve(stream));
            }
        });
        server
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Has `/messages` answer `status` from now on.
    pub fn answer_messages_with(&self, status: u16) {
        *self.messages_status.lock().unwrap() = status;
    }

    /// How many connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
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
        let target = line.split(' ').nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(|v| {
                    url::form_urlencoded::parse(format!("x={v}").as_bytes())
                        .next()
                        .unwrap()
                        .1
                        .into_owned()
                })
        };
        let (status, extra, body): (u16, Vec<(String, String)>, Vec<u8>) = match path {
            "/ok" => (200, vec![], b"hello".to_vec()),
            "/redirect" => (
                302,
                vec![("location".into(), param("to").unwrap_or_default())],
                vec![],
            ),
            "/big" => (
                200,
                vec![],
                vec![b'x'; param("bytes").and_then(|b| b.parse().ok()).unwrap_or(0)],
            ),
            "/slow" => {
                let ms = param("ms").and_then(|b| b.parse().ok()).unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                (200, vec![], b"late".to_vec())
            }
            "/token" => (
                200,
                vec![("content-type".into(), "application/json".into())],
                br#"{"access_token":"fresh-token","expires_in":3600,"token_type":"Bearer"}"#
                    .to_vec(),
            ),
            "/protected" => {
                let expected = format!("Bearer {}", self.accepted.lock().unwrap());
                if seen.header("authorization") == Some(expected.as_str()) {
                    (200, vec![], b"secret stuff".to_vec())
                } else {
                    (401, vec![], b"unauthorized".to_vec())
                }
            }
            "/messages" => {
                let status = *self.messages_status.lock().unwrap();
                let body: &[u8] = if status == 200 {
                    br#"{"message_id":"mid.1"}"#
                } else {
                    br#"{"error":"refused"}"#
                };
                (
                    status,
                    vec![("content-type".into(), "application/json".into())],
                    body.to_vec(),
                )
            }
            _ => (404, vec![], b"not found".to_vec()),
        };
        let mut out = stream;
        let mut head = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in extra {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&body);
    }
}
