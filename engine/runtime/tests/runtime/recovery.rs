//! Restarts on the sled store: due timers fire at start, pending effects resume, unprocessed
//! inbox entries are applied, each exactly once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use influxify_store::{SledStore, Store};

use crate::*;

const REMINDER: &str = "
id: remind
start: ask
nodes:
  ask: { kind: ask, prompt: When?, store: when, next: wait }
  wait: { kind: wait, for: 300ms, next: ping }
  ping: { kind: end, text: 'Reminder: {{ when }}' }
";

/// Opens the store; the previous "process" may still be letting go of its lock for a moment
/// (its last blocking tasks end after the runtime is shut down).
fn reopen(dir: &Path) -> SledStore {
    for _ in 0..100 {
        if let Ok(store) = SledStore::open(dir, 8 * 1024 * 1024) {
            return store;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    SledStore::open(dir, 8 * 1024 * 1024).unwrap()
}

fn process<T>(
    dir: &Path,
    recorder: Arc<Recorder>,
    entry: &str,
    body: impl AsyncFnOnce(Runtime) -> T,
) -> T {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = tokio.block_on(async {
        let store: Arc<dyn Store> = Arc::new(reopen(dir));
        let runtime = Runtime::start(store, recorder, Config::new("bot", entry))
            .await
            .unwrap();
        body(runtime).await
    });
    // Dropping the tokio runtime ends every task, as if the process had stopped.
    tokio.shutdown_timeout(Duration::from_secs(2));
    result
}

#[test]
fn a_timer_due_while_the_process_was_down_fires_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(Recorder::default());
    process(dir.path(), first.clone(), "remind", async |runtime| {
        runtime
            .publish(vec![("remind.yaml".into(), REMINDER.into())], None)
            .await
            .unwrap();
        runtime
            .ingest(vec![
                message("ti", "1", crate::recovery::now(), "hi"),
                message("ti", "2", crate::recovery::now(), "at noon"),
            ])
            .await
            .unwrap();
        runtime.quiesce().await;
    });
    assert_eq!(first.texts("ti"), ["When?"]);
    std::thread::sleep(Duration::from_millis(500));
    let second = Arc::new(Recorder::default());
    process(dir.path(), second.clone(), "remind", async |runtime| {
        tokio::time::sleep(Duration::from_millis(100)).await;
        runtime.quiesce().await;
    });
    assert_eq!(second.texts("ti"), ["Reminder: at noon"]);
    let third = Arc::new(Recorder::default());
    process(dir.path(), third.clone(), "remind", async |runtime| {
        tokio::time::sleep(Duration::from_millis(400)).await;
        runtime.quiesce().await;
    });
    assert!(
        third.texts("ti").is_empty(),
        "fired twice: {:?}",
        third.texts("ti")
    );
}

#[test]
fn a_backlog_of_timers_due_during_downtime_fires_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let users = 300;
    process(
        dir.path(),
        Arc::new(Recorder::default()),
        "remind",
        async |runtime| {
            runtime
                .publish(vec![("remind.yaml".into(), REMINDER.into())], None)
                .await
                .unwrap();
            let mut events = Vec::new();
            for user in 0..users {
                events.push(message(
                    &format!("b{user}"),
                    &format!("{user}-1"),
                    now(),
                    "hi",
                ));
                events.push(message(
                    &format!("b{user}"),
                    &format!("{user}-2"),
                    now(),
                    "soon",
                ));
            }
            runtime.ingest(events).await.unwrap();
            runtime.quiesce().await;
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let recorder = Arc::new(Recorder::default());
    process(dir.path(), recorder.clone(), "remind", async |runtime| {
        tokio::time::sleep(Duration::from_millis(100)).await;
        runtime.quiesce().await;
        let fired = runtime
            .stats()
            .timers
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(fired, users as u64);
    });
    for user in 0..users {
        assert_eq!(
            recorder.texts(&format!("b{user}")),
            ["Reminder: soon"],
            "user b{user}"
        );
    }
}

#[test]
fn unprocessed_inbox_entries_and_pending_effects_resume_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), 8 * 1024 * 1024).unwrap();
        let registry = influxify_runtime::Registry::new(Arc::new(store.clone()), "bot", None);
        let (hash, _, _) = registry
            .prepare(vec![("echo.yaml".into(), ECHO.into())])
            .unwrap();
        registry.set_head(&hash).unwrap();
        // Acknowledged (ingested and flushed) but the process died before applying them.
        store
            .ingest(&[message("rc", "1", 1, "hi"), message("rc", "2", 2, "one")])
            .unwrap();
        store.flush().unwrap();
    }
    let recorder = Arc::new(Recorder::default());
    process(dir.path(), recorder.clone(), "echo", async |runtime| {
        runtime.quiesce().await;
        assert_eq!(log_of(&runtime, "rc"), ["one"]);
    });
    assert_eq!(recorder.texts("rc"), ["ready", "echo one", "ready"]);
}

pub fn now() -> u64 {
    influxify_runtime::clock::now_ms()
}
