//! `cargo xtask repeats [--kills N] [--rate N]`: what a crash makes Messenger users see twice.
//! Processing is exactly once, but the Send API has no idempotency key: a reply whose removal
//! from the outbox was not on disk at a SIGKILL goes out again after the restart. This runs
//! `influxify serve` (release) on the echo flow (one reply per message) behind a fake Graph API
//! that counts each reply's text, and:
//!
//! - under load: a sender posts signed messages at `--rate` per second (default 200) from
//!   1,000 users, redelivering any message that was not answered 200 (as Meta does), while the
//!   server is killed with SIGKILL `--kills` times (default 5) at 2-4 s intervals and restarted;
//! - idle: 20 messages, every reply received, a second of quiet, then SIGKILL and a restart.
//!
//! It prints the replies delivered twice per kill in each case, and any acknowledged message
//! that never got its reply (which would be a loss).

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::load::{
    ECHO, GraphSeen, Killed, fake_graph, install, payload, read_response, serve_command, signature,
    started,
};

struct Options {
    kills: u32,
    rate: u32,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        kills: 5,
        rate: 200,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--kills" => options.kills = value()?.parse().map_err(|e| format!("{e}"))?,
            "--rate" => options.rate = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

/// A server on `port` with its data in `work`, up and answering.
fn start(binary: &Path, work: &Path, port: u16) -> Result<Killed, String> {
    let mut command = Command::new(binary);
    serve_command(&mut command, work, port);
    started(command.env("RUST_LOG", "error").stderr(Stdio::null()), port)
}

/// Posts message `i` until it is answered 200 (a redelivery, as Meta's, when it is not).
fn deliver(port: u16, i: usize, connection: &mut Option<(BufReader<TcpStream>, TcpStream)>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // The provider's timestamp is fixed at the first attempt, as Meta's is.
    let body = payload(&format!("user{}", i % 1000), now, i, &format!("k{i}"));
    let request = format!(
        "POST /channels/messenger/webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n{body}",
        signature(&body),
        body.len()
    );
    loop {
        if connection.is_none()
            && let Ok(stream) = TcpStream::connect(("127.0.0.1", port))
        {
            let _ = stream.set_nodelay(true);
            if let Ok(read_half) = stream.try_clone() {
                *connection = Some((BufReader::new(read_half), stream));
            }
        }
        if let Some((reader, writer)) = connection.as_mut()
            && writer.write_all(request.as_bytes()).is_ok()
            && read_response(reader) == Some(200)
        {
            return;
        }
        *connection = None;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `want` distinct replies arrived (or 30 s passed).
fn drain(seen: &GraphSeen, want: usize) -> usize {
    let began = Instant::now();
    loop {
        let got = seen.texts.lock().map(|t| t.len()).unwrap_or(0);
        if got >= want || began.elapsed() > Duration::from_secs(30) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn repeats(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    let binary = crate::load::release_binary()?;
    for under_load in [true, false] {
        let work = std::env::temp_dir().join(format!(
            "influxify-repeats-{}-{under_load}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("flows")).map_err(|e| e.to_string())?;
        std::fs::write(work.join("flows/load.yaml"), ECHO).map_err(|e| e.to_string())?;
        let (graph, seen) = fake_graph()?;
        install(&work, &graph, &["messenger"])?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut server = Some(start(&binary, &work, port)?);
        let (sent, kills) = if under_load {
            let rate = options.rate;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopping = stop.clone();
            let sender = std::thread::spawn(move || {
                let mut connection = None;
                let started = Instant::now();
                let mut i = 0usize;
                while !stopping.load(Ordering::Acquire) {
                    let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    deliver(port, i, &mut connection);
                    i += 1;
                }
                i
            });
            for kill in 0..options.kills {
                std::thread::sleep(Duration::from_millis(2_000 + u64::from(kill % 3) * 1_000));
                drop(server.take());
                server = Some(start(&binary, &work, port)?);
            }
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Release);
            (sender.join().unwrap_or(0), options.kills)
        } else {
            let mut connection = None;
            for i in 0..20 {
                deliver(port, i, &mut connection);
            }
            drain(&seen, 20);
            std::thread::sleep(Duration::from_secs(1));
            drop(server.take());
            server = Some(start(&binary, &work, port)?);
            std::thread::sleep(Duration::from_secs(3));
            (20, 1)
        };
        let replied = drain(&seen, sent);
        let twice = seen.duplicates.load(Ordering::Relaxed);
        println!(
            "{}: {sent} messages acknowledged, {replied} replied to ({} never), {} replies in all, {twice} delivered twice over {kills} SIGKILL(s): {:.1} repeats per kill",
            if under_load {
                format!("under load ({} messages/s)", options.rate)
            } else {
                "idle".to_string()
            },
            sent.saturating_sub(replied),
            seen.messages.load(Ordering::Relaxed),
            twice as f64 / f64::from(kills)
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}
