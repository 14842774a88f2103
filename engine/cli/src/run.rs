//! `influxify run`: the durable runtime on the sled store, fed JSON lines on standard input and
//! reporting acknowledgements and effects as JSON lines on standard output. For scripting, for
//! replaying traffic, and for the crash test; `influxify serve` is the HTTP front of the same
//! runtime.
//!
//! Input, one event per line: `{"user": "u1", "id": "mid.1", "text": "hi"}` (optional:
//! `"payload"`, `"timestamp"` in ms, `"channel"`). Output: `{"ack": "mid.1", "new": true}` once
//! the event is durable, and `{"send": {...}}` / `{"notify": {...}}` for effects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use influxify_core::Event;
use influxify_core::conversation::{Effect, Outbound, UserMessage};
use influxify_plugin_host::{HostConfig, MemorySecrets, PluginHost};
use influxify_runtime::{BoxFuture, Config, EffectError, EffectHandler, MigrationPolicy, Runtime};
use influxify_server::ChannelEffects;
use influxify_store::{
    ConversationKey, DEFAULT_CACHE_BYTES, Inbound, Ingested, PluginKv, SledStore, Store,
};
use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

#[derive(Deserialize)]
struct Line {
    user: String,
    id: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default = "default_channel")]
    channel: String,
}

/// The most events ingested (and acknowledged) together.
const MAX_BATCH: usize = 256;

fn default_channel() -> String {
    "stdin".to_string()
}

/// Writes messages and notifications as JSON lines; plugin calls go through the plugin host (as
/// `influxify serve` makes them), if any.
#[derive(Debug)]
struct Printer {
    out: Mutex<std::io::Stdout>,
    plugins: Option<ChannelEffects>,
}

/// A plugin host with the plugins of `dir` (a directory of plugins, or one `plugin.toml`; a
/// refused plugin is reported, the others load) and secrets from `INFLUXIFY_SECRET_<NAME>`
/// variables.
pub fn load_plugins(
    dir: &Path,
    kv: Option<Arc<PluginKv>>,
    cache: Option<PathBuf>,
) -> anyhow::Result<Arc<PluginHost>> {
    if !dir.exists() {
        anyhow::bail!("the plugins directory {} does not exist", dir.display());
    }
    let host = PluginHost::new(
        Arc::new(MemorySecrets::from_env()?),
        kv,
        HostConfig {
            // Compiled code is loaded as native code: its cache belongs to the operator (the
            // data directory), never beside the plugins' own files.
            cache_dir: cache,
            ..HostConfig::default()
        },
    )?;
    let loaded = if dir.is_dir() {
        host.load_dir(dir)
    } else {
        vec![host.load(dir)]
    };
    for result in loaded {
        if let Err(err) = result {
            eprintln!("warning: {err}");
        }
    }
    Ok(Arc::new(host))
}

impl Printer {
    fn print(&self, value: serde_json::Value) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }
}

impl EffectHandler for Printer {
    fn send<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        message: &'a Outbound,
        key: &'a str,
        _reach: influxify_runtime::Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            self.print(serde_json::json!({"send": {"user": conversation.user, "message": message, "key": key}}));
            Ok(())
        })
    }

    fn call<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        action: &'a str,
        input: &'a serde_json::Value,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(String, serde_json::Value), EffectError>> {
        Box::pin(async move {
            match &self.plugins {
                Some(plugins) => plugins.call(conversation, action, input, key).await,
                None => Err(EffectError::permanent(format!(
                    "no plugins directory was given (--plugins): cannot call {action}"
                ))),
            }
        })
    }

    fn notify<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        effect: &'a Effect,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            self.print(serde_json::json!({"notify": {"user": conversation.user, "effect": effect, "key": key}}));
            Ok(())
        })
    }
}

pub fn run(
    data: &Path,
    flows: &Path,
    entry: &str,
    plugins: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(serve_stdin(data, flows, entry, plugins))
}

/// The flow files of the bot in `flows`, as (file name, text).
pub fn read_flows(flows: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let files = influxify_designer::project::flows_in(flows)?;
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        sources.push((
            file.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            text,
        ));
    }
    Ok(sources)
}

/// The plugins of `dir` on the store's kv, reloaded when their files change, and the catalog
/// validation knows (the built-in actions and theirs).
pub fn open_plugins(
    dir: &Path,
    sled: &SledStore,
    data: &Path,
) -> anyhow::Result<(Arc<PluginHost>, influxify_core::Catalog)> {
    let host = load_plugins(
        dir,
        Some(Arc::new(PluginKv::open(sled.db())?)),
        Some(data.join("plugin-cache")),
    )?;
    let new_ones = dir.is_dir().then(|| dir.to_path_buf());
    host.watch(new_ones, std::time::Duration::from_secs(2));
    let mut catalog = influxify_core::Catalog::builtin();
    catalog.actions.extend(host.catalog().actions);
    Ok((host, catalog))
}

async fn serve_stdin(
    data: &Path,
    flows: &Path,
    entry: &str,
    plugins: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let sources = read_flows(flows)?;
    let sled = SledStore::open(data, DEFAULT_CACHE_BYTES)?;
    let mut config = Config::new("default", entry);
    let host = match plugins {
        Some(dir) => {
            let (host, catalog) = open_plugins(dir, &sled, data)?;
            config.catalog = Some(catalog);
            Some(host)
        }
        None => None,
    };
    let store: Arc<dyn Store> = Arc::new(sled);
    let printer = Arc::new(Printer {
        out: Mutex::new(std::io::stdout()),
        plugins: host.map(ChannelEffects::new).transpose()?,
    });
    let runtime = Runtime::start(store, printer.clone(), config).await?;
    runtime
        .publish(sources, Some(MigrationPolicy::Keep))
        .await?;

    // Lines are ingested in the order they arrive, in batches of what is already waiting:
    // one flush acknowledges a whole batch.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4096);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        for line in batch {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(&line) {
                Ok(parsed) => {
                    let inbound = Inbound::new(
                        ConversationKey::new(parsed.channel, parsed.user),
                        parsed.id,
                        parsed
                            .timestamp
                            .unwrap_or_else(influxify_runtime::clock::now_ms),
                        Event::User(UserMessage {
                            text: parsed.text,
                            payload: parsed.payload,
                            ..UserMessage::default()
                        }),
                    );
                    // A line's own timestamp comes back with it when it is sent again.
                    events.push(match parsed.timestamp {
                        Some(_) => inbound.with_provider_time(),
                        None => inbound,
                    });
                }
                Err(err) => printer.print(
                    serde_json::json!({"error": format!("not an event: {err}"), "line": line}),
                ),
            }
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        match runtime.ingest(events).await {
            Ok(results) => {
                for (id, result) in ids.iter().zip(results) {
                    printer.print(
                        serde_json::json!({"ack": id, "new": matches!(result, Ingested::New(_))}),
                    );
                }
            }
            Err(err) => printer.print(serde_json::json!({"error": err.to_string(), "ids": ids})),
        }
    }
    runtime.quiesce().await;
    Ok(ExitCode::SUCCESS)
}
