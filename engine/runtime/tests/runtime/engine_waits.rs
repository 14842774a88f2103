//! Waits that belong to the engine: a typing pause before a message runs on the runtime's timer
//! (no thread, no plugin instance held), a provider's `Retry-After` is waited out by the runtime,
//! and the user's profile is asked of the channel once, only for the fields the flows read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use influxify_runtime::{EffectError, Runtime};
use influxify_store::MemoryStore;

use crate::*;

const TYPING: &str = "
id: typing
start: hello
nodes:
  hello: { kind: message, typing: 2s, text: 'Hello!', next: ask }
  ask: { kind: ask, prompt: 'Name?', store: name, next: hello }
";

/// A runtime on a memory store serving the one flow `source` (id `flow`), its effects recorded
/// by `recorder`.
async fn serving(recorder: &Arc<Recorder>, flow: &str, source: &str) -> Runtime {
    let file = format!("{flow}.yaml");
    runtime_with(
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        flow,
        &[(file.as_str(), source)],
    )
    .await
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn until(deadline: Duration, done: impl Fn() -> bool) {
    let end = Instant::now() + deadline;
    while !done() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typing_indicator_comes_first_and_the_message_after_the_pause() {
    let recorder = Arc::new(Recorder::default());
    let runtime = serving(&recorder, "typing", TYPING).await;
    runtime
        .ingest(vec![message("ada", "m1", 1, "hi")])
        .await
        .unwrap();
    until(Duration::from_secs(10), || recorder.texts("ada").len() == 2).await;
    assert_eq!(recorder.texts("ada"), ["Hello!", "Name?"]);
    let typing = recorder.typing.lock().unwrap().clone();
    assert_eq!(typing.len(), 1, "{typing:?}");
    assert_eq!(typing[0].1, 2_000);
    let sent = recorder.sent_at.lock().unwrap()[0];
    let pause = sent.duration_since(typing[0].2);
    assert!(pause >= Duration::from_millis(1_990), "{pause:?}");
    assert!(pause < Duration::from_millis(3_000), "{pause:?}");
}

/// 5,000 users inside a 2-second typing pause at once: the pauses overlap (all done in about
/// two seconds, not 5,000 times two over the worker threads) and cost no threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_typing_pauses_at_once_cost_no_threads() {
    let recorder = Arc::new(Recorder::default());
    let runtime = serving(&recorder, "typing", TYPING).await;
    const USERS: usize = 5_000;
    let before = threads();
    let started = Instant::now();
    let batch: Vec<Inbound> = (0..USERS)
        .map(|i| message(&format!("u{i}"), &format!("m{i}"), 1, "hi"))
        .collect();
    runtime.ingest(batch).await.unwrap();
    until(Duration::from_secs(1), || {
        recorder.typing.lock().unwrap().len() == USERS
    })
    .await;
    let during = threads();
    until(Duration::from_secs(30), || {
        recorder.sent.lock().unwrap().len() == 2 * USERS
    })
    .await;
    let took = started.elapsed();
    assert_eq!(recorder.sent.lock().unwrap().len(), 2 * USERS);
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(during <= before + 1, "threads {before} -> {during}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_is_waited_out_by_the_runtime() {
    const CALL: &str = "
id: call
start: ask
nodes:
  ask: { kind: plugin, action: openai.chat, input: { messages: [] }, retry: { attempts: 2, backoff: 10ms }, on: { ok: done, error: failed } }
  done: { kind: message, text: 'answered', next: end }
  failed: { kind: message, text: 'failed', next: end }
  end: { kind: end }
";
    let recorder = Arc::new(Recorder::default());
    recorder
        .answers
        .lock()
        .unwrap()
        .push_back(Err(EffectError::retry_after("rate limited", 600)));
    let runtime = serving(&recorder, "call", CALL).await;
    let started = Instant::now();
    runtime
        .ingest(vec![message("ada", "m1", 1, "hi")])
        .await
        .unwrap();
    until(Duration::from_secs(10), || {
        !recorder.texts("ada").is_empty()
    })
    .await;
    assert_eq!(recorder.texts("ada"), ["answered"]);
    assert_eq!(recorder.calls.lock().unwrap().len(), 2);
    assert!(started.elapsed() >= Duration::from_millis(600));
}

const GREETING: &str = "
id: greet
start: hello
nodes:
  hello: { kind: message, text: 'Hi {{ user.first_name }}!', next: ask }
  ask: { kind: ask, prompt: 'Again?', store: again, next: hello }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_is_asked_once_and_only_for_the_fields_the_flows_read() {
    let recorder = Arc::new(Recorder::default());
    *recorder.profile.lock().unwrap() = serde_json::json!({
        "first_name": "Ada", "last_name": "Lovelace", "locale": "en_GB"
    })
    .as_object()
    .unwrap()
    .clone();
    let runtime = serving(&recorder, "greet", GREETING).await;
    runtime
        .ingest(vec![message("ada", "m1", 1, "hi")])
        .await
        .unwrap();
    until(Duration::from_secs(10), || recorder.texts("ada").len() == 2).await;
    runtime
        .ingest(vec![message("ada", "m2", 2, "yes")])
        .await
        .unwrap();
    until(Duration::from_secs(10), || recorder.texts("ada").len() == 4).await;
    assert_eq!(
        recorder.texts("ada"),
        ["Hi Ada!", "Again?", "Hi Ada!", "Again?"]
    );
    assert_eq!(
        *recorder.profiles.lock().unwrap(),
        [("ada".to_string(), vec!["first_name".to_string()])],
        "asked once, for the one field read"
    );
    let record = runtime.store().conversation(&key("ada")).unwrap().unwrap();
    assert_eq!(
        record.state.vars["user"],
        serde_json::json!({"first_name": "Ada"})
    );
    assert!(record.profile_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_that_read_no_profile_field_fetch_nothing() {
    let (runtime, recorder) = echo_runtime().await;
    runtime
        .ingest(vec![message("ada", "m1", 1, "hi")])
        .await
        .unwrap();
    until(Duration::from_secs(10), || {
        !recorder.texts("ada").is_empty()
    })
    .await;
    assert_eq!(recorder.texts("ada"), ["ready"]);
    assert!(recorder.profiles.lock().unwrap().is_empty());
}
