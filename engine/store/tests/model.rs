//! Property test: the sled store behaves like the in-memory model under random operations,
//! including flushes and reopening the database.

use influxify_core::ConversationState;
use influxify_core::conversation::{Effect, Event, UserMessage};
use influxify_store::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Ingest {
        user: u8,
        id: u8,
    },
    Commit {
        user: u8,
        timer: bool,
        cancel: bool,
    },
    Turn {
        user: u8,
        id: u8,
        timer: bool,
        cancel: bool,
    },
    Complete {
        user: u8,
    },
    Remove {
        user: u8,
    },
    Fire,
    Pause {
        user: u8,
    },
    Unpause {
        user: u8,
        skip: bool,
        stale: bool,
    },
    Erase {
        user: u8,
    },
    Restrict {
        user: u8,
        on: bool,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..8u8).prop_map(|(user, id)| Op::Ingest { user, id }),
        3 => (0..3u8, any::<bool>(), any::<bool>()).prop_map(|(user, timer, cancel)| Op::Commit { user, timer, cancel }),
        2 => (0..3u8, 0..8u8, any::<bool>(), any::<bool>()).prop_map(|(user, id, timer, cancel)| Op::Turn { user, id, timer, cancel }),
        1 => (0..3u8).prop_map(|user| Op::Complete { user }),
        1 => (0..3u8).prop_map(|user| Op::Remove { user }),
        1 => Just(Op::Fire),
        1 => (0..3u8).prop_map(|user| Op::Pause { user }),
        1 => (0..3u8, any::<bool>(), any::<bool>()).prop_map(|(user, skip, stale)| Op::Unpause { user, skip, stale }),
        1 => (0..3u8).prop_map(|user| Op::Erase { user }),
        1 => (0..3u8, any::<bool>()).prop_map(|(user, on)| Op::Restrict { user, on }),
        1 => Just(Op::Reopen),
    ]
}

fn key(user: u8) -> ConversationKey {
    ConversationKey::new("web", format!("user{user}"))
}

/// A turn on `key`'s conversation consuming `consumed`, with an effect and maybe timers.
fn turn(
    store: &dyn Store,
    key: &ConversationKey,
    consumed: Vec<u64>,
    timer: bool,
    cancel: bool,
) -> TurnCommit {
    let previous = store.conversation(key).unwrap();
    let turns = previous.as_ref().map_or(0, |r| r.turns) + 1;
    let mut state = ConversationState::new("flow");
    state.node = Some(format!("node{}", turns % 3));
    let record = StoredConversation {
        version: "v1".into(),
        state,
        turns,
        paused: None,
        updated_at: turns,
        recent: vec![],
        last_user_at: None,
        account: None,
        profile_at: None,
    };
    TurnCommit {
        conversation: key.clone(),
        previous: previous.as_ref().map(Place::of),
        record,
        consumed,
        outbox: vec![OutboxItem {
            last_user_at: None,
            account: None,
            conversation: key.clone(),
            turn: turns,
            step: 0,
            effect: Effect::End,
            attempts: 0,
            not_before: 0,
            last_error: None,
            notice: false,
        }],
        notices: vec![],
        set_timers: if timer {
            vec![Timer {
                conversation: key.clone(),
                timer: turns,
                due: 100 + turns * 7 % 5,
            }]
        } else {
            vec![]
        },
        cancel_timers: if cancel { vec![turns - 1] } else { vec![] },
    }
}

/// Message `id` from `user`, its timestamp `id` ms; even ids carry the provider's own time
/// (their dedup markers packed by second), odd ones not.
fn message(user: u8, id: u8) -> Inbound {
    let event = Inbound::new(
        key(user),
        format!("m{id}"),
        u64::from(id),
        Event::User(UserMessage::text(format!("t{id}"))),
    );
    if id.is_multiple_of(2) {
        event.with_provider_time()
    } else {
        event
    }
}

/// Applies `op` to `store` and returns what a caller can observe of the result.
fn apply(store: &dyn Store, op: &Op) -> String {
    match op {
        Op::Ingest { user, id } => {
            let event = message(*user, *id);
            let result = store.ingest(&[event]).unwrap();
            format!(
                "{:?}",
                result
                    .iter()
                    .map(|r| matches!(r, Ingested::New(_)))
                    .collect::<Vec<_>>()
            )
        }
        Op::Commit {
            user,
            timer,
            cancel,
        } => {
            let key = key(*user);
            let inbox = store.inbox(&key).unwrap();
            let Some((seq, _)) = inbox.first() else {
                return "empty".into();
            };
            let commit = turn(store, &key, vec![*seq], *timer, *cancel);
            store.commit(&commit).unwrap();
            "ok".into()
        }
        Op::Turn {
            user,
            id,
            timer,
            cancel,
        } => {
            let key = key(*user);
            let event = message(*user, *id);
            let commit = turn(store, &key, Vec::new(), *timer, *cancel);
            let write = Write::Turn {
                events: vec![event],
                commits: vec![commit],
            };
            match store.apply(&[write]).unwrap().pop() {
                Some(Applied::Turned(Some(seqs))) => format!("turned {}", seqs.len()),
                other => format!("{other:?}"),
            }
        }
        Op::Complete { user } => {
            let key = key(*user);
            let Some(item) = store.outbox(&key).unwrap().into_iter().next() else {
                return "none".into();
            };
            let result = Inbound::new(
                key,
                format!("result:{}", item.idempotency_key()),
                1,
                Event::Timer { timer: 0 },
            );
            format!(
                "{:?}",
                matches!(
                    store.complete_with_event(&item, &result).unwrap(),
                    Ingested::New(_)
                )
            )
        }
        Op::Remove { user } => {
            let key = key(*user);
            if let Some(item) = store.outbox(&key).unwrap().into_iter().next() {
                store.remove_outbox(&item).unwrap();
            }
            "ok".into()
        }
        Op::Fire => match store.next_timer().unwrap() {
            Some(timer) => {
                let event = Inbound::new(
                    timer.conversation.clone(),
                    format!("timer:{}:{}", timer.conversation.user, timer.timer),
                    timer.due,
                    Event::Timer { timer: timer.timer },
                );
                format!(
                    "{:?} {}",
                    store.fire_timer(&timer, &event).unwrap(),
                    timer.timer
                )
            }
            None => "no timer".into(),
        },
        Op::Pause { user } => {
            let key = key(*user);
            match store.conversation(&key).unwrap() {
                Some(mut record) => {
                    record.paused = Some("send failed".into());
                    store.put_conversation(&key, &record).unwrap();
                    "paused".into()
                }
                None => "none".into(),
            }
        }
        Op::Unpause { user, skip, stale } => {
            let key = key(*user);
            let Some(record) = store.conversation(&key).unwrap() else {
                return "none".into();
            };
            let failed = store
                .outbox(&key)
                .unwrap()
                .into_iter()
                .next()
                .map(|mut item| {
                    item.last_error = Some("boom".into());
                    item
                });
            let write = Write::Unpause {
                conversation: key,
                turns: record.turns + u64::from(*stale),
                failed,
                skip: *skip,
            };
            format!("{:?}", store.apply(&[write]).unwrap())
        }
        Op::Erase { user } => format!(
            "{:?}",
            store
                .apply(&[Write::Erase {
                    conversation: key(*user)
                }])
                .unwrap()
        ),
        Op::Restrict { user, on } => format!(
            "{:?}",
            store
                .apply(&[Write::Restrict {
                    conversation: key(*user),
                    restricted: *on
                }])
                .unwrap()
        ),
        Op::Reopen => "reopen".into(),
    }
}

/// Everything observable, with store-specific sequence numbers left out.
fn observe(store: &dyn Store) -> String {
    let mut out = String::new();
    for user in 0..3 {
        let key = key(user);
        let inbox: Vec<Inbound> = store
            .inbox(&key)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        out += &format!(
            "{user}: {:?} | {:?} | {:?} | {:?}\n",
            store.conversation(&key).unwrap(),
            inbox,
            store.outbox(&key).unwrap(),
            store.timers(&key).unwrap()
        );
    }
    out += &format!(
        "next {:?} due {:?}\n",
        store.next_timer().unwrap(),
        store.due_timers(103, 3).unwrap()
    );
    // Listing order is the backend's key order (partitions first for sled): compare as sets.
    let mut with_inbox = store.conversations_with_inbox().unwrap();
    with_inbox.sort();
    let mut with_outbox = store.conversations_with_outbox().unwrap();
    with_outbox.sort();
    out += &format!("inbox {with_inbox:?} outbox {with_outbox:?}\n");
    let mut placed = store.placed("v1").unwrap();
    placed.sort();
    out += &format!("placed {placed:?}\n");
    let mut restricted = store.restricted().unwrap();
    restricted.sort();
    let mut idle = store.idle_conversations(u64::MAX).unwrap();
    idle.sort();
    out += &format!("restricted {restricted:?} stored {idle:?}\n");
    out
}

/// Opens the store again; sled's background threads may hold the old handle for a moment.
fn reopen(dir: &std::path::Path) -> SledStore {
    for _ in 0..100 {
        if let Ok(store) = SledStore::open(dir, 4 * 1024 * 1024) {
            return store;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    SledStore::open(dir, 4 * 1024 * 1024).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn sled_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let model = MemoryStore::new();
        let mut sled = SledStore::open(dir.path(), 4 * 1024 * 1024).unwrap();
        for op in &ops {
            if let Op::Reopen = op {
                sled.flush().unwrap();
                drop(sled);
                sled = reopen(dir.path());
                continue;
            }
            let expected = apply(&model, op);
            let actual = apply(&sled, op);
            prop_assert_eq!(&actual, &expected, "after {:?}", op);
            prop_assert_eq!(observe(&sled), observe(&model), "after {:?}", op);
        }
    }
}

/// A fresh sled store (in its directory) and a fresh model, to run the same steps on both.
fn stores() -> (tempfile::TempDir, SledStore, MemoryStore) {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path(), 4 * 1024 * 1024).unwrap();
    (dir, sled, MemoryStore::new())
}

#[test]
fn old_dedup_markers_are_swept_and_fresh_ones_kept() {
    let (_dir, sled, model) = stores();
    for store in [&sled as &dyn Store, &model] {
        let event = |id: &str| Inbound::new(key(0), id, 1, Event::User(UserMessage::text("x")));
        store.ingest(&[event("a"), event("b")]).unwrap();
        // Nothing is older than a time before the ingest.
        assert_eq!(store.sweep_dedup(1).unwrap(), 0);
        assert!(matches!(
            store.ingest(&[event("a")]).unwrap()[0],
            Ingested::Duplicate
        ));
        // Everything is older than a time after it: swept, and a redelivery counts as new.
        assert_eq!(store.sweep_dedup(u64::MAX).unwrap(), 2);
        assert!(matches!(
            store.ingest(&[event("a")]).unwrap()[0],
            Ingested::New(_)
        ));
    }
}

#[test]
fn plugin_results_and_fired_timers_leave_no_dedup_markers() {
    let (_dir, sled, model) = stores();
    for store in [&sled as &dyn Store, &model] {
        let key = key(1);
        let message = Inbound::new(key.clone(), "m1", 1, Event::User(UserMessage::text("x")));
        store.ingest(&[message]).unwrap();
        let (seq, _) = store.inbox(&key).unwrap().remove(0);
        store
            .commit(&turn(store, &key, vec![seq], true, false))
            .unwrap();
        let item = store.outbox(&key).unwrap().remove(0);
        let result = Inbound::new(key.clone(), "result:1", 2, Event::Timer { timer: 0 });
        assert!(matches!(
            store.complete_with_event(&item, &result).unwrap(),
            Ingested::New(_)
        ));
        // Once: the outbox item is gone.
        assert!(matches!(
            store.complete_with_event(&item, &result).unwrap(),
            Ingested::Duplicate
        ));
        let timer = store.timers(&key).unwrap().remove(0);
        let fired = Inbound::new(key.clone(), "timer:1", 3, Event::Timer { timer: 1 });
        assert!(store.fire_timer(&timer, &fired).unwrap());
        assert!(!store.fire_timer(&timer, &fired).unwrap());
        // The user's message left the only marker.
        assert_eq!(store.sweep_dedup(u64::MAX).unwrap(), 1);
        assert_eq!(store.inbox(&key).unwrap().len(), 2);
    }
}

#[test]
fn markers_kept_by_provider_time_find_redeliveries_and_expire_by_that_time() {
    let (_dir, sled, model) = stores();
    for store in [&sled as &dyn Store, &model] {
        let event = |user: u8, id: &str, at: u64| {
            Inbound::new(key(user), id, at, Event::User(UserMessage::text("x")))
                .with_provider_time()
        };
        // Many in one second, several users (partitions), two seconds.
        let first: Vec<Inbound> = (0..40)
            .map(|i| event(i % 5, &format!("m_{i}"), 5_000 + u64::from(i)))
            .chain((0..10).map(|i| event(i, &format!("n_{i}"), 6_500)))
            .collect();
        let ingested = store.ingest(&first).unwrap();
        assert!(ingested.iter().all(|i| matches!(i, Ingested::New(_))));
        // A redelivery (same id, same provider time) is found, in one batch or alone, by
        // ingest and by the fast path.
        let again = store.ingest(&first).unwrap();
        assert!(
            again.iter().all(|i| matches!(i, Ingested::Duplicate)),
            "{again:?}"
        );
        let redelivered = event(3, "m_3", 5_003);
        let turn = Write::Turn {
            events: vec![redelivered.clone()],
            commits: vec![],
        };
        assert!(matches!(
            store.apply(&[turn]).unwrap()[0],
            Applied::Turned(None)
        ));
        // Two events in one batch with the same id: the second is the duplicate.
        let twice = store
            .ingest(&[event(1, "m_new", 7_000), event(1, "m_new", 7_000)])
            .unwrap();
        assert!(
            matches!(twice[..], [Ingested::New(_), Ingested::Duplicate]),
            "{twice:?}"
        );
        // A marker kept without a second (as a store written before packing holds them) still
        // catches the redelivery of a provider-time event.
        let legacy = Inbound::new(key(4), "m_old", 8_000, Event::User(UserMessage::text("x")));
        assert!(matches!(
            store.ingest(&[legacy]).unwrap()[0],
            Ingested::New(_)
        ));
        assert!(matches!(
            store.ingest(&[event(4, "m_old", 8_000)]).unwrap()[0],
            Ingested::Duplicate
        ));
        // A second's markers go once its start is before the cut: second 5's 40 markers.
        assert_eq!(store.sweep_dedup(5_000).unwrap(), 0);
        assert_eq!(store.sweep_dedup(5_001).unwrap(), 40);
        assert!(matches!(
            store.ingest(&[redelivered]).unwrap()[0],
            Ingested::New(_)
        ));
        assert_eq!(store.sweep_dedup(u64::MAX).unwrap(), 10 + 1 + 1 + 1);
    }
}

#[test]
fn a_second_claimed_by_many_events_still_finds_every_redelivery() {
    let (_dir, sled, model) = stores();
    for store in [&sled as &dyn Store, &model] {
        // 2,000 ids of 40 bytes in one conversation's second: more than one value holds.
        let events: Vec<Inbound> = (0..2000)
            .map(|i| {
                Inbound::new(
                    key(2),
                    format!("{i:040}"),
                    9_000,
                    Event::User(UserMessage::text("x")),
                )
                .with_provider_time()
            })
            .collect();
        for chunk in events.chunks(100) {
            let ingested = store.ingest(chunk).unwrap();
            assert!(ingested.iter().all(|i| matches!(i, Ingested::New(_))));
        }
        for chunk in events.chunks(100) {
            let again = store.ingest(chunk).unwrap();
            assert!(again.iter().all(|i| matches!(i, Ingested::Duplicate)));
        }
        assert_eq!(store.sweep_dedup(u64::MAX).unwrap(), 2000);
    }
}
