//! Benchmarks of the plugin host with the real `test-echo` component (built for wasm32-wasip2
//! by the benchmark itself): a benchmark, not a test; it prints medians and percentiles.
//!
//! `cargo bench -p influxify-plugin-host --bench invoke`
//!
//! - overhead of a no-op action: instantiate from the cached `InstancePre` into a fresh store
//!   from the pooling allocator, call, drop; p50 and p99 over many calls;
//! - loading 10 plugins from the compiled cache (a fresh host, a warm cache directory);
//! - calls per second on one core of an action transforming 1 KB of JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use influxify_plugin_host::{Call, HostConfig, MemorySecrets, PluginHost};
use influxify_store::ConversationKey;

fn build() -> PathBuf {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "test-echo",
        ])
        .current_dir(&plugins)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the test plugin builds");
    plugins.join("target/wasm32-wasip2/release/test_echo.wasm")
}

/// `count` copies of test-echo under different names in `dir`.
fn install(dir: &Path, wasm: &Path, count: usize) {
    for i in 0..count {
        let plugin = dir.join(format!("echo{i}"));
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::copy(wasm, plugin.join("test_echo.wasm")).unwrap();
        std::fs::write(
            plugin.join("plugin.toml"),
            format!("[plugin]\nname = \"echo{i}\"\nversion = \"0.1.0\"\nkind = \"action\"\ncomponent = \"test_echo.wasm\"\n"),
        )
        .unwrap();
    }
}

fn host(cache: &Path) -> PluginHost {
    PluginHost::new(
        Arc::new(MemorySecrets::new()),
        None,
        HostConfig {
            cache_dir: Some(cache.to_path_buf()),
            ..HostConfig::default()
        },
    )
    .expect("host")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let wasm = build();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let cache = dir.path().join("cache");
    install(&plugins, &wasm, 10);
    let call = Call::new(Some(ConversationKey::new("web", "ada")), "web/ada:1:0");

    // Overhead of a no-op call.
    let warm = host(&cache);
    warm.load(&plugins.join("echo0/plugin.toml")).unwrap();
    for _ in 0..2_000 {
        warm.invoke("echo0.noop", "{}", &call).unwrap();
    }
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let started = Instant::now();
        warm.invoke("echo0.noop", "{}", &call).unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    println!("no-op action (instantiate from InstancePre, call, drop), 20,000 calls:");
    println!(
        "  p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        micros(percentile(&samples, 0.5)),
        micros(percentile(&samples, 0.9)),
        micros(percentile(&samples, 0.99)),
        micros(percentile(&samples, 1.0))
    );

    // Loading 10 plugins from a warm compiled cache, into a fresh host each time.
    let mut loads = Vec::new();
    for _ in 0..7 {
        let fresh = host(&cache);
        let started = Instant::now();
        let loaded = fresh.load_dir(&plugins);
        loads.push(started.elapsed());
        assert!(loaded.iter().all(Result::is_ok) && loaded.len() == 10);
    }
    // One component compiled from scratch (the 10 above are copies of one component: without a
    // cache, the first compiles and the others hit the cache it fills).
    let cold = {
        let empty = dir.path().join("empty-cache");
        let fresh = host(&empty);
        let started = Instant::now();
        fresh.load(&plugins.join("echo0/plugin.toml")).unwrap();
        started.elapsed()
    };
    loads.sort();
    println!("loading 10 plugins (compiled cache warm, fresh host), 7 runs:");
    println!(
        "  median {:.1} ms (runs: {:?}); loading one with nothing cached (compiling it): {:.1} ms",
        micros(loads[loads.len() / 2]) / 1000.0,
        loads
            .iter()
            .map(|d| format!("{:.1}", micros(*d) / 1000.0))
            .collect::<Vec<_>>(),
        micros(cold) / 1000.0
    );

    // A 1 KB JSON transform on one core.
    let document = serde_json::json!({
        "order": "A-1042",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"},
        "items": (0..16).map(|i| serde_json::json!({"sku": format!("sku-{i}"), "title": "a thing to buy", "qty": i, "price": 9.5})).collect::<Vec<_>>(),
        "notes": "leave at the door, please",
    })
    .to_string();
    assert!((900..1300).contains(&document.len()), "{}", document.len());
    let mut rates = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < Duration::from_secs(1) {
            let out = warm.invoke("echo0.transform", &document, &call).unwrap();
            assert!(out.output.contains("ADA LOVELACE"));
            calls += 1;
        }
        rates.push(calls as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "transforming {} bytes of JSON, one core, 5 runs of 1 s: median {:.0} calls/s (runs: {:?})",
        document.len(),
        rates[rates.len() / 2],
        rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>()
    );
}
