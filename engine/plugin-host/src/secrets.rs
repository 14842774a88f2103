//! Secrets by name: API keys, OAuth tokens and service-account keys that plugins use without
//! ever reading them. The host injects them into requests to the origins a manifest approves,
//! signs with them (`crypto`), refreshes OAuth access tokens and exchanges service-account keys
//! for access tokens itself.

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
    /// A Google service account: the host signs JWT assertions with its key and exchanges them
    /// for access tokens (the JWT-bearer grant), caching the token here.
    ServiceAccount(ServiceAccount),
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

/// Google's token endpoint, where service-account assertions are exchanged by default.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

fn google_token_url() -> String {
    GOOGLE_TOKEN_URL.to_string()
}

/// A Google service account's credentials, with the access token the host last obtained.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// The account's email: the assertion's issuer.
    pub client_email: String,
    /// The private key, PEM (PKCS#8 `PRIVATE KEY` as in Google's JSON key file, or PKCS#1
    /// `RSA PRIVATE KEY`).
    pub private_key: String,
    /// The token endpoint (configured by an operator, not by the plugin).
    #[serde(default = "google_token_url")]
    pub token_url: String,
    /// The scopes asked for, space-separated
    /// (`https://www.googleapis.com/auth/spreadsheets.readonly`).
    pub scope: String,
    /// The access token last obtained (filled by the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When it expires, in ms since the Unix epoch (filled by the host).
    #[serde(default)]
    pub expires_at_ms: u64,
}

/// The scope a Google key file given without one is used with: the built-in `sheets` plugin's.
pub const DEFAULT_GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";

impl Secret {
    /// A secret as an operator writes it: a JSON object with `kind` (`value`, `oauth`,
    /// `service_account`) is that secret; Google's service-account key file (`"type":
    /// "service_account"`) is a service account with [`DEFAULT_GOOGLE_SCOPE`] unless it names a
    /// `scope`; anything else is a plain value (an API key).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let trimmed = text.trim();
        if !trimmed.starts_with('{') {
            return Ok(Secret::Value {
                value: text.to_string(),
            });
        }
        let object: serde_json::Value = serde_json::from_str(trimmed).map_err(|err| {
            SecretError::Invalid(format!(
                "a secret that starts with `{{` must be a JSON object (line {}, column {})",
                err.line(),
                err.column()
            ))
        })?;
        if object.get("kind").is_some() {
            return serde_json::from_value(object).map_err(|err| {
                // serde's message may quote a value: only name what is missing or unknown.
                let message = err.to_string();
                SecretError::Invalid(
                    if message.starts_with("missing field")
                        || message.starts_with("unknown variant")
                    {
                        format!("not a usable secret: {message}")
                    } else {
                        "not a usable secret: a field has the wrong type".into()
                    },
                )
            });
        }
        if object.get("type").and_then(|t| t.as_str()) == Some("service_account") {
            let scope = object
                .get("scope")
                .and_then(|s| s.as_str())
                .unwrap_or(DEFAULT_GOOGLE_SCOPE);
            return ServiceAccount::from_key_file(trimmed, scope).map(Secret::ServiceAccount);
        }
        Err(SecretError::Invalid(
            "a JSON secret needs a `kind` (`value`, `oauth` or `service_account`), or must be a Google service-account key file".into(),
        ))
    }
}

/// The fields of Google's service-account JSON key file that the host uses.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// The lifetime asked for in a service-account assertion (Google's maximum), in seconds.
pub(crate) const ASSERTION_LIFETIME_S: u64 = 3600;

impl ServiceAccount {
    /// The account described by Google's JSON key file (`client_email`, `private_key`,
    /// `token_uri`), asking for `scope`. The key is checked here, so that a bad file is refused
    /// when it is configured rather than at the first request.
    pub fn from_key_file(json: &str, scope: &str) -> Result<Self, SecretError> {
        // serde_json's message may quote the input: keep it out of the error.
        let file: KeyFile = serde_json::from_str(json).map_err(|err| {
            let message = err.to_string();
            SecretError::Invalid(if message.starts_with("missing field") {
                format!("not a service-account key file: {message}")
            } else {
                format!(
                    "not a service-account key file (line {}, column {})",
                    err.line(),
                    err.column()
                )
            })
        })?;
        if let Some(kind) = file.kind.as_deref()
            && kind != "service_account"
        {
            return Err(SecretError::Invalid(format!(
                "the key file is of type `{kind}`, not `service_account`"
            )));
        }
        let account = ServiceAccount {
            client_email: file.client_email,
            private_key: file.private_key,
            token_url: file.token_uri.unwrap_or_else(google_token_url),
            scope: scope.to_string(),
            access_token: None,
            expires_at_ms: 0,
        };
        account.key_pair().map_err(SecretError::Invalid)?;
        Ok(account)
    }

    /// The cached access token, if it is valid for more than `margin_ms` after `now_ms`.
    pub(crate) fn cached_token(&self, now_ms: u64, margin_ms: u64) -> Option<&str> {
        self.access_token
            .as_deref()
            .filter(|_| self.expires_at_ms > now_ms.saturating_add(margin_ms))
    }

    /// The RSA key pair in `private_key`.
    fn key_pair(&self) -> Result<ring::signature::RsaKeyPair, String> {
        use base64::Engine as _;
        let pem = self.private_key.trim();
        let label = pem
            .lines()
            .next()
            .and_then(|l| l.trim().strip_prefix("-----BEGIN "))
            .and_then(|l| l.strip_suffix("-----"))
            .ok_or("the private key is not PEM (no `-----BEGIN ...-----` line)")?;
        let body: String = pem
            .lines()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .flat_map(|l| l.chars().filter(|c| !c.is_ascii_whitespace()))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "the private key's PEM body is not base64")?;
        let pair = match label {
            "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(&der),
            other => {
                return Err(format!(
                    "the private key is a PEM `{other}`, not `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`"
                ));
            }
        };
        pair.map_err(|why| format!("the private key is not a usable RSA key: {why}"))
    }

    /// A signed JWT assertion for the JWT-bearer grant, issued at `now_s` (seconds since the
    /// Unix epoch) for an hour: RS256, `iss` the account, `scope`, `aud` the token endpoint.
    pub(crate) fn assertion(&self, now_s: u64) -> Result<String, String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_url,
            "iat": now_s,
            "exp": now_s + ASSERTION_LIFETIME_S,
        });
        let claims = b64.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let pair = self.key_pair()?;
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "signing the assertion failed".to_string())?;
        Ok(format!("{signed}.{}", b64.encode(signature)))
    }
}

impl From<ServiceAccount> for Secret {
    fn from(account: ServiceAccount) -> Self {
        Secret::ServiceAccount(account)
    }
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
            Secret::ServiceAccount(account) => write!(f, "Secret::{account:?}"),
        }
    }
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServiceAccount(<redacted>, client_email {}, scope {}, token_url {})",
            self.client_email, self.scope, self.token_url
        )
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
    /// A secret given to the host is not usable (a bad service-account key file).
    #[error("invalid secret: {0}")]
    Invalid(String),
}

/// Where secrets live. The server's implementation encrypts them at rest.
pub trait SecretStore: Send + Sync + std::fmt::Debug + 'static {
    /// The secret named `name`.
    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError>;
    /// Stores (or replaces) a secret; the host calls it with refreshed OAuth tokens and the
    /// access tokens it obtains for service accounts.
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
    /// secret's name is `<name>` in lowercase, its value read by [`Secret::parse`].
    pub fn from_env() -> Result<Self, SecretError> {
        let store = MemorySecrets::new();
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("INFLUXIFY_SECRET_") {
                let secret = Secret::parse(&value)
                    .map_err(|err| SecretError::Invalid(format!("{key}: {err}")))?;
                store.put(&name.to_ascii_lowercase(), secret)?;
            }
        }
        Ok(store)
    }

    /// The names of the secrets held.
    pub fn names(&self) -> Vec<String> {
        self.secrets
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
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
