//! A minimal blocking client of the W3C WebDriver protocol, enough to drive Debian's headless
//! chromium through its `chromedriver`: open a page, find elements by CSS selector, read their
//! text and attributes, type, click, and wait for a condition. Commands are HTTP/1.1 requests
//! with JSON bodies, one connection each. (`crate::served::http` reads until the server closes
//! the connection; chromedriver keeps it open after a command despite `connection: close`,
//! so this client reads the answer's `content-length` bytes instead.)
//!
//! `cargo xtask test` installs `chromium` and `chromium-driver`; without them the tests that
//! need a browser fail saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{KillOnDrop, free_port};

/// Where Debian's chromium package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The longest a WebDriver command may take (starting chromium, loading a page) before the
/// test fails instead of hanging.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `chromedriver`, stopped when dropped.
pub struct Driver {
    _process: KillOnDrop,
    addr: String,
}

impl Driver {
    /// Starts `chromedriver` on a free port; returns once it is ready for sessions. Fails the
    /// test, saying how to install it, when it is missing.
    pub fn start() -> Driver {
        let port = free_port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start `chromedriver` ({err}): this test drives a real headless \
                     chromium; run `cargo xtask test`, which installs Debian's `chromium` and \
                     `chromium-driver` packages"
                )
            });
        let driver = Driver {
            _process: KillOnDrop(process),
            addr: format!("127.0.0.1:{port}"),
        };
        let began = Instant::now();
        loop {
            let status = request(&driver.addr, "GET", "/status", None);
            if status.is_ok_and(|status| status["ready"] == true) {
                return driver;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A browser session: one headless chromium, closed when dropped.
pub struct Browser {
    driver: Driver,
    session: String,
}

/// An element of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

impl Browser {
    /// Opens headless chromium through `driver`.
    pub fn open(driver: Driver) -> Browser {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,1000",
                        ],
                    },
                },
            },
        });
        let value =
            request(&driver.addr, "POST", "/session", Some(capabilities)).unwrap_or_else(|err| {
                panic!(
                    "headless chromium ({CHROMIUM}) did not start: {err}; run `cargo xtask \
                     test`, which installs Debian's `chromium` and `chromium-driver` packages"
                )
            });
        let session = value["sessionId"]
            .as_str()
            .expect("a new session has an id")
            .to_string();
        Browser { driver, session }
    }

    /// Runs one command of this session; its `value`, or the test fails with WebDriver's error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let target = format!("/session/{}{path}", self.session);
        request(&self.driver.addr, method, &target, body)
            .unwrap_or_else(|err| panic!("WebDriver {method} {path}: {err}"))
    }

    /// Loads `url` and waits until it has loaded.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// The elements matching the CSS `selector`, in document order.
    pub fn find_all(&self, selector: &str) -> Vec<Element> {
        let found = self.command(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element(id.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `selector`, if any.
    pub fn find(&self, selector: &str) -> Option<Element> {
        self.find_all(selector).into_iter().next()
    }

    /// The rendered text of `element`.
    pub fn text(&self, element: &Element) -> String {
        let value = self.command("GET", &format!("/element/{}/text", element.0), None);
        value.as_str().unwrap_or_default().to_string()
    }

    /// The texts of the elements matching `selector`.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        self.find_all(selector)
            .iter()
            .map(|e| self.text(e))
            .collect()
    }

    /// An attribute of `element`.
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let path = format!("/element/{}/attribute/{name}", element.0);
        self.command("GET", &path, None)
            .as_str()
            .map(str::to_string)
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) {
        let path = format!("/element/{}/click", element.0);
        self.command("POST", &path, Some(json!({})));
    }

    /// Types `text` into `element`.
    pub fn type_text(&self, element: &Element, text: &str) {
        let path = format!("/element/{}/value", element.0);
        self.command("POST", &path, Some(json!({ "text": text })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its result.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Polls `probe` until it gives a value, for up to `wait`; the test fails saying it waited
    /// for `what`, with what the page showed last (`shown`).
    pub fn wait_for<T>(
        &self,
        what: &str,
        wait: Duration,
        mut probe: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        let began = Instant::now();
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            if began.elapsed() > wait {
                let shown = self.execute("return document.body.innerText;", json!([]));
                panic!(
                    "waited {wait:?} for {what}; the page shows:\n{}",
                    shown.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes chromium; chromedriver itself is killed when `driver` drops.
        let _ = request(
            &self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// One WebDriver request; the answer's `value`, or WebDriver's error and message.
fn request(addr: &str, method: &str, target: &str, body: Option<Value>) -> Result<Value, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, answer) = exchange(addr, method, target, body.as_bytes())
        .map_err(|err| format!("{method} {target}: {err}"))?;
    let answer: Value = serde_json::from_str(&answer)
        .map_err(|err| format!("HTTP {status}, not JSON ({err}): {answer}"))?;
    let value = answer["value"].clone();
    if status == 200 {
        Ok(value)
    } else {
        Err(format!(
            "HTTP {status}: {} ({})",
            value["error"].as_str().unwrap_or("unknown error"),
            value["message"].as_str().unwrap_or_default()
        ))
    }
}

/// Sends one HTTP/1.1 request with a JSON body; the answer's status and body.
fn exchange(addr: &str, method: &str, target: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<u64>().ok();
        }
    }
    let mut answer = Vec::new();
    match length {
        Some(length) => reader.take(length).read_to_end(&mut answer)?,
        None => reader.read_to_end(&mut answer)?,
    };
    Ok((status, String::from_utf8_lossy(&answer).into_owned()))
}
