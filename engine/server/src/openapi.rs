//! `/openapi.json`: the admin API's OpenAPI 3 document, generated from [`ENDPOINTS`] and the
//! JSON Schemas of the request and response types (schemars), not written by hand. A test
//! calls every endpoint listed here, so the table cannot drift from the router.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};

use crate::admin::{
    AuditQuery, ConversationDetail, ConversationInfo, Done, ErrorBody, OperatorMessage, PluginInfo,
    PublishRefusal, PublishRequest, PublishResult, ReloadResult, SecretInfo, SecretRequest,
    VersionInfo,
};
use crate::audit::AuditEntry;
use crate::config::Scope;
use crate::privacy::{ErasureReport, Export, SweepReport};

/// A type's schema, added to the generator's components.
type SchemaFn = fn(&mut SchemaGenerator) -> schemars::Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// One admin API endpoint.
#[derive(Clone, Copy)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// The scope it needs.
    pub scope: Scope,
    /// The request body's type.
    pub request: Option<SchemaFn>,
    /// The success answer's status and type.
    pub response: (u16, SchemaFn),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Every admin endpoint.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "GET",
        path: "/admin/v1/versions",
        summary: "List the bot's flow versions",
        scope: Scope::Read,
        request: None,
        response: (200, schema::<Vec<VersionInfo>>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/versions",
        summary: "Publish a flow version (422 with the validator's diagnostics when invalid, 409 when it would strand conversations without a policy)",
        scope: Scope::Admin,
        request: Some(schema::<PublishRequest>),
        response: (201, schema::<PublishResult>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/versions/{hash}/rollback",
        summary: "Make an earlier version the one new conversations start on",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "GET",
        path: "/admin/v1/conversations",
        summary: "List conversations by version, flow and node (query: version, flow, node, limit)",
        scope: Scope::Read,
        request: None,
        response: (200, schema::<Vec<ConversationInfo>>),
    },
    Endpoint {
        method: "GET",
        path: "/admin/v1/conversations/{channel}/{user}",
        summary: "Inspect a conversation",
        scope: Scope::Read,
        request: None,
        response: (200, schema::<ConversationDetail>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/conversations/{channel}/{user}/resume",
        summary: "Give a handed-off conversation back to the bot",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/conversations/{channel}/{user}/messages",
        summary: "Send a message to the user as an operator",
        scope: Scope::Admin,
        request: Some(schema::<OperatorMessage>),
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/conversations/{channel}/{user}/effects/retry",
        summary: "Try a paused conversation's failed effect again",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/conversations/{channel}/{user}/effects/skip",
        summary: "Drop a paused conversation's failed effect and carry on",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "GET",
        path: "/admin/v1/plugins",
        summary: "List the loaded plugins",
        scope: Scope::Read,
        request: None,
        response: (200, schema::<Vec<PluginInfo>>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/plugins/reload",
        summary: "Reload plugins whose files changed, and load new ones",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<ReloadResult>),
    },
    Endpoint {
        method: "GET",
        path: "/admin/v1/secrets",
        summary: "List secret names and origins (never values)",
        scope: Scope::Read,
        request: None,
        response: (200, schema::<Vec<SecretInfo>>),
    },
    Endpoint {
        method: "PUT",
        path: "/admin/v1/secrets/{name}",
        summary: "Set or rotate a secret (write-only; sealed at rest)",
        scope: Scope::Admin,
        request: Some(schema::<SecretRequest>),
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "DELETE",
        path: "/admin/v1/secrets/{name}",
        summary: "Delete a stored secret",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "GET",
        path: "/admin/v1/users/{channel}/{user}",
        summary: "Export everything stored about an end user (access, portability)",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Export>),
    },
    Endpoint {
        method: "DELETE",
        path: "/admin/v1/users/{channel}/{user}",
        summary: "Erase everything stored about an end user",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<ErasureReport>),
    },
    Endpoint {
        method: "PUT",
        path: "/admin/v1/users/{channel}/{user}/restriction",
        summary: "Restrict processing of an end user's messages",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "DELETE",
        path: "/admin/v1/users/{channel}/{user}/restriction",
        summary: "Lift a restriction",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Done>),
    },
    Endpoint {
        method: "GET",
        path: "/admin/v1/audit",
        summary: "The newest audit log entries (query: limit)",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<Vec<AuditEntry>>),
    },
    Endpoint {
        method: "POST",
        path: "/admin/v1/retention/sweep",
        summary: "Enforce the retention periods now",
        scope: Scope::Admin,
        request: None,
        response: (200, schema::<SweepReport>),
    },
];

/// The path's `{parameters}`.
fn parameters(path: &str) -> Vec<serde_json::Value> {
    path.split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            serde_json::json!({
                "name": name, "in": "path", "required": true, "schema": { "type": "string" }
            })
        })
        .collect()
}

/// The OpenAPI document.
pub fn document() -> serde_json::Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    // Query types are documented in the summaries; make sure their schemas exist too.
    let _ = generator.subschema_for::<AuditQuery>();
    let mut paths = serde_json::Map::new();
    for endpoint in ENDPOINTS {
        let mut operation = serde_json::json!({
            "summary": endpoint.summary,
            "security": [{ "apiKey": [] }],
            "x-scope": endpoint.scope,
            "parameters": parameters(endpoint.path),
            "responses": {
                endpoint.response.0.to_string(): {
                    "description": "Success",
                    "content": { "application/json": { "schema": (endpoint.response.1)(&mut generator) } }
                },
                "401": { "description": "No valid API key", "content": { "application/json": { "schema": error.clone() } } },
                "403": { "description": "The key's scope is too narrow", "content": { "application/json": { "schema": error.clone() } } },
            }
        });
        if endpoint.method == "POST" && endpoint.path == "/admin/v1/versions" {
            let refusal = generator.subschema_for::<PublishRefusal>();
            for (status, why) in [
                ("422", "The flows do not compile"),
                ("409", "Conversations would be stranded"),
            ] {
                operation["responses"][status] = serde_json::json!({
                    "description": why,
                    "content": { "application/json": { "schema": refusal.clone() } }
                });
            }
        }
        if let Some(request) = endpoint.request {
            operation["requestBody"] = serde_json::json!({
                "required": true,
                "content": { "application/json": { "schema": request(&mut generator) } }
            });
        }
        let item = paths
            .entry(endpoint.path.to_string())
            .or_insert_with(|| serde_json::json!({}));
        item[endpoint.method.to_lowercase()] = operation;
    }
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Influxify admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Flow versions, conversations, plugins, secrets and data-subject requests. Bearer API keys (`influxify admin-key`), scoped read or admin."
        },
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } }
        }
    })
}
