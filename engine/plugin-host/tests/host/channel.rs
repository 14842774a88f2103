//! A channel plugin (`plugins/test-channel`, a simplified Messenger) through the host: the
//! handshake, signed webhooks parsed into events, and sends to the local server with the token
//! injected by the host and failures typed.

use std::collections::BTreeMap;
use std::sync::Arc;

use influxify_plugin_host::channel_types::{
    Button, HttpRequest, InboundKind, Origin, OutboundMessage, QuickReply,
};
use influxify_plugin_host::harness::signature;
use influxify_plugin_host::{Call, HostConfig, MemorySecrets, PluginError, PluginHost};

use crate::server::Server;
use crate::*;

/// The webhook signing key the host holds (the plugin never sees it).
const SIGNING_KEY: &str = "app-secret";
/// The token sends carry.
const TOKEN: &str = "page-token";

/// The host's secrets: both of the channel's.
fn secrets() -> MemorySecrets {
    MemorySecrets::new()
        .with("channel_secret", SIGNING_KEY)
        .with("channel_token", TOKEN)
}

/// A host with test-channel loaded, its `base_url` pointed at `server` if given.
fn channel_host(
    server: Option<&Server>,
    secrets: MemorySecrets,
) -> (PluginHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "test-channel", "channel", |m| m);
    let mut config = HostConfig::default();
    if let Some(server) = server {
        config.config.insert(
            "test-channel".into(),
            BTreeMap::from([("base_url".to_string(), server.url.clone())]),
        );
    }
    let host = PluginHost::new(Arc::new(secrets), None, config).unwrap();
    host.load(&manifest).unwrap();
    (host, dir)
}

fn request(
    method: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpRequest {
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    HttpRequest {
        method: method.into(),
        path: String::new(),
        query: pairs(query),
        headers: pairs(headers),
        body: body.to_vec(),
    }
}

/// A webhook POST of `body` signed with `key`.
fn signed(key: &str, body: &[u8]) -> HttpRequest {
    request(
        "POST",
        &[],
        &[
            ("Content-Type", "application/json"),
            ("X-Signature", &signature(key, body)),
        ],
        body,
    )
}

fn handshake(token: &str) -> HttpRequest {
    request(
        "GET",
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", token),
            ("hub.challenge", "1158201444"),
        ],
        &[],
        b"",
    )
}

#[test]
fn the_handshake_answers_the_challenge_only_to_the_right_token() {
    let (host, _dir) = channel_host(None, secrets());
    let reply = host
        .channel_verify("test-channel", &handshake("let-me-in"))
        .unwrap()
        .expect("a handshake");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"1158201444");

    let reply = host
        .channel_verify("test-channel", &handshake("guess"))
        .unwrap()
        .expect("a handshake");
    assert_eq!(reply.status, 403);
    assert!(!String::from_utf8_lossy(&reply.body).contains("1158201444"));

    // Not handshakes: a webhook POST, a GET without `hub.mode`, another mode.
    let body = br#"{"events":[]}"#;
    let not_handshakes = [
        signed(SIGNING_KEY, body),
        request("GET", &[("hub.challenge", "1")], &[], b""),
        request(
            "GET",
            &[
                ("hub.mode", "unsubscribe"),
                ("hub.verify_token", "let-me-in"),
                ("hub.challenge", "1"),
            ],
            &[],
            b"",
        ),
    ];
    for request in &not_handshakes {
        assert!(
            host.channel_verify("test-channel", request)
                .unwrap()
                .is_none(),
            "{request:?}"
        );
    }
}

#[test]
fn a_signed_webhook_becomes_events_and_deliveries_are_dropped() {
    let (host, _dir) = channel_host(None, secrets());
    let body = serde_json::json!({"events": [
        {"user": "u1", "id": "m1", "ts": 123, "text": "hi"},
        {"user": "u2", "id": "m2", "ts": 124, "delivery": true},
        {"user": "u1", "id": "m3", "ts": 125, "payload": "YES", "title": "Yes"},
    ]})
    .to_string();
    let events = host
        .channel_parse("test-channel", &signed(SIGNING_KEY, body.as_bytes()))
        .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let (first, second) = (&events[0], &events[1]);
    assert_eq!(
        (
            first.user_id.as_str(),
            first.event_id.as_str(),
            first.timestamp_ms
        ),
        ("u1", "m1", 123)
    );
    assert!(
        matches!(&first.kind, InboundKind::Text(t) if t == "hi"),
        "{first:?}"
    );
    assert_eq!(
        (
            second.user_id.as_str(),
            second.event_id.as_str(),
            second.timestamp_ms
        ),
        ("u1", "m3", 125)
    );
    assert!(
        matches!(&second.kind, InboundKind::QuickReply((title, payload)) if title == "Yes" && payload == "YES"),
        "{second:?}"
    );
    // Only deliveries: acknowledged, nothing routed.
    let receipts = br#"{"events":[{"user":"u1","id":"d1","ts":1,"delivery":true}]}"#;
    assert!(
        host.channel_parse("test-channel", &signed(SIGNING_KEY, receipts))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_missing_or_wrong_signature_is_invalid_input_and_nothing_is_parsed() {
    let (host, _dir) = channel_host(None, secrets());
    let body = br#"{"events":[{"user":"u1","id":"m1","ts":1,"text":"hi"}]}"#;
    let tampered = br#"{"events":[{"user":"u1","id":"m1","ts":1,"text":"pay me"}]}"#;
    let mut wrong_body = signed(SIGNING_KEY, body);
    wrong_body.body = tampered.to_vec();
    let unsigned = request("POST", &[], &[("Content-Type", "application/json")], body);
    let cases = [
        ("unsigned", unsigned),
        ("another key", signed("not-the-secret", body)),
        ("another body", wrong_body),
        (
            "not hex",
            request("POST", &[], &[("X-Signature", "sha256=zz")], body),
        ),
        (
            "no prefix",
            request(
                "POST",
                &[],
                &[(
                    "X-Signature",
                    signature(SIGNING_KEY, body).trim_start_matches("sha256="),
                )],
                body,
            ),
        ),
    ];
    for (what, request) in &cases {
        let result = host.channel_parse("test-channel", request);
        assert!(
            matches!(&result, Err(PluginError::InvalidInput(_))),
            "{what}: {result:?}"
        );
        assert!(!result.unwrap_err().is_retryable());
    }
}

#[test]
fn malformed_webhooks_are_invalid_input() {
    let (host, _dir) = channel_host(None, secrets());
    let bodies: [&[u8]; 4] = [
        b"not json",
        br#"{"events":"nope"}"#,
        br#"{"events":[{"user":"u1","id":"m1","text":"no ts"}]}"#,
        br#"{"events":[{"user":"u1","id":"m1","ts":1}]}"#,
    ];
    for body in bodies {
        let result = host.channel_parse("test-channel", &signed(SIGNING_KEY, body));
        assert!(
            matches!(&result, Err(PluginError::InvalidInput(_))),
            "{}: {result:?}",
            String::from_utf8_lossy(body)
        );
    }
}

/// How many parses the instance that ran this one had run (test-channel's `count`).
fn parses_by_instance(host: &PluginHost) -> String {
    let body = br#"{"events":[],"misbehave":"count"}"#;
    let events = host
        .channel_parse("test-channel", &signed(SIGNING_KEY, body))
        .unwrap();
    match &events[..] {
        [event] => match &event.kind {
            InboundKind::Text(count) => count.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn misbehave(host: &PluginHost, how: &str) -> Result<usize, PluginError> {
    let body = format!(r#"{{"events":[],"misbehave":"{how}"}}"#);
    host.channel_parse("test-channel", &signed(SIGNING_KEY, body.as_bytes()))
        .map(|events| events.len())
}

#[test]
fn webhook_parses_run_on_a_warm_instance_each_with_its_own_time() {
    let (host, _dir) = channel_host(None, secrets());
    assert_eq!(parses_by_instance(&host), "1");
    assert_eq!(
        parses_by_instance(&host),
        "2",
        "the second parse reuses the instance"
    );
    assert_eq!(host.plugin("test-channel").unwrap().warm_instances(), 1);
    // Longer than a webhook call's whole budget (1 s): the kept instance gets a new one.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(parses_by_instance(&host), "3");
    // A refused signature is the plugin's answer (given before it counts), not a failure of
    // the instance: the instance stays.
    let forged = host.channel_parse("test-channel", &signed("wrong", br#"{"events":[]}"#));
    assert!(
        matches!(forged, Err(PluginError::InvalidInput(_))),
        "{forged:?}"
    );
    assert_eq!(parses_by_instance(&host), "4");
}

#[test]
fn an_instance_that_failed_or_grew_is_replaced_by_a_fresh_one() {
    let (host, _dir) = channel_host(None, secrets());
    assert_eq!(parses_by_instance(&host), "1");
    let trapped = misbehave(&host, "trap");
    assert!(
        matches!(trapped, Err(PluginError::Trap { .. })),
        "{trapped:?}"
    );
    assert_eq!(
        parses_by_instance(&host),
        "1",
        "a trapped instance is not reused"
    );

    let started = std::time::Instant::now();
    let spun = misbehave(&host, "spin");
    assert!(matches!(spun, Err(PluginError::Timeout(_))), "{spun:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(
        parses_by_instance(&host),
        "1",
        "an interrupted instance is not reused"
    );

    assert_eq!(misbehave(&host, "grow"), Ok(0));
    assert_eq!(
        parses_by_instance(&host),
        "1",
        "an instance that grew is not kept"
    );
    assert_eq!(parses_by_instance(&host), "2");
}

#[test]
fn a_reloaded_channel_parses_on_instances_of_its_new_version() {
    let (host, dir) = channel_host(None, secrets());
    assert_eq!(parses_by_instance(&host), "1");
    assert_eq!(parses_by_instance(&host), "2");
    let manifest = dir.path().join("channel").join("plugin.toml");
    host.load(&manifest).unwrap();
    assert_eq!(parses_by_instance(&host), "1");
}

#[test]
fn a_missing_signing_secret_is_a_misconfiguration() {
    let (host, _dir) = channel_host(None, MemorySecrets::new().with("channel_token", TOKEN));
    let body = br#"{"events":[]}"#;
    let result = host.channel_parse("test-channel", &signed(SIGNING_KEY, body));
    assert!(
        matches!(&result, Err(PluginError::Misconfigured(m)) if m.contains("channel_secret")),
        "{result:?}"
    );
}

fn message() -> OutboundMessage {
    OutboundMessage {
        user_id: "u1".into(),
        text: "Pick one".into(),
        quick_replies: vec![
            QuickReply {
                title: "Yes".into(),
                payload: "YES".into(),
            },
            QuickReply {
                title: "No".into(),
                payload: "NO".into(),
            },
        ],
        buttons: vec![Button::Postback(("Help".into(), "HELP".into()))],
        origin: Origin::Reply,
        account: None,
        tag: None,
        last_user_message_ms: None,
    }
}

fn send_call() -> Call {
    Call::new(
        Some(influxify_store::ConversationKey::new("test-channel", "u1")),
        "test-channel/u1:3:0",
    )
}

#[test]
fn a_message_is_sent_to_the_configured_base_url_with_the_token() {
    let server = Server::start();
    let (host, _dir) = channel_host(Some(&server), secrets());
    let delivery = host
        .channel_send("test-channel", &message(), &send_call())
        .unwrap();
    assert_eq!(delivery.message_id.as_deref(), Some("mid.1"));
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let sent = &seen[0];
    assert!(sent.line.starts_with("POST /messages "), "{}", sent.line);
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(sent.header("idempotency-key"), Some("test-channel/u1:3:0"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "to": "u1",
            "text": "Pick one",
            "quick_replies": [
                {"title": "Yes", "payload": "YES"},
                {"title": "No", "payload": "NO"},
            ],
        })
    );
    // The signing secret went nowhere.
    assert!(!format!("{seen:?}").contains(SIGNING_KEY));
}

#[test]
fn send_failures_are_typed_by_status() {
    let server = Server::start();
    let (host, _dir) = channel_host(Some(&server), secrets());
    for status in [429, 500, 503] {
        server.answer_messages_with(status);
        let err = host
            .channel_send("test-channel", &message(), &send_call())
            .unwrap_err();
        assert!(
            matches!(&err, PluginError::Retryable(m) if m.contains(&status.to_string())),
            "{status}: {err:?}"
        );
        assert!(err.is_retryable());
    }
    server.answer_messages_with(400);
    let err = host
        .channel_send("test-channel", &message(), &send_call())
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("400")),
        "{err:?}"
    );
    server.answer_messages_with(401);
    let err = host
        .channel_send("test-channel", &message(), &send_call())
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("401")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        server.requests().len(),
        5,
        "one request per send, no retries"
    );
}

#[test]
fn without_the_override_sends_go_to_the_manifest_base_url() {
    // The manifest's `base_url` is port 9 on the loopback, where nothing listens: the send fails
    // as retryable, and the test server sees nothing.
    let server = Server::start();
    let (host, _dir) = channel_host(None, secrets());
    let err = host
        .channel_send("test-channel", &message(), &send_call())
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Retryable(m) if m.contains("127.0.0.1:9")),
        "{err:?}"
    );
    assert_eq!(server.connections(), 0);
}
