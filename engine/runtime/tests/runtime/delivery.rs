//! Exactly once, in order: duplicates, reordering, bursts, effects and their failures.

use std::sync::{Arc, Mutex};

use influxify_core::Status;
use influxify_core::conversation::{Effect, Origin, Outbound};
use influxify_runtime::{BoxFuture, EffectError, EffectHandler, Reach};
use influxify_store::{ConversationKey, Inbound, Ingested, MemoryStore, Store};

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_processed_once() {
    let (runtime, recorder) = echo_runtime().await;
    runtime
        .ingest(vec![message("ada", "m1", 1, "hi")])
        .await
        .unwrap();
    let again = runtime
        .ingest(vec![
            message("ada", "m1", 1, "hi"),
            message("ada", "m2", 2, "one"),
        ])
        .await
        .unwrap();
    assert_eq!(again[0], Ingested::Duplicate);
    assert!(matches!(again[1], Ingested::New(_)));
    runtime.quiesce().await;
    assert_eq!(recorder.texts("ada"), ["ready", "echo one", "ready"]);
    assert_eq!(log_of(&runtime, "ada"), ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_ordered_by_provider_timestamp() {
    let (runtime, _) = echo_runtime().await;
    runtime
        .ingest(vec![message("bo", "start", 1, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    let burst = vec![
        message("bo", "c", 30, "third"),
        message("bo", "a", 10, "first"),
        message("bo", "b", 20, "second"),
    ];
    runtime.ingest(burst).await.unwrap();
    runtime.quiesce().await;
    assert_eq!(log_of(&runtime, "bo"), ["first", "second", "third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bursts_for_one_user_are_each_applied_once() {
    let (runtime, recorder) = echo_runtime().await;
    runtime
        .ingest(vec![message("cy", "start", 1, "hi")])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            // Each message is delivered twice, as Messenger does when an ack is slow.
            let m = message("cy", &format!("m{i}"), 100 + i, &format!("n{i}"));
            runtime.ingest(vec![m.clone()]).await.unwrap();
            runtime.ingest(vec![m]).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    runtime.quiesce().await;
    let mut log = log_of(&runtime, "cy");
    assert_eq!(log.len(), 200);
    log.sort();
    log.dedup();
    assert_eq!(log.len(), 200, "each message exactly once");
    assert_eq!(recorder.texts("cy").len(), 1 + 200 * 2);
    assert_eq!(
        runtime
            .stats()
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_redeliveries_to_idle_conversations_are_applied_once() {
    // An idle conversation's first delivery takes the fast path (turn and dedup marker in one
    // write); copies racing it take the inbox. Exactly one of them may count.
    let (runtime, recorder) = echo_runtime().await;
    let users: Vec<String> = (0..40).map(|u| format!("race{u}")).collect();
    for user in &users {
        runtime
            .ingest(vec![message(user, "start", 1, "hi")])
            .await
            .unwrap();
    }
    runtime.quiesce().await;
    let mut tasks = Vec::new();
    for copy in 0..3 {
        for user in &users {
            let runtime = runtime.clone();
            let m = message(user, "same", 5, "once");
            tasks.push(tokio::spawn(async move {
                if copy == 1 {
                    tokio::task::yield_now().await;
                }
                runtime.ingest(vec![m]).await.unwrap()[0]
            }));
        }
    }
    let mut new = 0;
    for task in tasks {
        new += usize::from(matches!(task.await.unwrap(), Ingested::New(_)));
    }
    runtime.quiesce().await;
    assert_eq!(new, users.len(), "one delivery per user counts");
    for user in &users {
        assert_eq!(log_of(&runtime, user), ["once"], "{user}");
        assert_eq!(
            recorder.texts(user),
            ["ready", "echo once", "ready"],
            "{user}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_carry_deterministic_idempotency_keys() {
    let (runtime, recorder) = echo_runtime().await;
    runtime
        .ingest(vec![
            message("di", "m1", 1, "hi"),
            message("di", "m2", 2, "x"),
        ])
        .await
        .unwrap();
    runtime.quiesce().await;
    let keys: Vec<String> = recorder
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, k)| k.clone())
        .collect();
    assert_eq!(keys, ["test/di:1:0", "test/di:2:0", "test/di:2:1"]);
}

const LOOKUP: &str = "
id: lookup
start: ask
nodes:
  ask: { kind: ask, prompt: Order?, store: order, next: find }
  find:
    kind: plugin
    action: sheets.lookup
    input: { value: '{{ order }}' }
    outputs: { status: output.status }
    retry: { attempts: 3, backoff: 10ms, max_backoff: 20ms }
    on: { ok: found, not_found: missing, error: broken }
  found: { kind: end, text: 'Status {{ status }}' }
  missing: { kind: end, text: Not found }
  broken: { kind: end, text: Try later }
";

async fn lookup_runtime() -> (Runtime, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(influxify_store::MemoryStore::new()),
        recorder.clone(),
        "lookup",
        &[("lookup.yaml", LOOKUP)],
    )
    .await;
    (runtime, recorder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_calls_retry_then_route_their_results() {
    let (runtime, recorder) = lookup_runtime().await;
    recorder.answers.lock().unwrap().extend([
        Err(EffectError::retryable("HTTP 503")),
        Ok(("ok".to_string(), serde_json::json!({"status": "shipped"}))),
    ]);
    runtime
        .ingest(vec![
            message("pa", "m1", 1, "hi"),
            message("pa", "m2", 2, "A-1"),
        ])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("pa"), ["Order?", "Status shipped"]);
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, serde_json::json!({"value": "A-1"}));
    assert_eq!(calls[0].2, calls[1].2, "a retry keeps its idempotency key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_plugin_failure_takes_the_error_edge() {
    let (runtime, recorder) = lookup_runtime().await;
    recorder
        .answers
        .lock()
        .unwrap()
        .push_back(Err(EffectError::permanent("invalid API key")));
    runtime
        .ingest(vec![
            message("pf", "m1", 1, "hi"),
            message("pf", "m2", 2, "A-1"),
        ])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("pf"), ["Order?", "Try later"]);
    assert_eq!(recorder.calls.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_fails_for_good_pauses_until_an_operator_acts() {
    let (runtime, recorder) = echo_runtime().await;
    recorder
        .send_failures
        .lock()
        .unwrap()
        .push_back(EffectError::permanent("user blocked the page"));
    runtime
        .ingest(vec![message("sf", "m1", 1, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    let inspection = runtime.inspect(&key("sf")).unwrap();
    assert!(
        inspection
            .record
            .paused
            .as_deref()
            .unwrap()
            .contains("user blocked the page")
    );
    assert_eq!(inspection.outbox.len(), 1);
    // Messages keep arriving and wait; nothing is lost.
    runtime
        .ingest(vec![message("sf", "m2", 2, "still there?")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert!(recorder.texts("sf").is_empty());
    runtime.retry_effect(&key("sf")).await.unwrap();
    runtime.quiesce().await;
    assert_eq!(
        recorder.texts("sf"),
        ["ready", "echo still there?", "ready"]
    );
    assert_eq!(runtime.inspect(&key("sf")).unwrap().record.paused, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_failed_send_carries_on() {
    let (runtime, recorder) = echo_runtime().await;
    recorder
        .send_failures
        .lock()
        .unwrap()
        .push_back(EffectError::permanent("bad token"));
    runtime
        .ingest(vec![message("sk", "m1", 1, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    runtime.skip_effect(&key("sk")).await.unwrap();
    runtime
        .ingest(vec![message("sk", "m2", 2, "x")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("sk"), ["echo x", "ready"]);
    assert!(
        runtime.skip_effect(&key("sk")).await.is_err(),
        "nothing left to skip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_resume_and_reset_through_the_admin_api() {
    let flow = "id: desk\nstart: greet\nnodes:\n  greet: { kind: handoff, text: Connecting you., next: back }\n  back: { kind: end, text: Bot is back. }\n";
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(influxify_store::MemoryStore::new()),
        recorder.clone(),
        "desk",
        &[("desk.yaml", flow)],
    )
    .await;
    runtime
        .ingest(vec![message("ho", "m1", 1, "help")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(
        runtime.inspect(&key("ho")).unwrap().record.state.status,
        Status::HandedOff
    );
    runtime
        .ingest(vec![message("ho", "m2", 2, "hello?")])
        .await
        .unwrap();
    runtime.say(&key("ho"), "Hi, Sam here").await.unwrap();
    runtime.resume(&key("ho")).await.unwrap();
    runtime.quiesce().await;
    assert_eq!(
        recorder.texts("ho"),
        ["Connecting you.", "Hi, Sam here", "Bot is back."]
    );
    let notes: Vec<String> = recorder
        .notes
        .lock()
        .unwrap()
        .iter()
        .map(|(_, k)| k.clone())
        .collect();
    assert_eq!(notes, ["handoff", "forward_to_operator", "end"]);
    runtime.reset(&key("ho")).await.unwrap();
    runtime.quiesce().await;
    let inspection = runtime.inspect(&key("ho")).unwrap();
    assert_eq!(inspection.record.state.node, None);
    assert!(
        inspection
            .record
            .recent
            .iter()
            .any(|e| e.ends_with("operator reset"))
    );
    assert!(
        inspection
            .record
            .recent
            .iter()
            .all(|e| !e.contains("hello?")),
        "no message text kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_two_operators_retrying_at_once_send_once() {
    let (runtime, recorder) = echo_runtime().await;
    recorder
        .send_failures
        .lock()
        .unwrap()
        .push_back(EffectError::permanent("blocked"));
    runtime
        .ingest(vec![message("op", "m1", 1, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    let op = key("op");
    let (a, b) = tokio::join!(runtime.retry_effect(&op), runtime.retry_effect(&op));
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one retry applies: {a:?} {b:?}"
    );
    runtime.quiesce().await;
    assert_eq!(recorder.texts("op"), ["ready"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_ids_are_refused_with_a_clear_error() {
    let (runtime, _) = echo_runtime().await;
    let err = runtime
        .ingest(vec![message(&"u".repeat(2000), "m1", 1, "hi")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too long"), "{err}");
}

/// A store whose flushes start failing on demand: the disk is gone.
#[derive(Debug, Default)]
struct FailingDisk {
    inner: influxify_store::MemoryStore,
    broken: std::sync::atomic::AtomicBool,
}

impl influxify_store::Store for FailingDisk {
    fn apply(
        &self,
        writes: &[influxify_store::Write],
    ) -> influxify_store::Result<Vec<influxify_store::Applied>> {
        self.inner.apply(writes)
    }
    fn flush(&self) -> influxify_store::Result<()> {
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(influxify_store::StoreError::Backend(
                "No space left on device".into(),
            ));
        }
        self.inner.flush()
    }
    fn conversation(
        &self,
        key: &ConversationKey,
    ) -> influxify_store::Result<Option<influxify_store::StoredConversation>> {
        self.inner.conversation(key)
    }
    fn inbox(&self, key: &ConversationKey) -> influxify_store::Result<Vec<(u64, Inbound)>> {
        self.inner.inbox(key)
    }
    fn conversations_with_inbox(&self) -> influxify_store::Result<Vec<ConversationKey>> {
        self.inner.conversations_with_inbox()
    }
    fn outbox(
        &self,
        key: &ConversationKey,
    ) -> influxify_store::Result<Vec<influxify_store::OutboxItem>> {
        self.inner.outbox(key)
    }
    fn conversations_with_outbox(&self) -> influxify_store::Result<Vec<ConversationKey>> {
        self.inner.conversations_with_outbox()
    }
    fn update_outbox(&self, item: &influxify_store::OutboxItem) -> influxify_store::Result<()> {
        self.inner.update_outbox(item)
    }
    fn remove_outbox(&self, item: &influxify_store::OutboxItem) -> influxify_store::Result<()> {
        self.inner.remove_outbox(item)
    }
    fn next_timer(&self) -> influxify_store::Result<Option<influxify_store::Timer>> {
        self.inner.next_timer()
    }
    fn due_timers(
        &self,
        until: u64,
        limit: usize,
    ) -> influxify_store::Result<Vec<influxify_store::Timer>> {
        self.inner.due_timers(until, limit)
    }
    fn timers(
        &self,
        key: &ConversationKey,
    ) -> influxify_store::Result<Vec<influxify_store::Timer>> {
        self.inner.timers(key)
    }
    fn put_version(&self, version: &influxify_store::FlowVersion) -> influxify_store::Result<()> {
        self.inner.put_version(version)
    }
    fn version(&self, hash: &str) -> influxify_store::Result<Option<influxify_store::FlowVersion>> {
        self.inner.version(hash)
    }
    fn set_head(&self, bot: &str, hash: &str) -> influxify_store::Result<()> {
        self.inner.set_head(bot, hash)
    }
    fn head(&self, bot: &str) -> influxify_store::Result<Option<String>> {
        self.inner.head(bot)
    }
    fn placed(
        &self,
        version: &str,
    ) -> influxify_store::Result<Vec<(influxify_store::Place, ConversationKey)>> {
        self.inner.placed(version)
    }
    fn versions(&self) -> influxify_store::Result<Vec<String>> {
        self.inner.versions()
    }

    fn restricted(&self) -> influxify_store::Result<Vec<ConversationKey>> {
        self.inner.restricted()
    }

    fn idle_conversations(&self, before: u64) -> influxify_store::Result<Vec<ConversationKey>> {
        self.inner.idle_conversations(before)
    }

    fn sweep_dedup(&self, before: u64) -> influxify_store::Result<usize> {
        self.inner.sweep_dedup(before)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_flush_nothing_more_is_acknowledged() {
    let disk = Arc::new(FailingDisk::default());
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        disk.clone(),
        recorder.clone(),
        "echo",
        &[("echo.yaml", ECHO)],
    )
    .await;
    runtime
        .ingest(vec![message("fd", "m1", 1, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    disk.broken
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let err = runtime
        .ingest(vec![message("fd", "m2", 2, "lost?")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    // Even once the disk answers again, the process must restart to know what is on disk.
    disk.broken
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let err = runtime
        .ingest(vec![message("fd", "m3", 3, "still?")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("restart the process"), "{err}");
    assert_eq!(
        recorder.texts("fd"),
        ["ready"],
        "nothing acted on the unflushed turn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_carry_when_the_user_last_wrote_even_after_a_timer() {
    const FOLLOW_UP: &str = "
id: follow
start: ask
nodes:
  ask: { kind: ask, prompt: Order number?, store: order, next: wait }
  wait: { kind: wait, for: 200ms, next: later }
  later: { kind: message, text: 'Still there about {{ order }}?', next: done }
  done: { kind: end }
";
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        "follow",
        &[("follow.yaml", FOLLOW_UP)],
    )
    .await;
    runtime
        .ingest(vec![message("ada", "m1", 1_000, "hi")])
        .await
        .unwrap();
    runtime
        .ingest(vec![message("ada", "m2", 2_000, "A-17")])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.texts("ada").len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        recorder.texts("ada"),
        ["Order number?", "Still there about A-17?"]
    );
    // The prompt answered the first message; the timer's message still dates from the second.
    assert_eq!(
        *recorder.last_user.lock().unwrap(),
        [Some(1_000), Some(2_000)]
    );
    // A reply goes out as one, the timer's message as proactive (Messenger's `UPDATE`).
    assert_eq!(
        *recorder.origins.lock().unwrap(),
        [Origin::Reply, Origin::Proactive]
    );
}

/// A recorder whose notifications are durable or not, and that notes how many notifications the
/// store held when each was delivered.
struct Notices {
    recorder: Recorder,
    durable: bool,
    store: Arc<MemoryStore>,
    stored_when_notified: Mutex<Vec<usize>>,
}

impl EffectHandler for Notices {
    fn send<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        message: &'a Outbound,
        key: &'a str,
        reach: Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        self.recorder.send(conversation, message, key, reach)
    }

    fn call<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        action: &'a str,
        input: &'a serde_json::Value,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(String, serde_json::Value), EffectError>> {
        self.recorder.call(conversation, action, input, key)
    }

    fn notify<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        effect: &'a Effect,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        let stored = self
            .store
            .outbox(conversation)
            .unwrap()
            .iter()
            .filter(|item| !matches!(item.effect, Effect::Send(_)))
            .count();
        self.stored_when_notified.lock().unwrap().push(stored);
        // Sends and notifications in one list, to check their order.
        self.recorder.sent.lock().unwrap().push((
            conversation.user.clone(),
            format!("<{}>", key.rsplit(':').next().unwrap_or_default()),
            key.to_string(),
        ));
        self.recorder.notify(conversation, effect, key)
    }

    fn durable_notifications(&self) -> bool {
        self.durable
    }
}

const DESK: &str = "
id: desk
start: greet
nodes:
  greet: { kind: message, text: 'one moment', next: human }
  human: { kind: handoff, text: 'a person will answer', reason: asked, next: done }
  done: { kind: end }
";

/// A runtime running `DESK` on a memory store, with notifications durable or not.
async fn desk_runtime(
    durable: bool,
) -> (influxify_runtime::Runtime, Arc<Notices>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let notices = Arc::new(Notices {
        recorder: Recorder::default(),
        durable,
        store: store.clone(),
        stored_when_notified: Mutex::new(Vec::new()),
    });
    let runtime = influxify_runtime::Runtime::start(
        store.clone(),
        notices.clone(),
        influxify_runtime::Config::new("bot", "desk"),
    )
    .await
    .unwrap();
    let flows = vec![("desk.yaml".to_string(), DESK.to_string())];
    runtime.publish(flows, None).await.unwrap();
    (runtime, notices, store)
}

fn notes_of(notices: &Notices) -> Vec<String> {
    notices
        .recorder
        .notes
        .lock()
        .unwrap()
        .iter()
        .map(|(_, kind)| kind.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_a_handler_only_reports_are_delivered_in_order_without_being_stored() {
    for durable in [true, false] {
        let (runtime, notices, store) = desk_runtime(durable).await;
        runtime
            .ingest(vec![message("ada", "m1", 1, "hi")])
            .await
            .unwrap();
        runtime.quiesce().await;
        // Idle again: the next message takes the fast path, a forward to the operator.
        runtime
            .ingest(vec![message("ada", "m2", 2, "anyone?")])
            .await
            .unwrap();
        runtime.quiesce().await;
        assert_eq!(
            notes_of(&notices),
            ["handoff", "forward_to_operator"],
            "durable: {durable}"
        );
        // The handoff (step 2) comes after both messages of its turn.
        assert_eq!(
            notices.recorder.texts("ada"),
            ["one moment", "a person will answer", "<2>", "<0>"],
            "durable: {durable}"
        );
        let expected: &[usize] = if durable { &[1, 1] } else { &[0, 0] };
        assert_eq!(
            *notices.stored_when_notified.lock().unwrap(),
            expected,
            "durable: {durable}"
        );
        assert!(store.outbox(&key("ada")).unwrap().is_empty());
        let record = store.conversation(&key("ada")).unwrap().unwrap();
        assert_eq!(record.state.status, Status::HandedOff);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_behind_a_send_that_failed_for_good_waits_with_it() {
    let (runtime, notices, store) = desk_runtime(false).await;
    notices
        .recorder
        .send_failures
        .lock()
        .unwrap()
        .push_back(EffectError::permanent("the user blocked the page"));
    runtime
        .ingest(vec![message("bo", "m1", 1, "hi")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert!(notes_of(&notices).is_empty());
    // Paused: the failed send, the next one and the handoff wait in the outbox, in order.
    let waiting: Vec<u32> = store
        .outbox(&key("bo"))
        .unwrap()
        .iter()
        .map(|item| item.step)
        .collect();
    assert_eq!(waiting, [0, 1, 2]);
    runtime.skip_effect(&key("bo")).await.unwrap();
    runtime.quiesce().await;
    assert_eq!(
        notices.recorder.texts("bo"),
        ["a person will answer", "<2>"]
    );
    assert_eq!(notes_of(&notices), ["handoff"]);
    assert!(store.outbox(&key("bo")).unwrap().is_empty());
}

/// Messenger's Send API has no idempotency key: a send whose removal from the outbox was not on
/// disk at a crash goes out again. On an idle server no other write would flush it for minutes,
/// so the removal asks for a flush of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_send_is_flushed_at_once_on_an_idle_server() {
    let (runtime, recorder) = echo_runtime().await;
    runtime
        .ingest(vec![message("ada", "m1", 1, "hi")])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.texts("ada").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    runtime.quiesce().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = runtime.flushes();
    runtime
        .ingest(vec![message("ada", "m2", 2, "again")])
        .await
        .unwrap();
    // The turn's own flush is done when ingest returns; the send's removal gets the next.
    let acknowledged = runtime.flushes();
    assert_eq!(acknowledged, before + 1);
    while recorder.texts("ada").len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let sent = std::time::Instant::now();
    while runtime.flushes() == acknowledged && sent.elapsed() < std::time::Duration::from_secs(1) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(
        runtime.flushes(),
        acknowledged + 1,
        "one flush for the send"
    );
    assert!(
        sent.elapsed() < std::time::Duration::from_millis(100),
        "{:?}",
        sent.elapsed()
    );
    assert!(runtime.store().outbox(&key("ada")).unwrap().is_empty());
}
