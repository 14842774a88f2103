//! Loading plugins: manifests, refusals with clear messages, the catalog, hot reload.

use std::time::Duration;

use influxify_plugin_host::{Call, PluginError};

use crate::*;

#[test]
fn a_plugin_directory_loads_and_its_actions_answer() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "test-echo", "echo", |m| m);
    install(dir.path(), "test-hostile", "hostile", |m| m);
    let (host, _) = host();
    let loaded = host.load_dir(dir.path());
    assert!(loaded.iter().all(Result::is_ok), "{loaded:?}");
    assert_eq!(host.names(), ["test-echo", "test-hostile"]);
    let echo = call(&host, "test-echo.echo", r#"{"hello":"world"}"#).unwrap();
    assert_eq!(echo.outcome, "ok");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&echo.output).unwrap(),
        serde_json::json!({"hello": "world"})
    );
    let now: u64 = call(&host, "test-echo.now", "{}")
        .unwrap()
        .output
        .parse()
        .unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now.abs_diff(wall) < 5_000, "{now} vs {wall}");
    assert!(matches!(
        call(&host, "test-echo.nope", "{}"),
        Err(PluginError::Unknown(_))
    ));
    assert!(matches!(
        call(&host, "nobody.echo", "{}"),
        Err(PluginError::Unknown(_))
    ));
    // The catalog feeds validation: outcomes and input schemas per action.
    let catalog = host.catalog();
    assert!(
        catalog
            .get("test-hostile.fetch")
            .unwrap()
            .input_schema
            .is_some()
    );
    assert!(catalog.get("test-echo.spin").is_some());
}

/// A change to a manifest.
type Edit = Box<dyn Fn(String) -> String>;

#[test]
fn malformed_manifests_and_components_are_refused_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host();
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "typo",
            Box::new(|m: String| grant(m, "htttp", "[]")),
            "unknown field `htttp`",
        ),
        (
            "not-toml",
            Box::new(|_| "[plugin\nname=".into()),
            "TOML parse error",
        ),
        (
            "bad-origin",
            Box::new(|m: String| grant(m, "http", r#"["api.example.com"]"#)),
            "is not an origin",
        ),
        (
            "path-origin",
            Box::new(|m: String| grant(m, "http", r#"["https://x.io/v1"]"#)),
            "no path",
        ),
        (
            "memory",
            Box::new(|m: String| grant(m, "memory_mb", "100000")),
            "memory_mb",
        ),
        (
            "name",
            Box::new(|m: String| m.replace("name = \"test-echo\"", "name = \"Bad Name\"")),
            "plugin name",
        ),
        (
            "missing",
            Box::new(|m: String| m.replace("test_echo.wasm", "gone.wasm")),
            "gone.wasm",
        ),
        (
            "wrong-world",
            Box::new(|m: String| {
                m.replace("kind = \"action\"", "kind = \"channel\"")
                    .lines()
                    .filter(|l| !l.starts_with("actions ="))
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
            "channel-plugin",
        ),
        (
            "channel-actions",
            Box::new(|m: String| m.replace("kind = \"action\"", "kind = \"channel\"")),
            "a channel plugin provides none",
        ),
        (
            "wrong-actions",
            Box::new(|m: String| m.replace("\"transform\"]", "\"transform\", \"extra\"]")),
            "declares the actions",
        ),
        (
            "cpu",
            Box::new(|m: String| grant(m, "cpu_ms", "999999")),
            "cpu_ms",
        ),
        (
            "secret-host",
            Box::new(|m: String| {
                m + "\n[[grants.secrets]]\nname = \"k\"\nhosts = [\"https://evil.io\"]\n"
            }),
            "does not allow",
        ),
    ];
    for (dir_name, edit, expected) in cases {
        let path = install(dir.path(), "test-echo", dir_name, edit);
        let err = host.load(&path).unwrap_err();
        assert!(
            matches!(err, PluginError::Load { .. }),
            "{dir_name}: {err:?}"
        );
        assert!(err.to_string().contains(expected), "{dir_name}: {err}");
    }
    // Not a component at all.
    let path = install(dir.path(), "test-echo", "garbage", |m| m);
    std::fs::write(path.with_file_name("test_echo.wasm"), b"\0asm garbage").unwrap();
    let err = host.load(&path).unwrap_err();
    assert!(err.to_string().contains("not a valid component"), "{err}");
    assert!(host.names().is_empty(), "nothing refused was loaded");
}

#[test]
fn a_reload_swaps_the_new_version_in_while_calls_in_flight_finish_on_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let path = install(dir.path(), "test-echo", "echo", |m| {
        grant(m, "time_ms", "600")
    });
    let (host, _) = host();
    let host = std::sync::Arc::new(host);
    host.load(&path).unwrap();
    let old = host.plugin("test-echo").unwrap();
    let spinning = {
        let host = host.clone();
        std::thread::spawn(move || host.invoke("test-echo.spin", "{}", &Call::new(None, "k")))
    };
    std::thread::sleep(Duration::from_millis(100));
    // A new version on disk (newer modification time).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .unwrap();
    let reloaded = host.reload_changed(Some(dir.path()));
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(
        host.plugin("test-echo").unwrap().manifest().plugin.version,
        "0.2.0"
    );
    assert_eq!(
        old.manifest().plugin.version,
        "0.1.0",
        "the old version lives on while in use"
    );
    assert!(call(&host, "test-echo.echo", "{}").is_ok());
    assert!(matches!(
        spinning.join().unwrap(),
        Err(PluginError::Timeout(_))
    ));
    // Nothing changed: nothing reloads. A broken new version keeps the running one.
    assert!(host.reload_changed(Some(dir.path())).is_empty());
    std::fs::write(&path, "not toml [").unwrap();
    let refused = host.reload_changed(Some(dir.path()));
    assert!(refused[0].is_err());
    assert_eq!(
        host.plugin("test-echo").unwrap().manifest().plugin.version,
        "0.2.0"
    );
}

#[test]
fn duplicate_names_renames_and_removals_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let first = install(dir.path(), "test-echo", "a", |m| m);
    let second = install(dir.path(), "test-echo", "b", |m| m);
    let (host, _) = host();
    host.load(&first).unwrap();
    let err = host.load(&second).unwrap_err();
    assert!(err.to_string().contains("already loaded from"), "{err}");
    // Renamed in its manifest: the old name goes.
    std::fs::write(
        &first,
        std::fs::read_to_string(&first)
            .unwrap()
            .replace("name = \"test-echo\"", "name = \"renamed\""),
    )
    .unwrap();
    host.load(&first).unwrap();
    assert_eq!(host.names(), ["renamed"]);
    // Removed: unloaded at the next check.
    std::fs::remove_dir_all(first.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(second.parent().unwrap()).unwrap();
    host.reload_changed(Some(dir.path()));
    assert!(host.names().is_empty());
}

/// test-echo's manifest with `[config]` settings.
fn with_config(manifest: String, settings: &str) -> String {
    format!("{manifest}\n[config]\n{settings}\n")
}

#[test]
fn file_settings_are_read_by_the_host_from_the_manifest_s_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = install(dir.path(), "test-echo", "echo", |m| {
        with_config(
            m,
            "rows = \"@file:data/rows.csv\"\nplain = \"@ not a file\"",
        )
    });
    let plugin_dir = path.parent().unwrap();
    std::fs::create_dir_all(plugin_dir.join("data")).unwrap();
    let rows = "Order,Status\r\nA-1,\"Shipped, today\"\r\n";
    std::fs::write(plugin_dir.join("data/rows.csv"), rows).unwrap();
    std::fs::write(
        plugin_dir.join("other.txt"),
        "from the engine's configuration",
    )
    .unwrap();
    // The engine's configuration may name a file too (relative to the manifest as well).
    let mut config = HostConfig::default();
    config.config.insert(
        "test-echo".into(),
        [("extra".to_string(), "@file:./other.txt".to_string())].into(),
    );
    let host = PluginHost::new(Arc::new(MemorySecrets::new()), None, config).unwrap();
    let plugin = host.load(&path).unwrap();
    assert_eq!(
        plugin.config()["rows"],
        rows,
        "the file's content, byte for byte"
    );
    assert_eq!(plugin.config()["plain"], "@ not a file");
    assert_eq!(plugin.config()["extra"], "from the engine's configuration");
    // The manifest as written keeps the reference.
    assert_eq!(plugin.manifest().config["rows"], "@file:data/rows.csv");
    assert!(call(&host, "test-echo.echo", "{}").is_ok());

    // A changed file reloads the plugin with the new content; nothing else changed.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(plugin_dir.join("data/rows.csv"), "Order\nA-2\n").unwrap();
    let reloaded = host.reload_changed(None);
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(
        host.plugin("test-echo").unwrap().config()["rows"],
        "Order\nA-2\n"
    );
    assert!(host.reload_changed(None).is_empty());
    // Exactly 1 MiB is fine.
    std::fs::write(plugin_dir.join("data/rows.csv"), "x".repeat(1024 * 1024)).unwrap();
    host.load(&path).unwrap();
}

#[test]
fn file_settings_outside_the_manifest_s_directory_missing_or_too_large_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "not for plugins").unwrap();
    let (host, _) = host();
    let cases: Vec<(&str, &str, Option<Vec<u8>>, &str)> = vec![
        ("missing", "@file:gone.csv", None, "gone.csv"),
        (
            "absolute",
            "@file:/etc/hostname",
            None,
            "inside the manifest's directory",
        ),
        ("parent", "@file:../secret.txt", None, "without `..`"),
        (
            "nested-parent",
            "@file:data/../../secret.txt",
            None,
            "without `..`",
        ),
        ("empty", "@file:", None, "inside the manifest's directory"),
        ("directory", "@file:data", None, "not a file"),
        (
            "too-large",
            "@file:big.csv",
            Some(vec![b'x'; 1024 * 1024 + 1]),
            "at most 1048576",
        ),
        (
            "binary",
            "@file:bin.csv",
            Some(vec![0xff, 0xfe, 0x00]),
            "not UTF-8",
        ),
    ];
    for (name, value, content, expected) in cases {
        let path = install(dir.path(), "test-echo", name, |m| {
            with_config(m, &format!("csv = \"{value}\""))
        });
        let plugin_dir = path.parent().unwrap();
        std::fs::create_dir_all(plugin_dir.join("data")).unwrap();
        if let (Some(content), Some(file)) = (content, value.strip_prefix("@file:")) {
            std::fs::write(plugin_dir.join(file), content).unwrap();
        }
        let err = host.load(&path).unwrap_err();
        assert!(matches!(err, PluginError::Load { .. }), "{name}: {err:?}");
        let message = err.to_string();
        assert!(
            message.contains(expected) && message.contains("`csv`"),
            "{name}: {message}"
        );
    }
    // A link inside the directory that leads out of it.
    #[cfg(unix)]
    {
        let path = install(dir.path(), "test-echo", "link", |m| {
            with_config(m, "csv = \"@file:rows.csv\"")
        });
        std::os::unix::fs::symlink(
            dir.path().join("secret.txt"),
            path.with_file_name("rows.csv"),
        )
        .unwrap();
        let err = host.load(&path).unwrap_err();
        assert!(
            err.to_string().contains("outside the manifest's directory"),
            "{err}"
        );
    }
    assert!(host.names().is_empty(), "nothing refused was loaded");
    // A file that goes missing keeps the running version on reload.
    let path = install(dir.path(), "test-echo", "ok", |m| {
        with_config(m, "csv = \"@file:rows.csv\"")
    });
    std::fs::write(path.with_file_name("rows.csv"), "a,b\n").unwrap();
    host.load(&path).unwrap();
    std::fs::remove_file(path.with_file_name("rows.csv")).unwrap();
    let refused = host.reload_changed(None);
    assert!(
        refused.len() == 1
            && refused[0]
                .as_ref()
                .is_err_and(|e| e.to_string().contains("rows.csv")),
        "{refused:?}"
    );
    assert_eq!(host.plugin("test-echo").unwrap().config()["csv"], "a,b\n");
}
