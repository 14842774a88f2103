//! The built-in consent plugin: an end user's decision per purpose (`ai_processing`,
//! `analytics`, `marketing` ...), stored in the user-scoped kv under `consent/<purpose>` as
//! `{"granted": bool, "at": ms, "text_version"?: "...", "source"?: "..."}`. Being user-scoped,
//! the decisions are exported and erased with the user's other data; an erased user is
//! `unknown` again.
//!
//! - `consent.record {purpose, granted, text_version?, source?}` stores a decision (the latest
//!   one wins), timed by the host's clock.
//! - `consent.check {purpose, max_age_days?}` routes the flow to `granted`, `denied` or
//!   `unknown` (nothing on file, or a decision older than `max_age_days`).

use influxify_plugin_sdk::kv::Scope;
use influxify_plugin_sdk::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest purpose name.
const MAX_PURPOSE: usize = 64;
/// The longest `text_version` or `source`.
const MAX_LABEL: usize = 200;
/// The largest `max_age_days`: 100 years.
const MAX_AGE_DAYS: u32 = 36_500;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// A decision, as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    granted: bool,
    /// When it was recorded, in ms since the Unix epoch.
    at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

/// Records whether the user granted or refused a purpose.
struct Record;

/// The user's decision.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    /// What the consent is for: lowercase letters, digits, `_`, `-` and `.`, at most 64
    /// (`ai_processing`, `marketing.email`).
    purpose: String,
    /// `true` if the user agreed, `false` if they refused.
    granted: bool,
    /// Which wording the user was shown (`ai-2026-01`), kept with the decision.
    #[serde(default)]
    text_version: Option<String>,
    /// Where the decision was made (`chat`, `web_form` ...), kept with the decision.
    #[serde(default)]
    source: Option<String>,
}

/// What was recorded.
#[derive(Serialize, JsonSchema)]
struct RecordOutput {
    /// Always `true`.
    recorded: bool,
    /// The purpose.
    purpose: String,
    /// The decision.
    granted: bool,
    /// When it was recorded, in ms since the Unix epoch.
    at: u64,
    /// The wording's version, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    text_version: Option<String>,
}

impl Action for Record {
    const NAME: &'static str = "record";
    const DESCRIPTION: &'static str = "Record that the user granted or refused a purpose";
    type Input = RecordInput;
    type Output = RecordOutput;

    fn run(input: RecordInput, ctx: &Context) -> Result<Outcome<RecordOutput>, Error> {
        check_purpose(&input.purpose)?;
        check_label("text_version", input.text_version.as_deref())?;
        check_label("source", input.source.as_deref())?;
        for_a_user(ctx)?;
        let stored = Stored {
            granted: input.granted,
            at: clock::now_ms(),
            text_version: input.text_version,
            source: input.source,
        };
        kv::set_json(Scope::User, &key(&input.purpose), &stored)?;
        Ok(Outcome::ok(RecordOutput {
            recorded: true,
            purpose: input.purpose,
            granted: stored.granted,
            at: stored.at,
            text_version: stored.text_version,
        }))
    }
}

/// Whether the user consented to a purpose.
struct Check;

/// The purpose to check.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    /// What the consent is for (as given to `consent.record`).
    purpose: String,
    /// A decision older than this many days counts as `unknown` (ask again). Default: decisions
    /// never expire.
    #[serde(default)]
    max_age_days: Option<u32>,
}

/// The decision on file.
#[derive(Serialize, JsonSchema)]
struct CheckOutput {
    /// The purpose.
    purpose: String,
    /// `granted`, `denied` or `unknown`: the outcome.
    status: &'static str,
    /// When the decision on file was recorded (ms since the Unix epoch); absent when there is
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    recorded_at: Option<u64>,
    /// When consent was granted (ms since the Unix epoch); only on `granted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    granted_at: Option<u64>,
    /// The version of the wording the user was shown, if it was recorded; only on `granted`
    /// and `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    text_version: Option<String>,
    /// `true` when the status is `unknown` because the decision on file is older than
    /// `max_age_days`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    expired: bool,
}

impl Action for Check {
    const NAME: &'static str = "check";
    const DESCRIPTION: &'static str = "Whether the user consented to a purpose";
    const OUTCOMES: &'static [&'static str] = &["granted", "denied", "unknown"];
    type Input = CheckInput;
    type Output = CheckOutput;

    fn run(input: CheckInput, ctx: &Context) -> Result<Outcome<CheckOutput>, Error> {
        check_purpose(&input.purpose)?;
        if let Some(days) = input.max_age_days
            && !(1..=MAX_AGE_DAYS).contains(&days)
        {
            return Err(Error::invalid_input(format!(
                "max_age_days is {days}; it must be between 1 and {MAX_AGE_DAYS} (leave it out for decisions that never expire)"
            )));
        }
        for_a_user(ctx)?;
        let mut output = CheckOutput {
            purpose: input.purpose,
            status: "unknown",
            recorded_at: None,
            granted_at: None,
            text_version: None,
            expired: false,
        };
        let Some(stored) = kv::get_json::<Stored>(Scope::User, &key(&output.purpose))? else {
            return Ok(Outcome::named("unknown", output));
        };
        output.recorded_at = Some(stored.at);
        let age_ms = clock::now_ms().saturating_sub(stored.at);
        if let Some(days) = input.max_age_days
            && age_ms > u64::from(days) * DAY_MS
        {
            output.expired = true;
            return Ok(Outcome::named("unknown", output));
        }
        output.text_version = stored.text_version;
        if stored.granted {
            output.status = "granted";
            output.granted_at = Some(stored.at);
            Ok(Outcome::named("granted", output))
        } else {
            output.status = "denied";
            Ok(Outcome::named("denied", output))
        }
    }
}

influxify_plugin_sdk::plugin!(Consent: [Check, Record]);

/// The kv key of `purpose`'s decision.
fn key(purpose: &str) -> String {
    format!("consent/{purpose}")
}

/// Purposes are names: 1 to 64 lowercase ASCII letters, digits, `_`, `-` and `.`.
fn check_purpose(purpose: &str) -> Result<(), Error> {
    let valid = !purpose.is_empty()
        && purpose.len() <= MAX_PURPOSE
        && purpose.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "purpose `{purpose}` must be 1 to {MAX_PURPOSE} lowercase letters, digits, `_`, `-` or `.` (like `ai_processing`)"
        )))
    }
}

/// `text_version` and `source` are short labels.
fn check_label(field: &str, value: Option<&str>) -> Result<(), Error> {
    match value {
        Some(v) if v.chars().count() > MAX_LABEL || v.chars().any(char::is_control) => {
            Err(Error::invalid_input(format!(
                "{field} must be at most {MAX_LABEL} characters, without control characters"
            )))
        }
        _ => Ok(()),
    }
}

/// Consent belongs to an end user: a call for none is refused.
fn for_a_user(ctx: &Context) -> Result<(), Error> {
    if ctx.conversation_id().is_empty() {
        return Err(Error::invalid_input(
            "consent is per end user, and this call is for none",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_are_names() {
        for ok in [
            "ai_processing",
            "marketing.email",
            "age-16",
            "a",
            &"x".repeat(64),
        ] {
            assert!(check_purpose(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "AI",
            "ai processing",
            "ai/processing",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(check_purpose(bad), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn labels_are_short() {
        assert!(check_label("source", None).is_ok());
        assert!(check_label("source", Some("chat")).is_ok());
        assert!(check_label("source", Some(&"x".repeat(201))).is_err());
        assert!(check_label("text_version", Some("a\nb")).is_err());
    }
}
