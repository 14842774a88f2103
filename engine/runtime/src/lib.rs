//! The durable runtime: it drives the core's pure step function for every conversation, with
//! state in a [`Store`]. The way a message travels:
//!
//! 1. [`Runtime::ingest`] deduplicates events on (channel, provider id), appends them to their
//!    conversations' inboxes and returns once that is flushed (group commit): only then may the
//!    webhook be acknowledged. For a conversation with nothing queued and no writer, ingest runs
//!    the turn at once and commits it with the dedup markers instead (no inbox entry to write
//!    and remove): the same guarantees, fewer writes.
//! 2. The conversation's single writer takes inbox entries in order, runs the step function
//!    against the flow version the conversation is pinned to, and commits the new state, the
//!    consumed entries, the effects (outbox) and the timers in one transaction.
//! 3. After the flush, the writer runs the conversation's effects in order through the
//!    [`EffectHandler`], each with its idempotency key; plugin results come back as events.
//! 4. Durable timers fire into inboxes; recovery at start resumes pending effects, inboxes and
//!    due timers. Nothing scans every conversation.

mod actor;
pub mod admin;
pub mod clock;
pub mod commit;
pub mod effects;
mod ingest;
pub mod privacy;
mod timers;
pub mod versions;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use influxify_core::Catalog;
use influxify_store::{ConversationKey, Inbound, Migration, Store, StoreError};
use tokio::sync::Notify;

pub use commit::GroupCommit;
pub use effects::{BoxFuture, EffectError, EffectHandler, Reach};
pub use versions::{MigrationPolicy, PublishError, PublishReport, Registry, Stranded};

/// The longest channel instance name an event may carry.
pub const MAX_CHANNEL_BYTES: usize = 255;
/// The longest user id or provider event id an event may carry.
pub const MAX_ID_BYTES: usize = 1024;

/// How the runtime behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bot whose flow versions the runtime serves.
    pub bot: String,
    /// The flow new conversations start in.
    pub entry_flow: String,
    /// Share flushes between concurrent turns (on in production; off only to measure it).
    pub group_commit: bool,
    /// Attempts for sending a message or notifying operators before the conversation pauses.
    pub send_attempts: u32,
    /// First retry delay for sends, in milliseconds (doubling, with jitter).
    pub send_backoff_ms: u64,
    /// Longest retry delay for sends, in milliseconds.
    pub send_max_backoff_ms: u64,
    /// The plugin actions known to validation.
    pub catalog: Option<Catalog>,
}

impl Config {
    /// Defaults for `bot`, starting conversations in `entry_flow`.
    pub fn new(bot: &str, entry_flow: &str) -> Self {
        Config {
            bot: bot.to_string(),
            entry_flow: entry_flow.to_string(),
            group_commit: true,
            send_attempts: 5,
            send_backoff_ms: 200,
            send_max_backoff_ms: 30_000,
            catalog: Some(Catalog::builtin()),
        }
    }
}

/// A runtime error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No flow version is published yet.
    #[error("no flow version of bot `{0}` is published")]
    NoVersion(String),
    /// A conversation that does not exist.
    #[error("no conversation {0}")]
    UnknownConversation(ConversationKey),
    /// No such flow version of this bot.
    #[error("no flow version `{0}` of this bot")]
    UnknownVersion(String),
    /// An admin action that does not apply.
    #[error("{0}")]
    Refused(String),
}

impl RuntimeError {
    /// Whether trying again later cannot help: a record or flow version that cannot be read, or
    /// no published version at all.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RuntimeError::Store(StoreError::Corrupt { .. }) | RuntimeError::NoVersion(_)
        )
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events ingested (new).
    pub ingested: AtomicU64,
    /// Events dropped as duplicates.
    pub duplicates: AtomicU64,
    /// Turns committed.
    pub turns: AtomicU64,
    /// Effects completed.
    pub effects: AtomicU64,
    /// Timers fired.
    pub timers: AtomicU64,
}

/// The runtime. Cheap to clone; all clones share one set of writers.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("bot", &self.inner.config.bot)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) commit: GroupCommit,
    pub(crate) effects: Arc<dyn EffectHandler>,
    pub(crate) config: Config,
    /// Conversations whose writer runs, with whether new work arrived meanwhile.
    pub(crate) running: Mutex<HashMap<ConversationKey, bool>>,
    /// Conversations whose processing the user restricted (few; also in the store).
    pub(crate) restricted: Mutex<HashSet<ConversationKey>>,
    /// Plugin calls under way: (conversation, turn, step).
    pub(crate) in_flight: Mutex<HashSet<(ConversationKey, u64, u32)>>,
    pub(crate) timer_wake: Notify,
    /// Set by [`Runtime::shutdown`]: the timer task ends.
    pub(crate) stopping: AtomicBool,
    pub(crate) idle: Notify,
    pub(crate) stats: Stats,
    pub(crate) operator_ids: AtomicU64,
    pub(crate) publishing: tokio::sync::Mutex<()>,
}

impl Runtime {
    /// Starts the runtime on `store`: the flusher, the timer task, and recovery (pending
    /// effects resume, inboxes are processed, due timers fire).
    pub async fn start(
        store: Arc<dyn Store>,
        effects: Arc<dyn EffectHandler>,
        config: Config,
    ) -> Result<Self, RuntimeError> {
        let registry = Registry::new(store.clone(), &config.bot, config.catalog.clone());
        let commit = GroupCommit::start(store.clone(), config.group_commit);
        let runtime = Runtime {
            inner: Arc::new(Inner {
                store: store.clone(),
                registry,
                commit,
                effects,
                config,
                running: Mutex::new(HashMap::new()),
                restricted: Mutex::new(store.restricted()?.into_iter().collect()),
                in_flight: Mutex::new(HashSet::new()),
                timer_wake: Notify::new(),
                stopping: AtomicBool::new(false),
                idle: Notify::new(),
                stats: Stats::default(),
                operator_ids: AtomicU64::new(clock::now_ms() << 8),
                publishing: tokio::sync::Mutex::new(()),
            }),
        };
        timers::spawn(runtime.clone());
        let mut pending: Vec<ConversationKey> = store.conversations_with_outbox()?;
        pending.extend(store.conversations_with_inbox()?);
        pending.sort();
        pending.dedup();
        for key in pending {
            runtime.schedule(key);
        }
        Ok(runtime)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// How many flushes ran (to see group commit at work).
    pub fn flushes(&self) -> u64 {
        self.inner.commit.flushes()
    }

    /// Time spent flushing so far, in microseconds.
    pub fn flush_micros(&self) -> u64 {
        self.inner.commit.flush_micros()
    }

    /// The flow new conversations start in.
    pub fn entry_flow(&self) -> &str {
        &self.inner.config.entry_flow
    }

    /// Why the runtime stopped accepting writes (a flush failed), if it did: it must be
    /// restarted.
    pub fn broken(&self) -> Option<String> {
        self.inner.commit.broken()
    }

    /// The flow versions.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Publishes a new version of the bot's flows. With `policy` `None`, a version that would
    /// leave live conversations at removed nodes is refused with the count; otherwise the policy
    /// says what happens to conversations on older versions.
    pub async fn publish(
        &self,
        sources: Vec<(String, String)>,
        policy: Option<MigrationPolicy>,
    ) -> Result<PublishReport, PublishError> {
        // One publish at a time: two racing ones could leave the older version as the head.
        let _one_publish = self.inner.publishing.lock().await;
        let registry = &self.inner.registry;
        let (hash, flows, stranded) = registry.prepare(sources)?;
        if flows.get(&self.inner.config.entry_flow).is_none() {
            return Err(PublishError::Invalid(vec![
                influxify_core::Diagnostic::error(
                    influxify_core::Code::UnknownFlow,
                    format!(
                        "the entry flow `{}` is not in this version",
                        self.inner.config.entry_flow
                    ),
                ),
            ]));
        }
        let unchanged = registry.head()?.as_deref() == Some(hash.as_str());
        if policy.is_none() && !stranded.is_empty() {
            return Err(PublishError::WouldStrand(stranded));
        }
        let policy = policy.unwrap_or_default();
        // Check a node map covers everything before moving anyone.
        if let MigrationPolicy::Map(map) = &policy {
            let left: Vec<Stranded> = stranded
                .iter()
                .filter(|s| {
                    let target = map.get(&s.node).unwrap_or(&s.node);
                    flows
                        .get(&s.flow)
                        .is_none_or(|f| f.node_index(target).is_none())
                })
                .cloned()
                .collect();
            if !left.is_empty() {
                return Err(PublishError::IncompleteMap(left));
            }
        }
        // The head moves first, so that conversations starting from now on are on it.
        if !unchanged {
            registry.set_head(&hash)?;
        }
        let mut migrated = 0;
        let (restart, map) = match &policy {
            MigrationPolicy::Keep => (false, None),
            MigrationPolicy::Restart => (true, Some(BTreeMap::new())),
            MigrationPolicy::Map(map) => (false, Some(map.clone())),
        };
        if let Some(map) = map {
            // Each conversation's writer resolves its move from its live state, in inbox order.
            let publish = clock::now_ms();
            let mut entries = Vec::new();
            for version in self.inner.store.versions()? {
                if version == hash
                    || self
                        .inner
                        .store
                        .version(&version)?
                        .is_some_and(|v| v.bot != registry.bot())
                {
                    continue;
                }
                for (place, key) in self.inner.store.placed(&version)? {
                    let mut inbound = Inbound::new(
                        key.clone(),
                        format!("migrate:{hash}:{publish}:{}", key.user),
                        publish,
                        influxify_core::Event::Operator(influxify_core::OperatorAction::Goto {
                            node: place.node,
                        }),
                    );
                    inbound.migration = Some(Migration {
                        version: hash.clone(),
                        restart,
                        map: map.clone(),
                    });
                    entries.push(inbound);
                }
            }
            migrated = entries.len();
            if !entries.is_empty() {
                self.ingest_checked(entries)
                    .await
                    .map_err(|err| match err {
                        RuntimeError::Store(err) => PublishError::Store(err),
                        other => PublishError::Store(StoreError::Backend(other.to_string())),
                    })?;
            }
        }
        self.inner.commit.durable().await?;
        // Events that arrived before any version existed can be processed now.
        for key in self.inner.store.conversations_with_inbox()? {
            self.schedule(key);
        }
        Ok(PublishReport {
            version: hash,
            unchanged,
            stranded,
            migrated,
        })
    }

    /// Makes an earlier version the one new conversations start on again. Conversations keep
    /// the version they are on.
    pub async fn rollback(&self, hash: &str) -> Result<(), RuntimeError> {
        let _one_publish = self.inner.publishing.lock().await;
        let registry = &self.inner.registry;
        match self.inner.store.version(hash)? {
            Some(version) if version.bot == registry.bot() => {}
            _ => return Err(RuntimeError::UnknownVersion(hash.to_string())),
        }
        let flows = registry.flows(hash).map_err(|err| {
            RuntimeError::Refused(format!("version `{hash}` cannot be loaded: {err}"))
        })?;
        if flows.get(&self.inner.config.entry_flow).is_none() {
            return Err(RuntimeError::Refused(format!(
                "version `{hash}` has no entry flow `{}`",
                self.inner.config.entry_flow
            )));
        }
        registry.set_head(hash)?;
        Ok(())
    }

    /// Makes sure the conversation's single writer runs.
    pub(crate) fn schedule(&self, key: ConversationKey) {
        let Ok(mut running) = self.inner.running.lock() else {
            return;
        };
        match running.get_mut(&key) {
            Some(dirty) => *dirty = true,
            None => {
                running.insert(key.clone(), false);
                let runtime = self.clone();
                tokio::spawn(async move { runtime.writer(key, None).await });
            }
        }
    }

    /// Stops the runtime: waits for writers and plugin calls under way to finish, stops the
    /// timer task and makes everything durable. Once every clone is dropped, the store is
    /// released. Ingesting after this is an error for nobody but may go unprocessed until the
    /// next start (timers no longer fire).
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        self.quiesce().await;
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.timer_wake.notify_one();
        self.inner.commit.durable().await?;
        Ok(())
    }

    /// Waits until no writer runs, no plugin call is under way, and no timer is due (for tests
    /// and tools).
    pub async fn quiesce(&self) {
        loop {
            let notified = self.inner.idle.notified();
            let busy = self
                .inner
                .running
                .lock()
                .map(|r| !r.is_empty())
                .unwrap_or(false)
                || self
                    .inner
                    .in_flight
                    .lock()
                    .map(|f| !f.is_empty())
                    .unwrap_or(false);
            let timer_due = self
                .inner
                .store
                .next_timer()
                .ok()
                .flatten()
                .is_some_and(|t| t.due <= clock::now_ms());
            if !busy && !timer_due && !self.unapplied_events() {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(20), notified).await;
        }
    }

    /// Whether some conversation that is not paused has events waiting in its inbox.
    fn unapplied_events(&self) -> bool {
        let store = &self.inner.store;
        store
            .conversations_with_inbox()
            .unwrap_or_default()
            .iter()
            .any(|key| {
                store
                    .conversation(key)
                    .ok()
                    .flatten()
                    .is_none_or(|record| record.paused.is_none())
            })
    }

    pub(crate) fn next_operator_id(&self) -> String {
        format!(
            "operator:{}",
            self.inner.operator_ids.fetch_add(1, Ordering::Relaxed)
        )
    }
}
