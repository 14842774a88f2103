//! Outbound HTTP for plugins, run by the host with reqwest (rustls): every URL and every redirect
//! is checked against the plugin's grants, names may not resolve to private addresses, secrets
//! are injected only into requests to the origins approved for them, OAuth tokens are refreshed
//! here, responses are capped in size and timeouts are clamped to the call's deadline.
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
use crate::secrets::{OauthToken, Secret, SecretStore};

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

/// Runs requests for every plugin.
#[derive(Debug)]
pub struct Outbound {
    runtime: Option<tokio::runtime::Runtime>,
    responder: Option<Arc<dyn Responder>>,
    /// For OAuth refreshes: operator-configured endpoints, not plugin requests.
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
        http.secret_origins.contains_key(name)
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
        if let Some((name, _)) = &request.secret {
            let Some(origins) = http.secret_origins.get(name) else {
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
        let job = Job {
            outbound: self,
            http,
            request,
            url,
        };
        // The job borrows nothing across the thread boundary: it owns clones.
        let job = job.owned();
        runtime.spawn(async move {
            let result = tokio::time::timeout(budget, job.run()).await;
            let _ = tx.send(result.unwrap_or(Err(HttpError::Timeout)));
        });
        rx.recv_timeout(budget + Duration::from_millis(50))
            .unwrap_or(Err(HttpError::Timeout))
    }
}

struct Job<'a> {
    outbound: &'a Outbound,
    http: &'a PluginHttp,
    request: Request,
    url: Url,
}

impl Job<'_> {
    fn owned(self) -> OwnedJob {
        OwnedJob {
            client: self.http.client.clone(),
            responder: self.outbound.responder.clone(),
            token_client: self.outbound.token_client.clone(),
            secrets: self.outbound.secrets.clone(),
            grants: self.http.grants.clone(),
            secret_origins: self
                .request
                .secret
                .as_ref()
                .and_then(|(name, _)| self.http.secret_origins.get(name).cloned())
                .unwrap_or_default(),
            response_bytes: self.http.response_bytes,
            request: self.request,
            url: self.url,
        }
    }
}

struct OwnedJob {
    client: reqwest::Client,
    responder: Option<Arc<dyn Responder>>,
    token_client: reqwest::Client,
    secrets: Arc<dyn SecretStore>,
    grants: HttpGrants,
    secret_origins: Vec<Origin>,
    response_bytes: u64,
    request: Request,
    url: Url,
}

impl OwnedJob {
    async fn run(self) -> Result<Response, HttpError> {
        let secret = match &self.request.secret {
            Some((name, placement)) => {
                Some((name.clone(), placement.clone(), self.secret(name).await?))
            }
            None => None,
        };
        let response = self
            .follow(secret.as_ref().map(|(_, p, v)| (p, v.as_str())))
            .await?;
        // An OAuth token the provider refused may have been revoked or expired early: refresh
        // once and try again.
        if response.status == 401
            && let Some((name, placement, _)) = &secret
            && let Ok(Some(Secret::Oauth(token))) = self.secrets.get(name)
        {
            let fresh = self.refresh(name, &token).await?;
            return self.follow(Some((placement, fresh.as_str()))).await;
        }
        Ok(response)
    }

    /// The value to inject for secret `name`, refreshing an OAuth token about to expire.
    async fn secret(&self, name: &str) -> Result<String, HttpError> {
        match self.secrets.get(name) {
            Ok(Some(Secret::Value { value })) => Ok(value),
            Ok(Some(Secret::Oauth(token))) => {
                let now = crate::now_ms();
                if token.expires_at_ms != 0 && token.expires_at_ms <= now + 30_000 {
                    self.refresh(name, &token).await
                } else {
                    Ok(token.access_token)
                }
            }
            Ok(None) => Err(HttpError::Denied(format!(
                "secret `{name}` is not configured"
            ))),
            Err(err) => Err(HttpError::Transport(err.to_string())),
        }
    }

    /// Runs the refresh-token grant and stores the new tokens.
    async fn refresh(&self, name: &str, token: &OauthToken) -> Result<String, HttpError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", token.refresh_token.clone()),
            ("client_id", token.client_id.clone()),
        ];
        if let Some(secret) = &token.client_secret {
            form.push(("client_secret", secret.clone()));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let failed = |why: String| {
            HttpError::Transport(format!("refreshing OAuth secret `{name}` failed: {why}"))
        };
        let response = self
            .token_client
            .post(&token.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| failed(err.to_string()))?;
        let status = response.status();
        let json: serde_json::Value = response
            .json()
            .await
            .map_err(|err| failed(format!("status {status}, unreadable answer: {err}")))?;
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
        self.secrets
            .put(name, Secret::Oauth(fresh))
            .map_err(|err| failed(err.to_string()))?;
        tracing::info!(secret = name, "OAuth token refreshed");
        Ok(access.to_string())
    }

    /// Sends the request, following redirects that the grants allow.
    async fn follow(&self, secret: Option<(&Placement, &str)>) -> Result<Response, HttpError> {
        let mut method =
            reqwest::Method::from_bytes(self.request.method.as_bytes()).map_err(|_| {
                HttpError::Denied(format!("`{}` is not an HTTP method", self.request.method))
            })?;
        let mut body = self.request.body.clone();
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut target = url.clone();
            let mut builder_headers = self.request.headers.clone();
            if let Some((placement, value)) = secret
                && self.secret_origins.iter().any(|o| o.matches(&url))
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
            return match answer {
                Answer::Network(response) => self.read(response).await,
                Answer::Scripted(response) if response.body.len() as u64 > self.response_bytes => {
                    Err(HttpError::TooLarge)
                }
                Answer::Scripted(response) => Ok(response),
            };
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
