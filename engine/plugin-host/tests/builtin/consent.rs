//! `consent.record` and `consent.check` through the host, with a real sled kv store: decisions
//! per user and purpose, expiry by age, and erasure with the user's data.

use std::sync::Arc;

use influxify_plugin_host::{Call, PluginError, PluginHost};
use influxify_store::{KvScope, PluginKv};
use serde_json::json;

use crate::*;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A host with `consent` installed as shipped.
fn consent_host() -> (PluginHost, Arc<PluginKv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "consent", |m| m);
    let (host, kv) = host();
    host.load(&manifest).unwrap();
    (host, kv, dir)
}

fn record(host: &PluginHost, who: &str, purpose: &str, granted: bool) -> serde_json::Value {
    let answer = call_as(
        host,
        &user(who),
        "consent.record",
        &json!({"purpose": purpose, "granted": granted}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "ok");
    output(&answer)
}

/// The outcome and output of `consent.check` for `who`.
fn check(host: &PluginHost, who: &str, input: serde_json::Value) -> (String, serde_json::Value) {
    let answer = call_as(host, &user(who), "consent.check", &input).unwrap();
    let out = output(&answer);
    assert_eq!(out["status"], answer.outcome.as_str(), "{out}");
    (answer.outcome, out)
}

#[test]
fn the_shipped_manifest_loads_with_the_catalog_s_outcomes() {
    let (host, _, _dir) = consent_host();
    let catalog = host.catalog();
    let builtin = influxify_core::Catalog::builtin();
    for action in ["consent.check", "consent.record"] {
        assert_eq!(
            catalog.get(action).map(|a| &a.outcomes),
            builtin.get(action).map(|a| &a.outcomes),
            "{action}"
        );
    }
}

#[test]
fn a_recorded_grant_is_granted_with_its_time_and_wording() {
    let (host, kv, _dir) = consent_host();
    let (outcome, out) = check(&host, "ada", json!({"purpose": "ai_processing"}));
    assert_eq!(outcome, "unknown");
    assert_eq!(
        out,
        json!({"purpose": "ai_processing", "status": "unknown"})
    );

    let before = now_ms();
    // The input flows/faq/consent.yaml sends, with a wording version.
    let answer = call(
        &host,
        "consent.record",
        &json!({"purpose": "ai_processing", "granted": true, "source": "chat", "text_version": "ai-2026-01"}),
    )
    .unwrap();
    let recorded = output(&answer);
    assert_eq!(recorded["recorded"], true);
    assert_eq!(recorded["granted"], true);
    let at = recorded["at"].as_u64().unwrap();
    assert!(at >= before && at <= now_ms());

    let (outcome, out) = check(&host, "ada", json!({"purpose": "ai_processing"}));
    assert_eq!(outcome, "granted");
    assert_eq!(
        out,
        json!({"purpose": "ai_processing", "status": "granted", "recorded_at": at, "granted_at": at, "text_version": "ai-2026-01"})
    );
    // Stored in Ada's user-scoped kv.
    let stored = kv
        .get(
            "consent",
            KvScope::User(&user("ada")),
            "consent/ai_processing",
        )
        .unwrap()
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(
        stored,
        json!({"granted": true, "at": at, "text_version": "ai-2026-01", "source": "chat"})
    );
    // Another purpose is still unknown.
    assert_eq!(
        check(&host, "ada", json!({"purpose": "marketing"})).0,
        "unknown"
    );
}

#[test]
fn a_refusal_is_denied_and_the_latest_decision_wins() {
    let (host, _, _dir) = consent_host();
    record(&host, "ada", "marketing.email", false);
    let (outcome, out) = check(&host, "ada", json!({"purpose": "marketing.email"}));
    assert_eq!(outcome, "denied");
    assert!(
        out.get("granted_at").is_none() && out["recorded_at"].is_u64(),
        "{out}"
    );

    record(&host, "ada", "marketing.email", true);
    assert_eq!(
        check(&host, "ada", json!({"purpose": "marketing.email"})).0,
        "granted"
    );
    record(&host, "ada", "marketing.email", false);
    assert_eq!(
        check(&host, "ada", json!({"purpose": "marketing.email"})).0,
        "denied"
    );
}

#[test]
fn a_decision_older_than_max_age_days_is_unknown() {
    let (host, kv, _dir) = consent_host();
    let forty_days_ago = now_ms() - 40 * DAY_MS;
    let entry = json!({"granted": true, "at": forty_days_ago}).to_string();
    kv.set(
        "consent",
        KvScope::User(&user("ada")),
        "consent/analytics",
        entry.as_bytes(),
        u64::MAX,
    )
    .unwrap();
    let (outcome, out) = check(
        &host,
        "ada",
        json!({"purpose": "analytics", "max_age_days": 30}),
    );
    assert_eq!(outcome, "unknown");
    assert_eq!(
        out,
        json!({"purpose": "analytics", "status": "unknown", "recorded_at": forty_days_ago, "expired": true})
    );
    let (outcome, out) = check(
        &host,
        "ada",
        json!({"purpose": "analytics", "max_age_days": 60}),
    );
    assert_eq!(outcome, "granted");
    assert_eq!(out["granted_at"], forty_days_ago);
    assert_eq!(
        check(&host, "ada", json!({"purpose": "analytics"})).0,
        "granted"
    );
    // A fresh decision passes a tight limit.
    record(&host, "ada", "analytics", true);
    assert_eq!(
        check(
            &host,
            "ada",
            json!({"purpose": "analytics", "max_age_days": 1})
        )
        .0,
        "granted"
    );
}

#[test]
fn consent_belongs_to_one_user() {
    let (host, _, _dir) = consent_host();
    record(&host, "ada", "ai_processing", true);
    assert_eq!(
        check(&host, "bo", json!({"purpose": "ai_processing"})).0,
        "unknown"
    );
    record(&host, "bo", "ai_processing", false);
    assert_eq!(
        check(&host, "ada", json!({"purpose": "ai_processing"})).0,
        "granted"
    );
    assert_eq!(
        check(&host, "bo", json!({"purpose": "ai_processing"})).0,
        "denied"
    );
    // The same user id on another channel is another user.
    let elsewhere = influxify_store::ConversationKey::new("messenger", "ada");
    let answer = call_as(
        &host,
        &elsewhere,
        "consent.check",
        &json!({"purpose": "ai_processing"}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "unknown");
}

#[test]
fn erasing_a_user_s_data_erases_their_consent() {
    let (host, kv, _dir) = consent_host();
    record(&host, "ada", "ai_processing", true);
    record(&host, "ada", "marketing", false);
    record(&host, "bo", "ai_processing", true);
    let ada = user("ada");
    let entries = kv.user_entries(&ada).unwrap();
    assert_eq!(entries.len(), 2, "exported with Ada's data: {entries:?}");
    assert!(entries.iter().all(|e| e.plugin == "consent"));

    kv.erase_user(&ada).unwrap();
    assert_eq!(
        check(&host, "ada", json!({"purpose": "ai_processing"})).0,
        "unknown"
    );
    assert_eq!(
        check(&host, "ada", json!({"purpose": "marketing"})).0,
        "unknown"
    );
    assert_eq!(
        check(&host, "bo", json!({"purpose": "ai_processing"})).0,
        "granted"
    );
}

#[test]
fn bad_purposes_and_inputs_are_invalid() {
    let (host, _, _dir) = consent_host();
    for (action, input) in [
        ("consent.check", json!({"purpose": "AI Processing"})),
        ("consent.check", json!({"purpose": ""})),
        ("consent.check", json!({"purpose": "x".repeat(65)})),
        ("consent.check", json!({"purpose": "ai/processing"})),
        (
            "consent.check",
            json!({"purpose": "analytics", "max_age_day": 30}),
        ),
        (
            "consent.check",
            json!({"purpose": "analytics", "max_age_days": 0}),
        ),
        (
            "consent.check",
            json!({"purpose": "analytics", "max_age_days": -1}),
        ),
        ("consent.record", json!({"purpose": "analytics"})),
        (
            "consent.record",
            json!({"purpose": "analytics", "granted": "yes"}),
        ),
        (
            "consent.record",
            json!({"purpose": "Analytics", "granted": true}),
        ),
        (
            "consent.record",
            json!({"purpose": "analytics", "granted": true, "text_version": "v".repeat(201)}),
        ),
    ] {
        let err = call(&host, action, &input).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidInput(_)),
            "{input}: {err:?}"
        );
    }
    // Consent is always some user's: a call for none is refused.
    let err = host
        .invoke(
            "consent.record",
            r#"{"purpose":"analytics","granted":true}"#,
            &Call::new(None, "k"),
        )
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("end user")),
        "{err:?}"
    );
    // The longest purpose is fine.
    let longest = "a".repeat(64);
    record(&host, "ada", &longest, true);
    assert_eq!(
        check(&host, "ada", json!({"purpose": longest})).0,
        "granted"
    );
}
