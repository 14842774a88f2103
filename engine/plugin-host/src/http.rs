//! Outbound HTTP for plugins, run by the host with reqwest (rustls): every URL and every redirect
//! is checked against the plugin's grants, names may not resolve to private addresses, secrets
//! are injected only into requests to the origins approved for them, OAuth tokens are refreshed
//! and service-account keys exchanged for access tokens here, responses are capped in size and
//! timeouts are clamped to the call's deadline.
//!
//! Host functions are synchronous (they run on the invocation's blocking thread); requests run
//! on a small runtime of their own, so a plugin call never needs the caller's executor.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::grants::{HttpGrants, Origin};
use crate::secrets::{OauthToken, Secret, SecretStore, ServiceAccount};

/// The most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Where a secret goes in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// A header with this name.
    Header(String),
    /// A query parameter with this name.
    Query(String),
}

/// An outbound request, as a plugin asks for it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST` ...
    pub method: String,
    /// The URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Vec<u8>>,
    /// A secret to inject, by name.
    pub secret: Option<(String, Placement)>,
    /// The plugin's timeout (clamped to the call's deadline).
    pub timeout_ms: Option<u32>,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not allowed by the grants.
    #[error("denied: {0}")]
    Denied(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The response was larger than the cap.
    #[error("response too large")]
    TooLarge,
    /// The call used up its request budget.
    #[error("request budget exhausted")]
    BudgetExhausted,
    /// DNS, TLS or connection failure.
    #[error("transport: {0}")]
    Transport(String),
}

/// A name resolved to an address the grants do not allow.
#[derive(Debug)]
struct PrivateAddress(String);

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrivateAddress {}

/// Resolves names and refuses the answer if an address is not public (unless granted).
#[derive(Debug)]
struct GrantedResolver {
    grants: HttpGrants,
}

impl Resolve for GrantedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let grants = self.grants.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !grants.may_connect(a.ip())) {
                return Err(Box::new(PrivateAddress(format!(
                    "`{host}` resolves to {}, a non-public address that no grant names",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// One plugin's outbound HTTP: its grants and its client.
#[derive(Debug)]
pub struct PluginHttp {
    grants: HttpGrants,
    secret_origins: BTreeMap<String, Vec<Origin>>,
    client: reqwest::Client,
    response_bytes: u64,
}

/// Answers requests instead of the network (the plugin test harness): every grant check has
/// passed by then, and the secret is already injected.
pub trait Responder: Send + Sync + std::fmt::Debug + 'static {
    /// The response to `method` `url` with `headers` and `body`, or why there is none.
    fn respond(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, String>;
}

impl PluginHttp {
    /// Where secret `name` may go, if it is granted: by its own name, or by a grant of a name
    /// prefix (`messenger_page_token_*`: one token per page).
    fn secret_origins_of(&self, name: &str) -> Option<&Vec<Origin>> {
        self.secret_origins.get(name).or_else(|| {
            self.secret_origins.iter().find_map(|(granted, origins)| {
                let prefix = granted.strip_suffix('*')?;
                (name.len() > prefix.len() && name.starts_with(prefix)).then_some(origins)
            })
        })
    }
}

/// Runs requests for every plugin.
#[derive(Debug)]
pub struct Outbound {
    runtime: Option<tokio::runtime::Runtime>,
    responder: Option<Arc<dyn Responder>>,
    refresher: Arc<Refresher>,
    /// For OAuth refreshes and service-account tokens: operator-configured endpoints, not
    /// plugin requests.
    token_client: reqwest::Client,
    secrets: Arc<dyn SecretStore>,
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Outbound {
    /// The executor, with the secret store it injects from.
    pub fn new(secrets: Arc<dyn SecretStore>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plugin-http")
            .enable_all()
            .build()?;
        let token_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Outbound {
            runtime: Some(runtime),
            responder: None,
            refresher: Arc::default(),
            token_client,
            secrets,
        })
    }

    /// Answers every request with `responder` instead of the network.
    pub fn with_responder(mut self, responder: Arc<dyn Responder>) -> Self {
        self.responder = Some(responder);
        self
    }

    /// The secret store.
    pub fn secrets(&self) -> &Arc<dyn SecretStore> {
        &self.secrets
    }

    /// A plugin's HTTP access.
    pub fn plugin(
        &self,
        plugin: &str,
        grants: HttpGrants,
        secret_origins: BTreeMap<String, Vec<Origin>>,
        response_bytes: u64,
    ) -> Result<PluginHttp, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(format!("influxify-plugin/{plugin}"))
            .dns_resolver(Arc::new(GrantedResolver {
                grants: grants.clone(),
            }))
            .build()
            .map_err(|err| err.to_string())?;
        Ok(PluginHttp {
            grants,
            secret_origins,
            client,
            response_bytes,
        })
    }

    /// Whether `plugin` may use secret `name` at all.
    pub fn granted(http: &PluginHttp, name: &str) -> bool {
        http.secret_origins_of(name).is_some()
    }

    /// Sends `request` for a plugin, answering by `deadline` at the latest.
    pub fn send(
        &self,
        http: &PluginHttp,
        request: Request,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let now = Instant::now();
        let mut budget = deadline.saturating_duration_since(now);
        if let Some(ms) = request.timeout_ms {
            budget = budget.min(Duration::from_millis(u64::from(ms)));
        }
        if budget.is_zero() {
            return Err(HttpError::Timeout);
        }
        let url = http.grants.check(&request.url).map_err(HttpError::Denied)?;
        check_headers(&request)?;
        if let Some((name, _)) = &request.secret {
            let Some(origins) = http.secret_origins_of(name) else {
                return Err(HttpError::Denied(format!(
                    "secret `{name}` is not granted to this plugin"
                )));
            };
            if !origins.iter().any(|o| o.matches(&url)) {
                return Err(HttpError::Denied(format!(
                    "secret `{name}` may not be sent to `{}`",
                    crate::grants::origin_of(&url)
                )));
            }
        }
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| HttpError::Transport("the HTTP executor has stopped".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // The job owns clones: nothing it holds borrows across the thread boundary.
        let job = Job {
            client: http.client.clone(),
            responder: self.responder.clone(),
            refresher: self.refresher.clone(),
            token_client: self.token_client.clone(),
            secrets: self.secrets.clone(),
            grants: http.grants.clone(),
            secret_origins: request
                .secret
                .as_ref()
                .and_then(|(name, _)| http.secret_origins_of(name).cloned())
                .unwrap_or_default(),
            response_bytes: http.response_bytes,
            request,
            url,
        };
        runtime.spawn(async move {
            let result = tokio::time::timeout(budget, job.run()).await;
            let _ = tx.send(result.unwrap_or(Err(HttpError::Timeout)));
        });
        rx.recv_timeout(budget + Duration::from_millis(50))
            .unwrap_or(Err(HttpError::Timeout))
    }
}

/// One request on its way: everything it needs, owned.
struct Job {
    client: reqwest::Client,
    responder: Option<Arc<dyn Responder>>,
    refresher: Arc<Refresher>,
    token_client: reqwest::Client,
    secrets: Arc<dyn SecretStore>,
    grants: HttpGrants,
    secret_origins: Vec<Origin>,
    response_bytes: u64,
    request: Request,
    url: Url,
}

impl Job {
    async fn run(self) -> Result<Response, HttpError> {
        let secret = match &self.request.secret {
            Some((name, placement)) => {
                Some((name.clone(), placement.clone(), self.secret(name).await?))
            }
            None => None,
        };
        let (response, carried) = self
            .follow(secret.as_ref().map(|(_, p, v)| (p, v.as_str())))
            .await?;
        // An access token the provider refused (on a request that carried it) may have been
        // revoked or expired early: refresh it (or obtain a new one) once and try again.
        if response.status == 401
            && carried
            && let Some((name, placement, used)) = &secret
            && let Ok(Some(Secret::Oauth(_) | Secret::ServiceAccount(_))) = self.secrets.get(name)
        {
            let fresh = self.refresh(name, used).await?;
            return Ok(self.follow(Some((placement, fresh.as_str()))).await?.0);
        }
        Ok(response)
    }

    /// The value to inject for secret `name`, refreshing an OAuth token about to expire and
    /// obtaining a service account's token unless one is cached and valid for a while yet.
    async fn secret(&self, name: &str) -> Result<String, HttpError> {
        match self.secrets.get(name) {
            Ok(Some(Secret::Value { value })) => Ok(value),
            Ok(Some(Secret::Oauth(token))) => {
                let now = crate::now_ms();
                if token.expires_at_ms != 0 && token.expires_at_ms <= now + EXPIRY_MARGIN_MS {
                    self.refresh(name, &token.access_token).await
                } else {
                    Ok(token.access_token)
                }
            }
            Ok(Some(Secret::ServiceAccount(account))) => {
                match account.cached_token(crate::now_ms(), EXPIRY_MARGIN_MS) {
                    Some(token) => Ok(token.to_string()),
                    None => {
                        self.refresh(name, account.access_token.as_deref().unwrap_or(""))
                            .await
                    }
                }
            }
            Ok(None) => Err(HttpError::Denied(format!(
                "secret `{name}` is not configured"
            ))),
            Err(err) => Err(HttpError::Transport(err.to_string())),
        }
    }

    /// Refreshes OAuth secret `name` (or obtains a new access token for service-account secret
    /// `name`), whose access token `used` was found stale (`""`: none cached). One refresh per
    /// secret runs at a time, as a task of its own: a caller that gives up (its deadline) does
    /// not cancel it, so rotated and new tokens are always stored.
    async fn refresh(&self, name: &str, used: &str) -> Result<String, HttpError> {
        let lock = self.refresher.lock_for(name);
        let (secrets, client, name, used) = (
            self.secrets.clone(),
            self.token_client.clone(),
            name.to_string(),
            used.to_string(),
        );
        let task = tokio::spawn(async move {
            let mut last = lock.lock().await;
            let secret = match secrets.get(&name) {
                Ok(Some(secret @ (Secret::Oauth(_) | Secret::ServiceAccount(_)))) => secret,
                Ok(_) => {
                    return Err(HttpError::Denied(format!(
                        "secret `{name}` is not an OAuth token or a service account"
                    )));
                }
                Err(err) => return Err(HttpError::Transport(err.to_string())),
            };
            let current = match &secret {
                Secret::Oauth(token) => token.access_token.as_str(),
                Secret::ServiceAccount(account) => account.access_token.as_deref().unwrap_or(""),
                Secret::Value { .. } => "",
            };
            if current != used {
                // Refreshed by another call meanwhile.
                return Ok(current.to_string());
            }
            // The token this host just obtained, refused again at once: refreshing in a loop
            // cannot help (and would let a plugin hammer the token endpoint).
            if last
                .as_ref()
                .is_some_and(|(at, token)| *token == used && at.elapsed() < MIN_REFRESH_INTERVAL)
            {
                return Err(HttpError::Denied(format!(
                    "the provider refused secret `{name}` right after its access token was renewed; check the account's access"
                )));
            }
            let (fresh, access) = match secret {
                Secret::ServiceAccount(account) => {
                    let fresh = service_account_token(&client, &name, &account).await?;
                    let access = fresh.access_token.clone().unwrap_or_default();
                    tracing::info!(secret = %name, "service-account token obtained");
                    (Secret::ServiceAccount(fresh), access)
                }
                Secret::Oauth(token) => {
                    let fresh = refresh_token(&client, &name, &token).await?;
                    let access = fresh.access_token.clone();
                    tracing::info!(secret = %name, "OAuth token refreshed");
                    (Secret::Oauth(fresh), access)
                }
                Secret::Value { .. } => {
                    return Err(HttpError::Denied(format!(
                        "secret `{name}` is a static value, not an access token"
                    )));
                }
            };
            secrets
                .put(&name, fresh)
                .map_err(|err| HttpError::Transport(err.to_string()))?;
            *last = Some((Instant::now(), access.clone()));
            Ok(access)
        });
        task.await.map_err(|err| {
            HttpError::Transport(format!("renewing the access token failed: {err}"))
        })?
    }

    /// Sends the request, following redirects that the grants allow.
    /// Returns the final response and whether its request carried the secret.
    async fn follow(
        &self,
        secret: Option<(&Placement, &str)>,
    ) -> Result<(Response, bool), HttpError> {
        let mut method =
            reqwest::Method::from_bytes(self.request.method.as_bytes()).map_err(|_| {
                HttpError::Denied(format!("`{}` is not an HTTP method", self.request.method))
            })?;
        let mut body = self.request.body.clone();
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut target = url.clone();
            let mut builder_headers = self.request.headers.clone();
            let carries = secret.is_some() && self.secret_origins.iter().any(|o| o.matches(&url));
            if let Some((placement, value)) = secret
                && carries
            {
                match placement {
                    Placement::Bearer => {
                        builder_headers.push(("authorization".into(), format!("Bearer {value}")));
                    }
                    Placement::Header(name) => {
                        builder_headers.push((name.clone(), value.to_string()))
                    }
                    Placement::Query(name) => {
                        target.query_pairs_mut().append_pair(name, value);
                    }
                }
            }
            let answer = match &self.responder {
                Some(responder) => Answer::Scripted(
                    responder
                        .respond(method.as_str(), &target, &builder_headers, body.as_deref())
                        .map_err(HttpError::Transport)?,
                ),
                None => {
                    let mut builder = self.client.request(method.clone(), target);
                    for (name, value) in &builder_headers {
                        builder = builder.header(name.as_str(), value.as_str());
                    }
                    if let Some(body) = &body {
                        builder = builder.body(body.clone());
                    }
                    Answer::Network(builder.send().await.map_err(transport)?)
                }
            };
            let status = answer.status();
            if status.is_redirection()
                && let Some(location) = answer.location()
            {
                let next = url.join(&location).map_err(|err| {
                    HttpError::Transport(format!("bad redirect `{location}`: {err}"))
                })?;
                url = self
                    .grants
                    .check(next.as_str())
                    .map_err(|why| HttpError::Denied(format!("redirect refused: {why}")))?;
                if status == reqwest::StatusCode::SEE_OTHER
                    || (method == reqwest::Method::POST
                        && (status == reqwest::StatusCode::MOVED_PERMANENTLY
                            || status == reqwest::StatusCode::FOUND))
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                continue;
            }
            let response = match answer {
                Answer::Network(response) => self.read(response).await?,
                Answer::Scripted(response) if response.body.len() as u64 > self.response_bytes => {
                    return Err(HttpError::TooLarge);
                }
                Answer::Scripted(response) => response,
            };
            return Ok((response, carries));
        }
        Err(HttpError::Transport(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Reads the response body up to the cap.
    async fn read(&self, response: reqwest::Response) -> Result<Response, HttpError> {
        if response
            .content_length()
            .is_some_and(|length| length > self.response_bytes)
        {
            return Err(HttpError::TooLarge);
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(transport)?;
            if (body.len() + chunk.len()) as u64 > self.response_bytes {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A response from the network or from a script.
enum Answer {
    Network(reqwest::Response),
    Scripted(Response),
}

impl Answer {
    fn status(&self) -> reqwest::StatusCode {
        match self {
            Answer::Network(response) => response.status(),
            Answer::Scripted(response) => reqwest::StatusCode::from_u16(response.status)
                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn location(&self) -> Option<String> {
        match self {
            Answer::Network(response) => response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Answer::Scripted(response) => response
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.clone()),
        }
    }
}

/// How long an access token must stay valid to be injected as it is, in ms.
const EXPIRY_MARGIN_MS: u64 = 30_000;

/// What a service-account token lives when the endpoint does not say (Google's tokens: an hour).
const DEFAULT_TOKEN_LIFETIME_S: u64 = 3600;

/// The shortest time between two refreshes of one secret caused by a 401.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// When a secret was last refreshed here, and the access token obtained.
type SecretLock = Arc<tokio::sync::Mutex<Option<(Instant, String)>>>;

/// One lock per OAuth or service-account secret, holding when it was last refreshed and the
/// token obtained.
#[derive(Debug, Default)]
struct Refresher {
    locks: std::sync::Mutex<std::collections::HashMap<String, SecretLock>>,
}

impl Refresher {
    fn lock_for(&self, name: &str) -> SecretLock {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(name.to_string()).or_default().clone()
    }
}

/// Runs the refresh-token grant against the token endpoint (configured by an operator).
async fn refresh_token(
    client: &reqwest::Client,
    name: &str,
    token: &OauthToken,
) -> Result<OauthToken, HttpError> {
    let mut form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", token.refresh_token.clone()),
        ("client_id", token.client_id.clone()),
    ];
    if let Some(secret) = &token.client_secret {
        form.push(("client_secret", secret.clone()));
    }
    let failed = |why: String| {
        HttpError::Transport(format!("refreshing OAuth secret `{name}` failed: {why}"))
    };
    let (status, json) = post_form(client, &token.token_url, &form)
        .await
        .map_err(failed)?;
    if status.is_client_error() {
        // `invalid_grant`: revoked or expired. Retrying cannot help; the account owner must
        // connect it again.
        return Err(HttpError::Denied(format!(
            "the token endpoint refused to refresh OAuth secret `{name}` (status {status}, {}); connect the account again",
            json["error"].as_str().unwrap_or("no error code")
        )));
    }
    let Some(access) = json["access_token"].as_str() else {
        return Err(failed(format!(
            "status {status}, no access_token in the answer"
        )));
    };
    let mut fresh = token.clone();
    fresh.access_token = access.to_string();
    if let Some(refresh) = json["refresh_token"].as_str() {
        fresh.refresh_token = refresh.to_string();
    }
    fresh.expires_at_ms = json["expires_in"]
        .as_u64()
        .map_or(0, |s| crate::now_ms() + s * 1000);
    Ok(fresh)
}

/// The JWT-bearer grant's type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Exchanges a signed assertion for an access token at the account's token endpoint
/// (configured by an operator): the account, with the new token and its expiry.
async fn service_account_token(
    client: &reqwest::Client,
    name: &str,
    account: &ServiceAccount,
) -> Result<ServiceAccount, HttpError> {
    let now = crate::now_ms();
    // A key that does not sign is a misconfiguration, as a refusal would be.
    let assertion = account
        .assertion(now / 1000)
        .map_err(|why| HttpError::Denied(format!("service-account secret `{name}`: {why}")))?;
    let form = [
        ("grant_type", JWT_BEARER.to_string()),
        ("assertion", assertion),
    ];
    let failed = |why: String| {
        HttpError::Transport(format!(
            "obtaining a token for service-account secret `{name}` failed: {why}"
        ))
    };
    let (status, json) = post_form(client, &account.token_url, &form)
        .await
        .map_err(failed)?;
    if status.is_client_error() {
        // `invalid_grant` (a deleted or disabled key, a bad signature, a clock far off),
        // `invalid_scope`, `unauthorized_client`: retrying cannot help; the operator must fix
        // the account's key or scope.
        let description = json["error_description"]
            .as_str()
            .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        return Err(HttpError::Denied(format!(
            "the token endpoint refused service-account secret `{name}` (status {status}, {}{description}); check the account's key and scope",
            json["error"].as_str().unwrap_or("no error code")
        )));
    }
    let Some(access) = json["access_token"].as_str() else {
        return Err(failed(format!(
            "status {status}, no access_token in the answer"
        )));
    };
    let lifetime = json["expires_in"]
        .as_u64()
        .unwrap_or(DEFAULT_TOKEN_LIFETIME_S);
    let mut fresh = account.clone();
    fresh.access_token = Some(access.to_string());
    // From before the exchange: the token expires no later than this.
    fresh.expires_at_ms = now + lifetime * 1000;
    Ok(fresh)
}

/// POSTs `form` (form-encoded) to a token endpoint: the status and the JSON answer (`null` if
/// the answer is not JSON).
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, String)],
) -> Result<(reqwest::StatusCode, serde_json::Value), String> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|err| err.without_url().to_string())?;
    let status = response.status();
    let json = response.json().await.unwrap_or_default();
    Ok((status, json))
}

/// Headers a plugin may not set: the host decides where a request goes and how it is framed
/// (a plugin's own `Host` could route an injected secret to another site behind a shared
/// front), and a plugin may not shadow the header its secret is injected into.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn check_headers(request: &Request) -> Result<(), HttpError> {
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(HttpError::Denied(format!(
                "header `{name}` is set by the host, not by plugins"
            )));
        }
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(HttpError::Denied(format!("header `{name}` is malformed")));
        }
        let shadows = match &request.secret {
            Some((_, Placement::Bearer)) => lower == "authorization",
            Some((_, Placement::Header(secret_header))) => {
                lower == secret_header.to_ascii_lowercase()
            }
            _ => false,
        };
        if shadows {
            return Err(HttpError::Denied(format!(
                "header `{name}` is where the host puts the secret"
            )));
        }
    }
    if let Some((_, Placement::Header(name))) = &request.secret
        && (RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
            || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err())
    {
        return Err(HttpError::Denied(format!(
            "a secret cannot be placed in header `{name}`"
        )));
    }
    Ok(())
}

/// Classifies a reqwest error: a refused address is a denial, a timeout a timeout.
fn transport(err: reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(private) = cause.downcast_ref::<PrivateAddress>() {
            return HttpError::Denied(private.0.clone());
        }
        source = cause.source();
    }
    if err.is_timeout() {
        return HttpError::Timeout;
    }
    // Without the URL: it may carry a secret injected as a query parameter.
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    HttpError::Transport(message)
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], secret: Option<Placement>) -> Request {
        Request {
            method: "GET".into(),
            url: "https://api.example.com/".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
            secret: secret.map(|p| ("key".to_string(), p)),
            timeout_ms: None,
        }
    }

    #[test]
    fn plugins_cannot_set_routing_framing_or_secret_headers() {
        assert!(check_headers(&request(&[("accept", "application/json")], None)).is_ok());
        for bad in ["Host", "content-length", "Transfer-Encoding", "connection"] {
            assert!(
                check_headers(&request(&[(bad, "x")], None)).is_err(),
                "{bad}"
            );
        }
        assert!(check_headers(&request(&[("x-evil", "a\r\nHost: b")], None)).is_err());
        assert!(
            check_headers(&request(
                &[("Authorization", "Bearer mine")],
                Some(Placement::Bearer)
            ))
            .is_err()
        );
        assert!(
            check_headers(&request(
                &[("X-Api-Key", "mine")],
                Some(Placement::Header("x-api-key".into()))
            ))
            .is_err()
        );
        assert!(check_headers(&request(&[], Some(Placement::Header("Host".into())))).is_err());
    }
}
