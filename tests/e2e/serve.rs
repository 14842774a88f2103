//! `influxify serve` as Messenger would use it: the real process, the real messenger plugin,
//! a fake Graph API that records the Send API calls. A signed webhook reaches the flow and the
//! reply goes out; a redelivery is not processed twice; a bad signature changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Mac, digest::KeyInit};

use crate::served::{Served, http, serve};
use crate::{built_plugins, root};

use crate::http_server::{HttpServer, Response};

const FLOW: &str = r#"
id: hello
start: ask_name
nodes:
  ask_name:
    kind: ask
    prompt: "Hi! What's your name?"
    store: name
    next: greet
  greet:
    kind: message
    text: "Nice to meet you, {{ name }}."
    next: done
  done:
    kind: end
"#;

/// The Meta app's secret the test servers check webhook signatures with.
pub const APP_SECRET: &str = "test_app_secret";

/// Builds the messenger plugin and installs it in `plugins/`, pointed at the fake Graph API.
pub fn install_messenger(plugins: &Path, graph: &str) {
    let sources = root().join("plugins");
    let built = built_plugins(&["messenger"]);
    let dir = plugins.join("messenger");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built.join("messenger.wasm"), dir.join("messenger.wasm")).unwrap();
    let manifest = std::fs::read_to_string(sources.join("messenger/plugin.toml"))
        .unwrap()
        .replace("https://graph.facebook.com", graph);
    let manifest = manifest.replace("[config]", "[config]\nverify_token = \"let-me-in\"");
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
}

fn start(work: &Path, plugins: &Path) -> Served {
    let flows = work.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("hello.yaml"), FLOW).unwrap();
    serve(
        work,
        "hello",
        plugins,
        &[
            ("INFLUXIFY_SECRET_MESSENGER_APP_SECRET", APP_SECRET),
            ("INFLUXIFY_SECRET_MESSENGER_PAGE_TOKEN", "page-token"),
        ],
    )
}

/// The `X-Hub-Signature-256` header Meta sends with `body`, signed with [`APP_SECRET`].
pub fn signature(body: &[u8]) -> String {
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The Send API calls the fake Graph API has seen, as JSON bodies.
fn sends(graph: &HttpServer) -> Vec<serde_json::Value> {
    graph
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/me/messages"))
        .map(|r| r.json())
        .filter(|b| b.get("message").is_some())
        .collect()
}

fn wait_for(graph: &HttpServer, count: usize) -> Vec<serde_json::Value> {
    let began = Instant::now();
    loop {
        let seen = sends(graph);
        if seen.len() >= count || began.elapsed() > Duration::from_secs(20) {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn signed_messenger_webhooks_reach_the_flow_and_replies_go_to_the_send_api() {
    let graph = HttpServer::start(|request| {
        if request.query("access_token") != Some("page-token") {
            return Response::json(
                400,
                &serde_json::json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}}),
            );
        }
        Response::json(
            200,
            &serde_json::json!({"recipient_id": "1134343043305865", "message_id": "m_sent"}),
        )
    });
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    install_messenger(&plugins, &graph.url);
    let served = start(work.path(), &plugins);

    // The handshake.
    let (status, body) = http(
        &served.addr,
        "GET",
        "/channels/messenger/webhook?hub.mode=subscribe&hub.verify_token=let-me-in&hub.challenge=1158201444",
        &[],
        b"",
    );
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    let (status, _) = http(
        &served.addr,
        "GET",
        "/channels/messenger/webhook?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        &[],
        b"",
    );
    assert_eq!(status, 403);

    // A signed message: acknowledged, and the flow's first question goes to the sender.
    let payload =
        std::fs::read_to_string(root().join("tests/e2e/fixtures/messenger-text-message.json"))
            .unwrap();
    // Sent now: Meta's sample dates from 2016, when the 24-hour window for replies has closed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let old = payload.trim_end().replace("1134343043305865", "2016");
    let payload = payload
        .trim_end()
        .replace("1472026867080", &now)
        .into_bytes();
    let signed = [
        ("content-type", "application/json".to_string()),
        ("x-hub-signature-256", signature(&payload)),
    ];
    let (status, _) = http(
        &served.addr,
        "POST",
        "/channels/messenger/webhook",
        &signed,
        &payload,
    );
    assert_eq!(status, 200);
    let seen = wait_for(&graph, 1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["recipient"]["id"], "1134343043305865");
    assert_eq!(seen[0]["message"]["text"], "Hi! What's your name?");
    assert_eq!(seen[0]["messaging_type"], "RESPONSE");

    // Messenger redelivers: acknowledged again, processed once.
    let (status, _) = http(
        &served.addr,
        "POST",
        "/channels/messenger/webhook",
        &signed,
        &payload,
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sends(&graph).len(),
        1,
        "a redelivery is not processed twice"
    );

    // A bad signature: refused, nothing processed.
    let answer = payload.clone();
    let forged = String::from_utf8(answer)
        .unwrap()
        .replace("hello world", "Mallory")
        .replace("mid.1472026867074:cfb5e1d4bde07a2a55", "mid.forged");
    let (status, _) = http(
        &served.addr,
        "POST",
        "/channels/messenger/webhook",
        &signed,
        forged.as_bytes(),
    );
    assert_eq!(status, 403);
    let (status, _) = http(
        &served.addr,
        "POST",
        "/channels/messenger/webhook",
        &[("content-type", "application/json".to_string())],
        forged.as_bytes(),
    );
    assert_eq!(status, 403);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sends(&graph).len(), 1);

    // A message that arrives more than 24 hours after it was written: acknowledged, and the
    // reply is not sent (Messenger would refuse it without a message tag).
    let (status, _) = http(
        &served.addr,
        "POST",
        "/channels/messenger/webhook",
        &[
            ("content-type", "application/json".to_string()),
            ("x-hub-signature-256", signature(old.as_bytes())),
        ],
        old.as_bytes(),
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sends(&graph).len(), 1, "no reply outside the window");

    // An unknown channel is 404.
    let (status, _) = http(
        &served.addr,
        "POST",
        "/channels/nope/webhook",
        &signed,
        &payload,
    );
    assert_eq!(status, 404);
}

/// Posts one signed webhook carrying `event` (a `messaging` item) to `served`; its status.
fn post_event(served: &Served, event: serde_json::Value) -> u16 {
    let body = serde_json::json!({
        "object": "page",
        "entry": [{"id": "1691462197845448", "time": event["timestamp"], "messaging": [event]}],
    })
    .to_string();
    let headers = [
        ("content-type", "application/json".to_string()),
        ("x-hub-signature-256", signature(body.as_bytes())),
    ];
    http(
        &served.addr,
        "POST",
        "/channels/messenger/webhook",
        &headers,
        body.as_bytes(),
    )
    .0
}

/// A person answering the user from the Page Inbox (an echo another app sent) keeps the bot
/// quiet with that user for `[bot] human_silence`; the bot's own echoes do not.
#[test]
fn a_person_answering_from_the_page_inbox_keeps_the_bot_quiet() {
    const PSID: &str = "24000000000000777";
    const OUR_APP: &str = "1517776481860111";
    let graph = HttpServer::start(|_| {
        Response::json(
            200,
            &serde_json::json!({"recipient_id": PSID, "message_id": "m_sent"}),
        )
    });
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    install_messenger(&plugins, &graph.url);
    let manifest = plugins.join("messenger/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("[config]", &format!("[config]\napp_id = \"{OUR_APP}\"")),
    )
    .unwrap();
    let flows = work.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("hello.yaml"), FLOW).unwrap();
    let config = work.path().join("influxify.toml");
    std::fs::write(
        &config,
        format!(
            "[bot]\nflows = {flows:?}\nentry = \"hello\"\nhuman_silence = \"2s\"\n\
             [plugins]\ndir = {plugins:?}\n[store]\ndata = {:?}\n",
            work.path().join("data")
        ),
    )
    .unwrap();
    let served = crate::served::serve_with(
        &["--config".into(), config.into_os_string()],
        &[
            ("INFLUXIFY_SECRET_MESSENGER_APP_SECRET", APP_SECRET),
            ("INFLUXIFY_SECRET_MESSENGER_PAGE_TOKEN", "page-token"),
        ],
    );
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let from_user = |mid: &str, text: &str| {
        serde_json::json!({"sender": {"id": PSID}, "recipient": {"id": "1691462197845448"},
            "timestamp": now(), "message": {"mid": mid, "text": text}})
    };
    let echo = |mid: &str, app: &str| {
        serde_json::json!({"sender": {"id": "1691462197845448"}, "recipient": {"id": PSID},
            "timestamp": now(), "message": {"mid": mid, "is_echo": true, "app_id": app.parse::<u64>().unwrap(), "text": "..."}})
    };
    assert_eq!(post_event(&served, from_user("m_1", "hi")), 200);
    assert_eq!(
        wait_for(&graph, 1)[0]["message"]["text"],
        "Hi! What's your name?"
    );
    // The bot's own echo changes nothing.
    assert_eq!(post_event(&served, echo("m_echo_1", OUR_APP)), 200);
    // A person answers from the Page Inbox: the user's next message is not answered.
    assert_eq!(
        post_event(&served, echo("m_echo_2", "263902037430900")),
        200
    );
    assert_eq!(post_event(&served, from_user("m_2", "Ada")), 200);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(sends(&graph).len(), 1, "{:?}", sends(&graph));
    // Once the silence is over, the bot answers again, where the flow was.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(post_event(&served, from_user("m_3", "Bob")), 200);
    let seen = wait_for(&graph, 2);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1]["message"]["text"], "Nice to meet you, Bob.");
}
