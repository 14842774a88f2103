//! `influxify plugin`: scaffold a plugin crate (`new`), run a plugin against a script of cases
//! with scripted HTTP, kv and secrets (`test`), and list what a plugins directory provides
//! (`list`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use influxify_plugin_host::harness::{self, Script};
use influxify_plugin_host::{HostConfig, MemorySecrets, PluginHost};

/// The files of a new plugin crate.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("scaffold/Cargo.toml.in")),
    ("plugin.toml", include_str!("scaffold/plugin.toml.in")),
    ("src/lib.rs", include_str!("scaffold/lib.rs.in")),
    ("harness.yaml", include_str!("scaffold/harness.yaml.in")),
    ("README.md", include_str!("scaffold/README.md.in")),
    (".gitignore", "/target\n"),
];

/// Where the SDK is by default: beside the engine this binary was built from.
fn default_sdk() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/sdk")
}

/// `influxify plugin new NAME`.
pub fn new(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> anyhow::Result<ExitCode> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!(
            "`{name}` cannot be a plugin name: use lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk = match sdk {
        Some(sdk) => sdk.to_path_buf(),
        None => default_sdk(),
    };
    let sdk = std::path::absolute(&sdk)?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "the plugin SDK is not at {} (give its path with --sdk)",
            sdk.display()
        );
    }
    let lib = name.replace('-', "_");
    for (file, template) in TEMPLATE {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = template
            .replace("__NAME__", name)
            .replace("__LIB__", &lib)
            .replace("__SDK__", &sdk.display().to_string());
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created plugin `{name}` in {}", dir.display());
    println!(
        "next: cd {} && cargo build --target wasm32-wasip2 --release && influxify plugin test plugin.toml --script harness.yaml",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `influxify plugin test MANIFEST --script FILE`.
pub fn test(manifest: &Path, script: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(script)
        .with_context(|| format!("cannot read {}", script.display()))?;
    let script: Script = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a harness script", script.display()))?;
    let reports = harness::run(manifest, &script)?;
    let mut failed = 0;
    for report in &reports {
        let status = if report.failure.is_some() {
            failed += 1;
            "FAIL"
        } else {
            "ok  "
        };
        let result = match &report.result {
            Ok((outcome, output)) if output.is_null() && report.call != "action" => outcome.clone(),
            Ok((outcome, output)) => format!("{outcome} {output}"),
            Err(err) if err.is_retryable() => format!("error (retryable): {err}"),
            Err(err) => format!("error: {err}"),
        };
        // Channel calls say which entry point ran; the host meters only action calls.
        let (call, usage) = match report.peak_memory {
            Some(peak) => (
                String::new(),
                format!(
                    "{} instructions, peak memory {} KiB, ",
                    report
                        .fuel
                        .map_or_else(|| "?".to_string(), |f| f.to_string()),
                    peak / 1024
                ),
            ),
            None => (format!("{} → ", report.call), String::new()),
        };
        println!(
            "{status} {}: {call}{} | {usage}{} HTTP, {} µs",
            report.name,
            truncate(&result, 160),
            report.http_calls,
            report.micros
        );
        if let Some(why) = &report.failure {
            println!("     {why}");
        }
    }
    println!("{} passed, {failed} failed", reports.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `influxify plugin list DIR`: what the plugins there provide, and which are refused.
pub fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let host = PluginHost::new(Arc::new(MemorySecrets::new()), None, HostConfig::default())?;
    let mut refused = 0;
    for loaded in host.load_dir(dir) {
        match loaded {
            Ok(plugin) => {
                println!(
                    "{} {} ({:?}): {}",
                    plugin.name(),
                    plugin.manifest().plugin.version,
                    plugin.manifest().plugin.kind,
                    plugin.manifest().plugin.description
                );
                for action in plugin.actions() {
                    let outcomes = if action.outcomes.is_empty() {
                        String::new()
                    } else {
                        format!(" [outcomes: {}]", action.outcomes.join(", "))
                    };
                    println!(
                        "  {}.{}: {}{outcomes}",
                        plugin.name(),
                        action.name,
                        action.description
                    );
                }
            }
            Err(err) => {
                refused += 1;
                println!("refused: {err}");
            }
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect::<String>() + "…"
    }
}
