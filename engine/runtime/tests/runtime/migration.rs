//! Flow versions: pinning, publishing with conversations at removed nodes, and migrations.

use std::collections::BTreeMap;
use std::sync::Arc;

use influxify_runtime::admin::Filter;
use influxify_runtime::{MigrationPolicy, PublishError};
use influxify_store::MemoryStore;

use crate::*;

const V1: &str = "
id: survey
start: ask_a
nodes:
  ask_a: { kind: ask, prompt: A?, store: a, next: ask_b }
  ask_b: { kind: ask, prompt: B?, store: b, next: done }
  done: { kind: end, text: 'v1 done' }
";

const V2_WITHOUT_B: &str = "
id: survey
start: ask_a
nodes:
  ask_a: { kind: ask, prompt: A?, store: a, next: done }
  done: { kind: end, text: 'v2 done' }
";

const V3_RENAMED_B: &str = "
id: survey
start: ask_a
nodes:
  ask_a: { kind: ask, prompt: A?, store: a, next: ask_c }
  ask_c: { kind: ask, prompt: C?, store: c, next: done }
  done: { kind: end, text: 'v3 done {{ c }}' }
";

async fn two_users_waiting() -> (Runtime, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        "survey",
        &[("survey.yaml", V1)],
    )
    .await;
    runtime
        .ingest(vec![
            message("u1", "1", 1, "hi"),
            message("u2", "2", 1, "hi"),
            message("u2", "3", 2, "a"),
        ])
        .await
        .unwrap();
    runtime.quiesce().await;
    (runtime, recorder)
}

fn sources(text: &str) -> Vec<(String, String)> {
    vec![("survey.yaml".to_string(), text.to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_would_strand_conversations_says_how_many() {
    let (runtime, _) = two_users_waiting().await;
    let at_b = runtime
        .list(&Filter {
            node: Some("ask_b".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(at_b.len(), 1);
    let err = runtime
        .publish(sources(V2_WITHOUT_B), None)
        .await
        .unwrap_err();
    let PublishError::WouldStrand(stranded) = err else {
        panic!("{err}")
    };
    assert_eq!(stranded.len(), 1);
    assert_eq!(
        (stranded[0].node.as_str(), stranded[0].conversations),
        ("ask_b", 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_leaves_live_conversations_on_their_version() {
    let (runtime, recorder) = two_users_waiting().await;
    let report = runtime
        .publish(sources(V2_WITHOUT_B), Some(MigrationPolicy::Keep))
        .await
        .unwrap();
    assert_eq!(report.migrated, 0);
    runtime
        .ingest(vec![
            message("u2", "4", 3, "b"),
            message("u1", "5", 3, "a"),
            message("u3", "6", 3, "hi"),
            message("u3", "7", 4, "a"),
        ])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(
        recorder.texts("u2").last().unwrap(),
        "v1 done",
        "u2 finishes on the version it started"
    );
    assert_eq!(
        recorder.texts("u1").last().unwrap(),
        "B?",
        "u1 stays on v1 too"
    );
    assert_eq!(
        recorder.texts("u3").last().unwrap(),
        "v2 done",
        "new conversations start on the newest version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_map_moves_conversations_without_stranding_anyone() {
    let (runtime, recorder) = two_users_waiting().await;
    let incomplete = runtime
        .publish(
            sources(V2_WITHOUT_B),
            Some(MigrationPolicy::Map(BTreeMap::new())),
        )
        .await;
    assert!(matches!(incomplete, Err(PublishError::IncompleteMap(_))));
    let map = BTreeMap::from([("ask_b".to_string(), "ask_c".to_string())]);
    let report = runtime
        .publish(sources(V3_RENAMED_B), Some(MigrationPolicy::Map(map)))
        .await
        .unwrap();
    assert_eq!(report.migrated, 2);
    runtime.quiesce().await;
    let u2 = runtime.inspect(&key("u2")).unwrap().record;
    assert_eq!(
        (u2.version.as_str(), u2.state.node.as_deref()),
        (report.version.as_str(), Some("ask_c"))
    );
    runtime
        .ingest(vec![message("u2", "8", 5, "see")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("u2").last().unwrap(), "v3 done see");
    assert!(
        runtime
            .list(&Filter {
                node: Some("ask_b".into()),
                ..Filter::default()
            })
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_moves_conversations_to_the_start_of_the_new_version() {
    let (runtime, recorder) = two_users_waiting().await;
    let report = runtime
        .publish(sources(V2_WITHOUT_B), Some(MigrationPolicy::Restart))
        .await
        .unwrap();
    assert_eq!(report.migrated, 2);
    runtime.quiesce().await;
    runtime
        .ingest(vec![
            message("u2", "9", 6, "hello"),
            message("u2", "10", 7, "a"),
        ])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("u2").last().unwrap(), "v2 done");
    assert_eq!(
        runtime.inspect(&key("u2")).unwrap().record.version,
        report.version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_migration_resolves_against_events_applied_after_the_publish() {
    let (runtime, recorder) = two_users_waiting().await;
    // u1 answered `ask_a` just before the publish; the answer is durable but not applied yet.
    runtime
        .store()
        .ingest(&[message("u1", "late", 3, "a")])
        .unwrap();
    let map = BTreeMap::from([("ask_b".to_string(), "ask_c".to_string())]);
    let report = runtime
        .publish(sources(V3_RENAMED_B), Some(MigrationPolicy::Map(map)))
        .await
        .unwrap();
    runtime.quiesce().await;
    let u1 = runtime.inspect(&key("u1")).unwrap().record;
    assert_eq!(
        (u1.version.as_str(), u1.state.node.as_deref()),
        (report.version.as_str(), Some("ask_c"))
    );
    runtime
        .ingest(vec![message("u1", "c", 9, "sea")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("u1").last().unwrap(), "v3 done sea");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_node_that_changes_kind_is_run_again_after_a_migration() {
    let (runtime, recorder) = two_users_waiting().await;
    let v4 = "
id: survey
start: ask_a
nodes:
  ask_a: { kind: ask, prompt: A?, store: a, next: ask_b }
  ask_b: { kind: wait, for: 1h, cancel_on_message: true, next: done }
  done: { kind: end, text: 'v4 done' }
";
    runtime
        .publish(sources(v4), Some(MigrationPolicy::Map(BTreeMap::new())))
        .await
        .unwrap();
    runtime.quiesce().await;
    let u2 = runtime.inspect(&key("u2")).unwrap();
    assert_eq!(u2.record.state.node.as_deref(), Some("ask_b"));
    assert_eq!(
        u2.timers.len(),
        1,
        "the wait node ran again and set its timer"
    );
    runtime
        .ingest(vec![message("u2", "w", 9, "hey")])
        .await
        .unwrap();
    runtime.quiesce().await;
    assert_eq!(recorder.texts("u2").last().unwrap(), "v4 done");
}
