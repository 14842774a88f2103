//! The built-in consent plugin: an end user's decision per purpose (`ai_processing`,
//! `analytics`, `marketing` ...), stored in the user-scoped kv under `consent/<purpose>` as
//! `{"granted": bool, "at": ms, "text_version"?, "source"?, "flow_version"?, "wording"?,
//! "withdrawn"?: true, "minimum_age"?: n}`. Being user-scoped, the decisions are exported and
//! erased with the user's other data; an erased user is `unknown` again.
//!
//! - `consent.record {purpose, granted, text_version?, source?, flow_version?, wording?}` stores
//!   a decision (the latest one wins), timed by the host's clock, with the flow's version and
//!   the exact wording the user was shown.
//! - `consent.withdraw {purpose, flow_version?, source?}` records that the user withdrew their
//!   consent: `check` answers `denied` (with `withdrawn_at`) from then on, so a withdrawal takes
//!   effect on the next turn.
//! - `consent.age_gate {answer, minimum_age?}` stores only whether the user said they are at
//!   least `minimum_age` (13 to 16; default the `minimum_age` setting, else 13) under the
//!   purpose `age_gate`, never a birth date or an age: outcome `old_enough` or `too_young`.
//! - `consent.check {purpose, max_age_days?, minimum_age?}` routes the flow to `granted`,
//!   `denied` or `unknown` (nothing on file, or a decision older than `max_age_days`).

use influxify_plugin_sdk::kv::Scope;
use influxify_plugin_sdk::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest purpose name.
const MAX_PURPOSE: usize = 64;
/// The longest `text_version`, `source` or `flow_version`.
const MAX_LABEL: usize = 200;
/// The longest `wording`, in characters.
const MAX_WORDING: usize = 2000;
/// The largest `max_age_days`: 100 years.
const MAX_AGE_DAYS: u32 = 36_500;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// The purpose under which `consent.age_gate` keeps its answer.
const AGE_GATE: &str = "age_gate";
/// The age of digital consent unless the setting `minimum_age` or the input says otherwise
/// (GDPR article 8 lets member states choose 13 to 16).
const DEFAULT_MINIMUM_AGE: u8 = 13;
/// The ages an age gate may ask about.
const MINIMUM_AGES: std::ops::RangeInclusive<u8> = 13..=16;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wording: Option<String>,
    /// A withdrawal of an earlier consent (then `granted` is `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    withdrawn: bool,
    /// For the age gate: the age the user said they are at least (or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minimum_age: Option<u8>,
}

impl Stored {
    /// A decision made now.
    fn now(granted: bool) -> Stored {
        Stored {
            granted,
            at: clock::now_ms(),
            text_version: None,
            source: None,
            flow_version: None,
            wording: None,
            withdrawn: false,
            minimum_age: None,
        }
    }
}

/// Records whether the user granted or refused a purpose.
struct Record;

/// The user's decision.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    /// What the consent is for: lowercase letters, digits, `_`, `-` and `.`, at most 64
    /// (`ai_processing`, `marketing.email`). `age_gate` is kept by `consent.age_gate`.
    purpose: String,
    /// `true` if the user agreed, `false` if they refused.
    granted: bool,
    /// Which wording the user was shown (`ai-2026-01`), kept with the decision.
    #[serde(default)]
    text_version: Option<String>,
    /// Where the decision was made (`chat`, `web_form` ...), kept with the decision.
    #[serde(default)]
    source: Option<String>,
    /// The version of the flow that asked (at most 200 characters), kept with the decision.
    #[serde(default)]
    flow_version: Option<String>,
    /// The exact text the user was shown when asked (at most 2000 characters), kept with the
    /// decision.
    #[serde(default)]
    wording: Option<String>,
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
    /// The flow's version, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_version: Option<String>,
}

impl Action for Record {
    const NAME: &'static str = "record";
    const DESCRIPTION: &'static str = "Record that the user granted or refused a purpose";
    type Input = RecordInput;
    type Output = RecordOutput;

    fn run(input: RecordInput, ctx: &Context) -> Result<Outcome<RecordOutput>, Error> {
        check_purpose(&input.purpose)?;
        not_the_age_gate(&input.purpose, "consent.record")?;
        check_label("text_version", input.text_version.as_deref())?;
        check_label("source", input.source.as_deref())?;
        check_label("flow_version", input.flow_version.as_deref())?;
        check_wording(input.wording.as_deref())?;
        for_a_user(ctx)?;
        let stored = Stored {
            text_version: input.text_version,
            source: input.source,
            flow_version: input.flow_version,
            wording: input.wording,
            ..Stored::now(input.granted)
        };
        kv::set_json(Scope::User, &key(&input.purpose), &stored)?;
        Ok(Outcome::ok(RecordOutput {
            recorded: true,
            purpose: input.purpose,
            granted: stored.granted,
            at: stored.at,
            text_version: stored.text_version,
            flow_version: stored.flow_version,
        }))
    }
}

/// Records that the user withdrew their consent to a purpose.
struct Withdraw;

/// The purpose whose consent the user withdraws.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawInput {
    /// What the consent was for (as given to `consent.record`).
    purpose: String,
    /// The version of the flow the user withdrew in (at most 200 characters), kept with the
    /// withdrawal.
    #[serde(default)]
    flow_version: Option<String>,
    /// Where the user withdrew (`chat`, `web_form` ...), kept with the withdrawal.
    #[serde(default)]
    source: Option<String>,
}

/// What was recorded.
#[derive(Serialize, JsonSchema)]
struct WithdrawOutput {
    /// Always `true`.
    withdrawn: bool,
    /// The purpose.
    purpose: String,
    /// When the withdrawal was recorded, in ms since the Unix epoch.
    at: u64,
    /// What was on file before: `granted`, `denied` (a refusal or an earlier withdrawal) or
    /// `unknown` (nothing).
    previous: &'static str,
}

impl Action for Withdraw {
    const NAME: &'static str = "withdraw";
    const DESCRIPTION: &'static str =
        "Record that the user withdrew their consent to a purpose (check answers denied)";
    type Input = WithdrawInput;
    type Output = WithdrawOutput;

    fn run(input: WithdrawInput, ctx: &Context) -> Result<Outcome<WithdrawOutput>, Error> {
        check_purpose(&input.purpose)?;
        not_the_age_gate(&input.purpose, "consent.withdraw")?;
        check_label("flow_version", input.flow_version.as_deref())?;
        check_label("source", input.source.as_deref())?;
        for_a_user(ctx)?;
        let key = key(&input.purpose);
        let previous = match kv::get(Scope::User, &key)? {
            None => "unknown",
            Some(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(stored) if stored.granted => "granted",
                Ok(_) => "denied",
                // An entry that does not parse is replaced by the withdrawal.
                Err(err) => {
                    warn!("{key} does not parse ({err}); a withdrawal replaces it");
                    "unknown"
                }
            },
        };
        let stored = Stored {
            withdrawn: true,
            flow_version: input.flow_version,
            source: input.source,
            ..Stored::now(false)
        };
        kv::set_json(Scope::User, &key, &stored)?;
        Ok(Outcome::ok(WithdrawOutput {
            withdrawn: true,
            purpose: input.purpose,
            at: stored.at,
            previous,
        }))
    }
}

/// Stores whether the user said they are old enough, and only that.
struct AgeGate;

/// The user's answer to "Are you at least N years old?".
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AgeGateInput {
    /// Whether the user said they are at least `minimum_age`: `true` / `false`, or the text
    /// `yes` / `no` (also `true` / `false`; case and surrounding spaces ignored). Never a birth
    /// date or an age: only this answer is stored.
    answer: Answer,
    /// The age asked about, 13 to 16. Default: the setting `minimum_age`, else 13.
    #[serde(default)]
    minimum_age: Option<u8>,
    /// The version of the flow that asked (at most 200 characters), kept with the answer.
    #[serde(default)]
    flow_version: Option<String>,
    /// The exact question the user was shown (at most 2000 characters), kept with the answer.
    #[serde(default)]
    wording: Option<String>,
    /// Where the user answered (`chat`, `web_form` ...), kept with the answer.
    #[serde(default)]
    source: Option<String>,
}

/// A yes-or-no answer: a boolean or its text.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Answer {
    Bool(bool),
    Text(String),
}

impl Answer {
    fn yes(&self) -> Result<bool, Error> {
        match self {
            Answer::Bool(b) => Ok(*b),
            Answer::Text(text) => match text.trim().to_lowercase().as_str() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => Err(Error::invalid_input(format!(
                    "answer `{}` is not yes or no (give `true`/`false` or `yes`/`no`)",
                    text.chars().take(40).collect::<String>()
                ))),
            },
        }
    }
}

/// What was stored.
#[derive(Serialize, JsonSchema)]
struct AgeGateOutput {
    /// Always `age_gate`: the purpose `consent.check` finds the answer under.
    purpose: &'static str,
    /// Whether the user said they are at least `minimum_age`: the outcome `old_enough`, else
    /// `too_young`.
    old_enough: bool,
    /// The age asked about.
    minimum_age: u8,
    /// When the answer was recorded, in ms since the Unix epoch.
    at: u64,
}

impl Action for AgeGate {
    const NAME: &'static str = "age_gate";
    const DESCRIPTION: &'static str =
        "Record whether the user said they are old enough (only the answer, never a birth date)";
    const OUTCOMES: &'static [&'static str] = &["old_enough", "too_young"];
    type Input = AgeGateInput;
    type Output = AgeGateOutput;

    fn run(input: AgeGateInput, ctx: &Context) -> Result<Outcome<AgeGateOutput>, Error> {
        let old_enough = input.answer.yes()?;
        let minimum_age = match input.minimum_age {
            Some(age) => check_minimum_age(age)?,
            None => configured_minimum_age()?,
        };
        check_label("flow_version", input.flow_version.as_deref())?;
        check_label("source", input.source.as_deref())?;
        check_wording(input.wording.as_deref())?;
        for_a_user(ctx)?;
        let stored = Stored {
            minimum_age: Some(minimum_age),
            flow_version: input.flow_version,
            wording: input.wording,
            source: input.source,
            ..Stored::now(old_enough)
        };
        kv::set_json(Scope::User, &key(AGE_GATE), &stored)?;
        let output = AgeGateOutput {
            purpose: AGE_GATE,
            old_enough,
            minimum_age,
            at: stored.at,
        };
        Ok(Outcome::named(
            if old_enough {
                "old_enough"
            } else {
                "too_young"
            },
            output,
        ))
    }
}

/// Whether the user consented to a purpose.
struct Check;

/// The purpose to check.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    /// What the consent is for (as given to `consent.record`; `age_gate` for the age gate's
    /// answer).
    purpose: String,
    /// A decision older than this many days counts as `unknown` (ask again). Default: decisions
    /// never expire.
    #[serde(default)]
    max_age_days: Option<u32>,
    /// Only for the purpose `age_gate`: the age required, 13 to 16 (default: the setting
    /// `minimum_age`, else 13). An answer about a lower age does not show the user is old
    /// enough, nor one about a higher age that they are too young: such an answer is `unknown`.
    #[serde(default)]
    minimum_age: Option<u8>,
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
    /// When consent was withdrawn (ms since the Unix epoch); only on `denied` after
    /// `consent.withdraw`.
    #[serde(skip_serializing_if = "Option::is_none")]
    withdrawn_at: Option<u64>,
    /// The version of the wording the user was shown, if it was recorded; only on `granted`
    /// and `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    text_version: Option<String>,
    /// The version of the flow the decision was made in, if it was recorded; only on `granted`
    /// and `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_version: Option<String>,
    /// The exact text the user was shown, if it was recorded; only on `granted` and `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    wording: Option<String>,
    /// For `age_gate`: the age the answer on file is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_age: Option<u8>,
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
        let required_age = match (input.purpose == AGE_GATE, input.minimum_age) {
            (false, Some(_)) => {
                return Err(Error::invalid_input(format!(
                    "minimum_age applies to the purpose `{AGE_GATE}` only"
                )));
            }
            (false, None) => None,
            (true, Some(age)) => Some(check_minimum_age(age)?),
            (true, None) => Some(configured_minimum_age()?),
        };
        for_a_user(ctx)?;
        let mut output = CheckOutput {
            purpose: input.purpose,
            status: "unknown",
            recorded_at: None,
            granted_at: None,
            withdrawn_at: None,
            text_version: None,
            flow_version: None,
            wording: None,
            minimum_age: None,
            expired: false,
        };
        let Some(stored) = kv::get_json::<Stored>(Scope::User, &key(&output.purpose))? else {
            return Ok(Outcome::named("unknown", output));
        };
        output.recorded_at = Some(stored.at);
        output.minimum_age = stored.minimum_age;
        let age_ms = clock::now_ms().saturating_sub(stored.at);
        if let Some(days) = input.max_age_days
            && age_ms > u64::from(days) * DAY_MS
        {
            output.expired = true;
            return Ok(Outcome::named("unknown", output));
        }
        if let (Some(required), Some(answered)) = (required_age, stored.minimum_age) {
            // "At least 16" shows "at least 13", and "not 13" shows "not 16"; not the reverse.
            let settles = if stored.granted {
                answered >= required
            } else {
                answered <= required
            };
            if !settles {
                return Ok(Outcome::named("unknown", output));
            }
        }
        output.text_version = stored.text_version;
        output.flow_version = stored.flow_version;
        output.wording = stored.wording;
        if stored.granted {
            output.status = "granted";
            output.granted_at = Some(stored.at);
            Ok(Outcome::named("granted", output))
        } else {
            output.status = "denied";
            output.withdrawn_at = stored.withdrawn.then_some(stored.at);
            Ok(Outcome::named("denied", output))
        }
    }
}

influxify_plugin_sdk::plugin!(Consent: [Check, Record, Withdraw, AgeGate]);

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

/// The age gate's answer is only written by `consent.age_gate`, which keeps the age it is about.
fn not_the_age_gate(purpose: &str, action: &str) -> Result<(), Error> {
    if purpose == AGE_GATE {
        return Err(Error::invalid_input(format!(
            "the purpose `{AGE_GATE}` is kept by consent.age_gate, not {action}"
        )));
    }
    Ok(())
}

/// `text_version`, `source` and `flow_version` are short labels.
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

/// `wording` is the text shown, kept exactly: line breaks and tabs are fine.
fn check_wording(value: Option<&str>) -> Result<(), Error> {
    match value {
        Some(v)
            if v.chars().count() > MAX_WORDING
                || v.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            Err(Error::invalid_input(format!(
                "wording must be at most {MAX_WORDING} characters, without control characters other than line breaks and tabs"
            )))
        }
        _ => Ok(()),
    }
}

/// An age gate asks about 13 to 16.
fn check_minimum_age(age: u8) -> Result<u8, Error> {
    if MINIMUM_AGES.contains(&age) {
        Ok(age)
    } else {
        Err(Error::invalid_input(format!(
            "minimum_age is {age}; it must be between {} and {} (the ages of digital consent, GDPR article 8)",
            MINIMUM_AGES.start(),
            MINIMUM_AGES.end()
        )))
    }
}

/// The setting `minimum_age`, else 13.
fn configured_minimum_age() -> Result<u8, Error> {
    let age = config::parse_or("minimum_age", DEFAULT_MINIMUM_AGE)?;
    if MINIMUM_AGES.contains(&age) {
        Ok(age)
    } else {
        Err(Error::misconfigured(format!(
            "the setting `minimum_age` is {age}; it must be between {} and {}",
            MINIMUM_AGES.start(),
            MINIMUM_AGES.end()
        )))
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

    #[test]
    fn wordings_keep_line_breaks_and_are_bounded() {
        assert!(check_wording(None).is_ok());
        assert!(check_wording(Some("Is that OK?\n\tYes / No")).is_ok());
        assert!(check_wording(Some(&"é".repeat(2000))).is_ok());
        assert!(check_wording(Some(&"é".repeat(2001))).is_err());
        assert!(check_wording(Some("a\u{0}b")).is_err());
    }

    #[test]
    fn answers_are_yes_or_no() {
        for (answer, yes) in [
            (Answer::Bool(true), true),
            (Answer::Bool(false), false),
            (Answer::Text("yes".into()), true),
            (Answer::Text(" Yes ".into()), true),
            (Answer::Text("NO".into()), false),
            (Answer::Text("false".into()), false),
        ] {
            assert_eq!(answer.yes().unwrap(), yes);
        }
        for bad in ["", "maybe", "y", "1990-04-01", "17"] {
            assert!(Answer::Text(bad.into()).yes().is_err(), "{bad}");
        }
        assert!(check_minimum_age(13).is_ok() && check_minimum_age(16).is_ok());
        assert!(check_minimum_age(12).is_err() && check_minimum_age(18).is_err());
    }
}
