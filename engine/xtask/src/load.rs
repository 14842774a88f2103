//! `cargo xtask load`: the webhook's throughput and latency under a real HTTP load generator.
//! It builds the release binary and the built-in plugins, starts a fake Graph API (the replies'
//! Send API calls land there), starts `influxify serve` with the Messenger channel, signs
//! distinct Messenger payloads (many users, unique `mid`s), and runs `wrk` against
//! `/channels/messenger/webhook`: every request is signature-checked and deduplicated durably
//! before its 200. It prints wrk's report and the server's resident memory over the run.
//!
//! Options: `--seconds N` (default 30), `--connections N` (64), `--flow
//! all|bare|silent|echo|typing|plugins|mixed` (`bare`: not the server but an axum handler doing
//! only the signature check and the JSON parse, the ceiling the others are a fraction of; no
//! reply at all, the ingest path alone; one reply per message; the same with `typing: 1s`; a
//! flow that calls the consent and sheets plugins on every message; wrk's messages on the
//! no-reply path while other users go through the plugin-heavy path at a steady `--busy-rate N`
//! messages per second, default 250, from `--busy-users N`, default 1000; `all`: bare, silent,
//! echo, typing and plugins one after another, with a table of their ratios). Replies are
//! counted where Meta would get them, at the fake Graph API (each text once: a repeat is a
//! duplicate), and probe users writing 20 messages a second beside wrk give the lag from a
//! webhook's 200 to its reply's Send API request. `--payloads N` (distinct payloads, default 300000;
//! after them wrk cycles and repeats count as duplicates), `--cache-mb N` (sled's page cache),
//! `--threads N` (wrk's threads, default 1: on a 2-core machine a second wrk thread takes CPU
//! from the server it measures; measured 8-10% fewer requests/s with two).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Mac, digest::KeyInit};

use crate::{cargo, root, run};

pub(crate) const APP_SECRET: &str = "load-test-app-secret";

/// One reply per message (each message after the end starts the flow again).
pub(crate) const ECHO: &str = r#"
id: load
start: reply
nodes:
  reply: { kind: message, text: "You said {{ message.text }}.", next: done }
  done: { kind: end }
"#;

/// The same reply after a one-second typing indicator.
const TYPING: &str = r#"
id: load
start: reply
nodes:
  reply: { kind: message, typing: 1s, text: "You said {{ message.text }}.", next: done }
  done: { kind: end }
"#;

/// No reply: every message goes to an operator (a notification, no plugin call): the ingest
/// path alone.
const SILENT: &str = r#"
id: load
start: human
nodes:
  human: { kind: handoff, reason: load test, next: done }
  done: { kind: end }
"#;

/// The plugin-heavy loop: every message calls the consent and sheets plugins, then replies and
/// asks again.
const PLUGIN_LOOP: &str = r#"
  listen: { kind: ask, prompt: "Your order number?", store: order, next: check }
  check:
    kind: plugin
    action: consent.check
    input: { purpose: analytics }
    on: { granted: lookup, denied: lookup, unknown: lookup, error: lookup }
  lookup:
    kind: plugin
    action: sheets.lookup
    input: { spreadsheet: local, range: "Orders!A:E", column: Order, value: "A-1001" }
    outputs: { status: output.row.Status }
    on: { ok: reply, not_found: reply, error: reply }
  reply: { kind: message, text: "Order status: {{ status }}.", next: listen }
"#;

/// Every user in the plugin-heavy loop.
fn plugins_flow() -> String {
    format!("id: load\nstart: listen\nnodes:{PLUGIN_LOOP}")
}

/// wrk's users take the no-reply path; the busy users' first message (`order`) takes them into
/// the plugin-heavy loop, where every later message calls two plugins and sends two replies.
fn mixed_flow() -> String {
    format!(
        r#"id: load
start: route
nodes:
  route: {{ kind: condition, if: "message.text == 'order'", then: listen, else: human }}
  human: {{ kind: handoff, reason: load test, next: done }}
  done: {{ kind: end }}{PLUGIN_LOOP}"#
    )
}

struct Options {
    seconds: u64,
    connections: u32,
    flow: String,
    payloads: usize,
    cache_mb: Option<u64>,
    busy_rate: u32,
    busy_users: u32,
    threads: u32,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 30,
        connections: 64,
        flow: "echo".into(),
        payloads: 300_000,
        cache_mb: None,
        busy_rate: 250,
        busy_users: 1000,
        threads: 1,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--connections" => {
                options.connections = value()?.parse().map_err(|e| format!("{e}"))?
            }
            "--flow" => options.flow = value()?,
            "--payloads" => options.payloads = value()?.parse().map_err(|e| format!("{e}"))?,
            "--cache-mb" => options.cache_mb = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--threads" => options.threads = value()?.parse().map_err(|e| format!("{e}"))?,
            "--busy-rate" => options.busy_rate = value()?.parse().map_err(|e| format!("{e}"))?,
            "--busy-users" => options.busy_users = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the fake Graph API saw.
#[derive(Default)]
pub(crate) struct GraphSeen {
    /// Messages sent (not sender actions).
    pub(crate) messages: AtomicU64,
    /// Sender actions (typing indicators).
    actions: AtomicU64,
    /// Texts seen more than once: replies delivered twice.
    pub(crate) duplicates: AtomicU64,
    pub(crate) texts: Mutex<HashSet<String>>,
    /// When each probe user's reply arrived.
    probes: Mutex<HashMap<String, Instant>>,
}

/// A fake Graph API: answers every request with a Send API success, keeping connections open,
/// and counts what arrives.
pub(crate) fn fake_graph() -> Result<(String, Arc<GraphSeen>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let seen = Arc::new(GraphSeen::default());
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = shared.clone();
            std::thread::spawn(move || serve_graph(stream, &seen));
        }
    });
    Ok((format!("http://{addr}"), seen))
}

fn note(seen: &GraphSeen, body: &[u8]) {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if body.get("sender_action").is_some() {
        seen.actions.fetch_add(1, Ordering::Relaxed);
        return;
    }
    seen.messages.fetch_add(1, Ordering::Relaxed);
    let recipient = body["recipient"]["id"].as_str().unwrap_or_default();
    if recipient.starts_with("probe")
        && let Ok(mut probes) = seen.probes.lock()
    {
        probes
            .entry(recipient.to_string())
            .or_insert_with(Instant::now);
    }
    let text = body["message"]["text"].as_str().unwrap_or_default();
    if text.starts_with("You said")
        && let Ok(mut texts) = seen.texts.lock()
        && !texts.insert(format!("{recipient}:{text}"))
    {
        seen.duplicates.fetch_add(1, Ordering::Relaxed);
    }
}

fn serve_graph(stream: TcpStream, seen: &GraphSeen) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if first {
                first = false;
                continue;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        note(seen, &body);
        let answer = r#"{"recipient_id":"1","message_id":"m_load"}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

pub(crate) fn signature(body: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(APP_SECRET.as_bytes())
        .expect("any key length");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A message id shaped like Messenger's (`m_` and random-looking characters), so that the
/// dedup markers land all over the key space as real ones do.
fn message_id(i: usize) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(i.to_be_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("m_{hex}")
}

/// A Messenger webhook body: one text message from `user`.
pub(crate) fn payload(user: &str, timestamp: u128, id: usize, text: &str) -> String {
    format!(
        r#"{{"object":"page","entry":[{{"id":"1691462197845448","time":{timestamp},"messaging":[{{"sender":{{"id":"{user}"}},"recipient":{{"id":"1691462197845448"}},"timestamp":{timestamp},"message":{{"mid":"{}","text":"{text}"}}}}]}}]}}"#,
        message_id(id)
    )
}

/// The provider timestamps of wrk's payloads advance as if this many messages a second
/// arrived (the target rate): Messenger stamps each message when it is sent, so at that rate
/// the stamps keep pace with the clock, and each second holds that many dedup markers.
const STAMPED_PER_SECOND: usize = 10_000;

/// wrk's script: cycles through the signed payloads in `payloads.txt` (signature, tab, body).
fn write_script(dir: &Path, count: usize) -> Result<PathBuf, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut payloads = String::with_capacity(count * 400);
    for i in 0..count {
        let stamp = now + (i * 1000 / STAMPED_PER_SECOND) as u128;
        let body = payload(&format!("user{}", i % 10_000), stamp, i, &format!("n{i}"));
        payloads += &format!("{}\t{body}\n", signature(&body));
    }
    let data = dir.join("payloads.txt");
    std::fs::write(&data, payloads).map_err(|e| e.to_string())?;
    let script = format!(
        r#"
local payloads = {{}}
for line in io.lines("{}") do
  local tab = string.find(line, "\t", 1, true)
  payloads[#payloads + 1] = {{ string.sub(line, 1, tab - 1), string.sub(line, tab + 1) }}
end
local counter = 0
local step = 1
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter)
end
function init(args)
  step = offset
end
function request()
  local p = payloads[step]
  step = step + 2
  if step > #payloads then step = (step % 2) + 1 end
  return wrk.format("POST", "/channels/messenger/webhook", {{
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = p[1],
  }}, p[2])
end
"#,
        data.display()
    );
    let path = dir.join("load.lua");
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    Ok(path)
}

/// What the busy users' sender saw.
#[derive(Default)]
struct Busy {
    sent: u64,
    acknowledged: u64,
    latencies_us: Vec<u64>,
}

/// The busy users' message ids start here (wrk's are below).
const BUSY_IDS: usize = 1 << 40;

/// Connections the busy users' messages share; a user always uses the same one, so each
/// user's messages arrive in order.
const BUSY_CONNECTIONS: u32 = 4;

/// Sends the busy users' messages at `rate` per second until `until`: each user's first
/// message is `order`, the later ones an order number.
fn busy_load(port: u16, rate: u32, users: u32, until: Instant) -> Busy {
    let per_connection = f64::from(rate.max(1)) / f64::from(BUSY_CONNECTIONS);
    let users_each = (users / BUSY_CONNECTIONS).max(1);
    let senders: Vec<_> = (0..BUSY_CONNECTIONS)
        .map(|connection| {
            std::thread::spawn(move || {
                let mut busy = Busy::default();
                let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
                    return busy;
                };
                let _ = stream.set_nodelay(true);
                let Ok(read_half) = stream.try_clone() else {
                    return busy;
                };
                let (mut reader, mut writer) = (BufReader::new(read_half), stream);
                let started = Instant::now();
                for n in 0u64.. {
                    let due = started + Duration::from_secs_f64(n as f64 / per_connection);
                    if due >= until {
                        break;
                    }
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let user = connection + BUSY_CONNECTIONS * (n % u64::from(users_each)) as u32;
                    let index = n / u64::from(users_each);
                    let text = if index == 0 { "order" } else { "A-1001" };
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis())
                        .unwrap_or(0);
                    let id = BUSY_IDS + user as usize * 1_000_000 + index as usize;
                    let body = payload(&format!("busy{user}"), now, id, text);
                    let request = format!(
                        "POST /channels/messenger/webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n{body}",
                        signature(&body),
                        body.len()
                    );
                    let sent_at = Instant::now();
                    if writer.write_all(request.as_bytes()).is_err() {
                        break;
                    }
                    busy.sent += 1;
                    match read_response(&mut reader) {
                        Some(200) => {
                            busy.acknowledged += 1;
                            busy.latencies_us
                                .push(sent_at.elapsed().as_micros() as u64);
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                busy
            })
        })
        .collect();
    let mut total = Busy::default();
    for sender in senders {
        let busy = sender.join().unwrap_or_default();
        total.sent += busy.sent;
        total.acknowledged += busy.acknowledged;
        total.latencies_us.extend(busy.latencies_us);
    }
    total
}

/// Reads one HTTP/1.1 response; its status.
pub(crate) fn read_response(reader: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

/// The sum of a counter's series whose labels contain `labels`, from Prometheus text.
fn counter(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The `q` quantile of `values` (sorted in place).
fn quantile(values: &mut [u64], q: f64) -> u64 {
    values.sort_unstable();
    values
        .get(((values.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(crate) fn install(work: &Path, graph: &str, names: &[&str]) -> Result<(), String> {
    let built = root().join("plugins/target/wasm32-wasip2/release");
    for name in names {
        let source = root().join("plugins").join(name);
        let dest = work.join("plugins").join(name);
        std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
        std::fs::copy(
            built.join(format!("{name}.wasm")),
            dest.join(format!("{name}.wasm")),
        )
        .map_err(|e| e.to_string())?;
        for entry in std::fs::read_dir(&source)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".csv") {
                std::fs::copy(entry.path(), dest.join(&file)).map_err(|e| e.to_string())?;
            }
        }
        let manifest = std::fs::read_to_string(source.join("plugin.toml"))
            .map_err(|e| e.to_string())?
            .replace("https://graph.facebook.com", graph);
        std::fs::write(dest.join("plugin.toml"), manifest).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Makes `command` (the `influxify` binary) serve the flows, plugins and data of `work` on
/// 127.0.0.1:`port`, with the Messenger channel's secrets.
pub(crate) fn serve_command(command: &mut Command, work: &Path, port: u16) {
    command
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--entry",
            "load",
        ])
        .arg("--data")
        .arg(work.join("data"))
        .arg("--flows")
        .arg(work.join("flows"))
        .arg("--plugins")
        .arg(work.join("plugins"))
        .env("INFLUXIFY_SECRET_MESSENGER_APP_SECRET", APP_SECRET)
        .env("INFLUXIFY_SECRET_MESSENGER_PAGE_TOKEN", "page-token")
        .env(
            "INFLUXIFY_MASTER_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        )
        .current_dir(work)
        .stdout(Stdio::null());
}

/// Starts `command` and waits until it accepts connections on `port`.
pub(crate) fn started(command: &mut Command, port: u16) -> Result<Killed, String> {
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let server = Killed(child);
    let began = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if began.elapsed() > Duration::from_secs(60) {
            return Err("the server did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

/// The figures of one flow's run.
#[derive(Debug, Default, Clone)]
struct Summary {
    flow: String,
    requests_per_s: f64,
    p99_ms: f64,
    replies_per_s: f64,
    duplicates: u64,
    typing: u64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    threads: u64,
    rss_mb: f64,
}

/// Builds the built-in plugins and the release `influxify`; the binary's path.
pub(crate) fn release_binary() -> Result<PathBuf, String> {
    crate::plugins()?;
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "influxify-cli"]);
    run(build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join("release/influxify"))
}

pub fn load(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    let binary = release_binary()?;
    let flows: Vec<&str> = match options.flow.as_str() {
        "all" => vec!["bare", "silent", "echo", "typing", "plugins"],
        one => vec![one],
    };
    let mut summaries = Vec::new();
    for flow in flows {
        eprintln!("xtask: load: flow `{flow}`");
        summaries.push(run_flow(&options, &binary, flow)?);
    }
    if summaries.len() > 1 {
        print_table(&summaries);
    }
    Ok(())
}

/// The side-by-side figures, as fractions of the bare handler and of the silent flow.
fn print_table(summaries: &[Summary]) {
    let rate = |flow: &str| {
        summaries
            .iter()
            .find(|s| s.flow == flow)
            .map_or(0.0, |s| s.requests_per_s)
    };
    let (bare, silent) = (rate("bare"), rate("silent"));
    let ratio = |x: f64, of: f64| if of > 0.0 { 100.0 * x / of } else { 0.0 };
    let echo_replies = summaries
        .iter()
        .find(|s| s.flow == "echo")
        .map_or(0.0, |s| s.replies_per_s);
    println!(
        "\n{:<8} {:>10} {:>8} {:>10} {:>6} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "flow",
        "webhook/s",
        "p99 ms",
        "replies/s",
        "dups",
        "typing",
        "lag p50",
        "lag p99",
        "% bare",
        "% silent",
        "threads",
        "RSS MB"
    );
    for s in summaries {
        println!(
            "{:<8} {:>10.0} {:>8.1} {:>10.0} {:>6} {:>8} {:>9.1} {:>9.1} {:>7.1}% {:>7.1}% {:>8} {:>7.1}",
            s.flow,
            s.requests_per_s,
            s.p99_ms,
            s.replies_per_s,
            s.duplicates,
            s.typing,
            s.lag_p50_ms,
            s.lag_p99_ms,
            ratio(s.requests_per_s, bare),
            ratio(s.requests_per_s, silent),
            s.threads,
            s.rss_mb
        );
    }
    println!(
        "echo replies/s as a share of silent requests/s: {:.1}%; typing replies/s as a share of echo replies/s: {:.1}%",
        ratio(echo_replies, silent),
        ratio(
            summaries
                .iter()
                .find(|s| s.flow == "typing")
                .map_or(0.0, |s| s.replies_per_s),
            echo_replies
        )
    );
}

/// wrk's `Requests/sec` and its latency's 99th percentile in ms.
fn wrk_figures(report: &str) -> (f64, f64) {
    let requests = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| {
            let v = v.trim();
            let (number, scale) = if let Some(n) = v.strip_suffix("us") {
                (n, 0.001)
            } else if let Some(n) = v.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = v.strip_suffix('s') {
                (n, 1000.0)
            } else {
                (v, 1.0)
            };
            number.trim().parse::<f64>().unwrap_or(0.0) * scale
        })
        .unwrap_or(0.0);
    (requests, p99)
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Probe users: a new user every `1/rate` s writes one message beside wrk's load; when each
/// webhook was answered 200.
fn probe_load(port: u16, rate: u32, until: Instant) -> Vec<(String, Instant)> {
    let mut acked = Vec::new();
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return acked;
    };
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return acked;
    };
    let (mut reader, mut writer) = (BufReader::new(read_half), stream);
    let started = Instant::now();
    for n in 0u64.. {
        let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate.max(1)));
        if due >= until {
            break;
        }
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let user = format!("probe{n}");
        let body = payload(&user, now, PROBE_IDS + n as usize, &format!("p{n}"));
        let request = format!(
            "POST /channels/messenger/webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n{body}",
            signature(&body),
            body.len()
        );
        if writer.write_all(request.as_bytes()).is_err() {
            break;
        }
        match read_response(&mut reader) {
            Some(200) => acked.push((user, Instant::now())),
            Some(_) => {}
            None => break,
        }
    }
    acked
}

/// The probe users' message ids start here.
const PROBE_IDS: usize = 1 << 50;

fn run_flow(options: &Options, binary: &Path, flow_name: &str) -> Result<Summary, String> {
    let work =
        std::env::temp_dir().join(format!("influxify-load-{}-{flow_name}", std::process::id()));
    std::fs::create_dir_all(work.join("flows")).map_err(|e| e.to_string())?;
    let flow = match flow_name {
        "plugins" => plugins_flow(),
        "silent" | "bare" => SILENT.to_string(),
        "mixed" => mixed_flow(),
        "typing" => TYPING.to_string(),
        _ => ECHO.to_string(),
    };
    std::fs::write(work.join("flows/load.yaml"), flow).map_err(|e| e.to_string())?;
    if let Some(cache_mb) = options.cache_mb {
        // `influxify serve` reads the configuration in its working directory.
        std::fs::write(
            work.join("influxify.toml"),
            format!("[store]\ncache_mb = {cache_mb}\n"),
        )
        .map_err(|e| e.to_string())?;
    }
    let (graph, seen) = fake_graph()?;
    install(&work, &graph, &["messenger", "consent", "sheets"])?;
    eprintln!("xtask: signing {} payloads", options.payloads);
    let script = write_script(&work, options.payloads)?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // `INFLUXIFY_LOAD_WRAP="heaptrack -o /tmp/heap"` runs the server under a profiler.
    let wrap = std::env::var("INFLUXIFY_LOAD_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let server = if flow_name == "bare" {
        let mut bare = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        bare.args(["bare-webhook", &port.to_string(), APP_SECRET]);
        started(&mut bare, port)?
    } else {
        let mut server = match wrap.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(wrap).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        serve_command(&mut server, &work, port);
        started(server.env("RUST_LOG", "warn"), port)?
    };
    let pid = server.0.id();
    let before = rss_kib(pid);
    // Every 10 s: the server's RSS and how many webhook events it had taken (new and
    // duplicates), so that the rate can be read after wrk has loaded its payloads.
    let seconds = options.seconds;
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        for _ in 0..seconds.div_ceil(10) {
            std::thread::sleep(Duration::from_secs(10));
            let metrics = http_get(port, "/metrics").unwrap_or_default();
            let taken = counter(&metrics, "influxify_events_ingested_total", "")
                + counter(&metrics, "influxify_dedup_hits_total", "");
            samples.push((rss_kib(pid).unwrap_or(0), taken, threads(pid)));
        }
        samples
    });
    let replies_before = seen.messages.load(Ordering::Relaxed);
    let probes = matches!(flow_name, "echo" | "typing").then(|| {
        let until = Instant::now() + Duration::from_secs(options.seconds);
        std::thread::spawn(move || probe_load(port, 20, until))
    });
    let busy = (flow_name == "mixed").then(|| {
        let until = Instant::now() + Duration::from_secs(options.seconds);
        let (rate, users) = (options.busy_rate, options.busy_users);
        std::thread::spawn(move || busy_load(port, rate, users, until))
    });
    let output = Command::new("wrk")
        .args([
            &format!("-t{}", options.threads),
            &format!("-c{}", options.connections),
            &format!("-d{}s", options.seconds),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    let samples = sampler.join().unwrap_or_default();
    let (requests_per_s, p99_ms) = wrk_figures(&String::from_utf8_lossy(&output.stdout));
    let replies_in_run = seen.messages.load(Ordering::Relaxed) - replies_before;
    let acked = probes
        .map(|p| p.join().unwrap_or_default())
        .unwrap_or_default();
    // The probes' replies: a few seconds to arrive after the load.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(10) {
        let arrived = seen.probes.lock().map(|p| p.len()).unwrap_or(0);
        if arrived >= acked.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut lags: Vec<u64> = {
        let arrived = seen.probes.lock().map(|p| p.clone()).unwrap_or_default();
        acked
            .iter()
            .filter_map(|(user, at)| {
                arrived
                    .get(user)
                    .map(|r| r.saturating_duration_since(*at).as_micros() as u64)
            })
            .collect()
    };
    let max_threads = samples.iter().map(|s| s.2).max().unwrap_or(0);
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "server RSS: {:.1} MB before; every 10 s: {}",
        mb(before.unwrap_or(0)),
        samples
            .iter()
            .map(|(rss, _, _)| format!("{:.1}", mb(*rss)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rates: Vec<u64> = samples
        .windows(2)
        .map(|pair| pair[1].1.saturating_sub(pair[0].1) / 10)
        .collect();
    println!(
        "events taken per second, every 10 s: {}",
        rates
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut busy_windows: Vec<u64> = rates.iter().copied().filter(|r| *r > 0).collect();
    if !busy_windows.is_empty() {
        println!(
            "median of the 10-s windows with traffic: {}/s",
            quantile(&mut busy_windows, 0.5)
        );
    }
    if let Some(busy) = busy {
        let mut busy = busy.join().unwrap_or_default();
        let users = u64::from(options.busy_users).min(busy.acknowledged);
        // Every acknowledged message after a user's first calls the sheets plugin once.
        let expected = busy.acknowledged - users;
        let ended = Instant::now();
        let mut done = 0;
        while ended.elapsed() < Duration::from_secs(120) {
            let metrics = http_get(port, "/metrics").unwrap_or_default();
            done = counter(
                &metrics,
                "influxify_plugin_calls_total",
                "plugin=\"sheets\"",
            );
            if done >= expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "busy users: {} messages sent, {} acknowledged (p50 {:.2} ms, p99 {:.2} ms); plugin-heavy turns done {done} of {expected}, the last {:.1} s after the load ended",
            busy.sent,
            busy.acknowledged,
            quantile(&mut busy.latencies_us, 0.5) as f64 / 1000.0,
            quantile(&mut busy.latencies_us, 0.99) as f64 / 1000.0,
            ended.elapsed().as_secs_f64()
        );
    }
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    for line in metrics.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("influxify_events_ingested_total")
                || l.starts_with("influxify_dedup_hits_total")
                || l.starts_with("influxify_turns_total")
                || l.starts_with("influxify_flushes_total")
                || l.starts_with("influxify_plugin_calls_total")
                || l.starts_with("influxify_plugin_errors_total")
                || l.starts_with("influxify_webhook_refused_total"))
    }) {
        println!("{line}");
    }
    let summary = Summary {
        flow: flow_name.to_string(),
        requests_per_s,
        p99_ms,
        replies_per_s: replies_in_run as f64 / options.seconds as f64,
        duplicates: seen.duplicates.load(Ordering::Relaxed),
        typing: seen.actions.load(Ordering::Relaxed),
        lag_p50_ms: quantile(&mut lags, 0.5) as f64 / 1000.0,
        lag_p99_ms: quantile(&mut lags, 0.99) as f64 / 1000.0,
        threads: max_threads,
        rss_mb: samples.last().map_or(0.0, |s| mb(s.0)),
    };
    println!(
        "replies at the fake Graph API: {:.0}/s in wrk's window, {} delivered twice, {} typing indicators; reply lag (webhook 200 to Send API request) of {} of {} probes: p50 {:.1} ms, p99 {:.1} ms; server threads at most {max_threads}",
        summary.replies_per_s,
        summary.duplicates,
        summary.typing,
        lags.len(),
        acked.len(),
        summary.lag_p50_ms,
        summary.lag_p99_ms,
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    if output.status.success() {
        Ok(summary)
    } else {
        Err("wrk failed".into())
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
