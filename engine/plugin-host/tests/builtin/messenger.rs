//! The `messenger` channel through the host: the webhook handshake, signatures checked over the
//! raw bytes (the protocol's test vector on the recorded fixture), every event kind of the
//! recorded and documented payloads, and the Send API against the fake Graph server
//! ([`crate::graph`]): exact request bodies, the page token injected by the host, the 24-hour
//! window, long texts split, and Graph's errors classified.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use influxify_plugin_host::channel_types::{
    Button, HttpRequest, InboundEvent, InboundKind, Origin, OutboundMessage, QuickReply,
    SenderAction,
};
use influxify_plugin_host::harness::signature;
use influxify_plugin_host::{Call, HostConfig, Kind, MemorySecrets, PluginError, PluginHost};
use influxify_store::{ConversationKey, PluginKv};
use serde_json::json;

use crate::graph::{self, Graph};
use crate::*;

const TEXT_MESSAGE: &str = include_str!("fixtures/messenger/text-message.json");
const QUICK_REPLY: &str = include_str!("fixtures/messenger/quick-reply.json");
const POSTBACK_LEGACY: &str = include_str!("fixtures/messenger/postback-legacy.json");
const SEND_QUICK_REPLIES: &str = include_str!("fixtures/messenger/send-quick-replies-request.json");

/// The app secret of the protocol's test vector.
const APP_SECRET: &str = "test_app_secret";
/// `X-Hub-Signature-256` of `text-message.json` (without its trailing newline) with
/// [`APP_SECRET`], as `protocols.md` gives it.
const TEST_VECTOR: &str = "sha256=3fd64f15383b674eba6e58a9e2a6cd3c15dbece0ec98d4fb254d5bdda93eeb53";
/// The page access token the fake Graph API accepts.
const PAGE_TOKEN: &str = "EAAGm0PX4ZCpsBAPage-token";
/// The webhook's verify token.
const VERIFY_TOKEN: &str = "influxify-verify-7f3a";
/// The user of the recorded fixtures.
const PSID: &str = "1134343043305865";
const HOUR_MS: u64 = 3_600_000;

/// Both of the channel's secrets.
fn secrets() -> MemorySecrets {
    MemorySecrets::new()
        .with("messenger_app_secret", APP_SECRET)
        .with("messenger_page_token", PAGE_TOKEN)
}

/// The shipped manifest with the Graph API's grants (HTTP and the page token) moved to the
/// loopback, where the fake server listens.
fn local(manifest: String) -> String {
    let graph = r#"["https://graph.facebook.com"]"#;
    assert_eq!(manifest.matches(graph).count(), 3, "{manifest}");
    manifest.replace(graph, r#"["http://127.0.0.1:*"]"#)
}

/// A host with `messenger` installed (grants on the loopback), its `verify_token` set and its
/// `graph_base` at `graph_base`, with a temporary kv store.
fn messenger_at(
    graph_base: Option<&str>,
    secrets: MemorySecrets,
) -> (PluginHost, Arc<PluginKv>, tempfile::TempDir) {
    messenger_with(graph_base, secrets, &[])
}

/// [`messenger_at`] with more settings.
fn messenger_with(
    graph_base: Option<&str>,
    secrets: MemorySecrets,
    more: &[(&str, &str)],
) -> (PluginHost, Arc<PluginKv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "messenger", local);
    let mut settings = BTreeMap::from([("verify_token".to_string(), VERIFY_TOKEN.to_string())]);
    settings.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if let Some(base) = graph_base {
        settings.insert("graph_base".into(), base.into());
    }
    let mut config = HostConfig::default();
    config.config.insert("messenger".into(), settings);
    let kv = Arc::new(PluginKv::temporary().unwrap());
    let host = PluginHost::new(Arc::new(secrets), Some(kv.clone()), config).unwrap();
    host.load(&manifest).unwrap();
    (host, kv, dir)
}

/// A fake Graph API and a host sending to it.
fn ready() -> (Graph, PluginHost, Arc<PluginKv>, tempfile::TempDir) {
    let graph = Graph::start(PAGE_TOKEN);
    let (host, kv, dir) = messenger_at(Some(&graph.url), secrets());
    (graph, host, kv, dir)
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

/// A webhook POST of `body` signed with the app secret, as Meta sends it.
fn signed(body: &[u8]) -> HttpRequest {
    request(
        "POST",
        &[],
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &signature(APP_SECRET, body)),
        ],
        body,
    )
}

/// A fixture's signed bytes: the file without its trailing newline.
fn bytes(fixture: &str) -> &[u8] {
    fixture.strip_suffix('\n').unwrap_or(fixture).as_bytes()
}

fn parse(host: &PluginHost, body: &[u8]) -> Result<Vec<InboundEvent>, PluginError> {
    host.channel_parse("messenger", &signed(body))
}

/// `fixture` edited by `edit` and re-encoded (other bytes: `parse` signs them again).
fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_str(fixture).unwrap();
    edit(&mut value);
    value.to_string().into_bytes()
}

/// A webhook with one entry holding `events`.
fn webhook(events: serde_json::Value) -> Vec<u8> {
    json!({"object": "page", "entry": [
        {"id": "1691462197845448", "time": 1_700_000_000_500u64, "messaging": events},
    ]})
    .to_string()
    .into_bytes()
}

/// A messaging event from [`PSID`] at `ts` with `fields`.
fn event(ts: u64, fields: serde_json::Value) -> serde_json::Value {
    let mut event = json!({
        "sender": {"id": PSID},
        "recipient": {"id": "1691462197845448"},
        "timestamp": ts,
    });
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

// ---- verify --------------------------------------------------------------------------------

fn handshake(mode: &str, token: &str, challenge: Option<&str>) -> HttpRequest {
    let mut query = vec![("hub.mode", mode), ("hub.verify_token", token)];
    if let Some(challenge) = challenge {
        query.push(("hub.challenge", challenge));
    }
    request("GET", &query, &[], b"")
}

#[test]
fn the_shipped_manifest_loads_as_a_channel() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "messenger", |m| m);
    let (host, _) = host();
    let plugin = host.load(&manifest).unwrap();
    assert_eq!(plugin.manifest().plugin.kind, Kind::Channel);
    assert_eq!(
        plugin
            .manifest()
            .config
            .get("graph_base")
            .map(String::as_str),
        Some("https://graph.facebook.com")
    );
    assert_eq!(
        plugin
            .manifest()
            .config
            .get("api_version")
            .map(String::as_str),
        Some("v25.0")
    );
    // Without a verify token every handshake is refused.
    let reply = host
        .channel_verify("messenger", &handshake("subscribe", "", Some("1")))
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 403);
}

#[test]
fn the_handshake_echoes_the_challenge_byte_for_byte() {
    let (host, _, _dir) = messenger_at(None, secrets());
    for challenge in ["1158201444", "CHALLENGE_ACCEPTED é+/= ☃"] {
        let reply = host
            .channel_verify(
                "messenger",
                &handshake("subscribe", VERIFY_TOKEN, Some(challenge)),
            )
            .unwrap()
            .expect("a handshake");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, challenge.as_bytes());
    }
    // Otherwise 403, the challenge not echoed.
    for refused in [
        handshake("subscribe", "guess", Some("1158201444")),
        handshake("subscribe", &VERIFY_TOKEN[1..], Some("1158201444")),
        handshake("unsubscribe", VERIFY_TOKEN, Some("1158201444")),
        handshake("subscribe", VERIFY_TOKEN, None),
        request("GET", &[("hub.challenge", "1158201444")], &[], b""),
    ] {
        let reply = host
            .channel_verify("messenger", &refused)
            .unwrap()
            .expect("a handshake");
        assert_eq!(reply.status, 403, "{refused:?}");
        assert!(!String::from_utf8_lossy(&reply.body).contains("1158201444"));
    }
    // Not handshakes: a webhook POST, a GET without `hub.` parameters.
    for other in [
        signed(bytes(TEXT_MESSAGE)),
        request("GET", &[("ref", "x")], &[], b""),
        request(
            "POST",
            &[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", VERIFY_TOKEN),
            ],
            &[],
            b"",
        ),
    ] {
        assert!(
            host.channel_verify("messenger", &other).unwrap().is_none(),
            "{other:?}"
        );
    }
}

// ---- parse ---------------------------------------------------------------------------------

#[test]
fn the_signature_test_vector_verifies_the_recorded_fixture() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let body = bytes(TEXT_MESSAGE);
    assert_eq!(body.len(), 277);
    assert_eq!(signature(APP_SECRET, body), TEST_VECTOR);
    // Header names are matched ignoring case.
    for name in ["X-Hub-Signature-256", "x-hub-signature-256"] {
        let request = request("POST", &[], &[(name, TEST_VECTOR)], body);
        let events = host.channel_parse("messenger", &request).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.user_id, PSID);
        assert_eq!(event.event_id, "mid.1472026867074:cfb5e1d4bde07a2a55");
        assert_eq!(event.timestamp_ms, 1472026867080);
        assert!(
            matches!(&event.kind, InboundKind::Text(t) if t == "hello world"),
            "{event:?}"
        );
    }
}

#[test]
fn a_missing_or_wrong_signature_is_refused_and_nothing_is_parsed() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let body = bytes(TEXT_MESSAGE);
    // The file with its newline, and the same JSON re-serialized: not the bytes signed.
    let reserialized = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap()
        .to_string();
    let with = |headers: &[(&str, &str)], body: &[u8]| request("POST", &[], headers, body);
    let cases = [
        ("unsigned", with(&[], body)),
        (
            "legacy sha1 only",
            with(
                &[(
                    "X-Hub-Signature",
                    "sha1=0f3e8b4b8b0e2e1d9c1c8d1e0f9b9a8c7d6e5f4a",
                )],
                body,
            ),
        ),
        (
            "another secret",
            with(
                &[("X-Hub-Signature-256", &signature("not-the-secret", body))],
                body,
            ),
        ),
        (
            "with the trailing newline",
            with(
                &[("X-Hub-Signature-256", TEST_VECTOR)],
                TEXT_MESSAGE.as_bytes(),
            ),
        ),
        (
            "re-serialized",
            with(
                &[("X-Hub-Signature-256", TEST_VECTOR)],
                reserialized.as_bytes(),
            ),
        ),
        (
            "no prefix",
            with(
                &[(
                    "X-Hub-Signature-256",
                    TEST_VECTOR.trim_start_matches("sha256="),
                )],
                body,
            ),
        ),
        (
            "not hex",
            with(&[("X-Hub-Signature-256", "sha256=zz")], body),
        ),
    ];
    for (what, request) in &cases {
        let result = host.channel_parse("messenger", request);
        assert!(
            matches!(&result, Err(PluginError::InvalidInput(_))),
            "{what}: {result:?}"
        );
    }
    // Without the app secret nothing can be verified: the channel is misconfigured.
    let (host, _, _dir) = messenger_at(
        None,
        MemorySecrets::new().with("messenger_page_token", PAGE_TOKEN),
    );
    let result = host.channel_parse("messenger", &signed(body));
    assert!(
        matches!(&result, Err(PluginError::Misconfigured(m)) if m.contains("messenger_app_secret")),
        "{result:?}"
    );
}

#[test]
fn quick_replies_and_legacy_postbacks_parse_from_the_recordings() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let events = parse(&host, bytes(QUICK_REPLY)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, "mid.1472028637817:ae2763cc036a664b43");
    assert_eq!(events[0].timestamp_ms, 1472028637825);
    assert!(
        matches!(&events[0].kind, InboundKind::QuickReply((title, payload)) if title == "Action" && payload == "PICK_ACTION"),
        "{events:?}"
    );

    // No `mid`, no `title`: a stable hash is the dedup key, the payload the title.
    let events = parse(&host, bytes(POSTBACK_LEGACY)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].user_id, PSID);
    assert_eq!(events[0].timestamp_ms, 1472028006107);
    assert!(
        events[0].event_id.starts_with("postback-"),
        "{:?}",
        events[0]
    );
    assert!(
        matches!(&events[0].kind, InboundKind::Postback(p)
            if p.title == "DEVELOPED_DEFINED_PAYLOAD" && p.payload == "DEVELOPED_DEFINED_PAYLOAD"
                && p.referral.is_none()),
        "{events:?}"
    );
}

#[test]
fn a_postback_without_mid_gets_a_stable_dedup_id() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let first = parse(&host, bytes(POSTBACK_LEGACY)).unwrap()[0]
        .event_id
        .clone();
    // Delivered again: the same id, so the runtime drops it.
    let again = parse(&host, bytes(POSTBACK_LEGACY)).unwrap()[0]
        .event_id
        .clone();
    assert_eq!(first, again);
    // The same postback re-encoded (other bytes, same content): the same id.
    let reencoded = edited(POSTBACK_LEGACY, |_| {});
    assert_eq!(parse(&host, &reencoded).unwrap()[0].event_id, first);
    // Another payload, time or sender: another id.
    let changes: [fn(&mut serde_json::Value); 3] = [
        |e| e["postback"]["payload"] = json!("OTHER"),
        |e| e["timestamp"] = json!(1472028006108u64),
        |e| e["sender"]["id"] = json!("999"),
    ];
    for change in changes {
        let body = edited(POSTBACK_LEGACY, |v| {
            change(&mut v["entry"][0]["messaging"][0])
        });
        let id = parse(&host, &body).unwrap()[0].event_id.clone();
        assert!(id.starts_with("postback-"));
        assert_ne!(id, first);
    }
}

#[test]
fn postbacks_with_mid_attachments_and_referrals_parse() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let body = webhook(json!([
        event(
            1,
            json!({"postback": {
                "mid": "m_postback-1",
                "title": "Get Started",
                "payload": "GET_STARTED",
                "referral": {"ref": "spring-promo", "source": "SHORTLINK", "type": "OPEN_THREAD"},
            }})
        ),
        event(
            2,
            json!({"message": {"mid": "m_att-1", "text": "look", "attachments": [
                {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/photo.jpg"}},
                {"type": "location", "payload": {"coordinates": {"lat": 48.8584, "long": 2.2945}}, "title": "Eiffel Tower"},
                {"type": "fallback", "payload": null, "title": "A page", "url": "https://example.com/page"},
                {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/like.png", "sticker_id": 369239263222822_u64}},
            ]}})
        ),
        event(
            3,
            json!({"referral": {"ref": "ad-42", "source": "ADS", "type": "OPEN_THREAD", "ad_id": "6045"}})
        ),
        event(
            4,
            json!({"postback": {"mid": "m_postback-2", "title": "Help", "payload": "HELP"}})
        ),
    ]));
    let events = parse(&host, &body).unwrap();
    let summary: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.event_id.as_str(), e.timestamp_ms))
        .collect();
    assert_eq!(events.len(), 4, "{summary:?}");
    assert!(events.iter().all(|e| e.user_id == PSID));
    // Get Started from an m.me link: one event, the tap, with the referral as its context.
    assert_eq!(events[0].event_id, "m_postback-1");
    let InboundKind::Postback(postback) = &events[0].kind else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(
        (postback.title.as_str(), postback.payload.as_str()),
        ("Get Started", "GET_STARTED")
    );
    let referral = postback.referral.as_ref().unwrap();
    assert_eq!(referral.reference.as_deref(), Some("spring-promo"));
    assert_eq!(referral.source.as_deref(), Some("SHORTLINK"));
    assert_eq!(events[1].event_id, "m_att-1");
    let InboundKind::Attachments((text, attachments)) = &events[1].kind else {
        panic!("{:?}", events[1]);
    };
    assert_eq!(text.as_deref(), Some("look"));
    let attachments: Vec<(&str, Option<&str>, Option<&str>)> = attachments
        .iter()
        .map(|a| (a.kind.as_str(), a.url.as_deref(), a.title.as_deref()))
        .collect();
    assert_eq!(
        attachments,
        [
            (
                "image",
                Some("https://scontent.xx.fbcdn.net/v/photo.jpg"),
                None
            ),
            ("location", Some("geo:48.8584,2.2945"), Some("Eiffel Tower")),
            ("fallback", Some("https://example.com/page"), Some("A page")),
            // A like is a sticker, never a photo.
            (
                "sticker",
                Some("https://scontent.xx.fbcdn.net/v/like.png"),
                None
            ),
        ]
    );
    let InboundKind::Attachments((_, raw)) = &events[1].kind else {
        unreachable!()
    };
    assert_eq!(raw[1].coordinates, Some((48.8584, 2.2945)));
    assert_eq!(raw[3].sticker_id.as_deref(), Some("369239263222822"));
    assert!(events[2].event_id.starts_with("referral-"));
    assert_eq!(events[2].timestamp_ms, 3);
    assert!(
        matches!(&events[2].kind, InboundKind::Referral(r) if r.reference.as_deref() == Some("ad-42") && r.ad_id.as_deref() == Some("6045") && r.source.as_deref() == Some("ADS"))
    );
    assert_eq!(events[3].event_id, "m_postback-2");
    assert!(
        matches!(&events[3].kind, InboundKind::Postback(p) if p.title == "Help" && p.payload == "HELP")
    );
}

#[test]
fn one_odd_event_is_skipped_and_the_rest_of_the_batch_is_delivered() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let body = json!({"object": "page", "entry": [
        {"id": "1691462197845448", "time": 10, "messaging": [
            event(5, json!({"message": {"mid": "m_1", "text": "one"}})),
            // No sender id: cannot be routed to anyone.
            {"sender": {}, "recipient": {"id": "1691462197845448"}, "timestamp": 6,
             "message": {"mid": "m_2", "text": "lost"}},
            // A field of the wrong type.
            {"sender": {"id": PSID}, "timestamp": "seven", "message": {"mid": "m_3", "text": "odd"}},
            event(8, json!({"message": {"mid": "m_4", "text": "four"}})),
        ]},
        {"id": 17, "time": "not a time"},
    ]})
    .to_string();
    let events = parse(&host, body.as_bytes()).unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["m_1", "m_4"]);
}

#[test]
fn every_entry_and_every_event_is_parsed_in_order() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let body = json!({"object": "page", "entry": [
        {"id": "1691462197845448", "time": 10, "messaging": [
            event(5, json!({"message": {"mid": "m_1", "text": "one", "seq": 1}})),
            event(6, json!({"message": {"mid": "m_2", "text": "two", "reply_to": {"mid": "m_1"}}})),
        ]},
        {"id": "1691462197845448", "time": 11, "messaging": [
            // No timestamp: the entry's time.
            {"sender": {"id": "42"}, "recipient": {"id": "1691462197845448"},
             "message": {"mid": "m_3", "text": "three", "nlp": {"entities": {}}}},
        ]},
    ]})
    .to_string();
    let events = parse(&host, body.as_bytes()).unwrap();
    let got: Vec<(&str, &str, u64)> = events
        .iter()
        .map(|e| (e.user_id.as_str(), e.event_id.as_str(), e.timestamp_ms))
        .collect();
    assert_eq!(got, [(PSID, "m_1", 5), (PSID, "m_2", 6), ("42", "m_3", 11)]);
    assert!(matches!(&events[2].kind, InboundKind::Text(t) if t == "three"));
    // The parse left its instance fit for the next one (see the host's `warm`), which gives
    // the same answer.
    let messenger = host.plugin("messenger").unwrap();
    assert_eq!(messenger.warm_instances(), 1);
    let again = parse(&host, body.as_bytes()).unwrap();
    assert_eq!(format!("{again:?}"), format!("{events:?}"));
    assert_eq!(messenger.warm_instances(), 1);
}

#[test]
fn echoes_receipts_standby_and_changes_are_acknowledged_not_routed() {
    let (host, _, _dir) = messenger_at(None, secrets());
    let page = "1691462197845448";
    let echo = json!({
        "sender": {"id": page}, "recipient": {"id": PSID}, "timestamp": 7,
        "message": {"is_echo": true, "app_id": 1517776481860111u64, "mid": "m_echo", "text": "Hi from the page"},
    });
    let only_noise = json!({"object": "page", "entry": [
        {"id": page, "time": 1, "messaging": [
            echo,
            event(8, json!({"delivery": {"mids": ["m_echo"], "watermark": 8}})),
            event(9, json!({"read": {"watermark": 9}})),
            event(10, json!({"reaction": {"mid": "m_1", "action": "react", "emoji": "❤"}})),
            event(11, json!({"message": {"mid": "m_empty"}})),
        ]},
        {"id": page, "time": 2, "standby": [
            event(12, json!({"message": {"mid": "m_standby", "text": "for the inbox"}})),
        ]},
        {"id": page, "time": 3, "changes": [
            {"field": "messages", "value": {"event": "test", "message": "dashboard test"}},
        ]},
    ]})
    .to_string();
    let events = parse(&host, only_noise.as_bytes()).unwrap();
    assert!(events.is_empty(), "{events:?}");
    // Among them, a user's message is routed alone.
    let mut mixed: serde_json::Value = serde_json::from_str(&only_noise).unwrap();
    mixed["entry"][0]["messaging"]
        .as_array_mut()
        .unwrap()
        .push(event(
            13,
            json!({"message": {"mid": "m_user", "text": "hi"}}),
        ));
    let events = parse(&host, mixed.to_string().as_bytes()).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_id, "m_user");
    // Another product's webhook: acknowledged, nothing routed.
    let instagram = br#"{"object":"instagram","entry":[{"id":"1","time":1,"messaging":[]}]}"#;
    assert!(parse(&host, instagram).unwrap().is_empty());
}

#[test]
fn malformed_webhooks_are_invalid_input() {
    let (host, _, _dir) = messenger_at(None, secrets());
    // Bodies that are not a webhook at all. (An odd event inside a webhook is skipped:
    // `one_odd_event_is_skipped_and_the_rest_of_the_batch_is_delivered`.)
    let bodies: [&[u8]; 4] = [
        b"not json",
        b"",
        br#"{"object":"page"}"#,
        br#"{"object":"page","entry":"nope"}"#,
    ];
    for body in bodies {
        let result = parse(&host, body);
        assert!(
            matches!(&result, Err(PluginError::InvalidInput(_))),
            "{}: {result:?}",
            String::from_utf8_lossy(body)
        );
    }
}

// ---- send ----------------------------------------------------------------------------------

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn text(text: &str) -> OutboundMessage {
    OutboundMessage {
        user_id: PSID.into(),
        text: text.into(),
        quick_replies: Vec::new(),
        buttons: Vec::new(),
        origin: Origin::Reply,
        account: None,
        tag: None,
        last_user_message_ms: Some(now_ms() - HOUR_MS),
    }
}

fn quick_reply(title: &str, payload: &str) -> QuickReply {
    QuickReply {
        title: title.into(),
        payload: payload.into(),
    }
}

fn user() -> ConversationKey {
    ConversationKey::new("messenger", PSID)
}

fn send_call(step: u32) -> Call {
    Call::new(Some(user()), &format!("messenger/{PSID}:7:{step}"))
}

fn send(host: &PluginHost, message: &OutboundMessage) -> Result<Option<String>, PluginError> {
    host.channel_send("messenger", message, &send_call(0))
        .map(|d| d.message_id)
}

#[test]
fn a_text_goes_to_the_send_api_with_the_page_token_added_by_the_host() {
    let (graph, host, _, _dir) = ready();
    let id = send(&host, &text("Your order has shipped.")).unwrap();
    assert_eq!(id, Some(graph::success_message_id()));
    let seen = graph.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].line,
        format!("POST /v25.0/me/messages?access_token={PAGE_TOKEN} HTTP/1.1")
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Your order has shipped."},
        })
    );
    // The app secret went nowhere.
    assert!(!format!("{seen:?}").contains(APP_SECRET));
    // An unknown last message counts as inside the window.
    let mut unknown = text("Still there?");
    unknown.last_user_message_ms = None;
    send(&host, &unknown).unwrap();
    assert_eq!(graph.bodies()[1]["messaging_type"], "RESPONSE");
}

#[test]
fn quick_replies_are_sent_as_meta_documents_them() {
    let (graph, host, _, _dir) = ready();
    let mut message = text("Pick a color:");
    message.user_id = "{PSID}".into();
    message.quick_replies = vec![
        quick_reply("Red", "{POSTBACK_PAYLOAD}"),
        quick_reply("Green", "{POSTBACK_PAYLOAD}"),
    ];
    send(&host, &message).unwrap();
    // Meta's documented request, without the images (the engine sends none).
    let mut documented: serde_json::Value = serde_json::from_str(SEND_QUICK_REPLIES).unwrap();
    for reply in documented["message"]["quick_replies"]
        .as_array_mut()
        .unwrap()
    {
        reply.as_object_mut().unwrap().remove("image_url");
    }
    assert_eq!(graph.bodies(), [documented]);
}

#[test]
fn buttons_are_sent_as_a_button_template() {
    let (graph, host, _, _dir) = ready();
    let mut message = text("What next?");
    message.buttons = vec![
        Button::Postback(("Track order".into(), "TRACK".into())),
        Button::Url(("Open shop".into(), "https://shop.example.com/".into())),
    ];
    message.quick_replies = vec![quick_reply("Done", "DONE")];
    send(&host, &message).unwrap();
    assert_eq!(
        graph.bodies(),
        [json!({
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {
                "attachment": {"type": "template", "payload": {
                    "template_type": "button",
                    "text": "What next?",
                    "buttons": [
                        {"type": "postback", "title": "Track order", "payload": "TRACK"},
                        {"type": "web_url", "url": "https://shop.example.com/", "title": "Open shop"},
                    ],
                }},
                "quick_replies": [{"content_type": "text", "title": "Done", "payload": "DONE"}],
            },
        })]
    );
}

#[test]
fn a_sender_action_is_one_request_without_waiting() {
    let (graph, host, _, _dir) = ready();
    for (action, name) in [
        (SenderAction::TypingOn, "typing_on"),
        (SenderAction::TypingOff, "typing_off"),
        (SenderAction::MarkSeen, "mark_seen"),
    ] {
        let started = Instant::now();
        host.channel_act("messenger", PSID, None, action, &send_call(1))
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        let seen = graph.requests();
        let last = seen.last().unwrap();
        assert_eq!(
            last.json(),
            json!({"recipient": {"id": PSID}, "sender_action": name})
        );
        assert!(last.query("access_token") == Some(PAGE_TOKEN));
    }
    assert_eq!(graph.requests().len(), 3);
}

/// `n` numbered sentences of about 100 characters.
fn sentences(n: usize) -> String {
    (1..=n)
        .map(|i| format!("Sentence {i:03} tells the user something worth knowing, and goes on for a while to be long enough."))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_long_text_is_split_on_sentences_with_the_quick_replies_on_the_last() {
    let (graph, host, _, _dir) = ready();
    let long = sentences(45);
    assert!(long.chars().count() > 4000, "{}", long.len());
    let mut message = text(&long);
    message.quick_replies = vec![quick_reply("More", "MORE")];
    send(&host, &message).unwrap();
    let bodies = graph.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let mut texts = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(body["recipient"]["id"], PSID);
        assert_eq!(body["messaging_type"], "RESPONSE");
        let part = body["message"]["text"].as_str().unwrap();
        assert!(part.chars().count() <= 2000, "{}", part.len());
        assert!(
            part.starts_with("Sentence ") && part.ends_with("long enough."),
            "{part}"
        );
        assert_eq!(
            body["message"].get("quick_replies").is_some(),
            i == 2,
            "{body}"
        );
        texts.push(part.to_string());
    }
    assert_eq!(texts.join(" "), long);

    // With buttons, the last part is a template of at most 640 characters.
    graph.clear();
    let mut message = text(&sentences(30));
    message.buttons = vec![Button::Postback(("OK".into(), "OK".into()))];
    send(&host, &message).unwrap();
    let bodies = graph.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let last = &bodies[2]["message"]["attachment"]["payload"];
    assert_eq!(last["template_type"], "button");
    let last_text = last["text"].as_str().unwrap();
    assert!(last_text.chars().count() <= 640, "{}", last_text.len());
    assert!(last_text.ends_with("long enough."));
    let first: Vec<&str> = bodies[..2]
        .iter()
        .map(|b| b["message"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        format!("{} {} {last_text}", first[0], first[1]),
        sentences(30)
    );
}

#[test]
fn a_retried_split_text_sends_only_the_parts_that_did_not_go_out() {
    let (graph, host, kv, _dir) = ready();
    let long = sentences(45);
    // The second part meets a temporary failure.
    graph.script([
        None,
        Some((
            500,
            graph::graph_error(
                1200,
                None,
                "Temporary send message failure. Please try again later",
            ),
        )),
    ]);
    let err = host
        .channel_send("messenger", &text(&long), &send_call(1))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Retryable(m) if m.contains("part 2 of 3")),
        "{err:?}"
    );
    let first_attempt = graph.bodies();
    assert_eq!(first_attempt.len(), 2);
    // What went out is in the user's own kv (erased with the user)...
    let entries = kv.user_entries(&user()).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].plugin, "messenger");
    // ...so the runtime's retry (the same idempotency key) sends parts 2 and 3 only.
    graph.clear();
    let delivery = host
        .channel_send("messenger", &text(&long), &send_call(1))
        .unwrap();
    assert_eq!(delivery.message_id, Some(graph::success_message_id()));
    let bodies = graph.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0], first_attempt[1], "the failed part again");
    let last = bodies[1]["message"]["text"].as_str().unwrap();
    assert!(long.ends_with(last), "{last}");
    assert_ne!(bodies[1]["message"], first_attempt[0]["message"]);
    assert!(kv.user_entries(&user()).unwrap().is_empty());
}

#[test]
fn outside_the_window_nothing_is_sent_without_a_tag() {
    let (graph, host, _, _dir) = ready();
    let mut late = text("Your parcel arrived.");
    late.last_user_message_ms = Some(now_ms() - 25 * HOUR_MS);
    let err = send(&host, &late).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("24-hour window")),
        "{err:?}"
    );
    late.origin = Origin::Proactive;
    assert!(matches!(send(&host, &late), Err(PluginError::Permanent(_))));
    // A retired tag is refused, and says since when.
    late.tag = Some("ACCOUNT_UPDATE".into());
    let err = send(&host, &late).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("retired") && m.contains("2026-04-27")),
        "{err:?}"
    );
    assert!(graph.requests().is_empty(), "{:?}", graph.requests());

    // A person's reply goes out with `HUMAN_AGENT` for 7 days.
    late.tag = None;
    late.origin = Origin::Operator;
    send(&host, &late).unwrap();
    assert_eq!(
        graph.bodies(),
        [json!({
            "recipient": {"id": PSID},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "Your parcel arrived."},
        })]
    );
    // Just inside the window, a plain response.
    let mut recent = text("Thanks!");
    recent.last_user_message_ms = Some(now_ms() - 23 * HOUR_MS);
    send(&host, &recent).unwrap();
    assert_eq!(graph.bodies()[1]["messaging_type"], "RESPONSE");
}

#[test]
fn a_proactive_message_inside_the_window_goes_out_as_an_update() {
    let (graph, host, _, _dir) = ready();
    let mut reminder = text("Your appointment is tomorrow.");
    reminder.origin = Origin::Proactive;
    send(&host, &reminder).unwrap();
    assert_eq!(graph.bodies()[0]["messaging_type"], "UPDATE");
    assert!(graph.bodies()[0].get("tag").is_none());
}

#[test]
fn the_profile_asks_only_for_the_fields_wanted() {
    let (graph, host, _, _dir) = ready();
    let fields = vec!["first_name".to_string(), "secret_field".to_string()];
    let profile = host
        .channel_profile("messenger", PSID, None, &fields, &send_call(1))
        .unwrap();
    let seen = graph.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert!(
        seen[0].path.ends_with(&format!("/{PSID}")),
        "{}",
        seen[0].path
    );
    // Only fields the User Profile API documents are asked for.
    assert_eq!(seen[0].query("fields"), Some("first_name"));
    assert!(seen[0].query("access_token") == Some(PAGE_TOKEN));
    assert_eq!(profile.get("first_name"), Some(&json!("Ada")));
    assert_eq!(profile.len(), 1, "{profile:?}");
    // Nothing wanted that Meta has: nothing asked.
    let none = host
        .channel_profile("messenger", PSID, None, &["x".to_string()], &send_call(2))
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(graph.requests().len(), 1);
}

#[test]
fn messages_beyond_messenger_s_limits_are_refused_before_any_request() {
    let (graph, host, _, _dir) = ready();
    let with = |edit: &dyn Fn(&mut OutboundMessage)| {
        let mut message = text("Pick one");
        edit(&mut message);
        message
    };
    let cases: Vec<(&str, OutboundMessage)> = vec![
        ("empty text", with(&|m| m.text = "  ".into())),
        (
            "14 quick replies",
            with(&|m| {
                m.quick_replies = (0..14)
                    .map(|i| quick_reply(&format!("#{i}"), "P"))
                    .collect()
            }),
        ),
        (
            "a 21-character title",
            with(&|m| m.quick_replies = vec![quick_reply(&"x".repeat(21), "P")]),
        ),
        (
            "an empty title",
            with(&|m| m.quick_replies = vec![quick_reply(" ", "P")]),
        ),
        (
            "a 1001-character payload",
            with(&|m| m.quick_replies = vec![quick_reply("Yes", &"p".repeat(1001))]),
        ),
        (
            "4 buttons",
            with(&|m| {
                m.buttons = (0..4)
                    .map(|i| Button::Postback((format!("B{i}"), "P".into())))
                    .collect()
            }),
        ),
        (
            "a button linking nowhere",
            with(&|m| m.buttons = vec![Button::Url(("Site".into(), "javascript:alert(1)".into()))]),
        ),
        (
            "a text of more than 10 messages",
            with(&|m| m.text = sentences(250)),
        ),
        (
            "a tag that is not one",
            with(&|m| m.tag = Some("human agent".into())),
        ),
        ("no recipient", with(&|m| m.user_id = String::new())),
    ];
    for (what, message) in &cases {
        let result = send(&host, message);
        assert!(
            matches!(&result, Err(PluginError::InvalidInput(_))),
            "{what}: {result:?}"
        );
    }
    assert!(graph.requests().is_empty(), "{:?}", graph.requests());
    // At the limits it goes: 13 quick replies, 20 characters as a reader counts them (an emoji
    // with a skin tone is one), a 1000-character payload.
    let mut full = text("Pick one");
    full.quick_replies = (0..13)
        .map(|i| quick_reply(&format!("#{i}"), "P"))
        .collect();
    full.quick_replies[0] = quick_reply(&"👍🏽".repeat(20), &"p".repeat(1000));
    send(&host, &full).unwrap();
    let sent = &graph.bodies()[0]["message"]["quick_replies"];
    assert_eq!(sent.as_array().unwrap().len(), 13);
}

/// Sends a message with Graph answering `answer`; the error.
fn failing(graph: &Graph, host: &PluginHost, answer: (u16, String)) -> PluginError {
    graph.clear();
    graph.script([Some(answer)]);
    let err = send(host, &text("Hello")).unwrap_err();
    assert_eq!(graph.requests().len(), 1, "one request, no retry inside");
    err
}

#[test]
fn graph_errors_are_classified_by_code_and_subcode() {
    let (graph, host, _, _dir) = ready();
    let error = graph::graph_error;
    let window = error(
        10,
        Some(2018278),
        "(#10) This message is sent outside of allowed window.",
    );
    let err = failing(&graph, &host, (400, window));
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("24-hour window") && m.contains("2018278")),
        "{err:?}"
    );
    for (code, subcode, message) in [
        (
            551,
            Some(1545041),
            "(#551) This person isn't available right now.",
        ),
        (100, None, "(#100) The parameter recipient is required"),
        (100, Some(2018001), "(#100) No matching user found"),
    ] {
        let err = failing(&graph, &host, (400, error(code, subcode, message)));
        assert!(
            matches!(&err, PluginError::Permanent(m) if m.contains(message)),
            "{code}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
    for (status, code, message) in [
        (
            400,
            613,
            "(#613) Calls to this api have exceeded the rate limit.",
        ),
        (400, 4, "(#4) Application request limit reached"),
        (
            500,
            2,
            "An unexpected error has occurred. Please retry your request later.",
        ),
        (
            400,
            1200,
            "Temporary send message failure. Please try again later",
        ),
    ] {
        let err = failing(&graph, &host, (status, error(code, None, message)));
        assert!(
            matches!(&err, PluginError::Retryable(m) if m.contains(message)),
            "{code}: {err:?}"
        );
    }
    // Not Graph's shape: by the status.
    let err = failing(&graph, &host, (502, "<html>Bad Gateway</html>".into()));
    assert!(matches!(&err, PluginError::Retryable(_)), "{err:?}");
}

#[test]
fn a_refused_page_token_is_reported_as_a_misconfiguration() {
    let graph = Graph::start(PAGE_TOKEN);
    let wrong = MemorySecrets::new()
        .with("messenger_app_secret", APP_SECRET)
        .with("messenger_page_token", "EAAG-revoked");
    let (host, _, _dir) = messenger_at(Some(&graph.url), wrong);
    let err = send(&host, &text("Hello")).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m)
            if m.contains("invalid page token") && m.contains("Invalid OAuth access token.") && m.contains("190")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("EAAG-revoked"), "{err}");
    assert_eq!(graph.requests().len(), 1);
    assert_eq!(
        graph.requests()[0].query("access_token"),
        Some("EAAG-revoked")
    );

    // No page token at all: misconfigured, nothing sent.
    let (host, _, _dir) = messenger_at(
        Some(&graph.url),
        MemorySecrets::new().with("messenger_app_secret", APP_SECRET),
    );
    let err = send(&host, &text("Hello")).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("messenger_page_token")),
        "{err:?}"
    );
    assert_eq!(graph.requests().len(), 1);
}

#[test]
fn network_errors_are_retryable() {
    // A port where nothing listens.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (host, _, _dir) = messenger_at(Some(&closed), secrets());
    let err = send(&host, &text("Hello")).unwrap_err();
    assert!(matches!(&err, PluginError::Retryable(_)), "{err:?}");
}

#[test]
fn many_pages_on_one_app_each_answer_with_their_own_token() {
    let graph = Graph::start("page-two-token");
    let secrets = MemorySecrets::new()
        .with("messenger_app_secret", APP_SECRET)
        .with("messenger_page_token_111", "page-one-token")
        .with("messenger_page_token_222", "page-two-token")
        // A default token is never used for a page of the list, nor for one outside it.
        .with("messenger_page_token", "another-page-token");
    let (host, _, _dir) = messenger_with(Some(&graph.url), secrets, &[("pages", "111, 222")]);
    let entry = |page: &str, mid: &str| {
        json!({"id": page, "time": 1, "messaging": [
            {"sender": {"id": PSID}, "recipient": {"id": page}, "timestamp": 1,
             "message": {"mid": mid, "text": "hi"}},
        ]})
    };
    let body = json!({"object": "page", "entry": [
        entry("111", "m_one"), entry("222", "m_two"), entry("333", "m_three"),
    ]})
    .to_string();
    let events = parse(&host, body.as_bytes()).unwrap();
    let got: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.event_id.as_str(), e.account.as_deref()))
        .collect();
    // Page 333 is not served: acknowledged, never routed.
    assert_eq!(got, [("m_one", Some("111")), ("m_two", Some("222"))]);

    let mut reply = text("From page two");
    reply.account = Some("222".into());
    send(&host, &reply).unwrap();
    assert_eq!(
        graph.requests()[0].query("access_token"),
        Some("page-two-token")
    );
    // Page one's token is not what this fake accepts: the reply went out with page one's.
    reply.account = Some("111".into());
    let err = send(&host, &reply).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("invalid page token")),
        "{err:?}"
    );
    assert_eq!(
        graph.requests()[1].query("access_token"),
        Some("page-one-token")
    );
    // A page outside the list, or none: nothing is sent.
    for account in [Some("333"), None] {
        reply.account = account.map(str::to_string);
        let err = send(&host, &reply).unwrap_err();
        assert!(matches!(&err, PluginError::Misconfigured(_)), "{err:?}");
    }
    assert_eq!(graph.requests().len(), 2);
}

#[test]
fn a_person_answering_from_the_page_inbox_is_told_from_the_bot_s_own_echoes() {
    let echo = |mid: &str, app_id: Option<u64>| {
        let mut message = json!({"mid": mid, "is_echo": true, "text": "Hello from a person"});
        if let Some(app) = app_id {
            message["app_id"] = app.into();
        }
        json!({"sender": {"id": "1691462197845448"}, "recipient": {"id": PSID}, "timestamp": 9, "message": message})
    };
    let body =
        json!({"object": "page", "entry": [{"id": "1691462197845448", "time": 9, "messaging": [
            echo("m_bot", Some(1517776481860111)),
            echo("m_inbox", Some(263902037430900)),
            echo("m_person", None),
        ]}]})
        .to_string();
    // Without the `app_id` setting the bot cannot tell its own echoes: none is routed.
    let (host, _, _dir) = messenger_at(None, secrets());
    assert!(parse(&host, body.as_bytes()).unwrap().is_empty());
    // With it, the bot's own echo is not routed; another app's (the Page Inbox) or a person's
    // is `person-replied`, for the user the message went to.
    let (host, _, _dir) = messenger_with(None, secrets(), &[("app_id", "1517776481860111")]);
    let events = parse(&host, body.as_bytes()).unwrap();
    let got: Vec<(&str, &str, bool)> = events
        .iter()
        .map(|e| {
            (
                e.user_id.as_str(),
                e.event_id.as_str(),
                matches!(e.kind, InboundKind::PersonReplied),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(PSID, "m_inbox:echo", true), (PSID, "m_person:echo", true)]
    );
}
