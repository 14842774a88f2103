//! Runs sandboxed Wasm component plugins (`plugins/wit`: worlds `action-plugin` and
//! `channel-plugin`) in wasmtime 48: compiled once and cached on disk (keyed by the component's
//! content and the engine's compatibility), linked once into an `InstancePre`, instantiated into
//! a fresh `Store` from the pooling allocator for every call (a channel's webhook parses reuse
//! an idle instance: `warm`), bounded in CPU (epoch
//! interruption), memory (a resource limiter), wall-clock time, input and output size and HTTP
//! requests. A plugin reaches the world only through the host capabilities its manifest
//! (`plugin.toml`) grants; WASI is linked with an empty context (no files, environment or
//! sockets).

mod bindings;
pub mod grants;
pub mod harness;
pub mod http;
pub mod manifest;
mod registry;
pub mod secrets;
mod sleep;
mod state;
mod warm;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use bindings::action::exports::influxify::plugin::action::{ActionInfo, ActionResult};
pub use bindings::channel::exports::influxify::plugin::channel as channel_types;
pub use bindings::types::CallContext;
pub use manifest::{Kind, Manifest, ManifestError};
pub use registry::{Call, Invocation, Plugin, Usage};
pub use secrets::{MemorySecrets, OauthToken, Secret, SecretError, SecretStore, ServiceAccount};

use state::PluginState;

/// How often the engine's epoch advances: the granularity of time limits.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);
/// The largest input a call accepts, in bytes.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// The largest output a call may return, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The largest component file loaded, in bytes.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// How many invocations may run at once (the pooling allocator's slots).
pub const MAX_CONCURRENT_CALLS: u32 = 128;

/// A plugin error, typed for the runtime (which retries only what may succeed later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin could not be loaded: a malformed manifest, an unreadable or invalid
    /// component, an import the host cannot satisfy.
    #[error("plugin `{plugin}` cannot be loaded: {reason}")]
    Load {
        /// The plugin (or the manifest's path).
        plugin: String,
        /// Why.
        reason: String,
    },
    /// No plugin of that name is loaded, or it has no such action.
    #[error("no plugin action `{0}` is installed")]
    Unknown(String),
    /// The call ran past its time budget and was stopped.
    #[error("plugin `{0}` ran out of time")]
    Timeout(String),
    /// The call tried to use more memory than granted and was stopped.
    #[error("plugin `{0}` ran out of memory")]
    OutOfMemory(String),
    /// The call returned more than [`MAX_OUTPUT_BYTES`].
    #[error("plugin `{plugin}` returned {bytes} bytes; at most {MAX_OUTPUT_BYTES} are accepted")]
    OutputTooLarge {
        /// The plugin.
        plugin: String,
        /// How much it returned.
        bytes: usize,
    },
    /// The plugin trapped or panicked (a bug in the plugin).
    #[error("plugin `{plugin}` crashed: {reason}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap.
        reason: String,
    },
    /// Every call slot is in use; try again shortly.
    #[error("too many plugin calls at once")]
    Busy,
    /// The input was refused (too large, or not what the action takes).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The plugin reported a failure worth retrying.
    #[error("{0}")]
    Retryable(String),
    /// The plugin reported a failure worth retrying after this many milliseconds (a
    /// provider's `Retry-After`).
    #[error("{0} (retry after {1} ms)")]
    RetryAfter(String, u64),
    /// The plugin reported a failure that retrying will not fix.
    #[error("{0}")]
    Permanent(String),
    /// The plugin is set up wrong (a missing grant, an invalid token): tell an operator.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
}

impl PluginError {
    /// The kind of failure, one word (`timeout`, `trap`, ...), for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Load { .. } => "load",
            PluginError::Unknown(_) => "unknown_action",
            PluginError::Timeout(_) => "timeout",
            PluginError::OutOfMemory(_) => "out_of_memory",
            PluginError::OutputTooLarge { .. } => "output_too_large",
            PluginError::Trap { .. } => "trap",
            PluginError::Busy => "busy",
            PluginError::InvalidInput(_) => "invalid_input",
            PluginError::Retryable(_) | PluginError::RetryAfter(..) => "retryable",
            PluginError::Permanent(_) => "permanent",
            PluginError::Misconfigured(_) => "misconfigured",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PluginError::Timeout(_)
                | PluginError::Busy
                | PluginError::Retryable(_)
                | PluginError::RetryAfter(..)
        )
    }

    /// How long the plugin asked to wait before a retry, when it said.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            PluginError::RetryAfter(_, ms) => Some(*ms),
            _ => None,
        }
    }
}

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached (absolute, or relative to the working directory).
    /// `None`: compile every load.
    pub cache_dir: Option<PathBuf>,
    /// Count instructions (wasmtime fuel) for the test harness; off in production.
    pub metering: bool,
    /// Settings that override plugins' `[config]` tables, by plugin name.
    pub config: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Answers outbound HTTP instead of the network (the test harness).
    pub responder: Option<Arc<dyn http::Responder>>,
    /// Actions that run only for users who consented to a purpose (on by default: AI
    /// processing for `openai.chat`). `None` turns the policy off.
    pub consent_gate: Option<ConsentGate>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            metering: false,
            config: std::collections::BTreeMap::new(),
            responder: None,
            consent_gate: Some(ConsentGate::default()),
        }
    }
}

/// An engine policy, not a flow's: the `actions` run only for an end user whose consent to
/// `purpose` the `consent` plugin reports as `granted`; otherwise the call answers the outcome
/// `denied` (the node's `denied` edge, or its `error` edge) without running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentGate {
    /// The gated actions (`plugin.action`).
    pub actions: Vec<String>,
    /// The purpose their users must have consented to.
    pub purpose: String,
}

impl Default for ConsentGate {
    fn default() -> Self {
        ConsentGate {
            actions: vec!["openai.chat".to_string()],
            purpose: "ai_processing".to_string(),
        }
    }
}

/// The wasmtime engine, linkers and loaded plugins.
pub struct PluginHost {
    engine: Engine,
    action_linker: Linker<PluginState>,
    channel_linker: Linker<PluginState>,
    ticking: Arc<AtomicBool>,
    outbound: Arc<http::Outbound>,
    kv: Option<Arc<influxify_store::PluginKv>>,
    config: HostConfig,
    plugins: registry::Loaded,
    /// One load at a time, so that two loads of one plugin cannot finish out of order.
    loading: std::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

fn setup_error(what: &str, err: impl std::fmt::Display) -> PluginError {
    PluginError::Load {
        plugin: format!("({what})"),
        reason: err.to_string(),
    }
}

impl PluginHost {
    /// A host injecting secrets from `secrets`, with plugin kv in `kv` (none: kv calls fail).
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        kv: Option<Arc<influxify_store::PluginKv>>,
        config: HostConfig,
    ) -> Result<Self, PluginError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        wasm.epoch_interruption(true);
        wasm.consume_fuel(config.metering);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_CONCURRENT_CALLS)
            .total_core_instances(MAX_CONCURRENT_CALLS * 4)
            .total_memories(MAX_CONCURRENT_CALLS * 2)
            .total_tables(MAX_CONCURRENT_CALLS * 4)
            .max_memory_size(manifest::MAX_MEMORY_MB as usize * 1024 * 1024)
            // Reset a used slot by rewriting only the pages the call dirtied (PAGEMAP_SCAN, Linux
            // 6.7+) instead of unmapping them: no page faults or TLB shootdowns on the next
            // call (measured: no-op call p50 9 µs instead of 21-27 µs).
            .linear_memory_keep_resident(8 * 1024 * 1024)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &config.cache_dir {
            let dir = std::path::absolute(dir).map_err(|err| setup_error("cache", err))?;
            std::fs::create_dir_all(&dir).map_err(|err| setup_error("cache", err))?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            wasm.cache(Some(
                wasmtime::Cache::new(cache).map_err(|err| setup_error("cache", err))?,
            ));
        }
        let engine = Engine::new(&wasm).map_err(|err| setup_error("engine", err))?;
        let mut action_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut action_linker)
            .map_err(|err| setup_error("wasi", err))?;
        bindings::action::ActionPlugin::add_to_linker::<_, HasSelf<PluginState>>(
            &mut action_linker,
            |state| state,
        )
        .map_err(|err| setup_error("host", err))?;
        sleep::bound_sleeps(&mut action_linker).map_err(|err| setup_error("wasi", err))?;
        let mut channel_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut channel_linker)
            .map_err(|err| setup_error("wasi", err))?;
        bindings::channel::ChannelPlugin::add_to_linker::<_, HasSelf<PluginState>>(
            &mut channel_linker,
            |state| state,
        )
        .map_err(|err| setup_error("host", err))?;
        sleep::bound_sleeps(&mut channel_linker).map_err(|err| setup_error("wasi", err))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let (ticker, alive) = (engine.weak(), ticking.clone());
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while alive.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|err| setup_error("epoch thread", err))?;
        let mut outbound = http::Outbound::new(secrets).map_err(|err| setup_error("http", err))?;
        if let Some(responder) = &config.responder {
            outbound = outbound.with_responder(responder.clone());
        }
        let outbound = Arc::new(outbound);
        Ok(PluginHost {
            engine,
            action_linker,
            channel_linker,
            ticking,
            outbound,
            kv,
            config,
            plugins: registry::Loaded::default(),
            loading: std::sync::Mutex::new(()),
        })
    }

    /// The core's view of the installed actions, for validating flows.
    pub fn catalog(&self) -> influxify_core::Catalog {
        let mut catalog = influxify_core::Catalog::default();
        for plugin in self.plugins() {
            for action in plugin.actions() {
                let input_schema = serde_json::from_str(&action.input_schema).ok();
                catalog.actions.insert(
                    format!("{}.{}", plugin.name(), action.name),
                    influxify_core::catalog::ActionInfo {
                        outcomes: action.outcomes.clone(),
                        description: action.description.clone(),
                        input_schema,
                    },
                );
            }
        }
        catalog
    }
}

/// Milliseconds since the Unix epoch: the engine's clock (which a test-mode server can move
/// forward), so that plugins see the same time as the flows.
pub(crate) fn now_ms() -> u64 {
    influxify_store::clock::now_ms()
}
