//! The admin API under `/admin/v1/`: flow versions (publish, list, roll back), conversations
//! (list, inspect, resume, operator messages, retry or skip a failed effect), plugins (list,
//! reload), secrets (set, rotate, delete; never read back), and the data-subject operations
//! (export, erase, restrict) and retention. Bearer API keys, stored as SHA-256 hashes in the
//! configuration, scoped `read` or `admin`; every change is written to the audit log.
//! [`ENDPOINTS`] lists the routes with their types: `/openapi.json` is generated from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use influxify_plugin_host::{Kind, Secret};
use influxify_runtime::admin::Filter;
use influxify_runtime::{MigrationPolicy, PublishError, RuntimeError};
use influxify_store::ConversationKey;
use ring::digest::{SHA256, digest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::config::{AdminKey, Scope};
use crate::reply::{error, json};
use crate::secrets::{SealedSecrets, SecretOrigin};

/// What the admin API needs besides the runtime.
#[derive(Debug)]
pub struct Admin {
    /// The accepted keys.
    pub keys: Vec<AdminKey>,
    /// Where secrets are sealed.
    pub secrets: Arc<SealedSecrets>,
    /// The plugins directory (for reloads).
    pub plugins_dir: std::path::PathBuf,
}

/// The SHA-256 of an API key, hex: what the configuration stores.
pub fn hash_key(key: &str) -> String {
    digest(&SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random API key (`ifx_` and 64 hex digits) and its hash.
pub fn new_key() -> Result<(String, String), crate::secrets::SealError> {
    let random = crate::secrets::MasterKey::generate()?;
    let key = format!("ifx_{}", random.to_hex());
    let hash = hash_key(&key);
    Ok((key, hash))
}

/// Who called, once authenticated.
pub(crate) struct Caller {
    pub(crate) name: String,
}

/// The caller of a request with an admin API key of at least `needed`, or the refusal.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<Caller, Response> {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "an admin API key is required: `Authorization: Bearer KEY`",
        ));
    };
    // Comparing hashes: the time taken says nothing about the stored keys.
    let hash = hash_key(key.trim());
    let Some(found) = state.admin.keys.iter().find(|k| k.sha256 == hash) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "the admin API key is not valid",
        ));
    };
    if found.scope < needed {
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "the key `{}` is read-only; this needs an admin key",
                found.name
            ),
        ));
    }
    Ok(Caller {
        name: found.name.clone(),
    })
}

fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) {
    if let Err(err) = state
        .privacy
        .audit
        .record(&caller.name, action, target, detail)
    {
        tracing::error!(error = %err, action, "an admin action could not be written to the audit log");
    }
}

fn runtime_error(err: RuntimeError) -> Response {
    match err {
        RuntimeError::UnknownConversation(key) => {
            error(StatusCode::NOT_FOUND, &format!("no conversation {key}"))
        }
        RuntimeError::Refused(why) => error(StatusCode::CONFLICT, &why),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

fn internal(err: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
    if !is_json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON (`Content-Type: application/json`)",
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not valid: {err}"),
        )
    })
}

// ---- Types of the API (their JSON Schemas make the OpenAPI document) ----

/// A flow version.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VersionInfo {
    /// Its content hash.
    pub hash: String,
    /// When it was published, ms since the Unix epoch.
    pub published_at: u64,
    /// Whether new conversations start on it.
    pub head: bool,
    /// Its flow files.
    pub files: Vec<String>,
}

/// A version to publish.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Flow files by name (`faq.yaml`) with their text.
    pub files: BTreeMap<String, String>,
    /// What happens to conversations waiting at nodes this version removes: `keep` them on
    /// their version, `restart` them, or (absent) refuse to publish and say how many there are.
    #[serde(default)]
    pub stranded: Option<crate::config::Stranded>,
    /// Move conversations from old nodes to new ones (`old_node: new_node`) instead.
    #[serde(default)]
    pub node_map: Option<BTreeMap<String, String>>,
}

/// What a publish did: the migration report.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PublishResult {
    /// The new head.
    pub version: String,
    /// Whether it was already the head.
    pub unchanged: bool,
    /// Conversations at nodes the version removes, by version, flow and node.
    pub stranded: Vec<StrandedInfo>,
    /// Conversations moved to the new version.
    pub migrated: usize,
}

/// Conversations waiting at a removed node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StrandedInfo {
    /// Their version.
    pub version: String,
    /// The flow.
    pub flow: String,
    /// The node.
    pub node: String,
    /// How many.
    pub conversations: usize,
}

/// Why a publish was refused.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PublishRefusal {
    /// The reason.
    pub error: String,
    /// The validator's diagnostics (code, message, flow, node, line), when the flows are invalid.
    pub diagnostics: Vec<serde_json::Value>,
    /// Conversations that would be stranded, when that is the reason.
    pub stranded: Vec<StrandedInfo>,
}

/// A conversation in a listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationInfo {
    /// Its channel.
    pub channel: String,
    /// The user's id there.
    pub user: String,
    /// Its flow version.
    pub version: String,
    /// The flow it is in.
    pub flow: String,
    /// The node it is at.
    pub node: String,
}

/// Which conversations to list.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConversationQuery {
    /// A version hash.
    pub version: Option<String>,
    /// A flow id.
    pub flow: Option<String>,
    /// A node id.
    pub node: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// One conversation in full.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationDetail {
    /// Its version, flow, node, status, variables, turns and pause reason.
    pub record: serde_json::Value,
    /// Pending timers.
    pub timers: Vec<serde_json::Value>,
    /// Pending effects, with the last error of a failed one.
    pub outbox: Vec<serde_json::Value>,
    /// Events waiting to be processed.
    pub inbox: usize,
    /// Whether processing is restricted.
    pub restricted: bool,
}

/// An operator's message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorMessage {
    /// What to say to the user.
    pub text: String,
}

/// A loaded plugin.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `action` or `channel`.
    pub kind: String,
    /// Its actions.
    pub actions: Vec<String>,
    /// The sha256 of its component.
    pub hash: String,
}

/// What a reload did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReloadResult {
    /// Plugins (re)loaded.
    pub loaded: Vec<String>,
    /// Plugins refused, with why (the running version, if any, stays).
    pub refused: Vec<String>,
}

/// A secret's name and where it comes from (values are never returned).
#[derive(Debug, Serialize, JsonSchema)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// `stored` (sealed in the data directory) or `environment`.
    pub origin: SecretOrigin,
}

/// A secret to set: a plain value (an API key), or an OAuth token or service account.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// A plain value.
    pub value: Option<String>,
    /// A secret of another kind, as JSON: `{"kind": "oauth", ...}`, `{"kind":
    /// "service_account", ...}`, or Google's key file.
    pub secret: Option<serde_json::Value>,
}

/// An empty success.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Done {
    /// Always true.
    pub ok: bool,
}

fn done() -> Response {
    json(StatusCode::OK, &Done { ok: true })
}

/// An error answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

// ---- Handlers ----

async fn list_versions(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Read) {
        return refused;
    }
    let store = state.runtime.store();
    let head = state.runtime.registry().head().ok().flatten();
    let bot = state.runtime.registry().bot().to_string();
    let mut versions = Vec::new();
    let hashes = match store.versions() {
        Ok(hashes) => hashes,
        Err(err) => return internal(err),
    };
    for hash in hashes {
        match store.version(&hash) {
            Ok(Some(version)) if version.bot == bot => versions.push(VersionInfo {
                head: head.as_deref() == Some(hash.as_str()),
                hash,
                published_at: version.published_at,
                files: version.sources.iter().map(|(n, _)| n.clone()).collect(),
            }),
            Ok(_) => {}
            Err(err) => return internal(err),
        }
    }
    versions.sort_by_key(|v| v.published_at);
    json(StatusCode::OK, &versions)
}

fn stranded_info(stranded: &[influxify_runtime::Stranded]) -> Vec<StrandedInfo> {
    stranded
        .iter()
        .map(|s| StrandedInfo {
            version: s.version.clone(),
            flow: s.flow.clone(),
            node: s.node.clone(),
            conversations: s.conversations,
        })
        .collect()
}

async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let request: PublishRequest = match parse_json(&headers, &body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    if request.files.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`files` is empty: publish at least one flow file",
        );
    }
    let policy = match (request.node_map, request.stranded) {
        (Some(map), _) => Some(MigrationPolicy::Map(map)),
        (None, Some(crate::config::Stranded::Keep)) => Some(MigrationPolicy::Keep),
        (None, Some(crate::config::Stranded::Restart)) => Some(MigrationPolicy::Restart),
        (None, None) => None,
    };
    let sources: Vec<(String, String)> = request.files.into_iter().collect();
    match state.runtime.publish(sources, policy).await {
        Ok(report) => {
            audit(
                &state,
                &caller,
                "publish",
                Some(report.version.clone()),
                serde_json::json!({ "unchanged": report.unchanged, "migrated": report.migrated }),
            );
            json(
                StatusCode::CREATED,
                &PublishResult {
                    stranded: stranded_info(&report.stranded),
                    version: report.version,
                    unchanged: report.unchanged,
                    migrated: report.migrated,
                },
            )
        }
        Err(PublishError::Invalid(diagnostics)) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &PublishRefusal {
                error: "the flows do not compile".into(),
                diagnostics: diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| serde_json::to_value(d).unwrap_or_default())
                    .collect(),
                stranded: Vec::new(),
            },
        ),
        Err(err @ (PublishError::WouldStrand(_) | PublishError::IncompleteMap(_))) => {
            let stranded = match &err {
                PublishError::WouldStrand(s) | PublishError::IncompleteMap(s) => stranded_info(s),
                _ => Vec::new(),
            };
            json(
                StatusCode::CONFLICT,
                &PublishRefusal {
                    error: err.to_string(),
                    diagnostics: Vec::new(),
                    stranded,
                },
            )
        }
        Err(err) => internal(err),
    }
}

async fn rollback(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    match state.runtime.rollback(&hash).await {
        Ok(()) => {
            audit(
                &state,
                &caller,
                "rollback",
                Some(hash),
                serde_json::Value::Null,
            );
            done()
        }
        Err(RuntimeError::UnknownVersion(hash)) => error(
            StatusCode::NOT_FOUND,
            &format!("no version `{hash}` of this bot"),
        ),
        Err(err) => runtime_error(err),
    }
}

async fn list_conversations(
    State(state): State<AppState>,
    Query(query): Query<ConversationQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Read) {
        return refused;
    }
    let filter = Filter {
        version: query.version,
        flow: query.flow,
        node: query.node,
    };
    match state.runtime.list(&filter) {
        Ok(found) => {
            let list: Vec<ConversationInfo> = found
                .into_iter()
                .take(query.limit.unwrap_or(100))
                .map(|(place, key)| ConversationInfo {
                    channel: key.channel,
                    user: key.user,
                    version: place.version,
                    flow: place.flow,
                    node: place.node,
                })
                .collect();
            json(StatusCode::OK, &list)
        }
        Err(err) => runtime_error(err),
    }
}

async fn inspect(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Read) {
        return refused;
    }
    let key = ConversationKey::new(channel, user);
    match state.runtime.inspect(&key) {
        Ok(inspection) => json(
            StatusCode::OK,
            &ConversationDetail {
                record: serde_json::to_value(&inspection.record).unwrap_or_default(),
                timers: inspection
                    .timers
                    .iter()
                    .map(|t| serde_json::to_value(t).unwrap_or_default())
                    .collect(),
                outbox: inspection
                    .outbox
                    .iter()
                    .map(|o| serde_json::to_value(o).unwrap_or_default())
                    .collect(),
                inbox: inspection.inbox,
                restricted: state.runtime.is_restricted(&key),
            },
        ),
        Err(err) => runtime_error(err),
    }
}

/// What an operator does to a conversation.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Resume,
    Retry,
    Skip,
}

async fn operate(
    state: AppState,
    headers: HeaderMap,
    key: ConversationKey,
    operation: Operation,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let (result, action) = match operation {
        Operation::Resume => (state.runtime.resume(&key).await, "conversation.resume"),
        Operation::Retry => (state.runtime.retry_effect(&key).await, "effect.retry"),
        Operation::Skip => (state.runtime.skip_effect(&key).await, "effect.skip"),
    };
    match result {
        Ok(()) => {
            audit(
                &state,
                &caller,
                action,
                Some(key.to_string()),
                serde_json::Value::Null,
            );
            done()
        }
        Err(err) => runtime_error(err),
    }
}

async fn resume(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    operate(
        state,
        headers,
        ConversationKey::new(channel, user),
        Operation::Resume,
    )
    .await
}

async fn retry(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    operate(
        state,
        headers,
        ConversationKey::new(channel, user),
        Operation::Retry,
    )
    .await
}

async fn skip(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    operate(
        state,
        headers,
        ConversationKey::new(channel, user),
        Operation::Skip,
    )
    .await
}

async fn operator_message(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let message: OperatorMessage = match parse_json(&headers, &body) {
        Ok(message) => message,
        Err(refused) => return refused,
    };
    if message.text.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "`text` is empty");
    }
    let key = ConversationKey::new(channel, user);
    if let Err(err) = state.runtime.inspect(&key) {
        return runtime_error(err);
    }
    match state.runtime.say(&key, &message.text).await {
        Ok(()) => {
            audit(
                &state,
                &caller,
                "conversation.say",
                Some(key.to_string()),
                serde_json::Value::Null,
            );
            done()
        }
        Err(err) => runtime_error(err),
    }
}

async fn list_plugins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Read) {
        return refused;
    }
    let plugins: Vec<PluginInfo> = state
        .plugins
        .plugins()
        .iter()
        .map(|p| {
            let manifest = p.manifest();
            PluginInfo {
                name: p.name().to_string(),
                version: manifest.plugin.version.clone(),
                kind: match manifest.plugin.kind {
                    Kind::Action => "action".into(),
                    Kind::Channel => "channel".into(),
                },
                actions: manifest.plugin.actions.clone(),
                hash: p.hash().to_string(),
            }
        })
        .collect();
    json(StatusCode::OK, &plugins)
}

async fn reload_plugins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let plugins = state.plugins.clone();
    let dir = state.admin.plugins_dir.clone();
    let results = tokio::task::spawn_blocking(move || {
        plugins.reload_changed(dir.is_dir().then_some(dir.as_path()))
    })
    .await
    .unwrap_or_default();
    let mut result = ReloadResult {
        loaded: Vec::new(),
        refused: Vec::new(),
    };
    for outcome in results {
        match outcome {
            Ok(plugin) => result.loaded.push(plugin.name().to_string()),
            Err(err) => result.refused.push(err.to_string()),
        }
    }
    audit(
        &state,
        &caller,
        "plugins.reload",
        None,
        serde_json::json!({ "loaded": result.loaded, "refused": result.refused.len() }),
    );
    json(StatusCode::OK, &result)
}

async fn list_secrets(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Read) {
        return refused;
    }
    match state.admin.secrets.names() {
        Ok(names) => json(
            StatusCode::OK,
            &names
                .into_iter()
                .map(|(name, origin)| SecretInfo { name, origin })
                .collect::<Vec<_>>(),
        ),
        Err(err) => internal(err),
    }
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

async fn set_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    if !valid_secret_name(&name) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a secret's name is 1 to 64 lowercase letters, digits, `_` or `-`",
        );
    }
    let request: SecretRequest = match parse_json(&headers, &body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let secret = match (request.value, request.secret) {
        (Some(value), None) => Secret::Value { value },
        (None, Some(object)) if object.is_object() => match Secret::parse(&object.to_string()) {
            Ok(secret) => secret,
            Err(err) => return error(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()),
        },
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give exactly one of `value` (a plain secret) or `secret` (an OAuth token or service account, as JSON)",
            );
        }
    };
    let existed = state
        .admin
        .secrets
        .names()
        .is_ok_and(|n| n.contains_key(&name));
    match state.admin.secrets.set(&name, &secret) {
        Ok(()) => {
            let action = if existed {
                "secret.rotate"
            } else {
                "secret.set"
            };
            audit(&state, &caller, action, Some(name), serde_json::Value::Null);
            done()
        }
        Err(err) => internal(err),
    }
}

async fn delete_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    if !valid_secret_name(&name) {
        return error(StatusCode::NOT_FOUND, &format!("no stored secret `{name}`"));
    }
    match state.admin.secrets.delete(&name) {
        Ok(true) => {
            audit(
                &state,
                &caller,
                "secret.delete",
                Some(name),
                serde_json::Value::Null,
            );
            done()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, &format!("no stored secret `{name}`")),
        Err(err) => internal(err),
    }
}

async fn export_user(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let key = ConversationKey::new(channel, user);
    // Recorded first, so that the export itself is part of what is exported.
    audit(
        &state,
        &caller,
        "export",
        Some(key.to_string()),
        serde_json::Value::Null,
    );
    match state.privacy.export(&state.runtime, &key) {
        Ok(export) => json(StatusCode::OK, &export),
        Err(err) => internal(err),
    }
}

async fn erase_user(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let key = ConversationKey::new(channel, user);
    match state
        .privacy
        .erase(&state.runtime, &key, &caller.name)
        .await
    {
        Ok(report) => json(StatusCode::OK, &report),
        Err(err) => internal(err),
    }
}

async fn restriction(
    state: AppState,
    headers: HeaderMap,
    key: ConversationKey,
    on: bool,
) -> Response {
    let caller = match authorize(&state, &headers, Scope::Admin) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    match state
        .privacy
        .restrict(&state.runtime, &key, on, &caller.name)
        .await
    {
        Ok(()) => done(),
        Err(err) => internal(err),
    }
}

async fn restrict_user(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    restriction(state, headers, ConversationKey::new(channel, user), true).await
}

async fn lift_restriction(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    restriction(state, headers, ConversationKey::new(channel, user), false).await
}

/// Which audit entries.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AuditQuery {
    /// The newest this many (default 100).
    pub limit: Option<usize>,
}

async fn audit_log(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Admin) {
        return refused;
    }
    match state.privacy.audit.recent(query.limit.unwrap_or(100)) {
        Ok(entries) => json(StatusCode::OK, &entries),
        Err(err) => internal(err),
    }
}

async fn sweep(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers, Scope::Admin) {
        return refused;
    }
    match state.privacy.sweep(&state.runtime).await {
        Ok(report) => json(StatusCode::OK, &report),
        Err(err) => internal(err),
    }
}

async fn openapi() -> Response {
    json(StatusCode::OK, &crate::openapi::document())
}

/// The admin API's routes, and `/openapi.json`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/admin/v1/versions", get(list_versions).post(publish))
        .route("/admin/v1/versions/{hash}/rollback", post(rollback))
        .route("/admin/v1/conversations", get(list_conversations))
        .route("/admin/v1/conversations/{channel}/{user}", get(inspect))
        .route(
            "/admin/v1/conversations/{channel}/{user}/resume",
            post(resume),
        )
        .route(
            "/admin/v1/conversations/{channel}/{user}/messages",
            post(operator_message),
        )
        .route(
            "/admin/v1/conversations/{channel}/{user}/effects/retry",
            post(retry),
        )
        .route(
            "/admin/v1/conversations/{channel}/{user}/effects/skip",
            post(skip),
        )
        .route("/admin/v1/plugins", get(list_plugins))
        .route("/admin/v1/plugins/reload", post(reload_plugins))
        .route("/admin/v1/secrets", get(list_secrets))
        .route(
            "/admin/v1/secrets/{name}",
            put(set_secret).delete(delete_secret),
        )
        .route(
            "/admin/v1/users/{channel}/{user}",
            get(export_user).delete(erase_user),
        )
        .route(
            "/admin/v1/users/{channel}/{user}/restriction",
            put(restrict_user).delete(lift_restriction),
        )
        .route("/admin/v1/audit", get(audit_log))
        .route("/admin/v1/retention/sweep", post(sweep))
}
