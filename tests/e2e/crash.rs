//! The crash test: the real `influxify run` process is killed with SIGKILL again and again while
//! messages keep arriving; unacknowledged messages are delivered again (as Messenger does). In
//! the end every message must have been applied exactly once and in order per user, and every
//! ask timeout must have fired exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use influxify_store::{ConversationKey, SledStore, Store};

const FLOW: &str = "
id: crash
variables:
  log: { type: list }
start: listen
nodes:
  listen:
    kind: ask
    prompt: go
    store: last
    timeout: { after: 200ms, next: tick }
    next: record
  record:
    kind: set
    assign: { log: \"log + [last]\" }
    next: listen
  tick:
    kind: set
    assign: { log: \"log + ['tick']\" }
    next: idle
  idle:
    kind: ask
    prompt: still here?
    store: last
    next: record
";

const USERS: usize = 16;
const MESSAGES: usize = 60;

/// A small deterministic generator (xorshift64*), seeded per run and printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn spawn(data: &std::path::Path, flows: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_influxify"))
        .args(["run", "--entry", "crash", "--data"])
        .arg(data)
        .arg("--flows")
        .arg(flows)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("influxify run starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(id) = value["ack"].as_str() {
                let _ = tx.send(id.to_string());
            }
        }
    });
    (child, rx)
}

fn text(user: usize, index: usize) -> String {
    if index == 0 {
        "start".to_string()
    } else {
        format!("u{user}-m{index}")
    }
}

#[test]
fn every_acknowledged_message_is_applied_once_and_in_order_across_sigkills() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let data = tempfile::tempdir().unwrap();
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("crash.yaml"), FLOW).unwrap();

    let mut next = [0usize; USERS];
    let mut kills = 0;
    let started = Instant::now();
    while next.iter().any(|n| *n < MESSAGES) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "seed {seed}: no progress, next = {next:?}"
        );
        let (mut child, acks) = spawn(data.path(), flows.path());
        let mut stdin = child.stdin.take().expect("piped");
        let mut outstanding: HashMap<String, usize> = HashMap::new();
        let mut due_at = [Instant::now(); USERS];
        let round_ends = Instant::now() + Duration::from_millis(80 + rng.below(220));
        while Instant::now() < round_ends {
            for user in 0..USERS {
                let waiting = outstanding.values().any(|u| *u == user);
                if next[user] < MESSAGES && !waiting && Instant::now() >= due_at[user] {
                    // Now and then the previous, acknowledged message comes again first, as
                    // Messenger re-delivers when an acknowledgement was slow.
                    if next[user] > 0 && rng.below(4) == 0 {
                        let previous = next[user] - 1;
                        let id = format!("u{user}-id{previous}");
                        let line = serde_json::json!({"user": format!("user{user}"), "id": id, "text": text(user, previous), "channel": "crash"});
                        let _ = writeln!(stdin, "{line}");
                    }
                    let id = format!("u{user}-id{}", next[user]);
                    let line = serde_json::json!({"user": format!("user{user}"), "id": id, "text": text(user, next[user]), "channel": "crash"});
                    if writeln!(stdin, "{line}").is_err() {
                        break;
                    }
                    outstanding.insert(id, user);
                }
            }
            while let Ok(id) = acks.recv_timeout(Duration::from_millis(2)) {
                if let Some(user) = outstanding.remove(&id) {
                    next[user] += 1;
                    due_at[user] = Instant::now() + Duration::from_millis(10 + rng.below(30));
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
        // Acknowledgements printed before the kill count: they were durable when printed.
        while let Ok(id) = acks.recv_timeout(Duration::from_millis(50)) {
            if let Some(user) = outstanding.remove(&id) {
                next[user] += 1;
            }
        }
    }
    // A last, peaceful run: timers that fell due while nothing ran fire now.
    std::thread::sleep(Duration::from_millis(300));
    let (mut child, _acks) = spawn(data.path(), flows.path());
    std::thread::sleep(Duration::from_millis(1200));
    drop(child.stdin.take());
    let _ = child.wait();

    let store = SledStore::open(data.path(), 8 * 1024 * 1024).unwrap();
    for user in 0..USERS {
        let key = ConversationKey::new("crash", format!("user{user}"));
        let record = store
            .conversation(&key)
            .unwrap()
            .unwrap_or_else(|| panic!("seed {seed}: user{user} has no state"));
        let log: Vec<String> = record.state.vars["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let messages: Vec<&String> = log.iter().filter(|e| *e != "tick").collect();
        let expected: Vec<String> = (1..MESSAGES).map(|i| text(user, i)).collect();
        assert_eq!(
            messages,
            expected.iter().collect::<Vec<_>>(),
            "seed {seed}: user{user} applied {log:?}"
        );
        assert!(
            !log.windows(2).any(|w| w[0] == "tick" && w[1] == "tick"),
            "seed {seed}: a timer fired twice for user{user}: {log:?}"
        );
        assert_eq!(
            log.last().map(String::as_str),
            Some("tick"),
            "seed {seed}: user{user}'s last timeout was lost: {log:?}"
        );
        assert_eq!(
            record.state.node.as_deref(),
            Some("idle"),
            "seed {seed}: user{user}"
        );
        assert!(store.inbox(&key).unwrap().is_empty());
        assert!(store.timers(&key).unwrap().is_empty());
    }
    assert!(kills >= 5, "seed {seed}: only {kills} kills");
    eprintln!(
        "crash test: {kills} SIGKILLs, seed {seed}, {:?}",
        started.elapsed()
    );
}
