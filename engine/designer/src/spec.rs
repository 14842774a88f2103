//! The transcript test file format (`*.test.yaml`): cases of user turns and the bot replies,
//! variables and nodes they should produce, with mocked plugin results.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A transcript test file, beside the flow it tests.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Optional link to this schema, for editors that read `$schema`.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The id of the flow under test. Defaults to the flow in the file with the same name
    /// (`order.test.yaml` tests `order.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The user's profile (e.g. `first_name`), available as `user` in templates.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub user: serde_json::Map<String, serde_json::Value>,
    /// Mocked plugin results, by action name, shared by all cases.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub mocks: IndexMap<String, Vec<Mock>>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// A mocked plugin result. The first mock of an action whose `when` holds answers the call.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mock {
    /// An expression over the call's `input`, e.g. `input.value == 'A-1001'`. Always when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The outcome (`ok` by default, or `not_found`, `granted` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The output returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Fail the call for good with this message instead (the `error` edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One conversation, turn by turn.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// Overrides the file's user profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<serde_json::Map<String, serde_json::Value>>,
    /// Mocks for this case, tried before the file's.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub mocks: IndexMap<String, Vec<Mock>>,
    /// The turns, in order.
    pub turns: Vec<Turn>,
}

/// One turn: exactly one of `user`, `tap`, `advance`, `operator` or `resume`, and what to expect.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// The user types this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user taps a quick reply or button with this payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// Time passes (e.g. `2h`); timers that fall due fire in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance: Option<String>,
    /// A human operator says this to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// A human operator gives the conversation back to the bot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    /// The bot's replies in this turn, all of them, in order. Unchecked when absent; `[]`
    /// expects silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<Vec<Expected>>,
    /// Variables expected after the turn (only those listed are compared).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The node the conversation is at after the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The flow the conversation is in after the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The status after the turn: `active`, `handed_off`, `ended` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The plugin actions called during the turn, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<String>>,
}

/// An expected bot message: a string for exact text, or a map for finer checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Expected {
    /// The exact text.
    Text(String),
    /// Finer checks; those given must all hold.
    Detailed(ExpectedMessage),
}

/// Finer checks on one bot message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedMessage {
    /// The exact text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A regular expression the text must match (anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Text the message must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The titles of the quick replies offered, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_replies: Option<Vec<String>>,
    /// The titles of the buttons, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Vec<String>>,
}
