//! A small real HTTP/1.1 server on 127.0.0.1 for the tests: it records every request and answers
//! by path (`/ok`, `/redirect?to=URL`, `/big?bytes=N`, `/slow?ms=N`, `/token`, `/sa-token`,
//! `/protected`, `/messages`), and counts the connections it accepts.

use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::http_server::{HttpServer, Request, Response};

/// The service account `/sa-token` accepts assertions from.
pub const SA_EMAIL: &str = "robot@influxify-tests.iam.gserviceaccount.com";
/// The scope `/sa-token` expects.
pub const SA_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";
/// The test account's private key (PKCS#8 PEM, made with
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`).
pub const SA_PRIVATE_KEY: &str = include_str!("fixtures/service-account.key.pem");
/// Its public key, DER `RSAPublicKey` (`openssl rsa -RSAPublicKey_out -outform DER`).
const SA_PUBLIC_KEY: &[u8] = include_bytes!("fixtures/service-account.pub.der");

/// The server.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The access token `/protected` accepts (`/token` hands out `fresh-token`).
    pub accepted: Arc<Mutex<String>>,
    /// The status `/messages` answers (200, the default, with `{"message_id": "mid.1"}`).
    pub messages_status: Arc<Mutex<u16>>,
    /// Whether `/sa-token` refuses every assertion with 400 `invalid_grant`.
    pub sa_refuses: Arc<Mutex<bool>>,
    http: HttpServer,
}

impl Server {
    /// Starts a server.
    pub fn start() -> Server {
        let (http, listener) = HttpServer::bind();
        let server = Server {
            url: http.url.clone(),
            accepted: Arc::new(Mutex::new("fresh-token".into())),
            messages_status: Arc::new(Mutex::new(200)),
            sa_refuses: Arc::default(),
            http,
        };
        let handle = server.clone();
        listener.serve(move |request| handle.answer(request));
        server
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.http.requests()
    }

    /// Has `/messages` answer `status` from now on.
    pub fn answer_messages_with(&self, status: u16) {
        *self.messages_status.lock().unwrap() = status;
    }

    /// Has `/sa-token` refuse every assertion (400 `invalid_grant`) from now on, or not.
    pub fn refuse_assertions(&self, refuse: bool) {
        *self.sa_refuses.lock().unwrap() = refuse;
    }

    /// How many connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.http.connections()
    }

    fn answer(&self, request: &Request) -> Response {
        let number = |name: &str| {
            request
                .query(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match request.path.as_str() {
            "/ok" => Response::new(200, "hello"),
            "/redirect" => {
                Response::new(302, "").header("location", request.query("to").unwrap_or_default())
            }
            "/big" => Response::new(200, vec![b'x'; number("bytes")]),
            "/slow" => {
                std::thread::sleep(std::time::Duration::from_millis(number("ms") as u64));
                Response::new(200, "late")
            }
            "/token" => Response::json(
                200,
                &serde_json::json!({
                    "access_token": "fresh-token",
                    "expires_in": 3600,
                    "token_type": "Bearer",
                }),
            ),
            // Google's token endpoint for service accounts: a JWT-bearer assertion signed with
            // the test key, for the test account and scope, addressed to this endpoint, for an
            // hour, gets `sa-token`; anything else is `invalid_grant`, with why.
            "/sa-token" => {
                let checked = if *self.sa_refuses.lock().unwrap() {
                    Err("refused by the test".to_string())
                } else {
                    check_assertion(&request.text(), &format!("{}/sa-token", self.url))
                };
                match checked {
                    Ok(()) => Response::json(
                        200,
                        &serde_json::json!({
                            "access_token": "sa-token",
                            "expires_in": 3600,
                            "token_type": "Bearer",
                        }),
                    ),
                    Err(why) => Response::json(
                        400,
                        &serde_json::json!({"error": "invalid_grant", "error_description": why}),
                    ),
                }
            }
            "/protected" => {
                let expected = format!("Bearer {}", self.accepted.lock().unwrap());
                if request.header("authorization") == Some(expected.as_str()) {
                    Response::new(200, "secret stuff")
                } else {
                    Response::new(401, "unauthorized")
                }
            }
            "/messages" => {
                let status = *self.messages_status.lock().unwrap();
                if status == 200 {
                    Response::json(status, &serde_json::json!({"message_id": "mid.1"}))
                } else {
                    Response::json(status, &serde_json::json!({"error": "refused"}))
                }
            }
            _ => Response::new(404, "not found"),
        }
    }
}

/// Checks a JWT-bearer grant's form body as Google would: the grant type, the RS256 signature
/// (with the test account's public key) and the claims.
fn check_assertion(form: &str, audience: &str) -> Result<(), String> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err(format!("bad grant_type {:?}", field("grant_type")));
    }
    let jwt = field("assertion").ok_or("no assertion")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("{} JWT parts, not 3", parts.len()));
    };
    let signed = format!("{header}.{claims}");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |part: &str| {
        b64.decode(part)
            .map_err(|err| format!("not base64url: {err}"))
    };
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|err| err.to_string())?;
    if header != serde_json::json!({"alg": "RS256", "typ": "JWT"}) {
        return Err(format!("bad header {header}"));
    }
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        SA_PUBLIC_KEY,
    )
    .verify(signed.as_bytes(), &decode(signature)?)
    .map_err(|_| "bad signature".to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(claims)?).map_err(|err| err.to_string())?;
    if claims["iss"] != SA_EMAIL || claims["scope"] != SA_SCOPE || claims["aud"] != audience {
        return Err(format!("bad claims {claims}"));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(format!("no iat or exp in {claims}"));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if exp.checked_sub(iat) != Some(3600) || iat.abs_diff(now) > 60 {
        return Err(format!("bad times in {claims} (now {now})"));
    }
    Ok(())
}
