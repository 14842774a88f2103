//! Secrets by name: API keys and OAuth tokens that plugins use without ever reading them. The
//! host injects them into requests to the origins a manifest approves, signs with them
//! (`crypto`), and refreshes OAuth access tokens itself.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// A secret's value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Secret {
    /// A static value (an API key, an app secret).
    Value {
        /// The value.
        value: String,
    },
    /// OAuth 2.0 tokens the host refreshes with the refresh-token grant.
    Oauth(OauthToken),
}

/// OAuth 2.0 tokens and where to refresh them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OauthToken {
    /// The current access token.
    pub access_token: String,
    /// When it expires, in ms since the Unix epoch (0: unknown).
    #[serde(default)]
    pub expires_at_ms: u64,
    /// The refresh token.
    pub refresh_token: String,
    /// The token endpoint (configured by an operator, not by the plugin).
    pub token_url: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret, if the provider wants one.
    #[serde(default)]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value { .. } => f.write_str("Secret::Value(<redacted>)"),
            Secret::Oauth(token) => write!(
                f,
                "Secret::Oauth(<redacted>, token_url {})",
                token.token_url
            ),
        }
    }
}

impl std::fmt::Debug for OauthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OauthToken(<redacted>, token_url {})", self.token_url)
    }
}

/// A secret store error.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The backend failed.
    #[error("the secret store failed: {0}")]
    Backend(String),
}

/// Where secrets live. The server's implementation encrypts them at rest.
pub trait SecretStore: Send + Sync + std::fmt::Debug + 'static {
    /// The secret named `name`.
    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError>;
    /// Stores (or replaces) a secret; the host calls it with refreshed OAuth tokens.
    fn put(&self, name: &str, secret: Secret) -> Result<(), SecretError>;
}

/// Secrets held in memory (tools, tests, and secrets given through the environment).
#[derive(Debug, Default)]
pub struct MemorySecrets {
    secrets: RwLock<HashMap<String, Secret>>,
}

impl MemorySecrets {
    /// An empty store.
    pub fn new() -> Self {
        MemorySecrets::default()
    }

    /// A store with the secrets given as `INFLUXIFY_SECRET_<NAME>` environment variables: the
    /// secret's name is `<name>` in lowercase.
    pub fn from_env() -> Self {
        let store = MemorySecrets::new();
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("INFLUXIFY_SECRET_") {
                let _ = store.put(&name.to_ascii_lowercase(), Secret::Value { value });
            }
        }
        store
    }

    /// Adds a static secret.
    pub fn with(self, name: &str, value: &str) -> Self {
        let _ = self.put(
            name,
            Secret::Value {
                value: value.to_string(),
            },
        );
        self
    }
}

impl SecretStore for MemorySecrets {
    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        let secrets = self
            .secrets
            .read()
            .map_err(|_| SecretError::Backend("poisoned".into()))?;
        Ok(secrets.get(name).cloned())
    }

    fn put(&self, name: &str, secret: Secret) -> Result<(), SecretError> {
        let mut secrets = self
            .secrets
            .write()
            .map_err(|_| SecretError::Backend("poisoned".into()))?;
        secrets.insert(name.to_string(), secret);
        Ok(())
    }
}
