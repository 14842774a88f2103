//! What the store keeps: inbound events, conversations, pending effects, timers, flow versions.

use influxify_core::conversation::{ConversationState, Effect, Event};
use serde::{Deserialize, Serialize};

use crate::keys::ConversationKey;

/// An event for a conversation, as ingested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbound {
    /// The conversation.
    pub conversation: ConversationKey,
    /// The provider's id of this event (a Messenger `mid`), or an id the engine derives (a
    /// timer, a plugin result); the dedup key together with the channel instance.
    pub id: String,
    /// The provider's timestamp, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The timestamp is the provider's own and comes back unchanged when the provider
    /// redelivers the event (a signed Messenger webhook): its dedup marker is then kept with
    /// the others of the same second, packed (see `SledStore`), instead of one key per event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provider_time: bool,
    /// What happened.
    pub event: Event,
    /// Set on the entries a publish queues to move the conversation to another flow version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// The channel account the event came to (a Messenger page, when one app serves many):
    /// the bot answers from the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl Inbound {
    /// An event for `conversation` with dedup id `id`.
    pub fn new(
        conversation: ConversationKey,
        id: impl Into<String>,
        timestamp: u64,
        event: Event,
    ) -> Self {
        Inbound {
            conversation,
            id: id.into(),
            timestamp,
            provider_time: false,
            event,
            migration: None,
            account: None,
        }
    }

    /// The channel account (a Messenger page) the event came to.
    pub fn with_account(mut self, account: Option<String>) -> Self {
        self.account = account;
        self
    }

    /// Marks the timestamp as the provider's own, identical on every redelivery.
    pub fn with_provider_time(mut self) -> Self {
        self.provider_time = true;
        self
    }
}

/// Moving a conversation to another flow version, applied by its single writer in inbox order.
/// The writer resolves the target from the conversation's live state, so that events applied
/// between the publish and the migration are taken into account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The version to move to.
    pub version: String,
    /// Start over on it (variables reset, profile kept).
    #[serde(default)]
    pub restart: bool,
    /// Old node id to new node id; nodes not listed keep their id.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub map: std::collections::BTreeMap<String, String>,
}

/// Whether an ingested event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored with this inbox sequence number.
    New(u64),
    /// Seen before; nothing was stored.
    Duplicate,
    /// Not stored: the user restricted processing of their conversation.
    Restricted,
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConversation {
    /// The flow version (content hash) the conversation is pinned to.
    pub version: String,
    /// The state machine's state.
    pub state: ConversationState,
    /// How many turns were committed; with the effect index, the idempotency key.
    pub turns: u64,
    /// Set when an effect failed for good: the conversation waits for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// The last events applied, newest last, without their content (no message text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<String>,
    /// When the user last wrote, by the channel's clock (milliseconds since the Unix epoch):
    /// channels such as Messenger only take replies within a window after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_user_at: Option<u64>,
    /// The channel account (a Messenger page) the user last wrote to: replies go out from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When the user's profile was last asked of their channel (milliseconds since the Unix
    /// epoch): at most daily, and only for flows that read profile fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_at: Option<u64>,
}

/// An effect to run after its turn was committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// The conversation.
    pub conversation: ConversationKey,
    /// The turn that produced it.
    pub turn: u64,
    /// Its index among the turn's effects.
    pub step: u32,
    /// What to do.
    pub effect: Effect,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (retry backoff), milliseconds since the Unix epoch.
    #[serde(default)]
    pub not_before: u64,
    /// The last error, when an attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the user last wrote before this effect was decided (see
    /// [`StoredConversation::last_user_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_user_at: Option<u64>,
    /// The channel account it goes out from (see [`StoredConversation::account`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A notification that is not stored ([`TurnCommit::notices`]): once it ran, there is
    /// nothing to remove. Never set on what the store returns.
    #[serde(skip)]
    pub notice: bool,
}

impl OutboxItem {
    /// The deterministic idempotency key `(conversation, turn, step)` that receivers use to
    /// drop repeats.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.conversation, self.turn, self.step)
    }
}

/// A durable timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The conversation.
    pub conversation: ConversationKey,
    /// The timer id from the state machine.
    pub timer: u64,
    /// When it falls due, milliseconds since the Unix epoch.
    pub due: u64,
}

/// Everything one turn changes, committed atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnCommit {
    /// The conversation.
    pub conversation: ConversationKey,
    /// Its new record.
    pub record: StoredConversation,
    /// Where it was before the turn (`None` for a new conversation), to move the place index.
    pub previous: Option<crate::port::Place>,
    /// Inbox entries consumed by the turn.
    pub consumed: Vec<u64>,
    /// New effects, stored until they have run.
    pub outbox: Vec<OutboxItem>,
    /// New notifications that are not stored: run once the turn is durable, lost if the process
    /// stops first (for an effect handler that only reports them; see the runtime's
    /// `EffectHandler::durable_notifications`). The runtime stores them after all when the
    /// conversation is paused or restricted before they run.
    pub notices: Vec<OutboxItem>,
    /// Timers to set.
    pub set_timers: Vec<Timer>,
    /// Timer ids to cancel.
    pub cancel_timers: Vec<u64>,
}

impl TurnCommit {
    /// The turn's effects to run, stored or not, in the order the turn made them.
    pub fn effects(&self) -> Vec<OutboxItem> {
        let mut effects: Vec<OutboxItem> =
            self.outbox.iter().chain(&self.notices).cloned().collect();
        effects.sort_by_key(|item| item.step);
        effects
    }
}

/// A published flow version: the sources of a bot's flows, content-addressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowVersion {
    /// The content hash.
    pub hash: String,
    /// The bot it belongs to.
    pub bot: String,
    /// Flow files by name.
    pub sources: Vec<(String, String)>,
    /// When it was published.
    pub published_at: u64,
}

/// The event id of `conversation`'s timer `timer` when it fires.
pub fn timer_event_id(conversation: &ConversationKey, timer: u64) -> String {
    format!("timer:{}:{timer}", conversation.user)
}

/// The event id of the result of the plugin call `(turn, step)` of `conversation`.
pub fn result_event_id(conversation: &ConversationKey, turn: u64, step: u32) -> String {
    format!("result:{conversation}:{turn}:{step}")
}

/// The prefixes of the event ids above for `conversation`: erasing a conversation removes
/// their dedup markers (they name the user).
pub fn runtime_event_prefixes(conversation: &ConversationKey) -> [String; 2] {
    [
        format!("timer:{}:", conversation.user),
        format!("result:{conversation}:"),
    ]
}

/// The engine's clock, in ms since the Unix epoch (dedup markers and restrictions record when
/// they were written).
pub(crate) fn now_ms() -> u64 {
    crate::clock::now_ms()
}
