//! The bare webhook handler `cargo xtask load --flow bare` measures: an axum handler that does
//! only what the webhook must before anything else, the `X-Hub-Signature-256` check over the raw
//! body and a JSON parse, and answers 200. The server's figures are read as fractions of it.
//! Run by `cargo xtask bare-webhook PORT SECRET` (a process of its own, as the server is).

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Mac, digest::KeyInit};

/// Serves the bare handler on 127.0.0.1:`port` until killed.
pub fn serve(args: &[String]) -> Result<(), String> {
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .ok_or("usage: cargo xtask bare-webhook PORT SECRET")?;
    let secret = args.get(1).cloned().ok_or("the app secret is missing")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let secret: &'static str = Box::leak(secret.into_boxed_str());
        let app = Router::new().route(
            "/channels/messenger/webhook",
            post(move |headers: HeaderMap, body: Bytes| handle(secret, headers, body)),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

async fn handle(secret: &str, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(hex);
    let Some(signature) = signature else {
        return (StatusCode::FORBIDDEN, "no signature");
    };
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("any key length");
    mac.update(&body);
    if mac.verify_slice(&signature).is_err() {
        return (StatusCode::FORBIDDEN, "bad signature");
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::FORBIDDEN, "not json"),
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
