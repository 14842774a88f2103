//! Helpers for tests of `influxify serve`: the real process, plain HTTP/1.1 requests, and a web
//! chat user who posts messages and reads the replies from the server-sent event stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{KillOnDrop, free_port};

/// The key that seals the test servers' secrets.
pub const MASTER_KEY: &str = "6b6579206f6620746865207465737420736572766572732c206e6f7420612073";

/// The served process, stopped when dropped.
pub struct Served {
    _process: KillOnDrop,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Served {
    /// Stops the server as an operator would (SIGTERM) and waits for it: graceful shutdown
    /// finishes the turns in flight, flushes and exits 0.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let child = &mut self._process.0;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let began = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "the server did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `influxify serve` on the flows of `work/flows` (entering `entry`) with the plugins
/// of `plugins`, data in `work/data`, and `env` set; returns once it accepts connections.
pub fn serve(work: &Path, entry: &str, plugins: &Path, env: &[(&str, &str)]) -> Served {
    std::fs::create_dir_all(plugins).unwrap();
    let args = [
        "--data".into(),
        work.join("data").into_os_string(),
        "--flows".into(),
        work.join("flows").into_os_string(),
        "--entry".into(),
        entry.into(),
        "--plugins".into(),
        plugins.as_os_str().to_owned(),
    ];
    serve_with(&args, env)
}

/// Starts `influxify serve --addr 127.0.0.1:PORT args...` with `env` set; returns once it
/// accepts connections.
pub fn serve_with(args: &[std::ffi::OsString], env: &[(&str, &str)]) -> Served {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_influxify"));
    command
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("INFLUXIFY_MASTER_KEY", MASTER_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let served = Served {
        _process: KillOnDrop(command.spawn().expect("influxify serve starts")),
        addr: format!("127.0.0.1:{port}"),
    };
    let began = Instant::now();
    while TcpStream::connect(&served.addr).is_err() {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the server did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    served
}

/// One HTTP/1.1 request; the status and body of the answer.
pub fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    stream.write_all(format!("{head}\r\n").as_bytes()).unwrap();
    // The server may answer (413) before reading all of a large body.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `id:`.
    pub id: String,
    /// `event:`.
    pub event: String,
    /// `data:`, parsed as JSON.
    pub data: serde_json::Value,
}

/// A web chat user: a session, and the open event stream.
pub struct WebChatUser {
    addr: String,
    /// The session token.
    pub token: String,
    /// The user id.
    pub user: String,
    /// The id of the last event read (what a page sends back as `Last-Event-ID`).
    pub last_id: Option<String>,
    events: BufReader<TcpStream>,
}

impl WebChatUser {
    /// Opens a session and its event stream.
    pub fn open(addr: &str) -> Self {
        Self::open_with(addr, b"")
    }

    /// Opens a session with `request` as the body (e.g. a profile), and its event stream.
    pub fn open_with(addr: &str, request: &[u8]) -> Self {
        let (status, body) = http(
            addr,
            "POST",
            "/webchat/sessions",
            &[("content-type", "application/json".into())],
            request,
        );
        assert_eq!(status, 201, "{body}");
        let session: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = session["token"].as_str().unwrap().to_string();
        let user = session["user"].as_str().unwrap().to_string();
        let events = Self::stream(addr, &token, None);
        WebChatUser {
            addr: addr.to_string(),
            token,
            user,
            last_id: None,
            events,
        }
    }

    /// Opens the event stream (HTTP/1.0, so that the body is not chunked), after `last` if set.
    pub fn stream(addr: &str, token: &str, last: Option<&str>) -> BufReader<TcpStream> {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut request = format!(
            "GET /webchat/events?token={token} HTTP/1.0\r\nhost: {addr}\r\naccept: text/event-stream\r\n"
        );
        if let Some(last) = last {
            request += &format!("last-event-id: {last}\r\n");
        }
        stream
            .write_all(format!("{request}\r\n").as_bytes())
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let began = Instant::now();
        let mut line = String::new();
        // The status line and headers.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => panic!("the event stream closed before its headers"),
                Ok(_) if line == "\r\n" => break,
                Ok(_) => assert!(
                    !line.starts_with("HTTP/") || line.contains(" 200 "),
                    "{line}"
                ),
                Err(_) => assert!(began.elapsed() < Duration::from_secs(10), "no headers"),
            }
        }
        reader
    }

    /// The user of an earlier session, `token`, on a (possibly restarted) server, whose page
    /// last read event `last`.
    pub fn resume(addr: &str, token: &str, last: Option<&str>) -> Self {
        let user = token.split('.').next().unwrap_or_default().to_string();
        WebChatUser {
            addr: addr.to_string(),
            token: token.to_string(),
            user,
            last_id: last.map(str::to_string),
            events: Self::stream(addr, token, last),
        }
    }

    /// Replaces the event stream (a page reconnecting after `last`).
    pub fn reconnect(&mut self, last: Option<&str>) {
        self.events = Self::stream(&self.addr, &self.token, last);
    }

    /// Posts a message; the status and the answer's JSON.
    pub fn post(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (status, answer) = http(
            &self.addr,
            "POST",
            "/webchat/messages",
            &[
                ("authorization", format!("Bearer {}", self.token)),
                ("content-type", "application/json".into()),
            ],
            body.to_string().as_bytes(),
        );
        let json = serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Says `text` (accepted, or the test fails).
    pub fn say(&self, text: &str) {
        let (status, answer) = self.post(serde_json::json!({ "text": text }));
        assert_eq!(status, 202, "{answer}");
    }

    /// The next event, if one comes within `wait`.
    pub fn next_event(&mut self, wait: Duration) -> Option<SseEvent> {
        let began = Instant::now();
        let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
        let mut line = String::new();
        loop {
            if began.elapsed() > wait {
                return None;
            }
            // A read that times out keeps what it got in `line`: carry on from there.
            match self.events.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(err) => panic!("{err}"),
            }
            let complete = std::mem::take(&mut line);
            let line = complete.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    self.last_id = Some(id.clone());
                    return Some(SseEvent {
                        id,
                        event,
                        data: serde_json::from_str(&data).unwrap(),
                    });
                }
                continue;
            }
            if let Some(value) = line.strip_prefix("id:") {
                id = value.trim().to_string();
            } else if let Some(value) = line.strip_prefix("event:") {
                event = value.trim().to_string();
            } else if let Some(value) = line.strip_prefix("data:") {
                data += value.trim_start();
            }
        }
    }

    /// The texts of the next `count` bot messages (typing indicators skipped), waiting up to
    /// `wait` in all.
    pub fn replies(&mut self, count: usize, wait: Duration) -> Vec<String> {
        let began = Instant::now();
        let mut texts = Vec::new();
        while texts.len() < count {
            let left = wait.saturating_sub(began.elapsed());
            match self.next_event(left) {
                Some(e) if e.event == "message" => {
                    texts.push(e.data["text"].as_str().unwrap_or_default().to_string())
                }
                Some(_) => {}
                None => break,
            }
        }
        texts
    }
}
