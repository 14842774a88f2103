//! Loading plugins (from a manifest, a directory of them, or again when their files change) and
//! calling them. A reload swaps the new version in atomically: calls in flight finish on the old
//! one, which is dropped when the last of them ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use influxify_store::ConversationKey;
use sha2::Digest;
use wasmtime::Store;
use wasmtime::component::{Component, ResourceTable};
use wasmtime_wasi::WasiCtx;

use crate::bindings::action::{ActionPlugin, ActionPluginPre};
use crate::bindings::channel::exports::influxify::plugin::channel as wit_channel;
use crate::bindings::channel::{ChannelPlugin, ChannelPluginPre};
use crate::bindings::types::{CallContext, Error as GuestError};
use crate::grants::HttpGrants;
use crate::manifest::{Checked, Kind, Manifest};
use crate::state::{Grant, Meter, PluginState};
use crate::warm::{WarmChannel, WarmChannels};
use crate::{
    ActionInfo, EPOCH_TICK, MAX_COMPONENT_BYTES, MAX_INPUT_BYTES, MAX_OUTPUT_BYTES, PluginError,
    PluginHost,
};

/// The loaded plugins, by name.
#[derive(Debug, Default)]
pub(crate) struct Loaded(RwLock<BTreeMap<String, Arc<Plugin>>>);

/// What a plugin's component implements, linked and ready to instantiate.
enum World {
    Action {
        pre: ActionPluginPre<PluginState>,
        actions: Vec<ActionInfo>,
    },
    Channel {
        pre: ChannelPluginPre<PluginState>,
    },
}

/// A loaded plugin.
pub struct Plugin {
    checked: Checked,
    grant: Arc<Grant>,
    world: World,
    /// sha256 of the component, hex.
    hash: String,
    /// When the manifest and the component were last modified, for reloading.
    stamps: (Option<SystemTime>, Option<SystemTime>),
    /// The files `@file:` settings named, with when they were last modified, for reloading.
    config_files: Vec<(PathBuf, Option<SystemTime>)>,
    /// Idle instances of a channel plugin, for the next webhook parse.
    warm: WarmChannels,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("version", &self.checked.manifest.plugin.version)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.grant.name
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.checked.manifest
    }

    /// Where its manifest is.
    pub fn path(&self) -> &Path {
        &self.checked.path
    }

    /// The sha256 of its component, in hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The settings its `config` import answers: the manifest's `[config]` with the engine's
    /// overrides, `@file:` values replaced by the files' content.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.grant.config
    }

    /// Whether its manifest, its component or a file of its settings changed on disk since it
    /// was loaded.
    fn changed(&self) -> bool {
        (stamp(&self.checked.path), stamp(&self.checked.component)) != self.stamps
            || self
                .config_files
                .iter()
                .any(|(path, at)| stamp(path) != *at)
    }

    /// The actions it provides (none for a channel).
    pub fn actions(&self) -> &[ActionInfo] {
        match &self.world {
            World::Action { actions, .. } => actions,
            World::Channel { .. } => &[],
        }
    }

    fn time_budget(&self) -> Duration {
        Duration::from_millis(self.checked.manifest.grants.time_ms)
    }

    /// The budget of its own computing per call, when its manifest sets one.
    fn cpu_budget(&self) -> Option<Duration> {
        self.checked
            .manifest
            .grants
            .cpu_ms
            .map(Duration::from_millis)
    }

    /// Idle instances kept for webhook parses (a channel plugin's; see [`crate::warm`]).
    pub fn warm_instances(&self) -> usize {
        self.warm.idle()
    }
}

/// Who and what a call is for.
#[derive(Debug, Clone)]
pub struct Call {
    /// The conversation (its user scopes kv), if any.
    pub conversation: Option<ConversationKey>,
    /// The effect's idempotency key.
    pub idempotency_key: String,
    /// A deadline tighter than the plugin's own budget, if the caller has one.
    pub deadline: Option<Instant>,
}

impl Call {
    /// A call for `conversation` with `idempotency_key`.
    pub fn new(conversation: Option<ConversationKey>, idempotency_key: &str) -> Self {
        Call {
            conversation,
            idempotency_key: idempotency_key.to_string(),
            deadline: None,
        }
    }
}

/// How long a channel plugin may take to answer a handshake or parse a webhook, whatever its
/// manifest grants (its sends may take longer): webhook handlers run these calls inline.
pub const WEBHOOK_TIME: Duration = Duration::from_secs(1);

/// The bytes of text an inbound event's kind carries (the size a channel's output is held to).
fn kind_bytes(kind: &wit_channel::InboundKind) -> usize {
    use wit_channel::InboundKind;
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let referral =
        |r: &wit_channel::Referral| text(&r.reference) + text(&r.source) + text(&r.ad_id);
    match kind {
        InboundKind::Text(words) => words.len(),
        InboundKind::PersonReplied => 0,
        InboundKind::Referral(r) => referral(r),
        InboundKind::QuickReply((title, payload)) => title.len() + payload.len(),
        InboundKind::Postback(p) => {
            p.title.len() + p.payload.len() + p.referral.as_ref().map_or(0, referral)
        }
        InboundKind::Attachments((words, attachments)) => {
            text(words)
                + attachments
                    .iter()
                    .map(|a| {
                        a.kind.len() + text(&a.url) + text(&a.title) + text(&a.sticker_id) + 16
                    })
                    .sum::<usize>()
        }
    }
}

fn webhook_call() -> Call {
    Call {
        conversation: None,
        idempotency_key: String::new(),
        deadline: Some(Instant::now() + WEBHOOK_TIME),
    }
}

/// What a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Instructions (wasmtime fuel), when the host meters.
    pub fuel: Option<u64>,
    /// The most linear memory the call had, in bytes.
    pub peak_memory: usize,
    /// HTTP requests made.
    pub http_calls: u32,
    /// Wall-clock time, instantiation included.
    pub elapsed: Duration,
}

/// A successful action call.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `ok` or one of the action's outcomes.
    pub outcome: String,
    /// The output, JSON text.
    pub output: String,
    /// What it used.
    pub usage: Usage,
}

fn load_error(plugin: &str, reason: impl std::fmt::Display) -> PluginError {
    PluginError::Load {
        plugin: plugin.to_string(),
        reason: reason.to_string(),
    }
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl PluginHost {
    /// Loads (or reloads) the plugin whose manifest is at `manifest`; it replaces a loaded
    /// plugin of the same name atomically.
    pub fn load(&self, manifest: &Path) -> Result<Arc<Plugin>, PluginError> {
        let _one_load_at_a_time = self
            .loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let checked = Manifest::read(manifest)
            .map_err(|err| load_error(&manifest.display().to_string(), err))?;
        let name = checked.manifest.plugin.name.clone();
        let stamps = (stamp(&checked.path), stamp(&checked.component));
        let size = std::fs::metadata(&checked.component)
            .map_err(|err| {
                load_error(
                    &name,
                    format!("cannot read {}: {err}", checked.component.display()),
                )
            })?
            .len();
        if size > MAX_COMPONENT_BYTES {
            return Err(load_error(
                &name,
                format!("the component is {size} bytes; at most {MAX_COMPONENT_BYTES} are loaded"),
            ));
        }
        let bytes = std::fs::read(&checked.component).map_err(|err| {
            load_error(
                &name,
                format!("cannot read {}: {err}", checked.component.display()),
            )
        })?;
        let plugin = Arc::new(self.prepare(checked, &bytes, stamps)?);
        let mut plugins = self
            .plugins
            .0
            .write()
            .map_err(|_| load_error(&name, "the plugin table is poisoned"))?;
        let path = canonical(plugin.path());
        if let Some(other) = plugins.get(&name)
            && canonical(other.path()) != path
        {
            return Err(load_error(
                &name,
                format!(
                    "a plugin of that name is already loaded from {}",
                    other.path().display()
                ),
            ));
        }
        // A plugin renamed in its manifest replaces its old name.
        plugins.retain(|other_name, other| *other_name == name || canonical(other.path()) != path);
        plugins.insert(name.clone(), plugin.clone());
        drop(plugins);
        tracing::info!(plugin = %name, version = %plugin.manifest().plugin.version, hash = %&plugin.hash[..12], "plugin loaded");
        Ok(plugin)
    }

    /// Compiles (or fetches from the cache) and links a component, and for an action plugin
    /// asks for its actions.
    fn prepare(
        &self,
        checked: Checked,
        bytes: &[u8],
        stamps: (Option<SystemTime>, Option<SystemTime>),
    ) -> Result<Plugin, PluginError> {
        let name = checked.manifest.plugin.name.clone();
        let hash = hex(&sha2::Sha256::digest(bytes));
        let component = Component::new(&self.engine, bytes).map_err(|err| {
            load_error(
                &name,
                format!(
                    "{} is not a valid component: {err}",
                    checked.component.display()
                ),
            )
        })?;
        let grants = &checked.manifest.grants;
        let http = self
            .outbound
            .plugin(
                &name,
                HttpGrants::new(checked.origins.clone()),
                checked.secret_origins.clone(),
                grants.response_bytes,
            )
            .map_err(|err| load_error(&name, err))?;
        let (config, config_files) = checked
            .config(self.config.config.get(&name))
            .map_err(|err| load_error(&name, err))?;
        let grant = Arc::new(Grant {
            name: name.clone(),
            http,
            http_calls: grants.http_calls,
            kv_bytes: grants.kv_bytes,
            config,
            memory_bytes: grants.memory_mb as usize * 1024 * 1024,
        });
        let unsatisfied = |err: wasmtime::Error| {
            load_error(
                &name,
                format!(
                    "its imports cannot be satisfied by the {} world of influxify:plugin@0.1.0: {err}",
                    match checked.manifest.plugin.kind {
                        Kind::Action => "action-plugin",
                        Kind::Channel => "channel-plugin",
                    }
                ),
            )
        };
        let world = match checked.manifest.plugin.kind {
            Kind::Action => {
                let pre = self
                    .action_linker
                    .instantiate_pre(&component)
                    .map_err(unsatisfied)?;
                let pre = ActionPluginPre::new(pre).map_err(unsatisfied)?;
                let mut store =
                    self.store(&grant, None, Instant::now() + Duration::from_secs(10), None);
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|err| load_error(&name, format!("cannot start: {err}")))?;
                let actions = bindings
                    .influxify_plugin_action()
                    .call_actions(&mut store)
                    .map_err(|err| load_error(&name, format!("cannot list its actions: {err}")))?;
                let declared = &checked.manifest.plugin.actions;
                let mut provided: Vec<&str> = actions.iter().map(|a| a.name.as_str()).collect();
                provided.sort_unstable();
                let mut listed: Vec<&str> = declared.iter().map(String::as_str).collect();
                listed.sort_unstable();
                if !declared.is_empty() && provided != listed {
                    return Err(load_error(
                        &name,
                        format!(
                            "plugin.toml declares the actions [{}], but the component provides [{}]",
                            listed.join(", "),
                            provided.join(", ")
                        ),
                    ));
                }
                for action in &actions {
                    if serde_json::from_str::<serde_json::Value>(&action.input_schema).is_err() {
                        return Err(load_error(
                            &name,
                            format!(
                                "action `{}` has an input schema that is not JSON",
                                action.name
                            ),
                        ));
                    }
                }
                World::Action { pre, actions }
            }
            Kind::Channel => {
                let pre = self
                    .channel_linker
                    .instantiate_pre(&component)
                    .map_err(unsatisfied)?;
                World::Channel {
                    pre: ChannelPluginPre::new(pre).map_err(unsatisfied)?,
                }
            }
        };
        Ok(Plugin {
            checked,
            grant,
            world,
            hash,
            stamps,
            config_files,
            warm: WarmChannels::default(),
        })
    }

    /// Loads every plugin under `dir`: each `plugin.toml` in it or one level down. One that
    /// cannot be loaded is reported and skipped; the others load.
    pub fn load_dir(&self, dir: &Path) -> Vec<Result<Arc<Plugin>, PluginError>> {
        manifests_in(dir)
            .into_iter()
            .map(|path| {
                self.load(&path).inspect_err(|err| {
                    tracing::error!(path = %path.display(), error = %err, "plugin refused");
                })
            })
            .collect()
    }

    /// Reloads the plugins whose manifest, component or `@file:` settings changed on disk, and
    /// loads manifests that appeared under `dir`; returns what was (re)loaded or refused. A
    /// plugin that fails to reload keeps its running version.
    pub fn reload_changed(&self, dir: Option<&Path>) -> Vec<Result<Arc<Plugin>, PluginError>> {
        // A plugin whose manifest is gone is unloaded (calls in flight finish).
        if let Ok(mut plugins) = self.plugins.0.write() {
            plugins.retain(|name, plugin| {
                let present = plugin.path().is_file();
                if !present {
                    tracing::info!(plugin = %name, "plugin unloaded: its manifest is gone");
                }
                present
            });
        }
        let mut paths: Vec<PathBuf> = self
            .plugins()
            .into_iter()
            .filter(|p| p.changed())
            .map(|p| p.checked.path.clone())
            .collect();
        if let Some(dir) = dir {
            let known: Vec<PathBuf> = self
                .plugins()
                .iter()
                .map(|p| p.checked.path.clone())
                .collect();
            paths.extend(manifests_in(dir).into_iter().filter(|p| !known.contains(p)));
        }
        paths.into_iter().map(|path| self.load(&path)).collect()
    }

    /// Reloads loaded plugins whenever their files change, and loads manifests that appear
    /// under `dir` (if given), checking every `every`, until the host is dropped.
    pub fn watch(self: &Arc<Self>, dir: Option<PathBuf>, every: Duration) {
        let host = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(host) = host.upgrade() else { return };
                    for result in host.reload_changed(dir.as_deref()) {
                        if let Err(err) = result {
                            tracing::error!(error = %err, "plugin reload refused; the running version stays");
                        }
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot watch the plugins directory");
        }
    }

    /// The loaded plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins.0.read().ok()?.get(name).cloned()
    }

    /// Every loaded plugin, by name.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.plugins
            .0
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The names of the loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.plugins()
            .iter()
            .map(|p| p.name().to_string())
            .collect()
    }

    /// A fresh store for one call of a plugin, ready for it (see [`begin_call`]).
    fn store(
        &self,
        grant: &Arc<Grant>,
        user: Option<ConversationKey>,
        deadline: Instant,
        cpu: Option<Duration>,
    ) -> Store<PluginState> {
        let clock = crate::sleep::CallClock {
            start: Instant::now(),
        };
        let state = PluginState {
            grant: grant.clone(),
            outbound: self.outbound.clone(),
            kv: self.kv.clone(),
            user,
            deadline,
            clock,
            started: clock.start,
            cpu_budget: None,
            host_time: Duration::ZERO,
            timed_out: false,
            http_calls: 0,
            log_lines: 0,
            // Nothing is granted: no arguments, environment, files, stdio or network.
            wasi: WasiCtx::builder().monotonic_clock(clock).build(),
            table: ResourceTable::new(),
            meter: Meter {
                limit: grant.memory_bytes,
                ..Meter::default()
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.meter);
        store.epoch_deadline_callback(check_time);
        begin_call(&mut store, deadline, cpu, self.config.metering);
        store
    }

    fn call_setup(
        &self,
        qualified: &str,
        call: &Call,
    ) -> Result<(Arc<Plugin>, Store<PluginState>, CallContext, Instant), PluginError> {
        let plugin_name = qualified.split('.').next().unwrap_or(qualified);
        let plugin = self
            .plugin(plugin_name)
            .ok_or_else(|| PluginError::Unknown(qualified.to_string()))?;
        let started = Instant::now();
        let mut deadline = started + plugin.time_budget();
        let cpu = plugin.cpu_budget();
        if let Some(caller) = call.deadline {
            deadline = deadline.min(caller);
        }
        let deadline_ms = crate::now_ms()
            + u64::try_from(deadline.saturating_duration_since(started).as_millis()).unwrap_or(0);
        let context = CallContext {
            conversation_id: call
                .conversation
                .as_ref()
                .map(|c| format!("{}/{}", c.channel, c.user))
                .unwrap_or_default(),
            user_id: call
                .conversation
                .as_ref()
                .map(|c| c.user.clone())
                .unwrap_or_default(),
            idempotency_key: call.idempotency_key.clone(),
            deadline_ms,
        };
        let store = self.store(&plugin.grant, call.conversation.clone(), deadline, cpu);
        Ok((plugin, store, context, started))
    }

    /// Calls `action` (`plugin.action`) with `input` (JSON text). Runs on the calling thread:
    /// from async code, call it inside `spawn_blocking`.
    pub fn invoke(
        &self,
        action: &str,
        input: &str,
        call: &Call,
    ) -> Result<Invocation, PluginError> {
        self.invoke_metered(action, input, call).0
    }

    /// [`PluginHost::invoke`], with what the call used whether it succeeded or not (the
    /// harness reports the instructions and memory of a call that was stopped too).
    pub fn invoke_metered(
        &self,
        action: &str,
        input: &str,
        call: &Call,
    ) -> (Result<Invocation, PluginError>, Usage) {
        let mut used = Usage::default();
        let result = self.invoke_into(action, input, call, &mut used);
        (result, used)
    }

    fn invoke_into(
        &self,
        action: &str,
        input: &str,
        call: &Call,
        used: &mut Usage,
    ) -> Result<Invocation, PluginError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(PluginError::InvalidInput(format!(
                "the input is {} bytes; at most {MAX_INPUT_BYTES} are accepted",
                input.len()
            )));
        }
        if let Some(gate) = &self.config.consent_gate
            && gate.actions.iter().any(|gated| gated == action)
            && let Some(refusal) = self.consent_refusal(gate, call)
        {
            tracing::info!(call = action, purpose = %gate.purpose, "plugin call refused: no consent");
            return Ok(Invocation {
                outcome: "denied".to_string(),
                output: refusal.to_string(),
                usage: Usage::default(),
            });
        }
        let (plugin, mut store, context, started) = self.call_setup(action, call)?;
        let World::Action { pre, actions } = &plugin.world else {
            return Err(PluginError::Unknown(action.to_string()));
        };
        let local = action
            .strip_prefix(plugin.name())
            .and_then(|a| a.strip_prefix('.'))
            .unwrap_or_default();
        if !actions.iter().any(|a| a.name == local) {
            return Err(PluginError::Unknown(action.to_string()));
        }
        let result = pre
            .instantiate(&mut store)
            .and_then(|bindings: ActionPlugin| {
                bindings
                    .influxify_plugin_action()
                    .call_invoke(&mut store, local, input, &context)
            });
        let usage = usage(&store, started);
        *used = usage;
        match result {
            Ok(Ok(result)) => {
                if result.output.len() + result.outcome.len() > MAX_OUTPUT_BYTES {
                    return Err(stopped(
                        &plugin,
                        action,
                        PluginError::OutputTooLarge {
                            plugin: plugin.name().to_string(),
                            bytes: result.output.len() + result.outcome.len(),
                        },
                    ));
                }
                let declared = actions
                    .iter()
                    .find(|a| a.name == local)
                    .is_some_and(|a| a.outcomes.contains(&result.outcome));
                if result.outcome != "ok" && !declared {
                    return Err(stopped(
                        &plugin,
                        action,
                        PluginError::Permanent(format!(
                            "plugin `{}` answered with outcome `{}`, which action `{local}` does not declare",
                            plugin.name(),
                            truncate(&result.outcome, 64)
                        )),
                    ));
                }
                if serde_json::from_str::<serde::de::IgnoredAny>(&result.output).is_err() {
                    return Err(stopped(
                        &plugin,
                        action,
                        PluginError::Permanent(format!(
                            "plugin `{}` answered with an output that is not JSON",
                            plugin.name()
                        )),
                    ));
                }
                Ok(Invocation {
                    outcome: result.outcome,
                    output: result.output,
                    usage,
                })
            }
            Ok(Err(error)) => Err(reported(&plugin, action, guest_error(error))),
            Err(err) => Err(stopped(&plugin, action, classify(&plugin, &store, err))),
        }
    }

    /// Why `call`'s user may not have a gated action run, if they may not: no end user, no
    /// `consent` plugin, or a consent that is not `granted`. Fails closed.
    fn consent_refusal(&self, gate: &crate::ConsentGate, call: &Call) -> Option<serde_json::Value> {
        let refused = |status: &str| {
            Some(
                serde_json::json!({"denied": "consent", "purpose": gate.purpose, "status": status}),
            )
        };
        if call.conversation.is_none() {
            return refused("no end user");
        }
        let input = serde_json::json!({"purpose": gate.purpose}).to_string();
        let mut used = Usage::default();
        match self.invoke_into("consent.check", &input, call, &mut used) {
            Ok(answer) if answer.outcome == "granted" => None,
            Ok(answer) => refused(&answer.outcome),
            Err(err) => {
                tracing::warn!(error = %err, "consent could not be checked; the gated call is refused");
                refused("unknown")
            }
        }
    }

    /// Asks a channel plugin whether `request` is a handshake, and its answer.
    pub fn channel_verify(
        &self,
        channel: &str,
        request: &wit_channel::HttpRequest,
    ) -> Result<Option<wit_channel::HttpReply>, PluginError> {
        self.with_channel(channel, &webhook_call(), |bindings, store, _| {
            bindings
                .influxify_plugin_channel()
                .call_verify(store, request)
        })
    }

    /// Has a channel plugin check and parse a webhook request into events.
    pub fn channel_parse(
        &self,
        channel: &str,
        request: &wit_channel::HttpRequest,
    ) -> Result<Vec<wit_channel::InboundEvent>, PluginError> {
        if request.body.len() > MAX_INPUT_BYTES {
            return Err(PluginError::InvalidInput(format!(
                "the request body is {} bytes; at most {MAX_INPUT_BYTES} are accepted",
                request.body.len()
            )));
        }
        let events = self.parse_warm(channel, request)?;
        let size: usize = events
            .iter()
            .map(|e| e.user_id.len() + e.event_id.len() + kind_bytes(&e.kind))
            .sum();
        if size > MAX_OUTPUT_BYTES {
            return Err(PluginError::OutputTooLarge {
                plugin: channel.to_string(),
                bytes: size,
            });
        }
        Ok(events)
    }

    /// Runs a channel's `parse` on an idle instance of it, or a fresh one (see [`crate::warm`]).
    fn parse_warm(
        &self,
        channel: &str,
        request: &wit_channel::HttpRequest,
    ) -> Result<Vec<wit_channel::InboundEvent>, PluginError> {
        let unknown = || PluginError::Unknown(format!("channel {channel}"));
        let plugin = match channel.contains('.') {
            true => None,
            false => self.plugin(channel),
        }
        .ok_or_else(unknown)?;
        let World::Channel { pre } = &plugin.world else {
            return Err(unknown());
        };
        let deadline = Instant::now() + plugin.time_budget().min(WEBHOOK_TIME);
        let cpu = plugin.cpu_budget();
        let mut instance = match plugin.warm.take() {
            Some(mut instance) => {
                begin_call(&mut instance.store, deadline, cpu, self.config.metering);
                instance
            }
            None => {
                let mut store = self.store(&plugin.grant, None, deadline, cpu);
                match pre.instantiate(&mut store) {
                    Ok(bindings) => WarmChannel {
                        store,
                        bindings,
                        calls: 0,
                    },
                    Err(err) => {
                        return Err(stopped(&plugin, channel, classify(&plugin, &store, err)));
                    }
                }
            }
        };
        let parsed = instance
            .bindings
            .influxify_plugin_channel()
            .call_parse(&mut instance.store, request);
        match parsed {
            Ok(answer) => {
                plugin.warm.keep(instance);
                answer.map_err(guest_error)
            }
            // The instance is dropped: after a trap or an interruption its state is unknown.
            Err(err) => Err(stopped(
                &plugin,
                channel,
                classify(&plugin, &instance.store, err),
            )),
        }
    }

    /// Has a channel plugin deliver one message.
    pub fn channel_send(
        &self,
        channel: &str,
        message: &wit_channel::OutboundMessage,
        call: &Call,
    ) -> Result<wit_channel::Delivery, PluginError> {
        let sent = self
            .with_channel(channel, call, |bindings, store, context| {
                bindings
                    .influxify_plugin_channel()
                    .call_send(store, message, context)
            })?
            .map_err(guest_error);
        // The plugin is looked up again only to report a failure.
        sent.map_err(|err| match self.plugin(channel) {
            Some(plugin) => reported(&plugin, "send", err),
            None => err,
        })
    }

    /// Has a channel plugin show a sender action (a typing indicator, a seen mark).
    pub fn channel_act(
        &self,
        channel: &str,
        user: &str,
        account: Option<&str>,
        action: wit_channel::SenderAction,
        call: &Call,
    ) -> Result<(), PluginError> {
        self.with_channel(channel, call, |bindings, store, context| {
            bindings
                .influxify_plugin_channel()
                .call_act(store, user, account, action, context)
        })?
        .map_err(guest_error)
    }

    /// Asks a channel plugin for the fields of a user's profile; a JSON object of those it has.
    pub fn channel_profile(
        &self,
        channel: &str,
        user: &str,
        account: Option<&str>,
        fields: &[String],
        call: &Call,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> {
        let answer = self
            .with_channel(channel, call, |bindings, store, context| {
                bindings
                    .influxify_plugin_channel()
                    .call_profile(store, user, account, fields, context)
            })?
            .map_err(guest_error)?;
        if answer.len() > MAX_OUTPUT_BYTES {
            return Err(PluginError::OutputTooLarge {
                plugin: channel.to_string(),
                bytes: answer.len(),
            });
        }
        match serde_json::from_str(&answer) {
            Ok(serde_json::Value::Object(profile)) => Ok(profile),
            _ => Err(PluginError::Permanent(format!(
                "channel `{channel}` answered a profile that is not a JSON object"
            ))),
        }
    }

    fn with_channel<T>(
        &self,
        channel: &str,
        call: &Call,
        run: impl FnOnce(&ChannelPlugin, &mut Store<PluginState>, &CallContext) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        if channel.contains('.') {
            return Err(PluginError::Unknown(format!("channel {channel}")));
        }
        let (plugin, mut store, context, _) = self.call_setup(channel, call)?;
        let World::Channel { pre } = &plugin.world else {
            return Err(PluginError::Unknown(format!("channel {channel}")));
        };
        let result = pre
            .instantiate(&mut store)
            .and_then(|bindings| run(&bindings, &mut store, &context));
        result.map_err(|err| stopped(&plugin, channel, classify(&plugin, &store, err)))
    }
}

/// Called when a call's epoch deadline passes: ends the call if its wall-clock deadline or its
/// computing budget (wall time minus time waiting in host HTTP calls) is used up, else lets it
/// run until the nearer of the two.
fn check_time(
    mut store: wasmtime::StoreContextMut<'_, PluginState>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    let state = store.data_mut();
    let now = Instant::now();
    let computing = now
        .saturating_duration_since(state.started)
        .saturating_sub(state.host_time);
    let cpu_left = state
        .cpu_budget
        .map(|budget| budget.saturating_sub(computing));
    if now >= state.deadline || cpu_left.is_some_and(|left| left.is_zero()) {
        state.timed_out = true;
        return Err(wasmtime::format_err!("the call's time budget is used up"));
    }
    let mut until = state.deadline;
    if let Some(left) = cpu_left {
        until = until.min(now + left);
    }
    let ticks = until.saturating_duration_since(now).as_micros() / EPOCH_TICK.as_micros();
    Ok(wasmtime::UpdateDeadline::Continue(
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
    ))
}

/// `path` made absolute and resolved, for comparing manifests.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Starts a call on `store` (fresh, or a warm instance's): it must end by `deadline`, with at
/// most `cpu` of its own computing; its counters, fuel and interruption flags start again.
fn begin_call(
    store: &mut Store<PluginState>,
    deadline: Instant,
    cpu: Option<Duration>,
    metering: bool,
) {
    let now = Instant::now();
    let state = store.data_mut();
    state.started = now;
    state.deadline = deadline;
    state.cpu_budget = cpu;
    state.host_time = Duration::ZERO;
    state.timed_out = false;
    state.http_calls = 0;
    state.log_lines = 0;
    state.meter.exceeded = false;
    set_epoch_budget(store, cpu.map_or(deadline, |cpu| (now + cpu).min(deadline)));
    if metering {
        let _ = store.set_fuel(u64::MAX / 2);
    }
}

/// Interrupts the store's code once `until` has passed (to the epoch's granularity).
fn set_epoch_budget(store: &mut Store<PluginState>, until: Instant) {
    let ticks =
        until.saturating_duration_since(Instant::now()).as_micros() / EPOCH_TICK.as_micros();
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
}

/// The manifests in `dir` or one level down, sorted.
fn manifests_in(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let direct = dir.join("plugin.toml");
    if direct.is_file() {
        found.push(direct);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path().join("plugin.toml");
            if path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn usage(store: &Store<PluginState>, started: Instant) -> crate::Usage {
    let fuel = store.get_fuel().ok().map(|left| u64::MAX / 2 - left);
    let state = store.data();
    crate::Usage {
        fuel,
        peak_memory: state.meter.peak,
        http_calls: state.http_calls,
        elapsed: started.elapsed(),
    }
}

/// The longest guest error message kept.
const MAX_ERROR_CHARS: usize = 2000;

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect::<String>() + "…"
    }
}

fn guest_error(error: GuestError) -> PluginError {
    let cut = |why: String| truncate(&why, MAX_ERROR_CHARS);
    match error {
        GuestError::InvalidInput(why) => PluginError::InvalidInput(cut(why)),
        GuestError::Retryable(why) => PluginError::Retryable(cut(why)),
        GuestError::RetryAfter((why, after_ms)) => PluginError::RetryAfter(cut(why), after_ms),
        GuestError::Permanent(why) => PluginError::Permanent(cut(why)),
        GuestError::Misconfigured(why) => PluginError::Misconfigured(cut(why)),
    }
}

/// A plugin that says it is set up wrong is reported loudly, for operators.
fn reported(plugin: &Plugin, what: &str, error: PluginError) -> PluginError {
    if let PluginError::Misconfigured(why) = &error {
        tracing::error!(plugin = %plugin.name(), call = what, why, "plugin is misconfigured");
    }
    error
}

/// What stopped a call that trapped.
fn classify(plugin: &Plugin, store: &Store<PluginState>, err: wasmtime::Error) -> PluginError {
    let name = plugin.name().to_string();
    if store.data().meter.exceeded {
        return PluginError::OutOfMemory(name);
    }
    if store.data().timed_out {
        return PluginError::Timeout(name);
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt | wasmtime::Trap::OutOfFuel) => PluginError::Timeout(name),
        _ if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some() =>
        {
            PluginError::Busy
        }
        _ => PluginError::Trap {
            plugin: name,
            reason: format!("{err:#}"),
        },
    }
}

/// Logs a call the host stopped, with the plugin's name.
fn stopped(plugin: &Plugin, what: &str, error: PluginError) -> PluginError {
    tracing::warn!(plugin = %plugin.name(), call = what, error = %error, "plugin call stopped");
    error
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
