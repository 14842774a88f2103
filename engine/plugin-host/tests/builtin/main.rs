//! The built-in plugins (`plugins/sheets`, `plugins/consent`, `plugins/messenger`), built for
//! wasm32-wasip2 by the test itself and run through the real host: a fake Google Sheets + OAuth
//! server on 127.0.0.1 for `sheets`, a real sled kv store for `consent`, a fake Graph API
//! (`graph`) for `messenger`.

mod consent;
mod graph;
#[path = "../support/http.rs"]
mod http_server;
mod messenger;
mod openai;
mod server;
mod sheets;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use influxify_plugin_host::{
    Call, HostConfig, Invocation, MemorySecrets, PluginError, PluginHost, SecretStore,
};
use influxify_store::{ConversationKey, PluginKv};

/// Builds the built-in plugins once (the plugins have their own workspace and target).
pub fn built(crate_file: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", "sheets",
                "-p", "consent", "-p", "openai", "-p", "messenger",
            ])
            .current_dir(&plugins)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the built-in plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
        );
        plugins.join("target/wasm32-wasip2/release")
    });
    dir.join(crate_file)
}

/// Installs built-in plugin `name` (`sheets`, `consent`) into `plugins/<name>/` with its
/// manifest edited by `edit`, and the files its `@file:` settings name (`orders.csv`); returns
/// the manifest's path.
pub fn install(plugins: &Path, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(name);
    let wasm = format!("{name}.wasm");
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built(&wasm), dir.join(&wasm)).unwrap();
    let manifest = std::fs::read_to_string(source.join("plugin.toml")).unwrap();
    let manifest = edit(manifest);
    if let Ok(table) = toml::from_str::<toml::Table>(&manifest)
        && let Some(config) = table.get("config").and_then(toml::Value::as_table)
    {
        for file in config
            .values()
            .filter_map(|v| v.as_str()?.strip_prefix("@file:"))
        {
            let from = source.join(file);
            if from.is_file() {
                let to = dir.join(file);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(from, to).unwrap();
            }
        }
    }
    let path = dir.join("plugin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// A host with a temporary kv store and `secrets`.
pub fn host_with(secrets: Arc<dyn SecretStore>) -> (PluginHost, Arc<PluginKv>) {
    let kv = Arc::new(PluginKv::temporary().unwrap());
    let host = PluginHost::new(secrets, Some(kv.clone()), HostConfig::default()).unwrap();
    (host, kv)
}

/// A host with no secrets.
pub fn host() -> (PluginHost, Arc<PluginKv>) {
    host_with(Arc::new(MemorySecrets::new()))
}

/// A user's conversation on the web chat.
pub fn user(name: &str) -> ConversationKey {
    ConversationKey::new("web", name)
}

/// Calls `action` with `input` for `user`.
pub fn call_as(
    host: &PluginHost,
    user: &ConversationKey,
    action: &str,
    input: &serde_json::Value,
) -> Result<Invocation, PluginError> {
    host.invoke(
        action,
        &input.to_string(),
        &Call::new(
            Some(user.clone()),
            &format!("{}/{}:1:0", user.channel, user.user),
        ),
    )
}

/// Calls `action` with `input` for Ada.
pub fn call(
    host: &PluginHost,
    action: &str,
    input: &serde_json::Value,
) -> Result<Invocation, PluginError> {
    call_as(host, &user("ada"), action, input)
}

/// The output of a call, parsed.
pub fn output(invocation: &Invocation) -> serde_json::Value {
    serde_json::from_str(&invocation.output).unwrap()
}
