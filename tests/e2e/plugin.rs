//! The plugin author's path, as a new author would walk it: scaffold a plugin, build it for
//! wasm32-wasip2, test it with the harness, validate a flow against it, and run a bot that
//! calls it through the plugin host.

use std::path::Path;
use std::process::Command;

use crate::{influxify_in, root, stdout};

const FLOW: &str = r#"
id: hello
start: ask
nodes:
  ask:
    kind: ask
    prompt: What is your name?
    store: name
    next: greet
  greet:
    kind: plugin
    action: greeter.greet
    input: { name: "{{ name }}" }
    outputs: { text: output.text }
    on: { ok: say, nameless: say, error: oops }
  say:
    kind: message
    text: "{{ text }}"
    next: done
  oops:
    kind: message
    text: Sorry, something went wrong.
    next: done
  done:
    kind: end
"#;

/// Builds a plugin crate, sharing compiled dependencies with the test plugins, and copies the
/// component `file` to `to`.
fn build_to(krate: &Path, file: &str, to: &Path) {
    let shared = root().join("plugins/target");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", &shared)
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "{} builds", krate.display());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(shared.join("wasm32-wasip2/release").join(file), to).unwrap();
}

/// Builds the scaffolded crate and puts the component where its manifest says.
fn build(krate: &Path) {
    build_to(
        krate,
        "greeter.wasm",
        &krate.join("target/wasm32-wasip2/release/greeter.wasm"),
    );
}

#[test]
fn the_example_plugin_passes_its_harness() {
    let work = tempfile::tempdir().unwrap();
    let example = root().join("examples/plugin-currency");
    let installed = work.path().join("currency");
    build_to(
        &example,
        "plugin_currency.wasm",
        &installed.join("plugin_currency.wasm"),
    );
    for file in ["plugin.toml", "harness.yaml"] {
        std::fs::copy(example.join(file), installed.join(file)).unwrap();
    }
    let tested = influxify_in(
        &installed,
        &["plugin", "test", "plugin.toml", "--script", "harness.yaml"],
        None,
    );
    let report = stdout(&tested);
    assert!(
        tested.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(report.contains("6 passed, 0 failed"), "{report}");
}

#[test]
fn a_scaffolded_plugin_builds_passes_its_harness_and_runs_in_a_bot() {
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    let krate = plugins.join("greeter");
    let created = influxify_in(
        work.path(),
        &["plugin", "new", "greeter", "--dir", krate.to_str().unwrap()],
        None,
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    for file in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "harness.yaml",
        "README.md",
    ] {
        assert!(krate.join(file).is_file(), "{file}");
    }
    build(&krate);

    // The harness: scripted cases, with instructions and peak memory per call.
    let tested = influxify_in(
        &krate,
        &["plugin", "test", "plugin.toml", "--script", "harness.yaml"],
        None,
    );
    let report = stdout(&tested);
    assert!(
        tested.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(report.contains("3 passed, 0 failed"), "{report}");
    assert!(report.contains("instructions, peak memory"), "{report}");
    // A failing expectation fails the command.
    let script = work.path().join("wrong.yaml");
    std::fs::write(&script, "cases:\n  - name: wrong\n    action: greet\n    input: { name: Ada }\n    expect: { output: { text: 'Bye' } }\n").unwrap();
    let failing = influxify_in(
        &krate,
        &[
            "plugin",
            "test",
            "plugin.toml",
            "--script",
            script.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(failing.status.code(), Some(1), "{}", stdout(&failing));

    // Validation knows the plugin's actions, outcomes and input schema.
    let flows = work.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("hello.yaml"), FLOW).unwrap();
    let plugins_arg = plugins.to_str().unwrap();
    let valid = influxify_in(
        work.path(),
        &["validate", "flows", "--plugins", plugins_arg],
        None,
    );
    assert!(valid.status.success(), "{}", stdout(&valid));
    std::fs::write(flows.join("hello.yaml"), FLOW.replace("{ name:", "{ nam:")).unwrap();
    let invalid = influxify_in(
        work.path(),
        &["validate", "flows", "--plugins", plugins_arg],
        None,
    );
    let diagnostics = stdout(&invalid);
    assert_eq!(invalid.status.code(), Some(1), "{diagnostics}");
    assert!(
        diagnostics.contains("F0023") && diagnostics.contains("did you mean `name`"),
        "{diagnostics}"
    );
    std::fs::write(flows.join("hello.yaml"), FLOW).unwrap();

    // A bot calls it through the plugin host.
    let data = work.path().join("data");
    let ran = influxify_in(
        work.path(),
        &[
            "run",
            "--data",
            data.to_str().unwrap(),
            "--flows",
            "flows",
            "--entry",
            "hello",
            "--plugins",
            plugins_arg,
        ],
        Some(
            "{\"user\": \"ada\", \"id\": \"m1\", \"text\": \"hi\"}\n{\"user\": \"ada\", \"id\": \"m2\", \"text\": \"Ada\"}\n",
        ),
    );
    let out = stdout(&ran);
    assert!(
        ran.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(out.contains("Hello, Ada!"), "{out}");
}
