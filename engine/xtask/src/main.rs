//! Build automation, run as `cargo xtask <task>`:
//!
//! - `cargo xtask test`: sets up what the tests need on a fresh machine (the wasm32-wasip2
//!   target; a real OpenAI-compatible server, llama.cpp's, with a small model), then runs every
//!   test.
//! - `cargo xtask serve [ARGS]`: builds the built-in plugins (`plugins`), then runs
//!   `influxify serve ARGS` with the repository's `influxify.toml`: the demo bot on the embedded
//!   store at http://127.0.0.1:8080 (the playground at `/playground`).
//! - `cargo xtask plugins`: builds the built-in plugins for wasm32-wasip2 and installs them, each
//!   with its manifest and files, in `dist/plugins/`.
//! - `cargo xtask load [--seconds N] [--flow all|bare|silent|echo|typing|plugins|mixed]`: the
//!   webhook under `wrk` (release build, the Messenger channel, a fake Graph API that counts the
//!   replies); prints throughput, latency, reply lag and memory; `all` runs the flows one after
//!   another and prints each as a fraction of the bare handler and of the silent flow.
//! - `cargo xtask repeats [--kills N] [--rate N]`: the replies a SIGKILL makes Messenger users
//!   see twice, under load and on an idle server.
//! - `cargo xtask fuzz [SECONDS]`: each fuzz target of `engine/fuzz` for a short while.
//! - `cargo xtask ci`: formatting and lint checks, then `test` (what `.ci/run` runs).
//! - `cargo xtask schemas`: regenerates the committed JSON Schemas in `schemas/`.
//! - `cargo xtask llm`: installs the local OpenAI-compatible server and its model (done by
//!   `test` too) and prints where they are.

mod bare;
mod browser;
mod fuzz;
mod llm;
mod load;
mod repeats;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "plugins" => plugins(),
        "fuzz" => fuzz::fuzz(
            std::env::args()
                .nth(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(20),
        ),
        "load" => load::load(&std::env::args().skip(2).collect::<Vec<_>>()),
        "bare-webhook" => bare::serve(&std::env::args().skip(2).collect::<Vec<_>>()),
        "repeats" => repeats::repeats(&std::env::args().skip(2).collect::<Vec<_>>()),
        "serve" => serve(std::env::args().skip(2).collect()),
        "ci" => ci(),
        "schemas" => schemas(),
        "llm" => llm::setup().map(|(python, model)| {
            println!("python: {}\nmodel: {}", python.display(), model.display());
        }),
        _ => Err(format!(
            "unknown task `{task}`; use one of: serve, plugins, test, fuzz, ci, schemas, llm, load"
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

/// The plugins `influxify serve` loads by default.
const BUILTIN_PLUGINS: [&str; 4] = ["messenger", "openai", "sheets", "consent"];

/// Builds the built-in plugins and installs them in `dist/plugins/<name>/`: the manifest, the
/// component, and the files the manifest's settings name (`@file:`).
fn plugins() -> Result<(), String> {
    setup()?;
    let mut build = cargo();
    build.args([
        "build",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--locked",
    ]);
    for name in BUILTIN_PLUGINS {
        build.args(["-p", name]);
    }
    // The plugins' own workspace, target directory and flags (as the tests build them).
    build.env_remove("CARGO_TARGET_DIR").env_remove("RUSTFLAGS");
    run(build)?;
    let built = root().join("plugins/target/wasm32-wasip2/release");
    for name in BUILTIN_PLUGINS {
        let source = root().join("plugins").join(name);
        let dest = root().join("dist/plugins").join(name);
        std::fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let wasm = format!("{name}.wasm");
        copy(&built.join(&wasm), &dest.join(&wasm))?;
        let entries =
            std::fs::read_dir(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            let wanted = file == "plugin.toml"
                || [".csv", ".json", ".txt"]
                    .iter()
                    .any(|ext| file.ends_with(ext));
            if path.is_file() && wanted {
                copy(&path, &dest.join(&file))?;
            }
        }
    }
    eprintln!(
        "xtask: installed {} in {}",
        BUILTIN_PLUGINS.join(", "),
        root().join("dist/plugins").display()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// Builds the built-in plugins, then serves the demo bot (`influxify.toml`).
fn serve(args: Vec<String>) -> Result<(), String> {
    plugins()?;
    let mut serve = cargo();
    serve
        .args(["run", "--locked", "-p", "influxify-cli", "--", "serve"])
        .args(args);
    run(serve)
}

fn test() -> Result<(), String> {
    browser::setup()?;
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
    test()?;
    fuzz::fuzz(20)
}

fn schemas() -> Result<(), String> {
    for (which, file) in [
        ("flow", "flow.schema.json"),
        ("test", "flow-test.schema.json"),
        ("plugin", "plugin.schema.json"),
        ("config", "config.schema.json"),
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
