//! Any body posted to the Messenger webhook, through the real plugin host and the built
//! messenger plugin (`cargo xtask plugins` builds it): correctly signed, it is parsed into
//! events or refused as invalid input; badly signed, it is refused. Never a trap, a timeout or a
//! panic.

#![no_main]

use std::sync::{Arc, OnceLock};

use influxify_plugin_host::channel_types::HttpRequest;
use influxify_plugin_host::{HostConfig, MemorySecrets, PluginError, PluginHost};
use libfuzzer_sys::fuzz_target;

const APP_SECRET: &str = "fuzz-app-secret";

fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = std::env::temp_dir().join(format!("influxify-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            root.join("plugins/target/wasm32-wasip2/release/messenger.wasm"),
            dir.join("messenger.wasm"),
        )
        .expect("the messenger plugin is built (cargo xtask plugins)");
        std::fs::copy(
            root.join("plugins/messenger/plugin.toml"),
            dir.join("plugin.toml"),
        )
        .unwrap();
        let secrets = MemorySecrets::new().with("messenger_app_secret", APP_SECRET);
        let host = PluginHost::new(Arc::new(secrets), None, HostConfig::default()).unwrap();
        host.load(&dir.join("plugin.toml"))
            .expect("the messenger plugin loads");
        host
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, body)) = data.split_first() else {
        return;
    };
    let signature = match mode % 4 {
        0 => "sha256=00".to_string(),
        1 => String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned(),
        _ => influxify_plugin_host::harness::signature(APP_SECRET, body),
    };
    let request = HttpRequest {
        method: "POST".into(),
        path: String::new(),
        query: Vec::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-hub-signature-256".into(), signature),
        ],
        body: body.to_vec(),
    };
    match host().channel_parse("messenger", &request) {
        Ok(events) => {
            assert!(mode % 4 >= 2, "an unsigned body was accepted");
            for event in events {
                assert!(!event.event_id.is_empty());
            }
        }
        Err(PluginError::InvalidInput(_)) => {}
        Err(other) => panic!("the webhook failed with {other:?}"),
    }
});
