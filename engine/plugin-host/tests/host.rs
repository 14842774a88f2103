//! The plugin host with a real component: the `test-echo` plugin, built for wasm32-wasip2.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use influxify_plugin_host::{Limits, PluginError, PluginHost, context};

/// Builds the test plugin once (the plugins have their own workspace and target).
fn test_echo() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", "test-echo"])
            .current_dir(&plugins)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the test plugin failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)");
        std::fs::read(plugins.join("target/wasm32-wasip2/release/test_echo.wasm")).expect("the plugin was built")
    })
}

fn call(
    host: &PluginHost,
    plugin: &influxify_plugin_host::Plugin,
    action: &str,
    input: &str,
    limits: Limits,
) -> Result<String, PluginError> {
    host.invoke(
        plugin,
        action,
        input,
        &context("web/ada", "ada", "web/ada:1:0", 0),
        limits,
    )
    .map(|result| result.output)
}

#[test]
fn a_plugin_loads_lists_its_actions_and_answers() {
    let host = PluginHost::new().unwrap();
    let plugin = host.load("test-echo", test_echo()).unwrap();
    let names: Vec<&str> = plugin.actions().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["echo", "now", "spin", "hog"]);
    assert_eq!(
        call(
            &host,
            &plugin,
            "echo",
            r#"{"hello":"world"}"#,
            Limits::default()
        )
        .unwrap(),
        r#"{"hello":"world"}"#
    );
    let now: u64 = call(&host, &plugin, "now", "{}", Limits::default())
        .unwrap()
        .parse()
        .unwrap();
    let wall = influxify_plugin_host_now();
    assert!(now.abs_diff(wall) < 5_000, "{now} vs {wall}");
    assert!(matches!(
        call(&host, &plugin, "nope", "{}", Limits::default()),
        Err(PluginError::InvalidInput(_))
    ));
}

fn influxify_plugin_host_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_runaway_plugin_is_stopped_and_others_carry_on() {
    let host = PluginHost::new().unwrap();
    let plugin = host.load("test-echo", test_echo()).unwrap();
    let limits = Limits {
        time: Duration::from_millis(200),
        ..Limits::default()
    };
    let started = Instant::now();
    let spun = call(&host, &plugin, "spin", "{}", limits);
    assert!(matches!(spun, Err(PluginError::Timeout(_))), "{spun:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let hog = call(
        &host,
        &plugin,
        "hog",
        "{}",
        Limits {
            memory_bytes: 16 << 20,
            ..Limits::default()
        },
    );
    assert!(
        matches!(
            hog,
            Err(PluginError::OutOfMemory(_)) | Err(PluginError::Trap { .. })
        ),
        "{hog:?}"
    );
    // Every call gets a fresh store: the plugin still works.
    assert_eq!(
        call(&host, &plugin, "echo", "1", Limits::default()).unwrap(),
        "1"
    );
}

#[test]
fn bad_components_are_refused_at_load() {
    let host = PluginHost::new().unwrap();
    let err = host.load("junk", b"\0asm not really").unwrap_err();
    assert!(matches!(err, PluginError::Load { .. }), "{err}");
    assert!(err.to_string().contains("junk"), "{err}");
}
