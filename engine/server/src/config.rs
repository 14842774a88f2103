//! `influxify.toml`: how `influxify serve` is set up. Every setting has a default that works on
//! a fresh machine (127.0.0.1:8080, data in `./data`, flows from `flows/`, the built-in plugins
//! from `dist/plugins`); relative paths are relative to the file. Secrets never go in the file:
//! they come from `INFLUXIFY_SECRET_<NAME>` variables or the admin API, and the key that
//! encrypts them at rest from `INFLUXIFY_MASTER_KEY` or a key file kept away from the data.
//! Its JSON Schema is `schemas/config.schema.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use influxify_core::duration::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// The embedded store.
    pub store: StoreSettings,
    /// The bot: its flows and where conversations start.
    pub bot: BotSettings,
    /// Plugins.
    pub plugins: PluginSettings,
    /// The admin API.
    pub admin: AdminSettings,
    /// Privacy: retention, in-chat commands, secrets at rest.
    pub privacy: PrivacySettings,
    /// Logs.
    pub logs: LogSettings,
    /// Test mode, for end-to-end tests of the channels only: never in production.
    pub testing: TestingSettings,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where to listen (`INFLUXIFY_ADDR` overrides it).
    #[schemars(with = "String")]
    pub addr: SocketAddr,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long a request may take before it is answered 503 (the event stream of the web chat
    /// is not limited).
    pub request_timeout: Duration,
    /// Serve the playground at `/playground`.
    pub playground: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_millis(30_000),
            playground: true,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// The data directory of the embedded sled store (`INFLUXIFY_DATA` overrides it).
    pub data: PathBuf,
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            data: PathBuf::from("data"),
            cache_mb: 64,
        }
    }
}

/// `[bot]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// The bot's name (flow versions are kept per bot).
    pub name: String,
    /// The flow files, a directory searched recursively; published at start.
    pub flows: PathBuf,
    /// The flow new conversations start in (default: the only flow, or `demo`).
    pub entry: Option<String>,
    /// What happens to conversations on a node a new version removed: `keep` them on their
    /// version until they end, or `restart` them.
    pub stranded: Stranded,
    /// How long the bot keeps quiet with a user after a person answered them from the
    /// channel, outside the bot (Messenger's Page Inbox; the messenger plugin's `app_id`
    /// setting tells the bot's own messages apart): what the user writes meanwhile goes to the
    /// operator.
    pub human_silence: Duration,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            name: "default".into(),
            flows: PathBuf::from("flows"),
            entry: None,
            stranded: Stranded::Keep,
            human_silence: Duration::from_millis(30 * 60 * 1000),
        }
    }
}

/// What to do with conversations a new flow version strands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stranded {
    /// They finish on the version they started on.
    Keep,
    /// They start again on the new version.
    Restart,
}

/// `[plugins]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// The plugins directory: one directory per plugin with its `plugin.toml` and component
    /// (`cargo xtask plugins` builds the built-in ones into `dist/plugins`).
    pub dir: PathBuf,
    /// Run `openai.chat` only for users who consented to `ai_processing` (the node's `denied`
    /// edge is taken otherwise).
    pub require_ai_consent: bool,
    /// Reload plugins whose files change.
    pub reload: bool,
    /// Settings that override a plugin's `[config]`, by plugin name: e.g.
    /// `[plugins.settings.openai] base_url = "http://127.0.0.1:8081"`.
    pub settings: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            dir: PathBuf::from("dist/plugins"),
            require_ai_consent: true,
            reload: true,
            settings: BTreeMap::new(),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The API keys allowed on `/admin/v1/`, stored hashed (`influxify admin-key` makes one).
    /// Without keys the admin API refuses every request.
    pub keys: Vec<AdminKey>,
}

/// One admin API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    /// Who holds it (shown in the audit log).
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The SHA-256 of the key, in hex.
    pub sha256: String,
}

/// What an admin key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read: versions, conversations, plugins, exports.
    Read,
    /// Everything.
    Admin,
}

/// `[privacy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// Conversations idle this long are deleted by the sweeper.
    pub inactivity_ttl: Duration,
    /// The audit log (admin actions, data-subject requests, sweeps: the usage log; never
    /// message text) is kept this long.
    pub usage_log_ttl: Duration,
    /// Keep the text of messages (the user's and the bot's) in transcripts this long. Unset
    /// (the default): message text is not stored beyond the turn that processes it.
    pub transcript_ttl: Option<Duration>,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
    /// A file holding the 32-byte key that encrypts secrets at rest (hex); `INFLUXIFY_MASTER_KEY`
    /// overrides it. Keep it away from the data directory.
    pub master_key_file: Option<PathBuf>,
    /// In-chat commands end users can type.
    pub commands: Commands,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600 * 1000;
        PrivacySettings {
            inactivity_ttl: Duration::from_millis(180 * DAY),
            usage_log_ttl: Duration::from_millis(365 * DAY),
            transcript_ttl: None,
            sweep_every: Duration::from_millis(3600 * 1000),
            master_key_file: None,
            commands: Commands::default(),
        }
    }
}

/// In-chat commands: what an end user types, matched case-insensitively against the whole
/// message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Commands {
    /// Erase everything stored about the user.
    pub erase: Vec<String>,
    /// Restrict processing: the bot stops answering until `resume`.
    pub stop: Vec<String>,
    /// Lift a restriction.
    pub resume: Vec<String>,
}

impl Default for Commands {
    fn default() -> Self {
        Commands {
            erase: vec!["delete my data".into(), "erase my data".into()],
            stop: vec!["stop processing".into(), "stop all".into()],
            resume: vec!["resume processing".into(), "start again".into()],
        }
    }
}

/// `[logs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json` (`INFLUXIFY_LOG_FORMAT` overrides it).
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `influxify_server=debug` (`RUST_LOG` overrides it).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[testing]`: test mode, for end-to-end tests of the channels. It lets whoever holds an admin
/// key move the server's clock forward, answer plugin calls with mocks and wait for the runtime
/// to be idle (routes under `/testing/v1/`). It needs this setting and the environment variable
/// `INFLUXIFY_TESTING=1` both: with only one of them the server refuses to start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TestingSettings {
    /// Turn test mode on (never in production).
    pub enabled: bool,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Malformed TOML, or an unknown or mistyped setting.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// Why, with line and column.
        reason: String,
    },
    /// An environment variable's value is not usable.
    #[error("{variable}: {reason}")]
    Environment {
        /// The variable.
        variable: String,
        /// Why.
        reason: String,
    },
}

impl Settings {
    /// Reads `path` (TOML), resolving relative paths against its directory.
    pub fn read(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        let mut settings = Settings::parse(&text).map_err(|reason| ConfigError::Malformed {
            path: path.display().to_string(),
            reason,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        settings.resolve(base);
        Ok(settings)
    }

    /// Parses a TOML text.
    pub fn parse(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|err| err.to_string().trim_end().to_string())
    }

    fn resolve(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() && base != Path::new("") {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.store.data);
        resolve(&mut self.bot.flows);
        resolve(&mut self.plugins.dir);
        if let Some(file) = &mut self.privacy.master_key_file {
            resolve(file);
        }
    }

    /// Applies `INFLUXIFY_ADDR`, `INFLUXIFY_DATA` and `INFLUXIFY_LOG_FORMAT` from `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(addr) = env("INFLUXIFY_ADDR") {
            self.server.addr = addr.parse().map_err(|err| ConfigError::Environment {
                variable: "INFLUXIFY_ADDR".into(),
                reason: format!("`{addr}` is not an address like 127.0.0.1:8080: {err}"),
            })?;
        }
        if let Some(data) = env("INFLUXIFY_DATA") {
            self.store.data = PathBuf::from(data);
        }
        if let Some(format) = env("INFLUXIFY_LOG_FORMAT") {
            self.logs.format = match format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::Environment {
                        variable: "INFLUXIFY_LOG_FORMAT".into(),
                        reason: format!("`{other}` is neither `text` nor `json`"),
                    });
                }
            };
        }
        Ok(())
    }
}

/// The JSON Schema of `influxify.toml` (as TOML maps to JSON), committed as
/// `schemas/config.schema.json`.
pub fn config_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Settings);
    schema.insert(
        "$id".into(),
        "https://influxify.dev/schemas/config.schema.json".into(),
    );
    serde_json::to_value(schema).unwrap_or_default()
}
