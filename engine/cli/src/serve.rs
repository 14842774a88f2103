//! `influxify serve`: the engine over HTTP, set up from `influxify.toml` (defaults that work on
//! a fresh machine; command-line flags override the file, environment variables the flags'
//! defaults). Stops gracefully on Ctrl-C or SIGTERM: no new requests, turns in flight finish,
//! everything flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use influxify_plugin_host::{ConsentGate, HostConfig, MemorySecrets, PluginHost};
use influxify_runtime::{Config, EffectHandler, MigrationPolicy, Runtime};
use influxify_server::admin::Admin;
use influxify_server::audit::AuditLog;
use influxify_server::config::{LogFormat, Settings, Stranded};
use influxify_server::metrics::Metrics;
use influxify_server::privacy::{self, Privacy};
use influxify_server::secrets::{KeySource, MASTER_KEY_VAR, MasterKey, SealedSecrets};
use influxify_server::testing::{TESTING_VAR, Testing};
use influxify_server::transcripts::Transcripts;
use influxify_server::{AppState, ChannelEffects, WebChat};
use influxify_store::{PluginKv, SledStore, Store};

use crate::run::read_flows;

/// What the command line says, over the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub flows: Option<PathBuf>,
    pub entry: Option<String>,
    pub plugins: Option<PathBuf>,
}

/// The settings: `influxify.toml` (the one named, or the one in the working directory if any),
/// then the environment, then the flags.
pub fn settings(overrides: Overrides) -> anyhow::Result<Settings> {
    let file = overrides.config.clone().or_else(|| {
        let here = PathBuf::from("influxify.toml");
        here.is_file().then_some(here)
    });
    let mut settings = match &file {
        Some(path) => Settings::read(path)?,
        None => Settings::default(),
    };
    settings.apply_env(|name| std::env::var(name).ok())?;
    if let Some(addr) = overrides.addr {
        settings.server.addr = addr;
    }
    if let Some(data) = overrides.data {
        settings.store.data = data;
    }
    if let Some(flows) = overrides.flows {
        settings.bot.flows = flows;
    }
    if let Some(entry) = overrides.entry {
        settings.bot.entry = Some(entry);
    }
    if let Some(plugins) = overrides.plugins {
        settings.plugins.dir = plugins;
    }
    Ok(settings)
}

pub fn run(overrides: Overrides) -> anyhow::Result<ExitCode> {
    let settings = settings(overrides)?;
    init_logs(&settings);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(serve(settings))
}

fn init_logs(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.logs.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.logs.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The default master key file: `$XDG_CONFIG_HOME/influxify/master.key` (or under `~/.config`).
fn default_key_file() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("influxify/master.key")
}

/// The flow conversations start in: the configured one, the only one, or `demo`.
fn entry_flow(settings: &Settings, sources: &[(String, String)]) -> anyhow::Result<String> {
    if let Some(entry) = &settings.bot.entry {
        return Ok(entry.clone());
    }
    if let [(_, text)] = sources
        && let Some(id) = text.lines().find_map(|l| {
            l.strip_prefix("id:")
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    {
        return Ok(id);
    }
    Ok("demo".to_string())
}

fn open_secrets(settings: &Settings, sled: &SledStore) -> anyhow::Result<Arc<SealedSecrets>> {
    let (master, source) = MasterKey::locate(
        std::env::var(MASTER_KEY_VAR).ok(),
        settings.privacy.master_key_file.as_deref(),
        &default_key_file(),
        &settings.store.data,
    )?;
    match &source {
        KeySource::Created(path) => tracing::warn!(
            file = %path.display(),
            "created a master key for secrets at rest; back it up apart from the data"
        ),
        KeySource::File(path) => tracing::info!(file = %path.display(), "master key from file"),
        KeySource::Environment => tracing::info!("master key from {MASTER_KEY_VAR}"),
    }
    let env = MemorySecrets::from_env()?;
    let names = env.names();
    Ok(Arc::new(SealedSecrets::open(
        sled.db(),
        &master,
        env,
        names,
    )?))
}

fn open_plugins(
    settings: &Settings,
    kv: Arc<PluginKv>,
    secrets: Arc<SealedSecrets>,
) -> anyhow::Result<Arc<PluginHost>> {
    let dir = &settings.plugins.dir;
    let host = PluginHost::new(
        secrets,
        Some(kv),
        HostConfig {
            cache_dir: Some(settings.store.data.join("plugin-cache")),
            config: settings.plugins.settings.clone(),
            consent_gate: settings
                .plugins
                .require_ai_consent
                .then(ConsentGate::default),
            ..HostConfig::default()
        },
    )?;
    let host = Arc::new(host);
    if dir.is_dir() {
        for result in host.load_dir(dir) {
            if let Err(err) = result {
                tracing::error!(error = %err, "plugin refused");
            }
        }
        if settings.plugins.reload {
            host.watch(Some(dir.clone()), std::time::Duration::from_secs(2));
        }
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "no plugins directory: flows that call plugins will take their error edges (`cargo xtask plugins` builds the built-in ones into dist/plugins)"
        );
    }
    Ok(host)
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let testing = Testing::start(
        &settings.testing,
        std::env::var(TESTING_VAR).ok().as_deref(),
    )?;
    let data = settings.store.data.clone();
    let sources = read_flows(&settings.bot.flows)
        .with_context(|| format!("cannot read the flows in {}", settings.bot.flows.display()))?;
    let entry = entry_flow(&settings, &sources)?;
    let sled = SledStore::open(&data, settings.store.cache_mb * 1024 * 1024)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let kv = Arc::new(PluginKv::open(sled.db())?);
    let audit = Arc::new(AuditLog::open(sled.db())?);
    let secrets = open_secrets(&settings, &sled)?;
    let host = open_plugins(&settings, kv.clone(), secrets.clone())?;
    let mut config = Config::new(&settings.bot.name, &entry);
    let mut catalog = influxify_core::Catalog::builtin();
    catalog.actions.extend(host.catalog().actions);
    config.catalog = Some(catalog);
    let transcripts = match settings.privacy.transcript_ttl {
        Some(ttl) => Some(Arc::new(Transcripts::open(sled.db(), ttl.as_millis())?)),
        None => None,
    };
    let webchat = Arc::new(WebChat::sealed(&secrets)?.with_replay(sled.db())?);
    let store: Arc<dyn Store> = Arc::new(sled);
    let metrics = Arc::new(Metrics::default());
    let mut effects = ChannelEffects::new(host.clone())?
        .with_webchat(webchat.clone())
        .with_metrics(metrics.clone());
    if let Some(transcripts) = &transcripts {
        effects = effects.with_transcripts(transcripts.clone());
    }
    let effects = Arc::new(effects);
    let handler: Arc<dyn EffectHandler> = match &testing {
        Some(testing) => testing.wrap(effects.clone()),
        None => effects.clone(),
    };
    let runtime = Runtime::start(store, handler, config).await?;
    let policy = match settings.bot.stranded {
        Stranded::Keep => MigrationPolicy::Keep,
        Stranded::Restart => MigrationPolicy::Restart,
    };
    runtime
        .publish(sources, Some(policy))
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "the flows in {} were not published: {err}",
                settings.bot.flows.display()
            )
        })?;
    let listener = tokio::net::TcpListener::bind(settings.server.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.server.addr))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "influxify: serving on http://{addr} (bot `{}`, entry `{entry}`)",
        settings.bot.name
    );
    let state = AppState {
        human_silence_ms: settings.bot.human_silence.as_millis(),
        runtime: runtime.clone(),
        plugins: host,
        webchat: webchat.clone(),
        metrics,
        effects,
        admin: Arc::new(Admin {
            keys: settings.admin.keys.clone(),
            secrets,
            plugins_dir: settings.plugins.dir.clone(),
        }),
        privacy: Arc::new(Privacy {
            settings: settings.privacy.clone(),
            kv,
            audit,
            webchat: Some(webchat.clone()),
            transcripts,
        }),
        testing,
    };
    if settings.admin.keys.is_empty() {
        tracing::warn!(
            "no admin API keys are configured: /admin/v1 refuses every request (`influxify admin-key` makes one)"
        );
    }
    privacy::spawn_sweeper(state.clone(), settings.privacy.sweep_every.std());
    let webchat = state.webchat.clone();
    let app = influxify_server::router(state, &settings.server);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stopped().await;
            // Open event streams would hold the shutdown up: end them.
            webchat.close();
        })
        .await?;
    tracing::info!("stopping: finishing turns in flight");
    // Turns in flight finish and everything is flushed; effects still backing off do not hold
    // the process up forever (they are durable and resume at the next start).
    match tokio::time::timeout(std::time::Duration::from_secs(30), runtime.shutdown()).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            "stopped after 30 s with work still pending; it resumes at the next start"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
