//! `consent.record`, `consent.withdraw`, `consent.age_gate` and `consent.check` through the host,
//! with a real sled kv store: decisions per user and purpose with the flow's version and the
//! wording shown, withdrawals, the age gate, expiry by age, and erasure with the user's data.

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
    let mut names: Vec<&str> = catalog
        .actions
        .keys()
        .map(String::as_str)
        .filter(|a| a.starts_with("consent."))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "consent.age_gate",
            "consent.check",
            "consent.record",
            "consent.withdraw"
        ]
    );
    for action in names {
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

#[test]
fn the_flow_version_and_the_exact_wording_are_kept_and_returned() {
    let (host, kv, _dir) = consent_host();
    let wording =
        "To answer questions like this one I use an AI model from OpenAI.\nIs that OK with you?";
    let answer = call(
        &host,
        "consent.record",
        &json!({"purpose": "ai_processing", "granted": true, "flow_version": "faq@3", "wording": wording, "text_version": "ai-2026-01"}),
    )
    .unwrap();
    let recorded = output(&answer);
    assert_eq!(recorded["flow_version"], "faq@3");
    assert!(recorded.get("wording").is_none(), "not echoed: {recorded}");
    let at = recorded["at"].as_u64().unwrap();
    let (outcome, out) = check(&host, "ada", json!({"purpose": "ai_processing"}));
    assert_eq!(outcome, "granted");
    assert_eq!(
        out,
        json!({"purpose": "ai_processing", "status": "granted", "recorded_at": at, "granted_at": at,
               "text_version": "ai-2026-01", "flow_version": "faq@3", "wording": wording})
    );
    let stored = kv
        .get(
            "consent",
            KvScope::User(&user("ada")),
            "consent/ai_processing",
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
        json!({"granted": true, "at": at, "text_version": "ai-2026-01", "flow_version": "faq@3", "wording": wording})
    );
    // A refusal keeps them too.
    call(
        &host,
        "consent.record",
        &json!({"purpose": "marketing", "granted": false, "flow_version": "shop@1", "wording": "News by e-mail?"}),
    )
    .unwrap();
    let (outcome, out) = check(&host, "ada", json!({"purpose": "marketing"}));
    assert_eq!(outcome, "denied");
    assert_eq!(
        (&out["flow_version"], &out["wording"]),
        (&json!("shop@1"), &json!("News by e-mail?"))
    );
    // Bounded: 2000 characters of wording (line breaks and tabs allowed), 200 of flow version.
    let longest = "é".repeat(2000);
    call(
        &host,
        "consent.record",
        &json!({"purpose": "analytics", "granted": true, "wording": longest, "flow_version": "v".repeat(200)}),
    )
    .unwrap();
    for input in [
        json!({"purpose": "analytics", "granted": true, "wording": "é".repeat(2001)}),
        json!({"purpose": "analytics", "granted": true, "wording": "a\u{7}b"}),
        json!({"purpose": "analytics", "granted": true, "flow_version": "v".repeat(201)}),
        json!({"purpose": "analytics", "granted": true, "flow_version": "a\nb"}),
        json!({"purpose": "analytics", "granted": true, "flow_version": 3}),
    ] {
        let err = call(&host, "consent.record", &input).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidInput(_)),
            "{input}: {err:?}"
        );
    }
}

#[test]
fn a_withdrawal_is_denied_with_its_time_from_the_next_check() {
    let (host, kv, _dir) = consent_host();
    record(&host, "ada", "ai_processing", true);
    let before = now_ms();
    let answer = call(
        &host,
        "consent.withdraw",
        &json!({"purpose": "ai_processing", "source": "chat", "flow_version": "faq@3"}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "ok");
    let withdrawn = output(&answer);
    let at = withdrawn["at"].as_u64().unwrap();
    assert!(at >= before && at <= now_ms());
    assert_eq!(
        withdrawn,
        json!({"withdrawn": true, "purpose": "ai_processing", "at": at, "previous": "granted"})
    );
    let (outcome, out) = check(&host, "ada", json!({"purpose": "ai_processing"}));
    assert_eq!(outcome, "denied");
    assert_eq!(
        out,
        json!({"purpose": "ai_processing", "status": "denied", "recorded_at": at, "withdrawn_at": at, "flow_version": "faq@3"})
    );
    let stored = kv
        .get(
            "consent",
            KvScope::User(&user("ada")),
            "consent/ai_processing",
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
        json!({"granted": false, "at": at, "withdrawn": true, "source": "chat", "flow_version": "faq@3"})
    );
    // A plain refusal is denied without `withdrawn_at`.
    record(&host, "ada", "marketing", false);
    assert!(
        check(&host, "ada", json!({"purpose": "marketing"}))
            .1
            .get("withdrawn_at")
            .is_none()
    );
    // Withdrawing what was never granted is recorded too, and says so.
    let answer = call(&host, "consent.withdraw", &json!({"purpose": "analytics"})).unwrap();
    assert_eq!(output(&answer)["previous"], "unknown");
    assert_eq!(
        check(&host, "ada", json!({"purpose": "analytics"})).0,
        "denied"
    );
    let answer = call(&host, "consent.withdraw", &json!({"purpose": "marketing"})).unwrap();
    assert_eq!(output(&answer)["previous"], "denied");
    // Consenting again after a withdrawal: the latest decision wins.
    record(&host, "ada", "ai_processing", true);
    let (outcome, out) = check(&host, "ada", json!({"purpose": "ai_processing"}));
    assert_eq!(outcome, "granted");
    assert!(out.get("withdrawn_at").is_none(), "{out}");
    // Another user's consent is untouched; a withdrawal is per user.
    record(&host, "bo", "ai_processing", true);
    call_as(
        &host,
        &user("ada"),
        "consent.withdraw",
        &json!({"purpose": "ai_processing"}),
    )
    .unwrap();
    assert_eq!(
        check(&host, "bo", json!({"purpose": "ai_processing"})).0,
        "granted"
    );
    // Refused: bad purposes, unknown fields, no end user.
    for input in [
        json!({"purpose": "AI"}),
        json!({"purpose": "ai_processing", "granted": false}),
        json!({"purpose": "age_gate"}),
    ] {
        let err = call(&host, "consent.withdraw", &input).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidInput(_)),
            "{input}: {err:?}"
        );
    }
    let err = host
        .invoke(
            "consent.withdraw",
            r#"{"purpose":"analytics"}"#,
            &Call::new(None, "k"),
        )
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("end user")),
        "{err:?}"
    );
}

#[test]
fn the_age_gate_stores_only_the_answer_and_checks_like_a_consent() {
    let (host, kv, _dir) = consent_host();
    assert_eq!(
        check(&host, "ada", json!({"purpose": "age_gate"})).0,
        "unknown"
    );
    let answer = call(
        &host,
        "consent.age_gate",
        &json!({"answer": "Yes", "wording": "Are you 13 or older?"}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "old_enough");
    let out = output(&answer);
    let at = out["at"].as_u64().unwrap();
    assert_eq!(
        out,
        json!({"purpose": "age_gate", "old_enough": true, "minimum_age": 13, "at": at})
    );
    // Only the answer, the age it is about, when and the question: no birth date, no age.
    let stored = kv
        .get("consent", KvScope::User(&user("ada")), "consent/age_gate")
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
        json!({"granted": true, "at": at, "minimum_age": 13, "wording": "Are you 13 or older?"})
    );
    let (outcome, out) = check(&host, "ada", json!({"purpose": "age_gate"}));
    assert_eq!(outcome, "granted");
    assert_eq!(
        out,
        json!({"purpose": "age_gate", "status": "granted", "recorded_at": at, "granted_at": at,
               "minimum_age": 13, "wording": "Are you 13 or older?"})
    );
    // "At least 13" does not show "at least 16": ask again.
    let (outcome, out) = check(
        &host,
        "ada",
        json!({"purpose": "age_gate", "minimum_age": 16}),
    );
    assert_eq!(
        (outcome.as_str(), &out["minimum_age"]),
        ("unknown", &json!(13))
    );

    // Bo is not 16: too young for 16, and for 13 it is not known.
    let answer = call_as(
        &host,
        &user("bo"),
        "consent.age_gate",
        &json!({"answer": false, "minimum_age": 16}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "too_young");
    assert_eq!(output(&answer)["old_enough"], false);
    assert_eq!(
        check(
            &host,
            "bo",
            json!({"purpose": "age_gate", "minimum_age": 16})
        )
        .0,
        "denied"
    );
    assert_eq!(
        check(&host, "bo", json!({"purpose": "age_gate"})).0,
        "unknown"
    );
    // A later answer replaces it.
    let answer = call_as(
        &host,
        &user("bo"),
        "consent.age_gate",
        &json!({"answer": "yes", "minimum_age": 16}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "old_enough");
    assert_eq!(
        check(&host, "bo", json!({"purpose": "age_gate"})).0,
        "granted"
    );

    for (action, input) in [
        ("consent.age_gate", json!({"answer": "2010-05-04"})),
        ("consent.age_gate", json!({"answer": "maybe"})),
        ("consent.age_gate", json!({"answer": 15})),
        (
            "consent.age_gate",
            json!({"answer": true, "minimum_age": 12}),
        ),
        (
            "consent.age_gate",
            json!({"answer": true, "minimum_age": 18}),
        ),
        (
            "consent.age_gate",
            json!({"answer": true, "birth_date": "2010-05-04"}),
        ),
        ("consent.age_gate", json!({})),
        (
            "consent.check",
            json!({"purpose": "age_gate", "minimum_age": 21}),
        ),
        (
            "consent.check",
            json!({"purpose": "analytics", "minimum_age": 16}),
        ),
        (
            "consent.record",
            json!({"purpose": "age_gate", "granted": true}),
        ),
    ] {
        let err = call(&host, action, &input).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidInput(_)),
            "{action} {input}: {err:?}"
        );
    }
}

#[test]
fn the_age_gate_s_default_age_is_the_minimum_age_setting() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "consent", |m| {
        assert!(m.contains("minimum_age = \"13\""), "{m}");
        m.replace("minimum_age = \"13\"", "minimum_age = \"16\"")
    });
    let (host, _) = host();
    host.load(&manifest).unwrap();
    let answer = call(&host, "consent.age_gate", &json!({"answer": true})).unwrap();
    assert_eq!(output(&answer)["minimum_age"], 16);
    assert_eq!(
        check(&host, "ada", json!({"purpose": "age_gate"})).0,
        "granted"
    );
    // An answer about 13 does not settle the configured 16.
    call_as(
        &host,
        &user("bo"),
        "consent.age_gate",
        &json!({"answer": true, "minimum_age": 13}),
    )
    .unwrap();
    assert_eq!(
        check(&host, "bo", json!({"purpose": "age_gate"})).0,
        "unknown"
    );

    // A setting out of range is the operator's mistake.
    let manifest = install(dir.path(), "consent", |m| {
        m.replace("minimum_age = \"13\"", "minimum_age = \"18\"")
    });
    host.load(&manifest).unwrap();
    let err = call(&host, "consent.age_gate", &json!({"answer": true})).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("minimum_age")),
        "{err:?}"
    );
    // An explicit age still works.
    let answer = call(
        &host,
        "consent.age_gate",
        &json!({"answer": true, "minimum_age": 16}),
    )
    .unwrap();
    assert_eq!(answer.outcome, "old_enough");
}

#[test]
fn a_withdrawal_stops_a_gated_action_from_the_next_call() {
    // The engine's consent gate, here over a local-CSV look-up (no server needed): it asks
    // `consent.check` before every call, so a withdrawal counts from the very next one.
    let dir = tempfile::tempdir().unwrap();
    let consent = install(dir.path(), "consent", |m| m);
    let sheets = install(dir.path(), "sheets", |m| m);
    let kv = Arc::new(PluginKv::temporary().unwrap());
    let config = influxify_plugin_host::HostConfig {
        consent_gate: Some(influxify_plugin_host::ConsentGate {
            actions: vec!["sheets.lookup".into()],
            purpose: "ai_processing".into(),
        }),
        ..Default::default()
    };
    let host = PluginHost::new(
        Arc::new(influxify_plugin_host::MemorySecrets::new()),
        Some(kv),
        config,
    )
    .unwrap();
    host.load(&consent).unwrap();
    host.load(&sheets).unwrap();
    let look_up = |who: &str| {
        call_as(
            &host,
            &user(who),
            "sheets.lookup",
            &json!({"spreadsheet": "local", "range": "Orders!A:E", "column": "Order", "value": "A-1001"}),
        )
        .unwrap()
    };
    let refused = look_up("ada");
    assert_eq!(refused.outcome, "denied");
    assert_eq!(output(&refused)["status"], "unknown");
    record(&host, "ada", "ai_processing", true);
    record(&host, "bo", "ai_processing", true);
    assert_eq!(look_up("ada").outcome, "ok");
    call(
        &host,
        "consent.withdraw",
        &json!({"purpose": "ai_processing"}),
    )
    .unwrap();
    let refused = look_up("ada");
    assert_eq!(refused.outcome, "denied");
    assert_eq!(output(&refused)["status"], "denied");
    assert_eq!(look_up("bo").outcome, "ok", "Bo's consent stands");
}
