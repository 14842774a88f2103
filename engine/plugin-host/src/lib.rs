//! Runs Wasm component plugins (`plugins/wit`, world `action-plugin`) in wasmtime: compiled once,
//! instantiated from a cached `InstancePre` into a fresh `Store` per call, bounded in CPU (epoch
//! interruption), memory (store limits) and wall-clock time.
//!
//! Status: the first piece of the plugin host. Host capabilities are granted nothing yet: `http`,
//! `secrets`, `kv` and `crypto` answer "not granted" until manifests (`plugin.toml`) grant them;
//! `log` and `clock` work. WASI is linked with an empty context: no files, no environment, no
//! network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "action-plugin",
    path: "../../plugins/wit",
});

use exports::influxify::plugin::action::{ActionInfo, ActionResult};
use influxify::plugin::types::{CallContext, Error as GuestError};

/// How often the engine's epoch advances: the granularity of CPU limits.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A plugin error, typed for the runtime (which retries only `Retryable`).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component could not be compiled or linked (bad file, missing import).
    #[error("plugin `{plugin}` cannot be loaded: {reason}")]
    Load {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The call ran past its time budget and was stopped.
    #[error("plugin `{0}` ran out of time")]
    Timeout(String),
    /// The call tried to use more memory than allowed and was stopped.
    #[error("plugin `{0}` ran out of memory")]
    OutOfMemory(String),
    /// The plugin trapped (a bug in the plugin).
    #[error("plugin `{plugin}` crashed: {reason}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap.
        reason: String,
    },
    /// The plugin refused the input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The plugin reported a failure worth retrying.
    #[error("{0}")]
    Retryable(String),
    /// The plugin reported a failure that retrying will not fix.
    #[error("{0}")]
    Permanent(String),
    /// The plugin is set up wrong.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
}

/// Limits for one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory a call may grow to, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock (and CPU) time a call may take, instantiation included.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            time: Duration::from_secs(10),
        }
    }
}

/// What a plugin's store holds during one call.
pub struct PluginState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl influxify::plugin::types::Host for PluginState {}

impl influxify::plugin::log::Host for PluginState {
    fn log(&mut self, level: influxify::plugin::log::Level, message: String) {
        use influxify::plugin::log::Level;
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl influxify::plugin::clock::Host for PluginState {
    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl influxify::plugin::http::Host for PluginState {
    fn send(
        &mut self,
        request: influxify::plugin::http::Request,
    ) -> Result<influxify::plugin::http::Response, influxify::plugin::http::HttpError> {
        Err(influxify::plugin::http::HttpError::Denied(format!(
            "no outbound HTTP is granted to plugin `{}` ({})",
            self.plugin, request.url
        )))
    }
}

impl influxify::plugin::secrets::Host for PluginState {
    fn available(&mut self, _name: String) -> bool {
        false
    }
}

impl influxify::plugin::kv::Host for PluginState {
    fn get(
        &mut self,
        _: influxify::plugin::kv::Scope,
        _: String,
    ) -> Result<Option<Vec<u8>>, influxify::plugin::kv::KvError> {
        Err(influxify::plugin::kv::KvError::QuotaExceeded)
    }

    fn set(
        &mut self,
        _: influxify::plugin::kv::Scope,
        _: String,
        _: Vec<u8>,
    ) -> Result<(), influxify::plugin::kv::KvError> {
        Err(influxify::plugin::kv::KvError::QuotaExceeded)
    }

    fn delete(
        &mut self,
        _: influxify::plugin::kv::Scope,
        _: String,
    ) -> Result<(), influxify::plugin::kv::KvError> {
        Err(influxify::plugin::kv::KvError::QuotaExceeded)
    }
}

impl influxify::plugin::crypto::Host for PluginState {
    fn verify_hmac_sha256(
        &mut self,
        secret: String,
        _: Vec<u8>,
        _: Vec<u8>,
    ) -> Result<bool, influxify::plugin::crypto::CryptoError> {
        Err(influxify::plugin::crypto::CryptoError::Denied(format!(
            "secret `{secret}` is not granted"
        )))
    }

    fn hmac_sha256(
        &mut self,
        secret: String,
        _: Vec<u8>,
    ) -> Result<Vec<u8>, influxify::plugin::crypto::CryptoError> {
        Err(influxify::plugin::crypto::CryptoError::Denied(format!(
            "secret `{secret}` is not granted"
        )))
    }
}

/// The wasmtime engine and linker shared by every plugin, and the epoch ticker.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<PluginState>,
    ticking: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").finish_non_exhaustive()
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

/// A loaded plugin: compiled, linked, ready to instantiate per call.
pub struct Plugin {
    name: String,
    pre: ActionPluginPre<PluginState>,
    actions: Vec<ActionInfo>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The actions it provides.
    pub fn actions(&self) -> &[ActionInfo] {
        &self.actions
    }
}

fn load_error(plugin: &str, err: impl std::fmt::Display) -> PluginError {
    PluginError::Load {
        plugin: plugin.to_string(),
        reason: format!("{err:#}"),
    }
}

impl PluginHost {
    /// A host with the component model, epoch interruption and the pooling allocator.
    pub fn new() -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|err| load_error("(engine)", err))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|err| load_error("(wasi)", err))?;
        ActionPlugin::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |state| state)
            .map_err(|err| load_error("(host)", err))?;
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
            .map_err(|err| load_error("(epoch thread)", err))?;
        Ok(PluginHost {
            engine,
            linker,
            ticking,
        })
    }

    fn store(&self, plugin: &str, limits: Limits) -> Store<PluginState> {
        let state = PluginState {
            plugin: plugin.to_string(),
            // Nothing is granted: no arguments, environment, files, stdio or network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(4)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let ticks = (limits.time.as_millis() / EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store
    }

    /// Compiles and links a plugin from its component bytes and asks for its actions.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let component = Component::new(&self.engine, bytes).map_err(|err| load_error(name, err))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|err| load_error(name, err))?;
        let pre = ActionPluginPre::new(instance_pre).map_err(|err| load_error(name, err))?;
        let mut store = self.store(name, Limits::default());
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|err| load_error(name, err))?;
        let actions = bindings
            .influxify_plugin_action()
            .call_actions(&mut store)
            .map_err(|err| load_error(name, err))?;
        Ok(Plugin {
            name: name.to_string(),
            pre,
            actions,
        })
    }

    /// Calls `action` of `plugin` with `input` (JSON text) in a fresh store, within `limits`.
    pub fn invoke(
        &self,
        plugin: &Plugin,
        action: &str,
        input: &str,
        context: &CallContext,
        limits: Limits,
    ) -> Result<ActionResult, PluginError> {
        let started = Instant::now();
        let mut store = self.store(&plugin.name, limits);
        let result = plugin.pre.instantiate(&mut store).and_then(|bindings| {
            bindings
                .influxify_plugin_action()
                .call_invoke(&mut store, action, input, context)
        });
        match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(GuestError::InvalidInput(why))) => Err(PluginError::InvalidInput(why)),
            Ok(Err(GuestError::Retryable(why))) => Err(PluginError::Retryable(why)),
            Ok(Err(GuestError::Permanent(why))) => Err(PluginError::Permanent(why)),
            Ok(Err(GuestError::Misconfigured(why))) => Err(PluginError::Misconfigured(why)),
            Err(err) => {
                let trap = err.downcast_ref::<wasmtime::Trap>().copied();
                let error = match trap {
                    Some(wasmtime::Trap::Interrupt) => PluginError::Timeout(plugin.name.clone()),
                    _ if format!("{err:#}").contains("memory") => {
                        PluginError::OutOfMemory(plugin.name.clone())
                    }
                    _ => PluginError::Trap {
                        plugin: plugin.name.clone(),
                        reason: format!("{err:#}"),
                    },
                };
                tracing::warn!(plugin = %plugin.name, action, error = %error, elapsed = ?started.elapsed(), "plugin call stopped");
                Err(error)
            }
        }
    }
}

/// A call context for callers that have no conversation (tests, tools).
pub fn context(
    conversation: &str,
    user: &str,
    idempotency_key: &str,
    deadline_ms: u64,
) -> CallContext {
    CallContext {
        conversation_id: conversation.to_string(),
        user_id: user.to_string(),
        idempotency_key: idempotency_key.to_string(),
        deadline_ms,
    }
}
