//! The plugin actions a flow may call, as far as the caller knows them: validation checks plugin
//! nodes against it when it is given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What is known of one plugin action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// Outcomes the action produces besides `ok` and `error` (e.g. `granted`, `not_found`).
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// What the action does.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of its input, when the plugin says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
}

/// The installed plugin actions, by full name (`plugin.action`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Actions by name.
    pub actions: BTreeMap<String, ActionInfo>,
}

impl Catalog {
    /// Adds an action with its extra outcomes.
    pub fn with(mut self, name: &str, outcomes: &[&str], description: &str) -> Self {
        self.actions.insert(
            name.to_string(),
            ActionInfo {
                outcomes: outcomes.iter().map(|o| o.to_string()).collect(),
                description: description.to_string(),
                input_schema: None,
            },
        );
        self
    }

    /// The action called `name`, if installed.
    pub fn get(&self, name: &str) -> Option<&ActionInfo> {
        self.actions.get(name)
    }

    /// The actions of the plugins that ship with Influxify.
    pub fn builtin() -> Self {
        Catalog::default()
            .with(
                "openai.chat",
                &["denied", "refused"],
                "Chat Completions with an OpenAI-compatible server",
            )
            .with(
                "sheets.lookup",
                &["not_found"],
                "Find rows of a Google Sheet by a column's value",
            )
            .with(
                "consent.check",
                &["granted", "denied", "unknown"],
                "Whether the user consented to a purpose",
            )
            .with(
                "consent.record",
                &[],
                "Record that the user granted or refused a purpose",
            )
            .with(
                "consent.withdraw",
                &[],
                "Record that the user withdrew their consent to a purpose (check answers denied)",
            )
            .with(
                "consent.age_gate",
                &["old_enough", "too_young"],
                "Record whether the user said they are old enough (only the answer, never a birth date)",
            )
    }
}

/// The outcomes every action may produce.
pub const STANDARD_OUTCOMES: &[&str] = &["ok", "error"];
