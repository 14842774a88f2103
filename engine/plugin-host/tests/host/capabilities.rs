//! Host capabilities as granted: kv with quotas and user scope, OAuth refresh on the host.

use std::sync::Arc;

use influxify_plugin_host::{Call, MemorySecrets, OauthToken, PluginError, Secret, SecretStore};
use influxify_store::{ConversationKey, KvScope};

use crate::server::Server;
use crate::*;

#[test]
fn kv_is_scoped_quota_bound_and_erasable() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-hostile", "hostile", |m| m);
    install(dir.path(), "test-echo", "echo", |m| m);
    let (host, kv) = host();
    host.load_dir(dir.path());
    let set = |scope: &str, key: &str, bytes: usize, user: &str| {
        host.invoke(
            "test-hostile.kv",
            &serde_json::json!({"scope": scope, "key": key, "bytes": bytes}).to_string(),
            &Call::new(Some(ConversationKey::new("web", user)), "k"),
        )
    };
    assert!(
        set("user", "name", 100, "ada")
            .unwrap()
            .output
            .contains("100")
    );
    assert!(set("user", "name", 50, "bo").is_ok());
    assert!(set("plugin", "shared", 10, "ada").is_ok());
    let err = set("plugin", "huge", 5000, "ada").unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) | PluginError::Misconfigured(m) | PluginError::Retryable(m) if m.contains("quota")),
        "{err:?}"
    );
    // Erasing Ada's data reaches her plugin entries, not Bo's or the plugin's own.
    let ada = ConversationKey::new("web", "ada");
    assert_eq!(kv.user_entries(&ada).unwrap().len(), 1);
    kv.erase_user(&ada).unwrap();
    assert!(
        kv.get("test-hostile", KvScope::User(&ada), "name")
            .unwrap()
            .is_none()
    );
    assert!(
        kv.get(
            "test-hostile",
            KvScope::User(&ConversationKey::new("web", "bo")),
            "name"
        )
        .unwrap()
        .is_some()
    );
    assert!(
        kv.get("test-hostile", KvScope::Plugin, "shared")
            .unwrap()
            .is_some()
    );
    // A plugin without a kv grant gets none.
    assert!(kv.usage("test-echo").unwrap() == 0);
}

#[test]
fn oauth_tokens_are_refreshed_on_expiry_and_once_on_a_401() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-hostile", "hostile", |m| m);
    let secrets = Arc::new(MemorySecrets::new());
    let token = |access: &str, expires_at_ms: u64| {
        Secret::Oauth(OauthToken {
            access_token: access.into(),
            expires_at_ms,
            refresh_token: "refresh-me".into(),
            token_url: format!("{}/token", server.url),
            client_id: "client".into(),
            client_secret: Some("client-secret".into()),
        })
    };
    // Expired: refreshed before the request.
    secrets.put("test_token", token("stale", 1)).unwrap();
    let (host, _) = host_with(secrets.clone());
    host.load_dir(dir.path());
    let input =
        serde_json::json!({"url": format!("{}/protected", server.url), "name": "test_token"})
            .to_string();
    let answer = call(&host, "test-hostile.secret", &input).unwrap();
    assert!(
        answer.output.contains("\"status\":200"),
        "{}",
        answer.output
    );
    let refresh = server
        .requests()
        .into_iter()
        .find(|r| r.line.contains("/token"))
        .unwrap();
    assert!(
        refresh.body.contains("grant_type=refresh_token")
            && refresh.body.contains("refresh_token=refresh-me"),
        "{}",
        refresh.body
    );
    match secrets.get("test_token").unwrap() {
        Some(Secret::Oauth(stored)) => assert_eq!(stored.access_token, "fresh-token"),
        other => panic!("{other:?}"),
    }
    // Not expired by the clock, but revoked: a 401 refreshes once and retries.
    secrets.put("test_token", token("revoked", 0)).unwrap();
    *server.accepted.lock().unwrap() = "fresh-token".into();
    let answer = call(&host, "test-hostile.secret", &input).unwrap();
    assert!(
        answer.output.contains("\"status\":200"),
        "{}",
        answer.output
    );
    let tokens = server
        .requests()
        .iter()
        .filter(|r| r.line.contains("/token"))
        .count();
    assert_eq!(tokens, 2);
}

#[test]
fn signatures_use_granted_secrets_the_plugin_never_holds() {
    use hmac::Mac;
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-hostile", "hostile", |m| m);
    let secrets = MemorySecrets::new()
        .with("test_token", "app-secret")
        .with("other_token", "not-yours");
    let (host, _) = host_with(Arc::new(secrets));
    host.load_dir(dir.path());
    let input = |secret: &str| {
        serde_json::json!({"secret": secret, "message": "{\"object\":\"page\"}"}).to_string()
    };
    let signed: serde_json::Value = serde_json::from_str(
        &call(&host, "test-hostile.sign", &input("test_token"))
            .unwrap()
            .output,
    )
    .unwrap();
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(b"app-secret").unwrap();
    mac.update(b"{\"object\":\"page\"}");
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(signed["signature"], expected);
    assert_eq!(signed["verified"], true);
    assert_eq!(signed["tampered_verified"], false);
    let err = call(&host, "test-hostile.sign", &input("other_token")).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("not granted")),
        "{err:?}"
    );
    // A plugin without a kv grant is told so, as a misconfiguration.
    let err = host
        .invoke(
            "test-hostile.kv",
            r#"{"scope":"user","key":"k","bytes":1}"#,
            &Call::new(None, "k"),
        )
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("end user")),
        "{err:?}"
    );
}
