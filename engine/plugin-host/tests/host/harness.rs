//! The plugin test harness (`influxify plugin test`): scripts are checked as they are read (a
//! case calls exactly one thing, expectations fit the call), and channel cases run against
//! `plugins/test-channel` with what failed said precisely.

use influxify_plugin_host::harness::{self, CaseCall, CaseReport, Script};

use crate::install;

/// `script` (JSON), read as a harness script.
fn read(script: serde_json::Value) -> Result<Script, String> {
    serde_json::from_value(script).map_err(|err| err.to_string())
}

/// The reason `script` is refused; panics if it is accepted.
fn refused(script: serde_json::Value) -> String {
    match read(script) {
        Ok(script) => panic!("accepted: {script:?}"),
        Err(why) => why,
    }
}

#[test]
fn a_case_calls_exactly_one_of_action_verify_parse_or_send() {
    let both = refused(serde_json::json!({"cases": [
        {"name": "both", "action": "greet", "parse": {"body": "{}"}},
    ]}));
    assert!(
        both.contains("case `both` has both `action` and `parse`: give exactly one of `action` (an action plugin), `verify`, `parse` or `send` (a channel plugin)"),
        "{both}"
    );
    let three = refused(serde_json::json!({"cases": [
        {"name": "three", "verify": {}, "parse": {}, "send": {}},
    ]}));
    assert!(
        three.contains("has both `verify` and `parse` and `send`"),
        "{three}"
    );
    let none =
        refused(serde_json::json!({"cases": [{"name": "idle", "expect": {"outcome": "ok"}}]}));
    assert!(none.contains("case `idle` calls nothing"), "{none}");
    let typo = refused(serde_json::json!({"cases": [{"name": "typo", "verfy": {}}]}));
    assert!(typo.contains("unknown field `verfy`"), "{typo}");

    // The action format is as it was.
    let script = read(serde_json::json!({"cases": [
        {"name": "greets", "action": "greet", "input": {"name": "Ada"}, "expect": {"outcome": "ok"}},
        {"name": "no input", "action": "greet"},
    ]}))
    .unwrap();
    assert!(matches!(
        &script.cases[0].call,
        CaseCall::Action { action, input } if action == "greet" && input["name"] == "Ada"
    ));
    assert!(matches!(&script.cases[1].call, CaseCall::Action { input, .. } if input.is_null()));
}

#[test]
fn expectations_and_fields_must_fit_the_call() {
    let cases = [
        (
            serde_json::json!({"name": "c", "parse": {"body": "{}"}, "input": {}}),
            "case `c`: `input` goes with `action`; a `parse` case takes its request under `parse:`",
        ),
        (
            serde_json::json!({"name": "c", "send": {"text": "hi"}, "expect": {"events": []}}),
            "case `c`: `expect.events` goes with `parse` cases, and this is a `send` case",
        ),
        (
            serde_json::json!({"name": "c", "parse": {}, "expect": {"status": 200}}),
            "case `c`: `expect.status` goes with `verify` cases, and this is a `parse` case",
        ),
        (
            serde_json::json!({"name": "c", "action": "a", "expect": {"body": "x"}}),
            "case `c`: `expect.body` goes with `verify` cases, and this is a `action` case",
        ),
        (
            serde_json::json!({"name": "c", "parse": {
                "sign_with": "key", "headers": {"x-hub-signature-256": "sha256=00"}}}),
            "case `c`: `sign_with` sets X-Hub-Signature-256",
        ),
        (
            serde_json::json!({"name": "c", "parse": {"sign_with": "key",
                "signature_header": "X-Signature", "headers": {"x-signature": "sha256=00"}}}),
            "case `c`: `sign_with` sets X-Signature",
        ),
        (
            serde_json::json!({"name": "c", "send": {"text": "hi", "buttons": [
                {"title": "Both", "payload": "P", "url": "https://example.com"}]}}),
            "case `c`: button `Both` needs exactly one of `payload` (a postback) or `url` (a link)",
        ),
    ];
    for (case, why) in cases {
        let got = refused(serde_json::json!({"secrets": {"key": "k"}, "cases": [case]}));
        assert!(got.contains(why), "{got}\nshould say: {why}");
    }
    let unsigned = refused(serde_json::json!({"cases": [
        {"name": "signed", "parse": {"body": "{}", "sign_with": "app_secret"}},
    ]}));
    assert!(
        unsigned.contains(
            "case `signed` signs with secret `app_secret`, which the script's `secrets` does not have"
        ),
        "{unsigned}"
    );
}

/// Runs `script` against test-channel.
fn run_channel(script: serde_json::Value) -> Vec<CaseReport> {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "test-channel", "channel", |m| m);
    harness::run(&manifest, &read(script).unwrap()).unwrap()
}

/// The failure of each report, by case name.
fn failures(reports: &[CaseReport]) -> Vec<(&str, Option<&str>)> {
    reports
        .iter()
        .map(|r| (r.name.as_str(), r.failure.as_deref()))
        .collect()
}

#[test]
fn channel_cases_verify_parse_and_send_with_their_requests() {
    let body = serde_json::json!({"events": [
        {"user": "u1", "id": "m1", "ts": 123, "text": "hi"},
        {"user": "u2", "id": "d1", "ts": 124, "delivery": true},
        {"user": "u1", "id": "m2", "ts": 125, "payload": "YES", "title": "Yes"},
    ]});
    let reports = run_channel(serde_json::json!({
        "secrets": {"channel_secret": "app-secret", "channel_token": "page-token"},
        "config": {"verify_token": "open-sesame"},
        "cases": [
            {"name": "handshake", "verify": {"query": {
                "hub.mode": "subscribe", "hub.verify_token": "open-sesame", "hub.challenge": "42"}},
             "expect": {"status": 200, "body": "42"}},
            {"name": "the manifest's token is overridden", "verify": {"query": {
                "hub.mode": "subscribe", "hub.verify_token": "let-me-in", "hub.challenge": "42"}},
             "expect": {"status": 403}},
            {"name": "not a handshake", "verify": {"method": "POST"}, "expect": {"outcome": "none"}},
            {"name": "signed by the harness", "parse": {
                "body": body, "sign_with": "channel_secret", "signature_header": "X-Signature"},
             "expect": {"events": [{"event_id": "m1"}, {"event_id": "m2"}]}},
            {"name": "signed as written", "parse": {
                "headers": {"X-Signature": harness::signature("app-secret", body.to_string().as_bytes())},
                "body": body.to_string()},
             "expect": {"events": [
                {"user_id": "u1", "event_id": "m1", "timestamp_ms": 123, "kind": "text", "text": "hi"},
                {"event_id": "m2", "kind": "quick_reply", "title": "Yes", "payload": "YES"},
             ]}},
            {"name": "send", "send": {"user_id": "u1", "text": "Hello",
                "quick_replies": [{"title": "Yes", "payload": "YES"}]},
             "http": [{"match": "POST http://127.0.0.1:9/messages", "json": {"message_id": "s1"}}],
             "expect": {"output": {"message_id": "s1"}, "requests": [{
                "method": "POST", "url": "http://127.0.0.1:9/messages",
                "headers": {"authorization": "Bearer page-token", "idempotency-key": "harness:5"},
                "json": {"to": "u1", "quick_replies": [{"title": "Yes"}]}}]}},
            {"name": "a case's responses do not outlive it", "send": {"user_id": "u1", "text": "Again"},
             "expect": {"error": "the script has no response for POST http://127.0.0.1:9/messages",
                        "requests": [{"method": "POST"}]}},
            {"name": "a refused send", "send": {"user_id": "u1", "text": "Hello"},
             "http": [{"match": "POST http://127.0.0.1:9/messages", "status": 401}],
             "expect": {"error": "misconfigured", "retryable": false}},
        ],
    }));
    assert!(
        reports.iter().all(|r| r.failure.is_none()),
        "{:#?}",
        failures(&reports)
    );
    assert_eq!(
        reports.iter().map(|r| r.call).collect::<Vec<_>>(),
        [
            "verify", "verify", "verify", "parse", "parse", "send", "send", "send"
        ]
    );
    let send = &reports[5];
    assert_eq!((send.http_calls, send.requests.len()), (1, 1));
    assert!(send.fuel.is_none() && send.peak_memory.is_none());
}

#[test]
fn a_failing_channel_case_says_what_differed() {
    let body = serde_json::json!({"events": [{"user": "u1", "id": "m1", "ts": 1, "text": "hi"}]});
    let reports = run_channel(serde_json::json!({
        "secrets": {"channel_secret": "app-secret", "channel_token": "page-token"},
        "cases": [
            {"name": "wrong text", "parse": {"body": body, "sign_with": "channel_secret",
                "signature_header": "X-Signature"}, "expect": {"events": [{"text": "hello"}]}},
            {"name": "wrong count", "parse": {"body": body, "sign_with": "channel_secret",
                "signature_header": "X-Signature"}, "expect": {"events": []}},
            {"name": "wrong status", "verify": {"query": {
                "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}},
             "expect": {"status": 200}},
            {"name": "no reply", "verify": {}, "expect": {"body": "1"}},
            {"name": "wrong body sent", "send": {"user_id": "u1", "text": "Hello"},
             "http": [{"match": "POST http://127.0.0.1:9/messages", "json": {"message_id": "s1"}}],
             "expect": {"requests": [{"json": {"to": "u2"}}]}},
            {"name": "too many requests expected", "send": {"user_id": "u1", "text": "Hello"},
             "http": [{"match": "POST http://127.0.0.1:9/messages", "json": {}}],
             "expect": {"requests": [{}, {}]}},
            {"name": "retryable expected", "send": {"user_id": "u1", "text": "Hello"},
             "http": [{"match": "POST http://127.0.0.1:9/messages", "status": 400}],
             "expect": {"retryable": true}},
            {"name": "an action on a channel", "action": "greet"},
        ],
    }));
    let got = failures(&reports);
    let expected: [(&str, &[&str]); 8] = [
        (
            "wrong text",
            &["event 1 does not match (`text`: expected \"hello\", got \"hi\")"],
        ),
        ("wrong count", &["expected 0 event(s), got 1"]),
        ("wrong status", &["expected status 200, got 403"]),
        ("no reply", &["expected a reply, got none"]),
        (
            "wrong body sent",
            &[
                "request 1 (POST http://127.0.0.1:9/messages {",
                "(`to`: expected \"u2\", got \"u1\")",
            ],
        ),
        (
            "too many requests expected",
            &["expected 2 HTTP request(s), the call made 1"],
        ),
        (
            "retryable expected",
            &["expected an error one the engine retries, but it does not"],
        ),
        (
            "an action on a channel",
            &["`test-channel` is a channel plugin: it has no `action` to call"],
        ),
    ];
    for ((name, failure), (wanted_name, fragments)) in got.iter().zip(expected) {
        assert_eq!(*name, wanted_name);
        let failure = failure.unwrap_or_else(|| panic!("`{name}` passed"));
        for fragment in fragments {
            assert!(
                failure.contains(fragment),
                "`{name}`: {failure}\nshould say: {fragment}"
            );
        }
    }
}
