//! Hostile plugins: each misbehaviour is stopped with a typed error while a well-behaved call
//! running at the same time completes normally.

use std::sync::Arc;
use std::time::{Duration, Instant};

use influxify_plugin_host::{Call, PluginError, PluginHost};

use crate::server::Server;
use crate::*;

/// A host with test-echo and test-hostile (small limits) loaded.
fn hostile_host(server: &Server) -> (Arc<PluginHost>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let _ = server;
    install(dir.path(), "test-echo", "echo", |m| m);
    install(dir.path(), "test-hostile", "hostile", |m| {
        let m = grant(m, "time_ms", "500");
        grant(m, "memory_mb", "32")
    });
    let secrets = MemorySecrets::new()
        .with("test_token", "s3cret")
        .with("other_token", "nope");
    let (host, _) = host_with(Arc::new(secrets));
    for loaded in host.load_dir(dir.path()) {
        loaded.unwrap();
    }
    (Arc::new(host), dir)
}

/// Runs `action` with `input` on a thread while the test-echo plugin answers 20 times.
fn alongside(host: &Arc<PluginHost>, action: &str, input: &str) -> Result<String, PluginError> {
    let bad = {
        let (host, action, input) = (host.clone(), action.to_string(), input.to_string());
        std::thread::spawn(move || {
            host.invoke(&action, &input, &Call::new(Some(ada()), "k"))
                .map(|i| i.output)
        })
    };
    for i in 0..20 {
        let started = Instant::now();
        let good = call(host, "test-echo.echo", &format!("{{\"i\":{i}}}")).unwrap();
        assert_eq!(good.output, format!("{{\"i\":{i}}}"));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "a good call waited"
        );
    }
    bad.join().unwrap()
}

#[test]
fn an_endless_loop_is_stopped_at_the_time_budget() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let started = Instant::now();
    let err = alongside(&host, "test-hostile.spin", "{}").unwrap_err();
    assert_eq!(err, PluginError::Timeout("test-hostile".into()));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(err.is_retryable());
}

#[test]
fn sleeping_through_wasi_ends_at_the_deadline() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let started = Instant::now();
    let result = alongside(&host, "test-hostile.sleep", r#"{"ms":60000}"#);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "{elapsed:?} {result:?}"
    );
    // The sleep wakes at the deadline (500 ms); the call then ends there or is interrupted.
    match &result {
        Ok(output) => {
            let slept: serde_json::Value = serde_json::from_str(output).unwrap();
            let ms = slept["ms"].as_u64().unwrap();
            assert!((400..=1000).contains(&ms), "{output}");
        }
        Err(err) => assert_eq!(err, &PluginError::Timeout("test-hostile".into())),
    }
    // A short sleep inside the budget is just a sleep.
    let short = call(&host, "test-hostile.sleep", r#"{"ms":20}"#).unwrap();
    assert!(short.output.contains("\"ms\":2"), "{}", short.output);
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_grant() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let err = alongside(&host, "test-hostile.hog", "{}").unwrap_err();
    assert_eq!(err, PluginError::OutOfMemory("test-hostile".into()));
}

#[test]
fn a_hundred_megabytes_of_output_is_refused() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let err = alongside(&host, "test-hostile.flood", r#"{"bytes":100000000}"#).unwrap_err();
    assert_eq!(err, PluginError::OutOfMemory("test-hostile".into()));
    // Within memory but over the output cap.
    let err = call(&host, "test-hostile.flood", r#"{"bytes":2000000}"#).unwrap_err();
    assert!(
        matches!(err, PluginError::OutputTooLarge { bytes, .. } if bytes > 2_000_000),
        "{err:?}"
    );
    // Oversized input never reaches the plugin.
    let input = format!("{{\"bytes\":1,\"pad\":\"{}\"}}", "x".repeat(2_000_000));
    assert!(matches!(
        call(&host, "test-hostile.flood", &input),
        Err(PluginError::InvalidInput(_))
    ));
}

#[test]
fn traps_and_panics_are_typed_crashes() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    for action in ["trap", "panic"] {
        let err = alongside(&host, &format!("test-hostile.{action}"), "{}").unwrap_err();
        assert!(
            matches!(&err, PluginError::Trap { plugin, .. } if plugin == "test-hostile"),
            "{action}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
}

#[test]
fn requests_outside_the_grants_are_refused() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let port = server.url.rsplit(':').next().unwrap();
    let refused = [
        ("https://example.com/", "not among the granted origins"),
        ("http://169.254.169.254/latest/meta-data/", "is not granted"),
        ("http://10.0.0.1/", "is not granted"),
        (
            &format!("http://localhost:{port}/ok"),
            "not among the granted origins",
        ),
        (&format!("http://[::1]:{port}/ok"), "is not granted"),
        ("file:///etc/passwd", "only http and https"),
        (
            &format!("{}/redirect?to=http://169.254.169.254/", server.url),
            "redirect refused",
        ),
        (
            &format!("{}/redirect?to=https://example.com/", server.url),
            "redirect refused",
        ),
    ];
    for (url, why) in refused {
        let err = alongside(
            &host,
            "test-hostile.fetch",
            &serde_json::json!({"url": url}).to_string(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Misconfigured(m) if m.contains(why)),
            "{url}: {err:?}"
        );
    }
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.line.contains("/redirect")),
        "nothing else reached the server"
    );
    // The explicitly granted address works, redirects within the grants are followed.
    let ok = call(
        &host,
        "test-hostile.fetch",
        &serde_json::json!({"url": format!("{}/ok", server.url)}).to_string(),
    )
    .unwrap();
    assert!(ok.output.contains("hello"), "{}", ok.output);
    let followed = call(
        &host,
        "test-hostile.fetch",
        &serde_json::json!({"url": format!("{}/redirect?to=/ok", server.url)}).to_string(),
    )
    .unwrap();
    assert!(followed.output.contains("hello"), "{}", followed.output);
}

#[test]
fn loopback_is_refused_unless_a_grant_names_it() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-hostile", "hostile", |m| {
        grant(m, "http", r#"["https://api.example.com"]"#).replace(
            "hosts = [\"http://127.0.0.1:*\"]",
            "hosts = [\"https://api.example.com\"]",
        )
    });
    let (host, _) = host();
    for loaded in host.load_dir(dir.path()) {
        loaded.unwrap();
    }
    for url in [
        format!("{}/ok", server.url),
        "http://127.0.0.1/".to_string(),
        "http://169.254.169.254/latest/meta-data/iam/".to_string(),
    ] {
        let err = call(
            &host,
            "test-hostile.fetch",
            &serde_json::json!({"url": url}).to_string(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Misconfigured(m) if m.contains("is not granted")),
            "{url}: {err:?}"
        );
    }
    assert!(server.requests().is_empty());
}

#[test]
fn the_cpu_budget_stops_computing_before_the_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-hostile", "hostile", |m| {
        let m = grant(m, "time_ms", "5000");
        grant(m, "cpu_ms", "200")
    });
    let (host, _) = host();
    for loaded in host.load_dir(dir.path()) {
        loaded.unwrap();
    }
    let started = Instant::now();
    let err = call(&host, "test-hostile.spin", "{}").unwrap_err();
    assert_eq!(err, PluginError::Timeout("test-hostile".into()));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn secrets_go_only_where_they_are_granted() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let input = |url: &str, name: &str| serde_json::json!({"url": url, "name": name}).to_string();
    let ok = call(
        &host,
        "test-hostile.secret",
        &input(&format!("{}/ok", server.url), "test_token"),
    )
    .unwrap();
    assert!(
        !ok.output.contains("s3cret"),
        "the plugin never sees the value"
    );
    let seen = server.requests();
    assert_eq!(
        seen.last().unwrap().header("authorization"),
        Some("Bearer s3cret")
    );
    // A secret that exists but is not granted, and one that does not exist.
    for name in ["other_token", "missing"] {
        let err = alongside(
            &host,
            "test-hostile.secret",
            &input(&format!("{}/ok", server.url), name),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Misconfigured(m) if m.contains("not granted")),
            "{name}: {err:?}"
        );
    }
    assert_eq!(
        server.requests().len(),
        seen.len(),
        "refused requests were not sent"
    );
}

#[test]
fn the_request_budget_and_response_cap_hold() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    let big = serde_json::json!({"url": format!("{}/big?bytes=100000", server.url)}).to_string();
    let err = call(&host, "test-hostile.fetch", &big).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) | PluginError::Permanent(m) | PluginError::Retryable(m) if m.contains("larger than")),
        "{err:?}"
    );
    // A slow server: the timeout is clamped to the call's deadline (500 ms here).
    let started = Instant::now();
    let slow = serde_json::json!({"url": format!("{}/slow?ms=3000", server.url)}).to_string();
    let err = call(&host, "test-hostile.fetch", &slow).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn wasi_gives_no_files_environment_sockets_or_dns() {
    let server = Server::start();
    let (host, _dir) = hostile_host(&server);
    // The test server's own address: granted for HTTP through the host, never as a raw socket.
    let addr = server.url.strip_prefix("http://").unwrap();
    let output = alongside(
        &host,
        "test-hostile.escape",
        &serde_json::json!({"addr": addr}).to_string(),
    )
    .unwrap();
    let escaped: serde_json::Value = serde_json::from_str(&output).unwrap();
    for attempt in ["passwd", "root", "home", "connect", "resolve"] {
        let got = &escaped[attempt];
        assert_eq!(got["ok"], false, "{attempt} got through: {output}");
        assert!(
            got["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{attempt}: {output}"
        );
    }
    assert_eq!(escaped["env_vars"]["value"], "0", "{output}");
    assert!(
        std::env::vars().count() > 0,
        "the test process has an environment that could leak"
    );
    assert_eq!(server.connections(), 0, "no socket reached the server");
}
