//! The README's main job: `influxify serve` with the repository's `influxify.toml` serves the demo
//! bot with the built-in plugins; its order look-up reads the sheets plugin's local CSV, with no
//! Google account and no other service.

use std::ffi::OsString;
use std::time::Duration;

use crate::served::{WebChatUser, serve_with};
use crate::{built_plugins, root};

/// Installs the built-in plugins as `cargo xtask plugins` does: manifest, component and files.
fn install_builtins(dir: &std::path::Path) {
    let names = ["messenger", "openai", "sheets", "consent"];
    let built = built_plugins(&names);
    for name in names {
        let dest = dir.join(name);
        std::fs::create_dir_all(&dest).unwrap();
        let wasm = format!("{name}.wasm");
        std::fs::copy(built.join(&wasm), dest.join(&wasm)).unwrap();
        for entry in std::fs::read_dir(root().join("plugins").join(name)).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if file == "plugin.toml" || file.ends_with(".csv") {
                std::fs::copy(&path, dest.join(&file)).unwrap();
            }
        }
    }
}

#[test]
fn the_shipped_configuration_serves_the_demo_bot() {
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    install_builtins(&plugins);
    let args: Vec<OsString> = vec![
        "--config".into(),
        root().join("influxify.toml").into(),
        "--data".into(),
        work.path().join("data").into(),
        "--plugins".into(),
        plugins.into(),
    ];
    let served = serve_with(&args, &[]);
    let wait = Duration::from_secs(20);
    let mut ada = WebChatUser::open_with(&served.addr, br#"{"profile": {"first_name": "Ada"}}"#);
    ada.say("hi");
    assert_eq!(
        ada.replies(2, wait),
        [
            "Hi! I'm the Influxify demo bot.",
            "What would you like to try?"
        ]
    );
    assert_eq!(
        ada.post(serde_json::json!({"text": "Where is my order?", "payload": "orders"}))
            .0,
        202
    );
    let intro = ada.replies(2, wait);
    assert_eq!(intro[0], "Hi Ada, I can tell you where your order is.");
    ada.say("a1002");
    assert_eq!(
        ada.replies(2, wait),
        [
            "Order A-1002 is being packed. It should leave our warehouse by 2026-01-03.",
            "Can I check another order for you?"
        ]
    );
    ada.say("no thanks");
    assert_eq!(
        ada.replies(3, wait),
        [
            "Thanks for shopping with us, Ada!",
            "Back at the demo menu.",
            "What would you like to try?"
        ]
    );

    // A graceful stop (SIGTERM) exits 0; started again on the same data, Ada's conversation
    // carries on where it was, and her session token still works.
    let status = served.stop();
    assert!(status.success(), "{status:?}");
    let served = serve_with(&args, &[]);
    let token = ada.token.clone();
    let mut again = WebChatUser::resume(&served.addr, &token, ada.last_id.as_deref());
    assert_eq!(
        again
            .post(serde_json::json!({"text": "Book an appointment", "payload": "booking"}))
            .0,
        202
    );
    let booking = again.replies(1, wait);
    assert!(booking[0].contains("appointment"), "{booking:?}");
}
