//! What a plugin's store holds during one invocation, and the host capabilities it imports:
//! each one answers only as far as the plugin's manifest grants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use hmac::{Mac, digest::KeyInit};
use influxify_store::{ConversationKey, KvScope, KvWrite, PluginKv};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{clock, config, crypto, http, kv, log, secrets, types};
use crate::http::{Outbound, Placement, PluginHttp};
use crate::secrets::Secret;

/// The most log lines one call may write.
const MAX_LOG_LINES: u32 = 200;
/// The largest kv key, in bytes.
const MAX_KV_KEY: usize = 512;
/// The largest kv value, in bytes.
const MAX_KV_VALUE: usize = 1024 * 1024;

/// What every invocation of one plugin shares: its name and grants.
#[derive(Debug)]
pub struct Grant {
    /// The plugin's name.
    pub name: String,
    /// Its outbound HTTP.
    pub http: PluginHttp,
    /// Its HTTP request budget per invocation.
    pub http_calls: u32,
    /// Its kv quota in bytes (0: none).
    pub kv_bytes: u64,
    /// Its settings.
    pub config: BTreeMap<String, String>,
    /// Linear memory an invocation may use, in bytes.
    pub memory_bytes: usize,
}

/// Tracks and bounds an invocation's memory.
#[derive(Debug, Default)]
pub struct Meter {
    /// The bound, in bytes.
    pub limit: usize,
    /// The most linear memory the invocation had.
    pub peak: usize,
    /// Whether the plugin asked for more than its bound.
    pub exceeded: bool,
}

impl ResourceLimiter for Meter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded",
                self.limit
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// One invocation's state.
pub struct PluginState {
    pub(crate) grant: Arc<Grant>,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) kv: Option<Arc<PluginKv>>,
    /// The end user the call is for, if any (user-scoped kv).
    pub(crate) user: Option<ConversationKey>,
    pub(crate) deadline: Instant,
    /// The clock WASI shows the plugin (sleeps are bounded by `deadline`).
    pub(crate) clock: crate::sleep::CallClock,
    /// When the current call started (a warm channel instance serves several calls).
    pub(crate) started: std::time::Instant,
    /// The budget of the plugin's own computing (wall time minus time in host HTTP calls).
    pub(crate) cpu_budget: Option<std::time::Duration>,
    /// Time spent waiting in host HTTP calls.
    pub(crate) host_time: std::time::Duration,
    /// Set when the host interrupted the call for running out of time.
    pub(crate) timed_out: bool,
    pub(crate) http_calls: u32,
    pub(crate) log_lines: u32,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) meter: Meter,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("plugin", &self.grant.name)
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

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.grant.name, "plugin log budget of {MAX_LOG_LINES} lines per call used up; further lines dropped");
            }
            return;
        }
        let plugin = self.grant.name.as_str();
        // One line per call of `log`: control characters cannot forge other log lines.
        let message: String = message
            .chars()
            .take(4096)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl clock::Host for PluginState {
    fn now_ms(&mut self) -> u64 {
        crate::now_ms()
    }
}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.grant.config.get(&key).cloned()
    }
}

impl http::Host for PluginState {
    fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        if self.http_calls >= self.grant.http_calls {
            tracing::warn!(plugin = %self.grant.name, "HTTP request budget exhausted");
            return Err(http::HttpError::BudgetExhausted);
        }
        self.http_calls += 1;
        let request = crate::http::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            secret: request.secret.map(|s| {
                let placement = match s.placement {
                    http::SecretPlacement::Bearer => Placement::Bearer,
                    http::SecretPlacement::Header(name) => Placement::Header(name),
                    http::SecretPlacement::Query(name) => Placement::Query(name),
                };
                (s.name, placement)
            }),
            timeout_ms: request.timeout_ms,
        };
        let url = request.url.clone();
        let waited = Instant::now();
        let sent = self.outbound.send(&self.grant.http, request, self.deadline);
        self.host_time += waited.elapsed();
        match sent {
            Ok(response) => Ok(http::Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(err) => {
                tracing::warn!(plugin = %self.grant.name, url = %redact_query(&url), error = %err, "plugin HTTP request refused or failed");
                Err(match err {
                    crate::http::HttpError::Denied(why) => http::HttpError::Denied(why),
                    crate::http::HttpError::Timeout => http::HttpError::Timeout,
                    crate::http::HttpError::TooLarge => http::HttpError::TooLarge,
                    crate::http::HttpError::BudgetExhausted => http::HttpError::BudgetExhausted,
                    crate::http::HttpError::Transport(why) => http::HttpError::Transport(why),
                })
            }
        }
    }
}

/// A URL without its query (which may carry personal data), for logs.
fn redact_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

impl secrets::Host for PluginState {
    fn available(&mut self, name: String) -> bool {
        Outbound::granted(&self.grant.http, &name)
            && matches!(self.outbound.secrets().get(&name), Ok(Some(_)))
    }
}

impl PluginState {
    fn kv_scope(&self, scope: kv::Scope) -> Result<KvScope<'_>, kv::KvError> {
        match scope {
            kv::Scope::Plugin => Ok(KvScope::Plugin),
            kv::Scope::User => self
                .user
                .as_ref()
                .map(KvScope::User)
                .ok_or_else(|| kv::KvError::Denied("this call is not for an end user".into())),
        }
    }

    fn kv_store(&self) -> Result<&PluginKv, kv::KvError> {
        if self.grant.kv_bytes == 0 {
            return Err(kv::KvError::Denied(format!(
                "no kv is granted to plugin `{}`",
                self.grant.name
            )));
        }
        self.kv
            .as_deref()
            .ok_or_else(|| kv::KvError::Unavailable("this engine has no kv store".into()))
    }

    /// The key of `secret` for signatures, if granted and a static value.
    fn signing_key(&self, secret: &str) -> Result<Vec<u8>, crypto::CryptoError> {
        if !Outbound::granted(&self.grant.http, secret) {
            return Err(crypto::CryptoError::Denied(format!(
                "secret `{secret}` is not granted to plugin `{}`",
                self.grant.name
            )));
        }
        match self.outbound.secrets().get(secret) {
            Ok(Some(Secret::Value { value })) => Ok(value.into_bytes()),
            Ok(Some(Secret::Oauth(_))) => Err(crypto::CryptoError::Denied(format!(
                "secret `{secret}` is an OAuth token, not a signing key"
            ))),
            Ok(Some(Secret::ServiceAccount(_))) => Err(crypto::CryptoError::Denied(format!(
                "secret `{secret}` is a service account, not a signing key"
            ))),
            Ok(None) => Err(crypto::CryptoError::Denied(format!(
                "secret `{secret}` is not configured"
            ))),
            Err(err) => Err(crypto::CryptoError::Denied(err.to_string())),
        }
    }
}

fn kv_failed(err: influxify_store::StoreError) -> kv::KvError {
    kv::KvError::Unavailable(err.to_string())
}

impl kv::Host for PluginState {
    fn get(&mut self, scope: kv::Scope, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        let store = self.kv_store()?;
        store
            .get(&self.grant.name, self.kv_scope(scope)?, &key)
            .map_err(kv_failed)
    }

    fn set(&mut self, scope: kv::Scope, key: String, value: Vec<u8>) -> Result<(), kv::KvError> {
        if key.len() > MAX_KV_KEY || value.len() > MAX_KV_VALUE {
            return Err(kv::KvError::TooLarge);
        }
        let store = self.kv_store()?;
        match store
            .set(
                &self.grant.name,
                self.kv_scope(scope)?,
                &key,
                &value,
                self.grant.kv_bytes,
            )
            .map_err(kv_failed)?
        {
            KvWrite::Done => Ok(()),
            KvWrite::QuotaExceeded => Err(kv::KvError::QuotaExceeded),
        }
    }

    fn delete(&mut self, scope: kv::Scope, key: String) -> Result<(), kv::KvError> {
        let store = self.kv_store()?;
        store
            .delete(&self.grant.name, self.kv_scope(scope)?, &key)
            .map_err(kv_failed)
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl crypto::Host for PluginState {
    fn verify_hmac_sha256(
        &mut self,
        secret: String,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, crypto::CryptoError> {
        let key = self.signing_key(&secret)?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .map_err(|err| crypto::CryptoError::Denied(err.to_string()))?;
        mac.update(&message);
        // Constant time.
        Ok(mac.verify_slice(&signature).is_ok())
    }

    fn hmac_sha256(
        &mut self,
        secret: String,
        message: Vec<u8>,
    ) -> Result<Vec<u8>, crypto::CryptoError> {
        let key = self.signing_key(&secret)?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .map_err(|err| crypto::CryptoError::Denied(err.to_string()))?;
        mac.update(&message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}
