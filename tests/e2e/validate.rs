//! `influxify validate` on the shipped flows and on broken ones.

use crate::{influxify, influxify_in, stdout};

#[test]
fn shipped_flows_are_valid() {
    let output = influxify(&["validate", "flows"], None);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("ok: "), "{}", stdout(&output));
}

const BROKEN: &str = "\
id: broken
variables:
  count: { type: number, default: 0 }
start: hello
nodes:
  hello:
    kind: message
    text: 'Hi {{ nmae }}'
    next: ask
  ask:
    kind: ask
    prompt: Count?
    store: count
    validate: { type: number }
    next: nowhere
  lost:
    kind: end
  spin:
    kind: set
    assign: { count: 'count + 1' }
    next: spin
";

#[test]
fn defects_are_reported_with_code_node_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), BROKEN).unwrap();
    let output = influxify_in(dir.path(), &["validate", "broken.yaml"], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for expected in [
        "error[F0008]: `text` uses variable `nmae`",
        "--> broken.yaml:8:5 (node `hello`)",
        "error[F0004]: `next` leads to unknown node `nowhere`",
        "--> broken.yaml:15:5 (node `ask`)",
        "error[F0005]: node `lost` can never be reached",
        "error[F0007]: nodes `spin` form a cycle that never waits",
        "help: declare it under `variables:`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn json_output_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), BROKEN).unwrap();
    let output = influxify_in(
        dir.path(),
        &["validate", "--format", "json", "broken.yaml"],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert!(report["errors"].as_u64().unwrap() >= 4);
    let unknown = diagnostics
        .iter()
        .find(|d| d["code"] == "F0004")
        .expect("an F0004");
    assert_eq!(unknown["node"], "ask");
    assert_eq!(unknown["position"]["line"], 15);
    assert_eq!(unknown["file"], "broken.yaml");
    assert_eq!(unknown["severity"], "error");
}

#[test]
fn unreadable_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.yaml", b"", "the file is empty"),
        ("prose.yaml", b"this is not a flow", "must be a mapping"),
        ("binary.yaml", b"id: \xff\xfe\n", "not UTF-8"),
        (
            "types.yaml",
            b"id: f\nstart: a\nnodes: [1, 2]\n",
            "invalid type",
        ),
    ];
    for (name, bytes, expected) in cases {
        let sub = dir.path().join(name.trim_end_matches(".yaml"));
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join(name), bytes).unwrap();
        let output = influxify_in(&sub, &["validate", name], None);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let text = stdout(&output);
        assert!(text.contains(expected), "{name}: {text}");
        assert!(
            output.stderr.is_empty()
                || !String::from_utf8_lossy(&output.stderr).contains("panicked")
        );
    }
    let missing = influxify_in(dir.path(), &["validate", "nope.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read nope.yaml"));
}
