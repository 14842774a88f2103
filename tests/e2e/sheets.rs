//! The order-status flow through the real `influxify serve`, looking orders up with the built-in
//! `sheets` plugin in a fake Google Sheets API: the configured OAuth access token has expired,
//! so the host refreshes it once at the fake token endpoint and reuses the new one.

use std::time::Duration;

use crate::served::{WebChatUser, serve};
use crate::sheets_server::{CLIENT_ID, CLIENT_SECRET, FRESH_TOKEN, REFRESH_TOKEN, Server};
use crate::{built_plugins, root};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn the_order_status_flow_reads_google_sheets_with_a_refreshed_token() {
    let sheets = Server::start(FRESH_TOKEN);
    let work = tempfile::tempdir().unwrap();
    let flows = work.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::copy(
        root().join("flows/order-status/order-status.yaml"),
        flows.join("order-status.yaml"),
    )
    .unwrap();
    let plugins = work.path().join("plugins");
    let dir = plugins.join("sheets");
    std::fs::create_dir_all(&dir).unwrap();
    let built = built_plugins(&["sheets"]);
    std::fs::copy(built.join("sheets.wasm"), dir.join("sheets.wasm")).unwrap();
    let manifest = std::fs::read_to_string(root().join("plugins/sheets/plugin.toml"))
        .unwrap()
        .replace("https://sheets.googleapis.com", &sheets.url)
        .replace("csv = \"@file:orders.csv\"", "");
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    let secret = serde_json::json!({
        "kind": "oauth",
        "access_token": "ya29.expired-yesterday",
        "expires_at_ms": 1,
        "refresh_token": REFRESH_TOKEN,
        "token_url": sheets.token_url(),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    })
    .to_string();
    let served = serve(
        work.path(),
        "order-status",
        &plugins,
        &[("INFLUXIFY_SECRET_GOOGLE_SHEETS", &secret)],
    );

    let mut shopper = WebChatUser::open(&served.addr);
    shopper.say("hi");
    let hello = shopper.replies(2, WAIT);
    assert!(
        hello.len() == 2 && hello[1].starts_with("What's your order number?"),
        "{hello:?}"
    );
    shopper.say("a1001");
    assert_eq!(
        shopper.replies(2, WAIT),
        [
            "Good news! Order A-1001 shipped on 2025-12-30 with DHL Express.",
            "Can I check another order for you?"
        ]
    );
    assert_eq!(
        sheets.refreshes().len(),
        1,
        "the expired token was refreshed"
    );
    let reads = sheets.reads();
    assert_eq!(reads.len(), 1);
    assert_eq!(
        reads[0].header("authorization"),
        Some(format!("Bearer {FRESH_TOKEN}").as_str())
    );

    let another = serde_json::json!({ "text": "Check another", "payload": "ANOTHER" });
    for (order, answer) in [
        (
            "A-1002",
            "Order A-1002 is being packed. It should leave our warehouse by 2026-01-03.",
        ),
        (
            "A-9999",
            "I couldn't find order A-9999. Please check the number in your confirmation e-mail.",
        ),
    ] {
        assert_eq!(shopper.post(another.clone()).0, 202);
        let asked = shopper.replies(1, WAIT);
        assert!(
            asked[0].starts_with("What's your order number?"),
            "{asked:?}"
        );
        shopper.say(order);
        assert_eq!(
            shopper.replies(2, WAIT),
            [answer, "Can I check another order for you?"]
        );
    }
    // The refreshed token was kept and reused.
    assert_eq!(sheets.refreshes().len(), 1);
}
