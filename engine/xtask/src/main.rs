//! Build automation, run as `cargo xtask <task>`:
//!
//! - `cargo xtask test`: sets up what the tests need on a fresh machine (the wasm32-wasip2
//!   target; a real OpenAI-compatible server, llama.cpp's, with a small model), then runs every
//!   test.
//! - `cargo xtask ci`: formatting and lint checks, then `test` (what `.ci/run` runs).
//! - `cargo xtask schemas`: regenerates the committed JSON Schemas in `schemas/`.
//! - `cargo xtask llm`: installs the local OpenAI-compatible server and its model (done by
//!   `test` too) and prints where they are.

mod llm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "ci" => ci(),
        "schemas" => schemas(),
        "llm" => llm::setup().map(|(python, model)| {
            println!("python: {}\nmodel: {}", python.display(), model.display());
        }),
        _ => Err(format!(
            "unknown task `{task}`; use one of: test, ci, schemas, llm"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> Result<(), String> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .map_err(|err| format!("cannot start {command:?}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

/// Everything the tests need beyond the Rust toolchain is installed here, so that the one test
/// command works on a fresh machine: the wasm32-wasip2 target the plugins are built for.
fn setup() -> Result<(), String> {
    let mut target = Command::new("rustup");
    target.args(["target", "add", "wasm32-wasip2"]);
    run(target)
}

fn test() -> Result<(), String> {
    setup()?;
    let (python, model) = llm::setup()?;
    let mut tests = cargo();
    tests
        .args(["test", "--workspace", "--locked"])
        .env("INFLUXIFY_LLM_PYTHON", python)
        .env("INFLUXIFY_LLM_MODEL", model);
    run(tests)?;
    // The plugin SDK's own tests run on the host.
    let mut sdk = cargo();
    sdk.args([
        "test",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--locked",
        "-p",
        "influxify-plugin-sdk",
    ]);
    run(sdk)
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut fmt_plugins = cargo();
    fmt_plugins.args([
        "fmt",
        "--all",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--",
        "--check",
    ]);
    run(fmt_plugins)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    setup()?;
    let mut clippy_plugins = cargo();
    clippy_plugins.args([
        "clippy",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--workspace",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy_plugins)?;
    test()
}

fn schemas() -> Result<(), String> {
    for (which, file) in [
        ("flow", "flow.schema.json"),
        ("test", "flow-test.schema.json"),
        ("plugin", "plugin.schema.json"),
    ] {
        let output = cargo()
            .args([
                "run",
                "--quiet",
                "--package",
                "influxify-cli",
                "--",
                "schema",
                which,
            ])
            .output()
            .map_err(|err| format!("cannot run cargo: {err}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let path = root().join("schemas").join(file);
        std::fs::write(&path, &output.stdout)
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}
