//! Conversation state, the events that move it and the effects it asks for: the data of the pure
//! state machine. Everything here is serde-serializable and compact.

use serde::{Deserialize, Serialize};

/// The current format of [`ConversationState`]; stored with every state.
pub const STATE_FORMAT: u32 = 1;

/// Where one conversation is: its flow and node, variables, call stack and what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationState {
    /// Format version of this record.
    #[serde(rename = "v")]
    pub format: u32,
    /// The flow the conversation started in; it starts there again after an end or a reset.
    pub entry: String,
    /// The flow the conversation is in.
    pub flow: String,
    /// The node it is at; `None` before the first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its status.
    #[serde(default, skip_serializing_if = "Status::is_active")]
    pub status: Status,
    /// Variables.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Subflow calls to return from, innermost last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<Frame>,
    /// Invalid replies to the current `ask` so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// What the conversation waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The last id handed out for timers and plugin calls; ids are never reused.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub seq: u64,
    /// User messages that arrived while the conversation waited for a plugin or a timer, to be
    /// handled once it waits for the user again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<UserMessage>,
    /// A person answered the user from the channel (the Page Inbox) and the bot keeps quiet
    /// until then (milliseconds since the Unix epoch): what the user writes meanwhile goes to
    /// the operator, never answered by the bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_until: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
fn is_zero64(n: &u64) -> bool {
    *n == 0
}

impl ConversationState {
    /// A conversation that has not started, in flow `flow`.
    pub fn new(flow: impl Into<String>) -> Self {
        let flow = flow.into();
        ConversationState {
            format: STATE_FORMAT,
            entry: flow.clone(),
            flow,
            node: None,
            status: Status::Active,
            vars: serde_json::Map::new(),
            stack: Vec::new(),
            retries: 0,
            waiting: None,
            seq: 0,
            queued: Vec::new(),
            silenced_until: None,
        }
    }

    /// The next id for a timer or a plugin call.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// A conversation's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Running: waiting for the user, a plugin, a timer, or not started yet.
    #[default]
    Active,
    /// A human operator has the conversation; the bot stays silent until resumed.
    HandedOff,
    /// The flow reached its end; the next user message starts it again.
    Ended,
    /// Something went wrong that the flow does not handle; an operator must act.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl Status {
    fn is_active(&self) -> bool {
        *self == Status::Active
    }
}

/// A subflow call to return from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The calling flow.
    pub flow: String,
    /// Where to continue in it.
    pub node: String,
    /// `true` to run `node` again (an intent interrupted it), `false` to continue at the
    /// `next` of the `call` node `node`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reenter: bool,
}

/// What a conversation waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "for")]
pub enum Waiting {
    /// A reply to an `ask`, with the id of its timeout timer.
    Reply {
        /// The timeout timer, if the `ask` has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timer: Option<u64>,
    },
    /// The result of a plugin call.
    Plugin {
        /// The call id.
        call: u64,
    },
    /// A `wait` timer.
    Timer {
        /// The timer id.
        timer: u64,
    },
    /// An operator to resume the bot.
    Operator,
}

/// A message from the end user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    /// What they typed, or the title of what they tapped (channels send both, as Messenger
    /// does: a tap's payload, when there is one, is the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The payload of a tapped quick reply or button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// What they sent besides words: images, files, a location, a sticker. Never read as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// How they arrived (an m.me link's `ref`, an ad): context a flow may route on, never an
    /// answer. A message that carries only a referral answers nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
}

impl UserMessage {
    /// A typed message.
    pub fn text(text: impl Into<String>) -> Self {
        UserMessage {
            text: Some(text.into()),
            ..UserMessage::default()
        }
    }

    /// A tapped quick reply or postback, without its title.
    pub fn payload(payload: impl Into<String>) -> Self {
        UserMessage {
            payload: Some(payload.into()),
            ..UserMessage::default()
        }
    }

    /// A tapped quick reply or button as a channel sends it: its title beside its payload.
    pub fn tap(title: impl Into<String>, payload: impl Into<String>) -> Self {
        UserMessage {
            text: Some(title.into()),
            payload: Some(payload.into()),
            ..UserMessage::default()
        }
    }

    /// Whether the message says nothing a flow could take as an answer (only a referral).
    pub fn is_context_only(&self) -> bool {
        self.text.is_none() && self.payload.is_none() && self.attachments.is_empty()
    }
}

/// Something the user sent that is not text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// `image`, `video`, `audio`, `file`, `location`, `sticker` (a like is a sticker), or
    /// `fallback` (a shared link).
    pub kind: String,
    /// Where its content is, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A title (a shared link's, a location's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A location's latitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// A location's longitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// A sticker's id (Messenger's like is `369239263222822`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker_id: Option<String>,
}

/// How a user arrived: chosen by whoever wrote the link or ran the ad, never by the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    /// The link's `ref` parameter.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Where it came from: `SHORTLINK` (m.me), `ADS`, `MESSENGER_CODE`, `CUSTOMER_CHAT_PLUGIN`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The ad's id, for ads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
}

/// Something that happened to a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Event {
    /// The user wrote or tapped something.
    User(UserMessage),
    /// A plugin call finished with an outcome.
    PluginResult {
        /// The call id from [`Effect::CallPlugin`].
        call: u64,
        /// `ok` or an action-defined outcome.
        outcome: String,
        /// The action's output.
        #[serde(default)]
        output: serde_json::Value,
    },
    /// A plugin call failed for good (after the runtime's retries).
    PluginFailed {
        /// The call id.
        call: u64,
        /// What went wrong.
        error: String,
    },
    /// A timer fell due.
    Timer {
        /// The timer id from [`Effect::SetTimer`].
        timer: u64,
    },
    /// A human operator acted.
    Operator(OperatorAction),
    /// A person answered the user from the channel, outside the bot (Messenger's Page Inbox):
    /// the bot keeps quiet for `silence_ms` after this event's time.
    PersonReplied {
        /// How long the bot stays quiet.
        silence_ms: u64,
    },
    /// The user's profile changed (e.g. first name from the channel); merged into `user`.
    Profile {
        /// Profile fields.
        profile: serde_json::Map<String, serde_json::Value>,
    },
}

/// What an operator can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum OperatorAction {
    /// Give the conversation back to the bot.
    Resume,
    /// Say something to the user as the operator.
    Say {
        /// The text.
        text: String,
    },
    /// Start over from the flow's start, forgetting the variables (the profile is kept).
    Reset,
    /// Continue at a node of the current flow (variables kept): the bot runs it again, e.g. asks
    /// its question. Used to move a conversation after a migration, or by an operator.
    Goto {
        /// The node id.
        node: String,
    },
}

/// A message for the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    /// The text.
    pub text: String,
    /// Quick replies offered under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<QuickReply>,
    /// Buttons under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// Show a typing indicator this long before sending, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing_ms: Option<u64>,
    /// The message tag that lets it go out after the window for replies closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// What made the bot say it: a reply to the user, something proactive (a timer, a
    /// resumed conversation), or a human operator's words. Channels pick how it goes out by it
    /// (Messenger's `messaging_type`).
    #[serde(default, skip_serializing_if = "Origin::is_reply")]
    pub origin: Origin,
}

/// What made the bot send a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// An answer to something the user sent (their message, or a plugin call it started).
    #[default]
    Reply,
    /// Not prompted by the user: a timer fell due, an operator resumed or moved the
    /// conversation.
    Proactive,
    /// A human operator's own words.
    Operator,
}

impl Origin {
    fn is_reply(&self) -> bool {
        *self == Origin::Reply
    }

    /// What an event makes the messages of its turn: a timer or an operator's action is not a
    /// reply to the user.
    pub fn of(event: &Event) -> Origin {
        match event {
            Event::Timer { .. } => Origin::Proactive,
            Event::Operator(OperatorAction::Say { .. }) => Origin::Operator,
            Event::Operator(_) => Origin::Proactive,
            _ => Origin::Reply,
        }
    }
}

/// A rendered quick reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuickReply {
    /// The label.
    pub title: String,
    /// What comes back when tapped.
    pub payload: String,
}

/// A rendered button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// The label.
    pub title: String,
    /// The postback payload, for postback buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The address, for link buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Something the runtime must do after committing the new state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Send a message to the user.
    Send(Outbound),
    /// Call a plugin action; its result comes back as [`Event::PluginResult`] or
    /// [`Event::PluginFailed`] with the same `call`.
    CallPlugin {
        /// The call id, unique within the conversation (part of the idempotency key).
        call: u64,
        /// `plugin.action`.
        action: String,
        /// The rendered input.
        input: serde_json::Value,
        /// Total attempts allowed.
        attempts: u32,
        /// First retry delay in milliseconds.
        backoff_ms: u64,
        /// Longest retry delay in milliseconds.
        max_backoff_ms: u64,
    },
    /// Fire [`Event::Timer`] with `timer` at `due` (milliseconds since the Unix epoch).
    SetTimer {
        /// The timer id.
        timer: u64,
        /// When it falls due.
        due: u64,
    },
    /// Forget a timer set earlier.
    CancelTimer {
        /// The timer id.
        timer: u64,
    },
    /// Hand the conversation to an operator.
    Handoff {
        /// Why, for the operator.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Pass a user message to the operator who has the conversation.
    ForwardToOperator(UserMessage),
    /// The conversation reached its end.
    End,
    /// The conversation failed and waits for an operator.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// The result of one step: the new state, the effects to run, and whether the event was used.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The state after the event.
    pub state: ConversationState,
    /// Effects, in order.
    pub effects: Vec<Effect>,
    /// Why the event changed nothing, when it did not (a late timer, a stale plugin result).
    pub ignored: Option<String>,
}
