//! `cargo xtask fuzz [SECONDS]`: runs each `cargo fuzz` target of `engine/fuzz` for a short
//! while (default 20 s each), seeded with the shipped flows and Messenger payloads. Installs
//! cargo-fuzz when missing; builds on the stable toolchain without a sanitizer (libFuzzer's
//! coverage instrumentation only), in a target directory kept between runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, root, run};

/// The targets and the seed files each starts from.
const TARGETS: [(&str, &[&str]); 3] = [
    ("flow_parse", &["flows"]),
    (
        "messenger_webhook",
        &[
            "engine/plugin-host/tests/builtin/fixtures/messenger",
            "tests/e2e/fixtures",
        ],
    ),
    (
        "server_inputs",
        &["influxify.toml", "plugins/sheets/plugin.toml"],
    ),
];

fn seeds(target: &str, sources: &[&str], corpus: &Path) -> Result<(), String> {
    std::fs::create_dir_all(corpus).map_err(|e| e.to_string())?;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut pending: Vec<PathBuf> = sources.iter().map(|s| root().join(s)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)
                .map_err(|e| e.to_string())?
                .flatten()
            {
                pending.push(entry.path());
            }
        } else if path.is_file() {
            files.push(path);
        }
    }
    for (i, file) in files.iter().enumerate() {
        let mut bytes = std::fs::read(file).map_err(|e| e.to_string())?;
        if target == "messenger_webhook" {
            // The first byte picks how the body is signed: 2 = correctly.
            bytes.insert(0, 2);
        }
        std::fs::write(corpus.join(format!("seed-{i}")), bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn fuzz(seconds: u64) -> Result<(), String> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked", "--version", "0.13.2"]);
        run(install)?;
    }
    // The webhook target loads the built messenger plugin.
    crate::plugins()?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let target_dir = home.join(".cache/influxify/fuzz-target");
    for (target, sources) in TARGETS {
        let corpus = std::env::temp_dir().join(format!("influxify-fuzz-{target}"));
        let _ = std::fs::remove_dir_all(&corpus);
        seeds(target, sources, &corpus)?;
        let mut fuzz = cargo();
        fuzz.args([
            "fuzz",
            "run",
            "--fuzz-dir",
            "engine/fuzz",
            "--sanitizer",
            "none",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg(target)
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=4096",
            "-max_len=65536",
        ])
        .env_remove("CARGO_TARGET_DIR")
        // cargo-fuzz's flags on the stable toolchain.
        .env("RUSTC_BOOTSTRAP", "1");
        run(fuzz)?;
        let _ = std::fs::remove_dir_all(&corpus);
    }
    Ok(())
}
