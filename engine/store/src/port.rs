//! The persistence port: what the runtime needs from a store, whatever the backend.

use crate::keys::ConversationKey;
use crate::record::{
    FlowVersion, Inbound, Ingested, OutboxItem, StoredConversation, Timer, TurnCommit,
};

/// One atomic change. [`Store::apply`] applies many in one transaction: atomic operations are
/// what costs in sled (an atomic batch writes about six times the bytes of a plain insert), so
/// the runtime groups concurrent changes, as it groups flushes.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Deduplicate and append events to their conversations' inboxes.
    Ingest(Vec<Inbound>),
    /// Apply a turn.
    Commit(TurnCommit),
    /// Ingest events and apply the turn they make at once, for a conversation with nothing
    /// queued: their dedup markers, never an inbox entry. Writes nothing if any of the events
    /// was ingested before (the caller then ingests them the ordinary way).
    Turn {
        /// The events, in the order the turn applied them.
        events: Vec<Inbound>,
        /// The turns, one per event (their `consumed` is empty).
        commits: Vec<TurnCommit>,
    },
    /// Remove a finished plugin call from the outbox and append its result to the inbox. The
    /// removal makes the result happen once: no dedup marker is written for it.
    Complete {
        /// The call.
        item: OutboxItem,
        /// Its result, as an event.
        result: Inbound,
    },
    /// Clear a conversation's pause if it is still the record an operator looked at (same turn
    /// count and paused), retrying (attempts reset) or skipping its failed effect.
    Unpause {
        /// The conversation.
        conversation: ConversationKey,
        /// The turn count the operator saw.
        turns: u64,
        /// The failed effect, if any.
        failed: Option<OutboxItem>,
        /// Drop the failed effect instead of trying it again.
        skip: bool,
    },
    /// Move a due timer into its conversation's inbox as `event` (once: the timer's removal
    /// is the guard, no dedup marker is written).
    Fire {
        /// The timer.
        timer: Timer,
        /// The event.
        event: Inbound,
    },
    /// Delete everything stored for a conversation: its record, place, inbox, outbox, timers,
    /// restriction, and any dedup markers of the runtime's own event ids for it (they name the
    /// user; earlier versions wrote them; a channel's message ids do not name the user, and
    /// expire by age, see [`Store::sweep_dedup`]).
    Erase {
        /// The conversation.
        conversation: ConversationKey,
    },
    /// Restrict processing of a conversation (its events are acknowledged and dropped), or lift
    /// the restriction.
    Restrict {
        /// The conversation.
        conversation: ConversationKey,
        /// Restricted from now on, or not.
        restricted: bool,
    },
}

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Erasure {
    /// Whether there was a conversation record.
    pub record: bool,
    /// Unprocessed events removed.
    pub inbox: usize,
    /// Pending effects removed.
    pub outbox: usize,
    /// Pending timers removed.
    pub timers: usize,
}

/// What a [`Write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Per event: new or duplicate.
    Ingested(Vec<Ingested>),
    /// The turn is applied.
    Committed,
    /// The events' sequence numbers, or `None` when one was a duplicate and nothing was written.
    Turned(Option<Vec<u64>>),
    /// The result was ingested (or the call was completed before: duplicate).
    Completed(Ingested),
    /// Whether the timer was still pending.
    Fired(bool),
    /// Whether the record was still the one seen (and is now unpaused).
    Unpaused(bool),
    /// What was erased.
    Erased(Erasure),
    /// The restriction is set or lifted.
    Restricted,
}

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption detected by sled).
    #[error("storage failed: {0}")]
    Backend(String),
    /// A record could not be read back.
    #[error("stored record is unreadable ({what}): {error}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        error: String,
    },
}

/// The result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Where a conversation is, for listing conversations by flow version, flow and node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    /// The flow version hash.
    pub version: String,
    /// The flow id.
    pub flow: String,
    /// The node id (empty before the first node).
    pub node: String,
}

impl Place {
    /// Where `record` is.
    pub fn of(record: &StoredConversation) -> Self {
        Place {
            version: record.version.clone(),
            flow: record.state.flow.clone(),
            node: record.state.node.clone().unwrap_or_default(),
        }
    }
}

/// Durable storage for conversations. Writes become durable at the next [`Store::flush`]; every
/// multi-record change is atomic. Implementations: `SledStore` (production) and `MemoryStore`
/// (tests, and the model the sled store is checked against).
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `writes` in order, in one atomic transaction.
    fn apply(&self, writes: &[Write]) -> Result<Vec<Applied>>;

    /// Deduplicates `events` on (channel, id) and appends the new ones to their conversations'
    /// inboxes, in the order given, atomically.
    fn ingest(&self, events: &[Inbound]) -> Result<Vec<Ingested>> {
        match self.apply(&[Write::Ingest(events.to_vec())])?.pop() {
            Some(Applied::Ingested(results)) => Ok(results),
            other => Err(StoreError::Backend(format!("unexpected result {other:?}"))),
        }
    }

    /// Makes every write so far durable. Called once for many writes (group commit).
    fn flush(&self) -> Result<()>;

    /// A conversation's record.
    fn conversation(&self, key: &ConversationKey) -> Result<Option<StoredConversation>>;

    /// A conversation's unprocessed inbox entries, oldest first.
    fn inbox(&self, key: &ConversationKey) -> Result<Vec<(u64, Inbound)>>;

    /// Conversations with unprocessed inbox entries (recovery). Proportional to pending work.
    fn conversations_with_inbox(&self) -> Result<Vec<ConversationKey>>;

    /// Applies a turn atomically: the new record, consumed inbox entries removed, effects
    /// queued, timers set and cancelled, the place index moved.
    fn commit(&self, commit: &TurnCommit) -> Result<()> {
        self.apply(&[Write::Commit(commit.clone())]).map(|_| ())
    }

    /// Replaces a conversation's record alone (admin actions: pause, resume, reset, migrate).
    fn put_conversation(&self, key: &ConversationKey, record: &StoredConversation) -> Result<()> {
        let previous = self.conversation(key)?.map(|r| Place::of(&r));
        self.commit(&TurnCommit {
            conversation: key.clone(),
            record: record.clone(),
            previous,
            consumed: Vec::new(),
            outbox: Vec::new(),
            notices: Vec::new(),
            set_timers: Vec::new(),
            cancel_timers: Vec::new(),
        })
    }

    /// A conversation's pending effects, in (turn, step) order.
    fn outbox(&self, key: &ConversationKey) -> Result<Vec<OutboxItem>>;

    /// Conversations with pending effects (recovery). Proportional to pending work.
    fn conversations_with_outbox(&self) -> Result<Vec<ConversationKey>>;

    /// Records an attempt (count, backoff, error) of a pending effect.
    fn update_outbox(&self, item: &OutboxItem) -> Result<()>;

    /// Removes a pending effect that is done (or skipped by an operator).
    fn remove_outbox(&self, item: &OutboxItem) -> Result<()>;

    /// Removes a finished plugin call from the outbox and ingests its result, atomically, so a
    /// result is delivered exactly once even if the process dies in between.
    fn complete_with_event(&self, item: &OutboxItem, result: &Inbound) -> Result<Ingested> {
        let write = Write::Complete {
            item: item.clone(),
            result: result.clone(),
        };
        match self.apply(&[write])?.pop() {
            Some(Applied::Completed(result)) => Ok(result),
            other => Err(StoreError::Backend(format!("unexpected result {other:?}"))),
        }
    }

    /// The timer that falls due first.
    fn next_timer(&self) -> Result<Option<Timer>>;

    /// Up to `limit` timers due at or before `until`, earliest first (a backlog after downtime
    /// fires in a few groups, not one flush per timer).
    fn due_timers(&self, until: u64, limit: usize) -> Result<Vec<Timer>>;

    /// A conversation's pending timers.
    fn timers(&self, key: &ConversationKey) -> Result<Vec<Timer>>;

    /// Moves a due timer into its conversation's inbox as `event`, atomically. `false` when the
    /// timer is no longer pending (cancelled, or fired already).
    fn fire_timer(&self, timer: &Timer, event: &Inbound) -> Result<bool> {
        let write = Write::Fire {
            timer: timer.clone(),
            event: event.clone(),
        };
        match self.apply(&[write])?.pop() {
            Some(Applied::Fired(fired)) => Ok(fired),
            other => Err(StoreError::Backend(format!("unexpected result {other:?}"))),
        }
    }

    /// Stores a flow version (idempotent: versions are immutable).
    fn put_version(&self, version: &FlowVersion) -> Result<()>;

    /// A flow version by hash.
    fn version(&self, hash: &str) -> Result<Option<FlowVersion>>;

    /// Makes `hash` the newest version of `bot`.
    fn set_head(&self, bot: &str, hash: &str) -> Result<()>;

    /// The newest version of `bot`.
    fn head(&self, bot: &str) -> Result<Option<String>>;

    /// Conversations pinned to `version`, with where they are.
    fn placed(&self, version: &str) -> Result<Vec<(Place, ConversationKey)>>;

    /// Every stored version hash.
    fn versions(&self) -> Result<Vec<String>>;

    /// The conversations whose processing is restricted.
    fn restricted(&self) -> Result<Vec<ConversationKey>>;

    /// The conversations last changed before `before` (ms since the Unix epoch): a full scan,
    /// for the retention sweeper.
    fn idle_conversations(&self, before: u64) -> Result<Vec<ConversationKey>>;

    /// Removes the dedup markers of events ingested before `before` (ms since the Unix epoch;
    /// for events with the provider's own time, whose second of provider time began before
    /// `before`); returns how many. A redelivery older than that is processed again.
    fn sweep_dedup(&self, before: u64) -> Result<usize>;
}
