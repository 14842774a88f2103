//! The committed schemas are fresh, and a JSON Schema validator (as editors use) accepts every
//! shipped flow and rejects broken ones.

use crate::{influxify, root, stdout};

fn committed(name: &str) -> String {
    std::fs::read_to_string(root().join("schemas").join(name)).expect("the schema is committed")
}

#[test]
fn printed_schemas_match_the_committed_files() {
    let flow = influxify(&["schema", "flow"], None);
    assert!(flow.status.success());
    assert_eq!(
        stdout(&flow),
        committed("flow.schema.json"),
        "run `cargo run -- schema flow > schemas/flow.schema.json`"
    );
    let test = influxify(&["schema", "test"], None);
    assert_eq!(
        stdout(&test),
        committed("flow-test.schema.json"),
        "run `cargo run -- schema test > schemas/flow-test.schema.json`"
    );
    let plugin = influxify(&["schema", "plugin"], None);
    assert_eq!(
        stdout(&plugin),
        committed("plugin.schema.json"),
        "run `cargo xtask schemas`"
    );
    let config = influxify(&["schema", "config"], None);
    assert_eq!(
        stdout(&config),
        committed("config.schema.json"),
        "run `cargo xtask schemas`"
    );
}

#[test]
fn the_shipped_server_configuration_validates_against_its_schema() {
    let validator = validator("config.schema.json");
    let value: serde_json::Value =
        toml::from_str(&std::fs::read_to_string(root().join("influxify.toml")).unwrap()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let broken: serde_json::Value =
        toml::from_str("[server]\naddr = 8080\n[store]\nlocation = \"x\"\n").unwrap();
    assert!(!validator.is_valid(&broken));
}

#[test]
fn shipped_plugin_manifests_validate_against_their_schema() {
    let validator = validator("plugin.schema.json");
    let mut manifests = vec![root().join("examples/plugin-currency/plugin.toml")];
    for entry in std::fs::read_dir(root().join("plugins")).unwrap() {
        let path = entry.unwrap().path().join("plugin.toml");
        if path.is_file() {
            manifests.push(path);
        }
    }
    assert!(manifests.len() >= 3, "{manifests:?}");
    for path in manifests {
        let value: serde_json::Value =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    let broken: serde_json::Value =
        toml::from_str("[plugin]\nname = \"x\"\n[grants]\nhttp = 3\n").unwrap();
    assert!(!validator.is_valid(&broken));
}

fn yaml_files(suffix_test: bool) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("flows")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".yaml") && name.ends_with(".test.yaml") == suffix_test {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn validator(name: &str) -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&committed(name)).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

#[test]
fn shipped_flows_and_tests_validate_against_the_schemas() {
    let flows = validator("flow.schema.json");
    let tests = validator("flow-test.schema.json");
    for (files, validator) in [(yaml_files(false), &flows), (yaml_files(true), &tests)] {
        assert!(!files.is_empty());
        for file in files {
            let value: serde_json::Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        }
    }
}

#[test]
fn the_schema_rejects_what_the_engine_rejects() {
    let flows = validator("flow.schema.json");
    let bad = [
        serde_json::json!({"id": "f", "start": "a", "nodes": {"a": {"kind": "mesage", "text": "hi"}}}),
        serde_json::json!({"id": "f", "start": "a", "nodes": {"a": {"kind": "message", "txt": "hi"}}}),
        serde_json::json!({"id": "f", "nodes": {}}),
        serde_json::json!({"id": "f", "start": "a", "nodes": {"a": {"kind": "wait", "for": "soon"}}}),
    ];
    for flow in bad {
        assert!(!flows.is_valid(&flow), "{flow}");
    }
}
