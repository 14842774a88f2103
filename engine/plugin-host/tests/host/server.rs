//! A small real HTTP/1.1 server on 127.0.0.1 for the tests: it records every request and answers
//! by path (`/ok`, `/redirect?to=URL`, `/big?bytes=N`, `/slow?ms=N`, `/token`, `/sa-token`,
//! `/protected`, `/messages`), and counts the connections it accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// The service account `/sa-token` accepts assertions from.
pub const SA_EMAIL: &str = "robot@influxify-tests.iam.gserviceaccount.com";
/// The scope `/sa-token` expects.
pub const SA_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";
/// The test account's private key (PKCS#8 PEM, made with
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`).
pub const SA_PRIVATE_KEY: &str = include_str!("fixtures/service-account.key.pem");
/// Its public key, DER `RSAPublicKey` (`openssl rsa -RSAPublicKey_out -outform DER`).
const SA_PUBLIC_KEY: &[u8] = include_bytes!("fixtures/service-account.pub.der");

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET /path?query`.
    pub line: String,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The server.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it saw.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The access token `/protected` accepts (`/token` hands out `fresh-token`).
    pub accepted: Arc<Mutex<String>>,
    /// The status `/messages` answers (200, the default, with `{"message_id": "mid.1"}`).
    pub messages_status: Arc<Mutex<u16>>,
    /// Whether `/sa-token` refuses every assertion with 400 `invalid_grant`.
    pub sa_refuses: Arc<Mutex<bool>>,
    /// How many connections it accepted (with a request or not).
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    /// Starts a server.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Server {
            url,
            seen: Arc::default(),
            accepted: Arc::new(Mutex::new("fresh-token".into())),
            messages_status: Arc::new(Mutex::new(200)),
            sa_refuses: Arc::default(),
            connections: Arc::default(),
        };
        let handle = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                handle.connections.fetch_add(1, Ordering::SeqCst);
                let handle = handle.clone();
                std::thread::spawn(move || handle.serve(stream));
            }
        });
        server
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
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
        self.connections.load(Ordering::SeqCst)
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let line = line.trim_end().to_string();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = header.trim_end().split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let seen = Seen {
            line: line.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        let target = line.split(' ').nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(|v| {
                    url::form_urlencoded::parse(format!("x={v}").as_bytes())
                        .next()
                        .unwrap()
                        .1
                        .into_owned()
                })
        };
        let (status, extra, body): (u16, Vec<(String, String)>, Vec<u8>) = match path {
            "/ok" => (200, vec![], b"hello".to_vec()),
            "/redirect" => (
                302,
                vec![("location".into(), param("to").unwrap_or_default())],
                vec![],
            ),
            "/big" => (
                200,
                vec![],
                vec![b'x'; param("bytes").and_then(|b| b.parse().ok()).unwrap_or(0)],
            ),
            "/slow" => {
                let ms = param("ms").and_then(|b| b.parse().ok()).unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                (200, vec![], b"late".to_vec())
            }
            "/token" => (
                200,
                vec![("content-type".into(), "application/json".into())],
                br#"{"access_token":"fresh-token","expires_in":3600,"token_type":"Bearer"}"#
                    .to_vec(),
            ),
            // Google's token endpoint for service accounts: a JWT-bearer assertion signed with
            // the test key, for the test account and scope, addressed to this endpoint, for an
            // hour, gets `sa-token`; anything else is `invalid_grant`, with why.
            "/sa-token" => {
                let checked = if *self.sa_refuses.lock().unwrap() {
                    Err("refused by the test".to_string())
                } else {
                    check_assertion(&seen.body, &format!("{}/sa-token", self.url))
                };
                let body = match checked {
                    Ok(()) => serde_json::json!({
                        "access_token": "sa-token",
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    }),
                    Err(why) => {
                        serde_json::json!({"error": "invalid_grant", "error_description": why})
                    }
                };
                let status = if body["error"].is_null() { 200 } else { 400 };
                (
                    status,
                    vec![("content-type".into(), "application/json".into())],
                    body.to_string().into_bytes(),
                )
            }
            "/protected" => {
                let expected = format!("Bearer {}", self.accepted.lock().unwrap());
                if seen.header("authorization") == Some(expected.as_str()) {
                    (200, vec![], b"secret stuff".to_vec())
                } else {
                    (401, vec![], b"unauthorized".to_vec())
                }
            }
            "/messages" => {
                let status = *self.messages_status.lock().unwrap();
                let body: &[u8] = if status == 200 {
                    br#"{"message_id":"mid.1"}"#
                } else {
                    br#"{"error":"refused"}"#
                };
                (
                    status,
                    vec![("content-type".into(), "application/json".into())],
                    body.to_vec(),
                )
            }
            _ => (404, vec![], b"not found".to_vec()),
        };
        let mut out = stream;
        let mut head = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in extra {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&body);
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
