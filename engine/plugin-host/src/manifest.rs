//! The plugin manifest (`plugin.toml`): what a plugin is and what it is granted. Nothing is
//! granted by default: no outbound HTTP, no secrets, no kv; only memory and time have defaults,
//! since a call cannot run without them.
//!
//! # Files as settings
//!
//! Plugins cannot read files. A `[config]` value of the form `@file:relative/path` (such as
//! `csv = "@file:orders.csv"`) is read by the host when it loads the plugin, and the plugin's
//! `config` import answers the file's content instead: a sample data set can ship next to the
//! manifest. The path is relative to the manifest's directory and must stay inside it (no
//! absolute path, no `..`, no link leading out); the file must be UTF-8 text of at most
//! [`MAX_CONFIG_FILE_BYTES`] (1 MiB). A file that is missing, too large or not text refuses the
//! load with a message naming the setting and the file. The engine's configuration may override
//! a setting with a `@file:` value too, read the same way. A changed file reloads the plugin
//! like a changed manifest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::grants::Origin;

/// The largest manifest read, in bytes.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// A plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// What the plugin is.
    pub plugin: PluginInfo,
    /// What it may use. Absent: nothing beyond default memory and time.
    #[serde(default)]
    pub grants: Grants,
    /// Settings that are not secret, readable through the `config` import; the engine's
    /// configuration may override them. A value `@file:path` is the content of that file
    /// (inside the manifest's directory, at most 1 MiB), read by the host at load time.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Actions that flows call from `plugin` nodes (`name.action`).
    Action,
    /// A channel: webhooks in, messages out.
    Channel,
}

/// The `[plugin]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginInfo {
    /// The plugin's name: lowercase letters, digits, `-` and `_`. Flows call its actions as
    /// `name.action`.
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
    /// The world it implements.
    pub kind: Kind,
    /// The component file, relative to the manifest. Default: `<name>.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<PathBuf>,
    /// What it does, for operators.
    #[serde(default)]
    pub description: String,
    /// The actions an action plugin provides (`convert` for `currency.convert`). The host
    /// refuses a component whose actions differ, so the manifest tells operators the truth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

/// The `[grants]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Origins the plugin may send HTTP requests to: `scheme://host[:port]`, where the host may
    /// start with `*.` (any subdomain) and the port may be `*`. IP addresses, loopback and
    /// private ranges are refused unless an origin names them.
    #[serde(default)]
    pub http: Vec<String>,
    /// The most HTTP requests one invocation may make.
    #[serde(default = "default_http_calls")]
    pub http_calls: u32,
    /// The largest HTTP response body accepted, in bytes.
    #[serde(default = "default_response_bytes")]
    pub response_bytes: u64,
    /// Secrets the plugin may have injected, each with the origins it may be sent to.
    #[serde(default)]
    pub secrets: Vec<SecretGrant>,
    /// The kv quota, in bytes of keys and values (0: no kv).
    #[serde(default)]
    pub kv_bytes: u64,
    /// Linear memory an invocation may grow to, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Wall-clock budget of one invocation, instantiation and host calls (HTTP) included, in ms.
    #[serde(default = "default_time_ms")]
    pub time_ms: u64,
    /// Budget of the plugin's own computing in one invocation, in ms: wall time minus the time
    /// spent waiting for HTTP responses, enforced by epoch interruption. Default: `time_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            http: Vec::new(),
            http_calls: default_http_calls(),
            response_bytes: default_response_bytes(),
            secrets: Vec::new(),
            kv_bytes: 0,
            memory_mb: default_memory_mb(),
            time_ms: default_time_ms(),
            cpu_ms: None,
        }
    }
}

fn default_http_calls() -> u32 {
    8
}
fn default_response_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_memory_mb() -> u32 {
    64
}
fn default_time_ms() -> u64 {
    10_000
}

/// A secret a plugin may use, and where it may go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretGrant {
    /// The secret's name in the engine's secret store.
    pub name: String,
    /// The origins the secret may be sent to (each must also be in `http`). Empty: the secret
    /// is only usable for signatures (`crypto`).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The most memory a manifest may ask for, in MiB.
pub const MAX_MEMORY_MB: u32 = 1024;
/// The largest HTTP response a manifest may accept, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// The most HTTP requests per invocation a manifest may ask for.
pub const MAX_HTTP_CALLS: u32 = 64;
/// The prefix of a `[config]` value the host replaces with a file's content when it loads the
/// plugin: `@file:orders.csv` (see [the module's documentation](self#files-as-settings)).
pub const CONFIG_FILE_PREFIX: &str = "@file:";
/// The largest file a `@file:` setting may name, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;
/// The longest time budget a manifest may ask for, in ms.
pub const MAX_TIME_MS: u64 = 5 * 60 * 1000;

/// The JSON Schema of `plugin.toml` (as TOML maps to JSON), committed as
/// `schemas/plugin.schema.json`.
pub fn manifest_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Manifest);
    schema.insert(
        "$id".into(),
        "https://influxify.dev/schemas/plugin.schema.json".into(),
    );
    serde_json::to_value(schema).unwrap_or_default()
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: cannot read the manifest: {reason}")]
    Unreadable {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TOML is malformed or has unknown or mistyped fields.
    #[error("{path}: {reason}")]
    Malformed {
        /// The manifest.
        path: PathBuf,
        /// Why, with the line and column.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {reason}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A parsed, checked manifest with its parsed origins.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The manifest as written.
    pub manifest: Manifest,
    /// Where it was read from.
    pub path: PathBuf,
    /// The component file.
    pub component: PathBuf,
    /// `grants.http`, parsed.
    pub origins: Vec<Origin>,
    /// Per granted secret, its parsed origins.
    pub secret_origins: BTreeMap<String, Vec<Origin>>,
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn read(path: &Path) -> Result<Checked, ManifestError> {
        let unreadable = |reason: String| ManifestError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|err| unreadable(err.to_string()))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return Err(unreadable(format!(
                "it is {size} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|err| unreadable(err.to_string()))?;
        Manifest::parse(path, &text)
    }

    /// Parses and checks manifest `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Checked, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|err| ManifestError::Malformed {
            path: path.to_path_buf(),
            reason: err.to_string().trim_end().to_string(),
        })?;
        manifest.check(path)
    }

    fn check(self, path: &Path) -> Result<Checked, ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let name = &self.plugin.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "plugin name `{name}` must be 1 to 64 lowercase letters, digits, `-` or `_`"
            )));
        }
        let grants = &self.grants;
        if grants.memory_mb == 0 || grants.memory_mb > MAX_MEMORY_MB {
            return Err(invalid(format!(
                "grants.memory_mb is {}; it must be between 1 and {MAX_MEMORY_MB}",
                grants.memory_mb
            )));
        }
        if grants.time_ms == 0 || grants.time_ms > MAX_TIME_MS {
            return Err(invalid(format!(
                "grants.time_ms is {}; it must be between 1 and {MAX_TIME_MS}",
                grants.time_ms
            )));
        }
        if grants.response_bytes > MAX_RESPONSE_BYTES {
            return Err(invalid(format!(
                "grants.response_bytes is {}; at most {MAX_RESPONSE_BYTES}",
                grants.response_bytes
            )));
        }
        if grants.http_calls > MAX_HTTP_CALLS {
            return Err(invalid(format!(
                "grants.http_calls is {}; at most {MAX_HTTP_CALLS}",
                grants.http_calls
            )));
        }
        if let Some(component) = &self.plugin.component
            && !inside_manifest_dir(component)
        {
            return Err(invalid(format!(
                "plugin.component `{}` must be a path inside the manifest's directory",
                component.display()
            )));
        }
        if let Some(cpu) = grants.cpu_ms
            && (cpu == 0 || cpu > grants.time_ms)
        {
            return Err(invalid(format!(
                "grants.cpu_ms is {cpu}; it must be between 1 and grants.time_ms ({})",
                grants.time_ms
            )));
        }
        for (key, value) in &self.config {
            if let Some(file) = value.strip_prefix(CONFIG_FILE_PREFIX) {
                config_file_path(key, file).map_err(invalid)?;
            }
        }
        if self.plugin.kind == Kind::Channel && !self.plugin.actions.is_empty() {
            return Err(invalid(
                "plugin.actions lists actions, but a channel plugin provides none".to_string(),
            ));
        }
        let mut origins = Vec::new();
        for origin in &grants.http {
            origins
                .push(Origin::parse(origin).map_err(|why| invalid(format!("grants.http: {why}")))?);
        }
        let mut secret_origins = BTreeMap::new();
        for secret in &grants.secrets {
            let mut allowed = Vec::new();
            for host in &secret.hosts {
                let origin = Origin::parse(host)
                    .map_err(|why| invalid(format!("secret `{}`: {why}", secret.name)))?;
                if !origins.iter().any(|granted| granted.covers(&origin)) {
                    return Err(invalid(format!(
                        "secret `{}` may go to `{host}`, which grants.http does not allow",
                        secret.name
                    )));
                }
                allowed.push(origin);
            }
            if secret_origins
                .insert(secret.name.clone(), allowed)
                .is_some()
            {
                return Err(invalid(format!(
                    "secret `{}` is granted twice",
                    secret.name
                )));
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let component = dir.join(
            self.plugin
                .component
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{name}.wasm"))),
        );
        Ok(Checked {
            manifest: self,
            path: path.to_path_buf(),
            component,
            origins,
            secret_origins,
        })
    }
}

impl Checked {
    /// The directory of the manifest, which `component` and `@file:` settings are relative to.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// The plugin's settings: `[config]` with `overrides` (the engine's) applied, every
    /// `@file:path` value replaced by that file's content; and the files read, each with its
    /// modification time before it was read (for reloading).
    pub fn config(
        &self,
        overrides: Option<&BTreeMap<String, String>>,
    ) -> Result<ConfigFiles, String> {
        let mut config = self.manifest.config.clone();
        if let Some(overrides) = overrides {
            config.extend(overrides.clone());
        }
        let mut files = Vec::new();
        for (key, value) in config.iter_mut() {
            let Some(file) = value.strip_prefix(CONFIG_FILE_PREFIX) else {
                continue;
            };
            let (content, path, stamp) = read_config_file(self.dir(), key, file)?;
            *value = content;
            files.push((path, stamp));
        }
        Ok((config, files))
    }
}

/// Settings with the `@file:` files read, and those files with their modification times.
pub type ConfigFiles = (BTreeMap<String, String>, Vec<(PathBuf, Option<SystemTime>)>);

/// Whether `path` is relative and stays inside the manifest's directory (no `..`).
fn inside_manifest_dir(path: &Path) -> bool {
    !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The path a `@file:` setting names, if it is inside the manifest's directory.
fn config_file_path<'a>(key: &str, file: &'a str) -> Result<&'a Path, String> {
    let path = Path::new(file);
    if file.trim().is_empty() || !inside_manifest_dir(path) {
        return Err(format!(
            "config `{key}`: `{CONFIG_FILE_PREFIX}{file}` must name a file inside the manifest's directory (a relative path without `..`)"
        ));
    }
    Ok(path)
}

/// Reads the file of setting `key` (`@file:<file>`) in `dir`: its content, its path and its
/// modification time before the read.
fn read_config_file(
    dir: &Path,
    key: &str,
    file: &str,
) -> Result<(String, PathBuf, Option<SystemTime>), String> {
    let path = dir.join(config_file_path(key, file)?);
    let fail = |why: String| format!("config `{key}`: {}: {why}", path.display());
    let real = path.canonicalize().map_err(|err| fail(err.to_string()))?;
    let real_dir = dir.canonicalize().map_err(|err| fail(err.to_string()))?;
    if !real.starts_with(&real_dir) {
        return Err(fail(
            "it leads outside the manifest's directory (through a link)".to_string(),
        ));
    }
    let handle = std::fs::File::open(&real).map_err(|err| fail(err.to_string()))?;
    let meta = handle.metadata().map_err(|err| fail(err.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a file".to_string()));
    }
    let too_large = |size: u64| {
        fail(format!(
            "it is {size} bytes; a `{CONFIG_FILE_PREFIX}` setting may be at most {MAX_CONFIG_FILE_BYTES}"
        ))
    };
    if meta.len() > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let stamp = meta.modified().ok();
    let mut bytes = Vec::new();
    handle
        .take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| fail(err.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let content = String::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".to_string()))?;
    Ok((content, path, stamp))
}
