//! Benchmarks of the durable runtime on the real sled store (a benchmark, not a test: it prints
//! medians of repeated runs made in one process).
//!
//! Run with `cargo bench -p influxify-runtime --bench durable` (all), or pass `throughput`,
//! `latency` or `startup` to run one part.
//!
//! - throughput: durable turns per second (ingest -> flushed state -> outbox done) with 10,000
//!   distinct users, with group commit and with one flush per turn.
//! - latency: ingest-to-acknowledgement latency under an open-loop load of 1,000 turns/s.
//! - startup: time to open a store holding 1,000,000 conversations and start the runtime, and
//!   the process's resident memory then.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use influxify_core::conversation::{Effect, Outbound, UserMessage};
use influxify_core::{ConversationState, Event};
use influxify_runtime::{BoxFuture, Config, EffectError, EffectHandler, Reach, Runtime};
use influxify_store::{
    ConversationKey, DEFAULT_CACHE_BYTES, Inbound, SledStore, Store, StoredConversation, TurnCommit,
};

// The binary's allocator: the runtime allocates many small buffers (sled nodes, JSON).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FLOW: &str = "
id: echo
variables:
  count: { type: number, default: 0 }
start: listen
nodes:
  listen:
    kind: ask
    prompt: ready
    store: last
    next: answer
  answer:
    kind: set
    assign: { count: 'count + 1' }
    next: reply
  reply:
    kind: message
    text: 'echo {{ last }} ({{ count }})'
    next: listen
";

#[derive(Debug, Default)]
struct Counter {
    sent: AtomicU64,
}

impl EffectHandler for Counter {
    fn send<'a>(
        &'a self,
        _: &'a ConversationKey,
        _: &'a Outbound,
        _: &'a str,
        _: Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            self.sent.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
    fn call<'a>(
        &'a self,
        _: &'a ConversationKey,
        _: &'a str,
        _: &'a serde_json::Value,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(String, serde_json::Value), EffectError>> {
        Box::pin(async move { Ok(("ok".to_string(), serde_json::Value::Null)) })
    }
    fn notify<'a>(
        &'a self,
        _: &'a ConversationKey,
        _: &'a Effect,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move { Ok(()) })
    }
}

async fn start(dir: &std::path::Path, group_commit: bool) -> (Runtime, Arc<Counter>) {
    let store: Arc<dyn Store> = if std::env::var_os("MEMORY").is_some() {
        Arc::new(influxify_store::MemoryStore::new())
    } else {
        Arc::new(SledStore::open(dir, DEFAULT_CACHE_BYTES).expect("store opens"))
    };
    let counter = Arc::new(Counter::default());
    let mut config = Config::new("bench", "echo");
    config.group_commit = group_commit;
    let runtime = Runtime::start(store, counter.clone(), config)
        .await
        .expect("runtime starts");
    runtime
        .publish(vec![("echo.yaml".into(), FLOW.into())], None)
        .await
        .expect("flow publishes");
    (runtime, counter)
}

fn message(user: u64, id: u64) -> Inbound {
    Inbound::new(
        ConversationKey::new("bench", format!("user{user}")),
        format!("m{id}"),
        id,
        Event::User(UserMessage::text(format!("hello {id}"))),
    )
}

/// Turns per second for `turns` messages over 10,000 users, `clients` sending concurrently.
async fn throughput_once(group_commit: bool, turns: u64, clients: u64) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (runtime, _) = start(dir.path(), group_commit).await;
    let next = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let flushes_before = runtime.flushes();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let runtime = runtime.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= turns {
                    break;
                }
                // Users are spread over 10,000 conversations.
                let user = (id * 7919) % users();
                runtime
                    .ingest(vec![message(user, id)])
                    .await
                    .expect("ingest");
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    runtime.quiesce().await;
    let elapsed = begin.elapsed().as_secs_f64();
    let committed = runtime.stats().turns.load(Ordering::Relaxed);
    if std::env::var_os("VERBOSE").is_some() {
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let written: u64 = io
            .lines()
            .find(|l| l.starts_with("write_bytes:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        eprintln!(
            "  {elapsed:.2} s, flushing {:.2} s, {} MB written by the process so far, RSS {} MB, {} threads",
            runtime.flush_micros() as f64 / 1e6,
            written / 1_000_000,
            rss_kb() / 1024,
            std::fs::read_dir("/proc/self/task")
                .map(|d| d.count())
                .unwrap_or(0)
        );
    }
    assert_eq!(committed, turns, "every turn committed");
    let flushes = runtime.flushes() - flushes_before;
    // Release the store before the next run, so that runs do not share the machine with the
    // caches of earlier ones.
    runtime.shutdown().await.expect("runtime stops");
    drop(runtime);
    (committed as f64 / elapsed, flushes)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn throughput() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let clients: u64 = std::env::var("CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    let mut grouped = Vec::new();
    let mut single = Vec::new();
    let mut flushes = (0, 0);
    // Grouped runs first, then the single-flush ones: a storm of fsyncs leaves the disk busy
    // writing back for a while, which would tax whichever run comes next.
    for _ in 0..runs {
        let (rate, f) = throughput_once(true, 40_000, clients).await;
        grouped.push(rate);
        flushes.0 = f;
    }
    if std::env::var_os("GROUPED_ONLY").is_none() {
        for _ in 0..runs {
            let (rate, f) = throughput_once(false, 4_000, clients).await;
            single.push(rate);
            flushes.1 = f;
        }
    }
    if single.is_empty() {
        single.push(f64::NAN);
    }
    let (g, s) = (median(grouped.clone()), median(single.clone()));
    println!("throughput, 10,000 users, {clients} concurrent clients, {runs} runs each:");
    println!(
        "  group commit:        median {g:>9.0} durable turns/s  (runs: {grouped:.0?}; last run: 40,000 turns in {} flushes)",
        flushes.0
    );
    println!(
        "  one flush per turn:  median {s:>9.0} durable turns/s  (runs: {single:.0?}; last run: 4,000 turns in {} flushes)",
        flushes.1
    );
    println!("  ratio: group commit is {:.1}x one flush per turn", g / s);
}

async fn latency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (runtime, _) = start(dir.path(), true).await;
    let rate = 1_000u64;
    let seconds = 10u64;
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    let begin = Instant::now();
    for id in 0..total {
        // Open loop: message `id` leaves at its scheduled time, whatever happened before.
        let at = begin + Duration::from_micros(id * 1_000_000 / rate);
        tokio::time::sleep_until(at.into()).await;
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            runtime
                .ingest(vec![message(id % 10_000, id)])
                .await
                .expect("ingest");
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.expect("client").as_secs_f64() * 1000.0);
    }
    runtime.quiesce().await;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("latency, ingest to acknowledgement, open loop at {rate} turns/s for {seconds} s:");
    println!(
        "  p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

async fn startup() {
    let conversations = 1_000_000u64;
    let dir = tempfile::tempdir().expect("temp dir");
    let fill = Instant::now();
    {
        // Filled without a runtime, so that no task keeps the store open for the process that
        // is measured next; writing records directly is the fast way to a million.
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("store opens");
        let registry = influxify_runtime::Registry::new(Arc::new(store.clone()), "bench", None);
        let (version, _, _) = registry
            .prepare(vec![("echo.yaml".into(), FLOW.into())])
            .expect("flow compiles");
        registry.set_head(&version).expect("head");
        tokio::task::spawn_blocking(move || {
            for user in 0..conversations {
                let key = ConversationKey::new("bench", format!("user{user}"));
                let mut state = ConversationState::new("echo");
                state.node = Some("listen".into());
                state.waiting = Some(influxify_core::conversation::Waiting::Reply { timer: None });
                state.vars.insert("count".into(), serde_json::json!(3));
                state
                    .vars
                    .insert("last".into(), serde_json::json!("hello there"));
                let record = StoredConversation {
                    version: version.clone(),
                    state,
                    turns: 3,
                    paused: None,
                    updated_at: 0,
                    recent: Vec::new(),
                    last_user_at: None,
                    account: None,
                    profile_at: None,
                };
                let commit = TurnCommit {
                    conversation: key,
                    record,
                    previous: None,
                    consumed: vec![],
                    outbox: vec![],
                    notices: vec![],
                    set_timers: vec![],
                    cancel_timers: vec![],
                };
                store.commit(&commit).expect("commit");
            }
            store.flush().expect("flush");
        })
        .await
        .expect("fill");
    }
    println!(
        "startup with {conversations} stored conversations (filled in {:.1} s):",
        fill.elapsed().as_secs_f64()
    );
    // Measured in a fresh process, so that filling the store does not count.
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("reopen")
        .arg(dir.path())
        .output()
        .expect("the benchmark runs itself");
    print!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn reopen(dir: &std::path::Path) {
    let begin = Instant::now();
    let (runtime, counter) = start(dir, true).await;
    let ready = begin.elapsed();
    runtime
        .ingest(vec![message(123_456, 9_999_999)])
        .await
        .expect("ingest");
    runtime.quiesce().await;
    let first_turn = begin.elapsed();
    println!(
        "  open + start: {:.0} ms; first turn on a stored conversation done after {:.0} ms ({} message sent)",
        ready.as_secs_f64() * 1000.0,
        first_turn.as_secs_f64() * 1000.0,
        counter.sent.load(Ordering::Relaxed)
    );
    println!("  resident memory of the process: {} MB", rss_kb() / 1024);
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        if which.first().map(String::as_str) == Some("reopen") {
            let dir = std::env::args().nth(2).expect("a directory");
            return reopen(std::path::Path::new(&dir)).await;
        }
        if wants("throughput") {
            throughput().await;
        }
        if wants("latency") {
            latency().await;
        }
        if wants("startup") {
            startup().await;
        }
    });
}

/// Distinct users in the throughput run (10,000 unless `USERS` says otherwise).
fn users() -> u64 {
    std::env::var("USERS")
        .ok()
        .and_then(|u| u.parse().ok())
        .unwrap_or(10_000)
}
