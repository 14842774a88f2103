//! Data-subject operations: an erasure removes the conversation with its pending timers and
//! effects, and a restricted conversation's events are acknowledged but never stored.

use influxify_store::{Ingested, MemoryStore};

use crate::*;

const REMINDER: &str = "
id: remind
start: ask
nodes:
  ask: { kind: ask, prompt: When?, store: when, next: wait }
  wait: { kind: wait, for: 1h, next: ping }
  ping: { kind: end, text: 'Reminder: {{ when }}' }
";

async fn reminder() -> (Runtime, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        "remind",
        &[("remind.yaml", REMINDER)],
    )
    .await;
    (runtime, recorder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_removes_the_conversation_and_its_pending_timer() {
    let (runtime, recorder) = reminder().await;
    // The wait's timer is due an hour after the (real) time of the answer.
    let now = influxify_runtime::clock::now_ms();
    runtime
        .ingest(vec![message("ada", "m1", now, "hi")])
        .await
        .unwrap();
    runtime
        .ingest(vec![message("ada", "m2", now + 1, "Friday")])
        .await
        .unwrap();
    runtime
        .ingest(vec![message("bob", "b1", now, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    let store = runtime.store().clone();
    assert_eq!(store.timers(&key("ada")).unwrap().len(), 1);

    let erased = runtime.erase(&key("ada")).await.unwrap();
    assert!(erased.record);
    assert_eq!(erased.timers, 1);
    assert!(store.conversation(&key("ada")).unwrap().is_none());
    assert!(store.timers(&key("ada")).unwrap().is_empty());
    assert!(store.next_timer().unwrap().is_none());
    // Bob's conversation is untouched.
    assert!(store.conversation(&key("bob")).unwrap().is_some());
    // Erasing again finds nothing; writing again starts a new conversation.
    assert_eq!(
        runtime.erase(&key("ada")).await.unwrap(),
        Default::default()
    );
    runtime
        .ingest(vec![message("ada", "m3", now + 2, "hello")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("ada"), ["When?", "When?"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_conversation_is_acknowledged_but_not_processed() {
    let (runtime, recorder) = reminder().await;
    runtime.restrict(&key("ada"), true).await.unwrap();
    assert!(runtime.is_restricted(&key("ada")));
    let results = runtime
        .ingest(vec![
            message("ada", "m1", 1, "hi"),
            message("bob", "b1", 1, "hi"),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], Ingested::Restricted);
    assert!(matches!(results[1], Ingested::New(_)));
    runtime.quiesce().await;
    assert!(recorder.texts("ada").is_empty());
    assert!(runtime.store().inbox(&key("ada")).unwrap().is_empty());
    assert_eq!(runtime.store().restricted().unwrap(), [key("ada")]);
    runtime.restrict(&key("ada"), false).await.unwrap();
    runtime
        .ingest(vec![message("ada", "m2", 2, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("ada"), ["When?"]);
}

const QUICK: &str = "
id: quick
start: ask
nodes:
  ask: { kind: ask, prompt: When?, store: when, next: wait }
  wait: { kind: wait, for: 150ms, next: ping }
  ping: { kind: end, text: 'Reminder: {{ when }}' }
";

async fn quick() -> (Runtime, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        "quick",
        &[("quick.yaml", QUICK)],
    )
    .await;
    (runtime, recorder)
}

async fn wait_for_texts(recorder: &Recorder, user: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.texts(user).len() < count && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    recorder.texts(user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_started_after_an_erasure_gets_its_timers() {
    let (runtime, recorder) = quick().await;
    let now = influxify_runtime::clock::now_ms();
    runtime
        .ingest(vec![message("ada", "m1", now, "hi")])
        .await
        .unwrap();
    runtime
        .ingest(vec![message("ada", "m2", now + 1, "Friday")])
        .await
        .unwrap();
    assert_eq!(
        wait_for_texts(&recorder, "ada", 2).await,
        ["When?", "Reminder: Friday"]
    );
    runtime.erase(&key("ada")).await.unwrap();
    // The new conversation's first timer has the same number as the erased one's.
    let now = influxify_runtime::clock::now_ms();
    runtime
        .ingest(vec![message("ada", "m3", now, "hi")])
        .await
        .unwrap();
    runtime
        .ingest(vec![message("ada", "m4", now + 1, "Monday")])
        .await
        .unwrap();
    assert_eq!(
        wait_for_texts(&recorder, "ada", 4).await,
        ["When?", "Reminder: Friday", "When?", "Reminder: Monday"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_holds_timers_until_it_is_lifted() {
    let (runtime, recorder) = quick().await;
    let now = influxify_runtime::clock::now_ms();
    runtime
        .ingest(vec![message("ada", "m1", now, "hi")])
        .await
        .unwrap();
    runtime
        .ingest(vec![message("ada", "m2", now + 1, "Friday")])
        .await
        .unwrap();
    runtime.restrict(&key("ada"), true).await.unwrap();
    // The reminder falls due while restricted: nothing goes out.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(recorder.texts("ada"), ["When?"]);
    runtime.restrict(&key("ada"), false).await.unwrap();
    assert_eq!(
        wait_for_texts(&recorder, "ada", 2).await,
        ["When?", "Reminder: Friday"]
    );
}
