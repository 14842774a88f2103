//! Host capabilities as granted: kv with quotas and user scope, OAuth refresh and
//! service-account tokens on the host.

use std::sync::Arc;

use influxify_plugin_host::secrets::{SecretError, ServiceAccount};
use influxify_plugin_host::{Call, MemorySecrets, OauthToken, PluginError, Secret, SecretStore};
use influxify_store::{ConversationKey, KvScope};

use crate::server::{SA_EMAIL, SA_PRIVATE_KEY, SA_SCOPE, Server};
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
        refresh.text().contains("grant_type=refresh_token")
            && refresh.text().contains("refresh_token=refresh-me"),
        "{}",
        refresh.text()
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
fn service_account_keys_are_read_from_google_key_files_and_never_shown() {
    let key_file = |token_uri: Option<&str>, private_key: &str| {
        let mut file = serde_json::json!({
            "type": "service_account",
            "project_id": "influxify-tests",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key,
            "client_email": SA_EMAIL,
            "client_id": "1234567890",
        });
        if let Some(uri) = token_uri {
            file["token_uri"] = uri.into();
        }
        file.to_string()
    };
    let account = ServiceAccount::from_key_file(
        &key_file(Some("https://example.test/token"), SA_PRIVATE_KEY),
        SA_SCOPE,
    )
    .unwrap();
    assert_eq!(account.client_email, SA_EMAIL);
    assert_eq!(account.private_key, SA_PRIVATE_KEY);
    assert_eq!(account.token_url, "https://example.test/token");
    assert_eq!(account.scope, SA_SCOPE);
    assert_eq!(
        (account.access_token.as_deref(), account.expires_at_ms),
        (None, 0)
    );
    // Without `token_uri`: Google's endpoint.
    let google = ServiceAccount::from_key_file(&key_file(None, SA_PRIVATE_KEY), SA_SCOPE).unwrap();
    assert_eq!(google.token_url, "https://oauth2.googleapis.com/token");
    // Stored tagged, and read back with the defaults.
    let stored = serde_json::to_value(Secret::from(google.clone())).unwrap();
    assert_eq!(stored["kind"], "service_account");
    let read: Secret = serde_json::from_value(serde_json::json!({
        "kind": "service_account",
        "client_email": SA_EMAIL,
        "private_key": SA_PRIVATE_KEY,
        "scope": SA_SCOPE,
    }))
    .unwrap();
    assert_eq!(read, Secret::ServiceAccount(google));
    // Debug shows neither the key nor the token.
    let mut cached = account.clone();
    cached.access_token = Some("cached-access-token".into());
    for shown in [format!("{cached:?}"), format!("{:?}", Secret::from(cached))] {
        assert!(shown.contains(SA_EMAIL), "{shown}");
        assert!(
            !shown.contains("PRIVATE KEY")
                && !shown.contains(key_line())
                && !shown.contains("cached-access-token"),
            "{shown}"
        );
    }
    // A key that is not one is refused when configured, without being quoted.
    let broken = "-----BEGIN PRIVATE KEY-----\nTUlJQm9ndXM=\n-----END PRIVATE KEY-----\n";
    for (file, why) in [
        (key_file(None, broken), "not a usable RSA key"),
        (key_file(None, "no PEM at all"), "not PEM"),
        (
            r#"{"type":"authorized_user","client_email":"a","private_key":"b"}"#.to_string(),
            "authorized_user",
        ),
        (
            r#"{"private_key":"-----BEGIN PRIVATE KEY-----"}"#.to_string(),
            "client_email",
        ),
    ] {
        let err = ServiceAccount::from_key_file(&file, SA_SCOPE).unwrap_err();
        assert!(
            matches!(&err, SecretError::Invalid(m) if m.contains(why) && !m.contains("TUlJQm9ndXM")),
            "{err:?}"
        );
    }
}

#[test]
fn secrets_written_by_operators_are_read_by_their_shape() {
    assert_eq!(
        Secret::parse("sk-live-123").unwrap(),
        Secret::Value {
            value: "sk-live-123".into()
        }
    );
    let oauth = Secret::parse(
        r#"{"kind":"oauth","access_token":"ya29.a","refresh_token":"1//r","token_url":"https://oauth2.googleapis.com/token","client_id":"c"}"#,
    )
    .unwrap();
    assert!(
        matches!(&oauth, Secret::Oauth(t) if t.refresh_token == "1//r" && t.expires_at_ms == 0)
    );
    // Google's key file as downloaded: a service account with the Sheets read-only scope.
    let file = serde_json::json!({
        "type": "service_account",
        "private_key": SA_PRIVATE_KEY,
        "client_email": SA_EMAIL,
    })
    .to_string();
    match Secret::parse(&file).unwrap() {
        Secret::ServiceAccount(account) => {
            assert_eq!(account.client_email, SA_EMAIL);
            assert_eq!(
                account.scope,
                "https://www.googleapis.com/auth/spreadsheets.readonly"
            );
        }
        other => panic!("{other:?}"),
    }
    // Broken ones are refused without quoting what was given.
    for (text, why) in [
        (
            r#"{"kind":"oauth","access_token":"ya29.leak"}"#,
            "missing field",
        ),
        (
            r#"{"kind":"oauth","access_token":7,"refresh_token":"1//leak","token_url":"u","client_id":"c"}"#,
            "wrong type",
        ),
        (r#"{"kind":"magic","value":"x"}"#, "unknown variant"),
        (r#"{"api_key":"leak"}"#, "needs a `kind`"),
        (r#"{"kind": "oauth", leak"#, "JSON object"),
    ] {
        let err = Secret::parse(text).unwrap_err();
        assert!(
            matches!(&err, SecretError::Invalid(m) if m.contains(why) && !m.contains("leak")),
            "{text}: {err:?}"
        );
    }
}

/// A line from the middle of the test account's private key.
fn key_line() -> &'static str {
    SA_PRIVATE_KEY.lines().nth(5).unwrap()
}

#[test]
fn service_account_tokens_are_obtained_cached_and_renewed_on_expiry_or_a_401() {
    let server = Server::start();
    *server.accepted.lock().unwrap() = "sa-token".into();
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-hostile", "hostile", |m| m);
    let key_file = serde_json::json!({
        "type": "service_account",
        "client_email": SA_EMAIL,
        "private_key": SA_PRIVATE_KEY,
        "token_uri": format!("{}/sa-token", server.url),
    })
    .to_string();
    let account = ServiceAccount::from_key_file(&key_file, SA_SCOPE).unwrap();
    let secrets = Arc::new(MemorySecrets::new());
    secrets.put("test_token", account.clone().into()).unwrap();
    let (host, _) = host_with(secrets.clone());
    host.load_dir(dir.path());
    let input =
        serde_json::json!({"url": format!("{}/protected", server.url), "name": "test_token"})
            .to_string();
    let count = |path: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.line.split(' ').nth(1) == Some(path))
            .count()
    };
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // Neither the key nor the token reaches the plugin.
    let succeeds = |host: &influxify_plugin_host::PluginHost| {
        let output = call(host, "test-hostile.secret", &input).unwrap().output;
        assert!(output.contains("\"status\":200"), "{output}");
        assert!(output.contains("secret stuff"), "{output}");
        assert!(
            !output.contains("sa-token")
                && !output.contains("PRIVATE KEY")
                && !output.contains(key_line()),
            "{output}"
        );
    };
    let stored = || match secrets.get("test_token").unwrap() {
        Some(Secret::ServiceAccount(stored)) => stored,
        other => panic!("{other:?}"),
    };

    // No token yet: one is obtained (the server checks the assertion), stored and injected.
    succeeds(&host);
    assert_eq!(count("/sa-token"), 1);
    let exchange = server
        .requests()
        .into_iter()
        .find(|r| r.line.contains("/sa-token"))
        .unwrap();
    assert!(
        exchange.text().starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{}",
        exchange.text()
    );
    assert_eq!(
        exchange.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let first = stored();
    assert_eq!(first.access_token.as_deref(), Some("sa-token"));
    assert!(
        first.expires_at_ms > now_ms() + 3_500_000 && first.expires_at_ms <= now_ms() + 3_600_000,
        "{}",
        first.expires_at_ms
    );
    assert_eq!(
        (
            &first.private_key,
            &first.client_email,
            &first.scope,
            &first.token_url
        ),
        (
            &account.private_key,
            &account.client_email,
            &account.scope,
            &account.token_url
        )
    );

    // Cached: no second exchange.
    succeeds(&host);
    assert_eq!(count("/sa-token"), 1);
    assert_eq!(count("/protected"), 2);

    // Expired, or expiring within 30 s: a new token before the request.
    for expires_at_ms in [1, now_ms() + 10_000] {
        let mut expired = stored();
        expired.access_token = Some("old-token".into());
        expired.expires_at_ms = expires_at_ms;
        secrets.put("test_token", expired.into()).unwrap();
        let exchanges = count("/sa-token");
        let requests = count("/protected");
        succeeds(&host);
        assert_eq!(count("/sa-token"), exchanges + 1);
        assert_eq!(
            count("/protected"),
            requests + 1,
            "the old token is not sent"
        );
        assert_eq!(stored().access_token.as_deref(), Some("sa-token"));
    }

    // Valid by the clock but refused: one new token and one retry.
    let mut revoked = stored();
    revoked.access_token = Some("revoked".into());
    revoked.expires_at_ms = now_ms() + 3_000_000;
    secrets.put("test_token", revoked.into()).unwrap();
    let exchanges = count("/sa-token");
    let requests = count("/protected");
    succeeds(&host);
    assert_eq!(count("/sa-token"), exchanges + 1);
    assert_eq!(count("/protected"), requests + 2);

    // The endpoint refuses the assertion (a deleted key, say): a misconfiguration, not retried.
    server.refuse_assertions(true);
    secrets.put("test_token", account.clone().into()).unwrap();
    let exchanges = count("/sa-token");
    let requests = count("/protected");
    let err = call(&host, "test-hostile.secret", &input).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("invalid_grant")),
        "{err:?}"
    );
    let shown = format!("{err:?}");
    assert!(
        !shown.contains("PRIVATE KEY") && !shown.contains(key_line()),
        "{shown}"
    );
    assert_eq!(count("/sa-token"), exchanges + 1);
    assert_eq!(count("/protected"), requests, "no request without a token");
    assert_eq!(stored(), account, "nothing cached");
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
