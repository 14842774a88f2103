//! The flow file format: the serde + schemars types a bot designer writes by hand in YAML or JSON.
//!
//! These types are the single source of truth for `schemas/flow.schema.json`: doc comments here
//! become the descriptions an editor shows on hover and completion.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A conversation flow: a directed graph of nodes, entered at `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Influxify flow")]
pub struct Flow {
    /// Optional link to this schema, for editors that read `$schema`.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Stable identifier of the flow, chosen by its author (letters, digits, `-` and `_`).
    pub id: String,
    /// Human-readable title, shown in the playground and in diagrams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Free text for other designers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Variables of the conversation, with their type and default value.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub variables: IndexMap<String, Variable>,
    /// The id of the node where a new conversation starts.
    pub start: String,
    /// Global intents: keywords or payloads recognised from any node of this flow (and of the
    /// subflows it calls), like a statechart's parent transition.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub intents: IndexMap<String, Intent>,
    /// The nodes of the flow, keyed by their id.
    pub nodes: IndexMap<String, Node>,
}

/// A declared conversation variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// The type of the variable's values.
    #[serde(rename = "type", default)]
    pub ty: VariableType,
    /// The value a new conversation starts with (null when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// What the variable holds, for other designers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The type of a variable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariableType {
    /// Text.
    String,
    /// An integer or decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A map of named values.
    Object,
    /// A list of values.
    List,
    /// Anything.
    #[default]
    Any,
}

impl VariableType {
    /// Whether `value` is acceptable for a variable of this type (null always is).
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        matches!(
            (self, value),
            (_, J::Null)
                | (VariableType::Any, _)
                | (VariableType::String, J::String(_))
                | (VariableType::Number, J::Number(_))
                | (VariableType::Boolean, J::Bool(_))
                | (VariableType::Object, J::Object(_))
                | (VariableType::List, J::Array(_))
        )
    }
}

/// A global intent: what the user says or taps, and where it leads. Give exactly one of `goto`,
/// `flow` or `call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Whole messages that trigger the intent, compared without case and surrounding
    /// punctuation (`"stop"` matches "Stop!" but not "don't stop").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Quick-reply or postback payloads that trigger the intent, compared exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payloads: Vec<String>,
    /// Continue at this node of the flow that declares the intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goto: Option<String>,
    /// Leave for this flow, at its start node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Run this subflow, then come back to the node the user was at (an `ask` asks again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
}

/// One text or a list of texts (each is a template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Texts {
    /// A single message.
    One(String),
    /// Several messages, sent in order.
    Many(Vec<String>),
}

impl Texts {
    /// The texts as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Texts::One(text) => std::slice::from_ref(text),
            Texts::Many(texts) => texts,
        }
    }
}

/// A quick reply offered under a message; tapping it sends `payload` (or the title when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickReply {
    /// The label on the chip (Messenger allows 20 characters). A template.
    pub title: String,
    /// What the bot receives when the user taps it. Defaults to the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// A button under a message: give `payload` for a postback button, or `url` for a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Button {
    /// The label (Messenger allows 20 characters). A template.
    pub title: String,
    /// What the bot receives when the user taps it, like a quick reply that stays on screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The web page the button opens. A template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A node of the flow. `kind` says what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    /// Sends one or more messages, then continues at `next`.
    Message(MessageNode),
    /// Asks a question, waits for the reply, validates it and stores it in a variable.
    Ask(AskNode),
    /// Branches on one expression: `then` when it is true, `else` otherwise.
    Condition(ConditionNode),
    /// Branches on the first case whose `when` expression is true, else `default`.
    Switch(SwitchNode),
    /// Assigns variables from expressions, then continues at `next`.
    Set(SetNode),
    /// Continues at another node, or at the start (or a node) of another flow, without return.
    Jump(JumpNode),
    /// Runs a subflow; when the subflow reaches an `end` node, continues at `next`.
    Call(CallNode),
    /// Calls a plugin action and follows the edge named by its outcome.
    Plugin(PluginNode),
    /// A durable delay: continues at `next` when it has elapsed.
    Wait(WaitNode),
    /// Hands the conversation to a human operator; continues at `next` when they resume the bot.
    Handoff(HandoffNode),
    /// Ends the conversation, or returns from a subflow to its caller.
    End(EndNode),
}

impl Node {
    /// The `kind` keyword of the node, as written in flow files.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Message(_) => "message",
            Node::Ask(_) => "ask",
            Node::Condition(_) => "condition",
            Node::Switch(_) => "switch",
            Node::Set(_) => "set",
            Node::Jump(_) => "jump",
            Node::Call(_) => "call",
            Node::Plugin(_) => "plugin",
            Node::Wait(_) => "wait",
            Node::Handoff(_) => "handoff",
            Node::End(_) => "end",
        }
    }

    /// Every node kind a flow file may use.
    pub const KINDS: &'static [&'static str] = &[
        "message",
        "ask",
        "condition",
        "switch",
        "set",
        "jump",
        "call",
        "plugin",
        "wait",
        "handoff",
        "end",
    ];
}

/// `kind: message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageNode {
    /// The message text, or a list of messages sent in order. Templates: `Hi {{ user.first_name }}!`.
    pub text: Texts,
    /// Quick replies offered under the last message (Messenger allows 13).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 13))]
    pub quick_replies: Vec<QuickReply>,
    /// Buttons under the last message (Messenger allows 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub buttons: Vec<Button>,
    /// Show a typing indicator for this long before each message (e.g. `1500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing: Option<Duration>,
    /// A message tag for sending outside the channel's window for replies (Messenger's 24
    /// hours since the user's last message); without one such a send fails instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<MessageTag>,
    /// Said instead of a text that renders empty (a template whose variables are empty): an
    /// empty message never goes out (Messenger refuses it). A template. Without it an empty
    /// text is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The node to continue at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Why a message may go out after the window for replies closed (Messenger's message tags).
/// Meta retired `CONFIRMED_EVENT_UPDATE`, `POST_PURCHASE_UPDATE` and `ACCOUNT_UPDATE` on
/// 2026-04-27 (sends with them fail with Graph error 100), and `HUMAN_AGENT` is for a person's
/// reply, which the engine tags itself: validation refuses all four in a flow. They still parse,
/// so that the error can say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageTag {
    /// Retired on 2026-04-27: an update about a registered event.
    ConfirmedEventUpdate,
    /// Retired on 2026-04-27: an update about a purchase.
    PostPurchaseUpdate,
    /// Retired on 2026-04-27: a change to the user's account or application.
    AccountUpdate,
    /// A human agent answering within 7 days: only an operator's own reply.
    HumanAgent,
}

/// The day Meta retired the message tags other than `HUMAN_AGENT`.
pub const TAGS_RETIRED_ON: &str = "2026-04-27";

impl MessageTag {
    /// The tag as channels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageTag::ConfirmedEventUpdate => "CONFIRMED_EVENT_UPDATE",
            MessageTag::PostPurchaseUpdate => "POST_PURCHASE_UPDATE",
            MessageTag::AccountUpdate => "ACCOUNT_UPDATE",
            MessageTag::HumanAgent => "HUMAN_AGENT",
        }
    }
}

/// `kind: ask`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AskNode {
    /// The question. A template.
    pub prompt: String,
    /// How the reply is validated. Plain text when absent.
    #[serde(default)]
    pub validate: Validation,
    /// The variable the validated reply is stored in.
    pub store: String,
    /// Quick replies offered under the prompt (added automatically for `validate: {type: choice}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 13))]
    pub quick_replies: Vec<QuickReply>,
    /// What to say when the reply does not validate, before asking again. A template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprompt: Option<String>,
    /// How many invalid replies are answered with `reprompt` before following `invalid`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Where to go with a valid reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Where to go when the retries are used up. Without it, the bot keeps asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// Give up waiting after a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

fn default_retries() -> u32 {
    2
}

/// An `ask` timeout: after `after` without a reply, continue at `next`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    /// How long to wait for the reply, e.g. `10m` or `1h 30m`.
    pub after: Duration,
    /// Where to go when nobody answered in time.
    pub next: String,
}

/// How an `ask` reply is validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Validation {
    /// Any text, optionally with bounds on its length (in characters).
    Text {
        /// Fewest characters accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_length: Option<usize>,
        /// Most characters accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<usize>,
    },
    /// A number (`42`, `-3.5`, `1,5`), optionally bounded; stored as a number.
    Number {
        /// Smallest value accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Largest value accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Accept whole numbers only.
        #[serde(default)]
        integer: bool,
    },
    /// An e-mail address; stored trimmed.
    Email,
    /// A phone number of 7 to 15 digits, with an optional leading `+`; stored as `+digits` or
    /// `digits`, without spaces or punctuation.
    Phone,
    /// One of a list of choices, by tapped payload, title (any case) or number in the list.
    /// The choices are offered as quick replies.
    Choice {
        /// The accepted answers.
        choices: Vec<Choice>,
    },
    /// Text matching a regular expression (the whole reply must match).
    Regex {
        /// The pattern, in Rust `regex` syntax.
        pattern: String,
    },
    /// A photo (not a sticker or a like); stored as `{kind, url}`.
    Image,
    /// A file, or a photo, video or voice message; stored as `{kind, url}`.
    File,
}

impl Default for Validation {
    fn default() -> Self {
        Validation::Text {
            min_length: None,
            max_length: None,
        }
    }
}

/// One accepted answer of a `choice` validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The label offered to the user (a quick reply; Messenger allows 20 characters).
    pub title: String,
    /// The value stored when this choice is picked; also its quick-reply payload. Defaults to the
    /// title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Choice {
    /// The stored value (and payload) of this choice.
    pub fn value(&self) -> &str {
        self.value.as_deref().unwrap_or(&self.title)
    }
}

/// `kind: condition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionNode {
    /// An expression, e.g. `order.total > 100`.
    #[serde(rename = "if")]
    pub condition: String,
    /// Where to go when the expression is true.
    pub then: String,
    /// Where to go otherwise.
    #[serde(rename = "else")]
    pub otherwise: String,
}

/// `kind: switch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchNode {
    /// The cases, tried in order.
    pub cases: Vec<Case>,
    /// Where to go when no case matches.
    pub default: String,
}

/// One case of a `switch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// An expression, e.g. `status == 'shipped'`.
    pub when: String,
    /// Where to go when it is true.
    pub next: String,
}

/// `kind: set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetNode {
    /// Variables and the expressions they get, e.g. `total: "price * quantity"`. Strings are
    /// expressions (write `"'text'"` for a literal string); numbers, booleans, lists and maps are
    /// taken as they are.
    pub assign: IndexMap<String, serde_json::Value>,
    /// The node to continue at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `kind: jump`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JumpNode {
    /// The node to continue at (in `flow` when given, else in this flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Another flow to continue in, at `to` or at its start node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}

/// `kind: call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallNode {
    /// The id of the subflow to run from its start node.
    pub flow: String,
    /// Where to continue when the subflow ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `kind: plugin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginNode {
    /// The plugin action, `plugin.action`, e.g. `openai.chat` or `sheets.lookup`.
    pub action: String,
    /// The action's input. Every string is a template; a string that is exactly one
    /// `{{ expression }}` keeps the expression's type (a number stays a number).
    #[serde(default = "empty_object")]
    pub input: serde_json::Value,
    /// Store the action's whole output in this variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<String>,
    /// Bind variables to expressions over the action's output, available as `output`,
    /// e.g. `status: output.row.status`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, String>,
    /// Where to go for each outcome: `ok`, `error`, or one the action defines
    /// (`granted`, `denied`, `not_found` ...). `ok` is also used for any outcome not listed.
    pub on: IndexMap<String, String>,
    /// How the runtime retries a failed call before taking the `error` edge.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// How a failed plugin call is retried (exponential backoff with jitter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The delay before the first retry; it doubles each time.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// The longest delay between two attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_millis(30_000)
}

/// `kind: wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitNode {
    /// How long to wait, e.g. `2h` or `1d 12h`.
    #[serde(rename = "for")]
    pub duration: Duration,
    /// Stop waiting when the user writes, and continue at `interrupted` (or `next`).
    #[serde(default)]
    pub cancel_on_message: bool,
    /// Where to go when the delay has elapsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Where to go when a user message cancelled the wait (defaults to `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// `kind: handoff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffNode {
    /// Told to the user when the handoff starts. A template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Why the bot hands off, shown to the operator. A template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the bot continues when an operator resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `kind: end`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndNode {
    /// A last message. A template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}
