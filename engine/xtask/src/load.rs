//! `cargo xtask load`: the webhook's throughput and latency under a real HTTP load generator.
//! It builds the release binary and the built-in plugins, starts a fake Graph API (the replies'
//! Send API calls land there), starts `influxify serve` with the Messenger channel, signs
//! distinct Messenger payloads (many users, unique `mid`s), and runs `wrk` against
//! `/channels/messenger/webhook`: every request is signature-checked and deduplicated durably
//! before its 200. It prints wrk's report and the server's resident memory over the run.
//!
//! Options: `--seconds N` (default 30), `--connections N` (64), `--flow echo|plugins|silent` (a
//! plain reply; a flow that calls the consent and sheets plugins on every message; no reply at
//! all, the ingest path alone), `--payloads N`
//! (distinct payloads, default 300000; after them wrk cycles and repeats count as duplicates),
//! `--cache-mb N` (sled's page cache).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Mac, digest::KeyInit};

use crate::{cargo, root, run};

const APP_SECRET: &str = "load-test-app-secret";

const ECHO: &str = r#"
id: load
start: listen
nodes:
  listen: { kind: ask, prompt: "Say something.", store: said, next: reply }
  reply: { kind: message, text: "You said {{ said }}.", next: listen }
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

const PLUGINS: &str = r#"
id: load
start: listen
nodes:
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

struct Options {
    seconds: u64,
    connections: u32,
    flow: String,
    payloads: usize,
    cache_mb: Option<u64>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 30,
        connections: 64,
        flow: "echo".into(),
        payloads: 300_000,
        cache_mb: None,
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
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fake Graph API: answers every request with a Send API success, keeping connections open.
fn fake_graph() -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_graph(stream));
        }
    });
    Ok(format!("http://{addr}"))
}

fn serve_graph(stream: TcpStream) {
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

fn signature(body: &str) -> String {
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

/// wrk's script: cycles through the signed payloads in `payloads.txt` (signature, tab, body).
fn write_script(dir: &Path, count: usize) -> Result<PathBuf, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut payloads = String::with_capacity(count * 400);
    for i in 0..count {
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"1691462197845448","time":{now},"messaging":[{{"sender":{{"id":"user{}"}},"recipient":{{"id":"1691462197845448"}},"timestamp":{},"message":{{"mid":"mid.load.{i}","text":"A-1001"}}}}]}}]}}"#,
            i % 10_000,
            now + i as u128
        );
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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn install(work: &Path, graph: &str, names: &[&str]) -> Result<(), String> {
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

pub fn load(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    crate::plugins()?;
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "influxify-cli"]);
    run(build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let binary = target.join("release/influxify");
    let work = std::env::temp_dir().join(format!("influxify-load-{}", std::process::id()));
    std::fs::create_dir_all(work.join("flows")).map_err(|e| e.to_string())?;
    let flow = match options.flow.as_str() {
        "plugins" => PLUGINS,
        "silent" => SILENT,
        _ => ECHO,
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
    let graph = fake_graph()?;
    install(&work, &graph, &["messenger", "consent", "sheets"])?;
    eprintln!("xtask: signing {} payloads", options.payloads);
    let script = write_script(&work, options.payloads)?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let server = Command::new(&binary)
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
        .env("RUST_LOG", "warn")
        .current_dir(&work)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let server = Killed(server);
    let began = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if began.elapsed() > Duration::from_secs(60) {
            return Err("the server did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = server.0.id();
    let before = rss_kib(pid);
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        for _ in 0..options.seconds.div_ceil(10) {
            std::thread::sleep(Duration::from_secs(10));
            samples.push(rss_kib(pid).unwrap_or(0));
        }
        samples
    });
    let output = Command::new("wrk")
        .args([
            "-t2",
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
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "server RSS: {:.1} MB before; every 10 s: {}",
        mb(before.unwrap_or(0)),
        samples
            .iter()
            .map(|s| format!("{:.1}", mb(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
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
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    if output.status.success() {
        Ok(())
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
