//! Every built-in plugin's unit tests: its `harness.yaml`, run by `influxify plugin test` against
//! the built component installed as an operator would install it (the manifest, the component
//! beside it, and the files its `@file:` settings name).

use std::path::Path;

use crate::{built_plugins, influxify_in, root, stdout};

/// The built-in plugins, all of which have a harness script.
const BUILTIN: &[&str] = &["messenger", "openai", "sheets", "consent"];

/// Copies plugin `name` from `plugins/` into `to`: what `plugin test` needs, and not its sources.
fn install(name: &str, built: &Path, to: &Path) {
    let source = root().join("plugins").join(name);
    std::fs::create_dir_all(to).unwrap();
    let manifest_text = std::fs::read_to_string(source.join("plugin.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest_text).unwrap();
    let component = manifest["plugin"]["component"].as_str().unwrap();
    std::fs::copy(built.join(component), to.join(component)).unwrap();
    let mut files = vec!["plugin.toml".to_string(), "harness.yaml".to_string()];
    if let Some(config) = manifest.get("config").and_then(|c| c.as_table()) {
        files.extend(
            config
                .values()
                .filter_map(|v| v.as_str()?.strip_prefix("@file:"))
                .map(str::to_string),
        );
    }
    for file in files {
        std::fs::copy(source.join(&file), to.join(&file))
            .unwrap_or_else(|err| panic!("{name}: cannot copy {file}: {err}"));
    }
}

/// How many cases `script` has.
fn cases_in(script: &Path) -> usize {
    let text = std::fs::read_to_string(script).unwrap();
    let script: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    script["cases"].as_sequence().map_or(0, Vec::len)
}

#[test]
fn every_builtin_plugin_passes_its_harness() {
    let built = built_plugins(BUILTIN);
    let work = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for name in BUILTIN {
        let dir = work.path().join(name);
        install(name, &built, &dir);
        let cases = cases_in(&dir.join("harness.yaml"));
        assert!(cases > 0, "{name}: harness.yaml has no cases");
        let tested = influxify_in(
            &dir,
            &["plugin", "test", "plugin.toml", "--script", "harness.yaml"],
            None,
        );
        let report = stdout(&tested);
        let summary = format!("{cases} passed, 0 failed");
        if !tested.status.success() || !report.lines().any(|line| line == summary) {
            failures.push(format!(
                "{name}: expected `{summary}`\n{report}{}",
                String::from_utf8_lossy(&tested.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
