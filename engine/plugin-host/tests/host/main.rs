//! The plugin host with real components (`plugins/test-echo`, `plugins/test-hostile`,
//! `plugins/test-channel`, built for wasm32-wasip2 by the test itself), a real sled kv store and
//! real local HTTP servers.

mod capabilities;
mod channel;
mod harness;
mod hostile;
#[path = "../support/http.rs"]
mod http_server;
mod loading;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use influxify_plugin_host::{
    Call, HostConfig, Invocation, MemorySecrets, PluginError, PluginHost, SecretStore,
};
use influxify_store::{ConversationKey, PluginKv};

/// Builds the test plugins once (the plugins have their own workspace and target).
pub fn built(crate_file: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", "test-echo",
                "-p", "test-hostile", "-p", "test-channel",
            ])
            .current_dir(&plugins)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the test plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
        );
        plugins.join("target/wasm32-wasip2/release")
    });
    dir.join(crate_file)
}

/// Installs plugin `name` (`test-echo`, `test-hostile` or `test-channel`) into `plugins/<dir_name>/` with its
/// manifest edited by `edit`.
pub fn install(
    plugins: &Path,
    name: &str,
    dir_name: &str,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(name);
    let wasm = format!("{}.wasm", name.replace('-', "_"));
    let dir = plugins.join(dir_name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built(&wasm), dir.join(&wasm)).unwrap();
    let manifest = std::fs::read_to_string(source.join("plugin.toml")).unwrap();
    let path = dir.join("plugin.toml");
    std::fs::write(&path, edit(manifest)).unwrap();
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

/// Ada's conversation on the web chat.
pub fn ada() -> ConversationKey {
    ConversationKey::new("web", "ada")
}

/// Calls `action` for Ada.
pub fn call(host: &PluginHost, action: &str, input: &str) -> Result<Invocation, PluginError> {
    host.invoke(action, input, &Call::new(Some(ada()), "web/ada:1:0"))
}

/// Replaces `key = ...` under `[grants]` (or adds it).
pub fn grant(manifest: String, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = manifest.lines().map(str::to_string).collect();
    if let Some(line) = lines
        .iter_mut()
        .find(|l| l.starts_with(&format!("{key} =")))
    {
        *line = format!("{key} = {value}");
    } else if let Some(at) = lines.iter().position(|l| l.trim() == "[grants]") {
        lines.insert(at + 1, format!("{key} = {value}"));
    } else {
        lines.push("[grants]".into());
        lines.push(format!("{key} = {value}"));
    }
    lines.join("\n") + "\n"
}
