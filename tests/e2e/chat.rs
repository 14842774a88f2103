//! `influxify chat` driven through its standard input, as a designer would type.

use crate::{influxify, influxify_in, stdout};

const FLOW: &str = "\
id: pizza
variables:
  size: { type: string }
start: ask_size
nodes:
  ask_size:
    kind: ask
    prompt: 'Which size, {{ user.first_name }}?'
    store: size
    validate:
      type: choice
      choices: [{ title: Small, value: S }, { title: Large, value: L }]
    next: price
  price:
    kind: plugin
    action: menu.price
    input: { size: '{{ size }}' }
    outputs: { total: output.total }
    on: { ok: wait, error: sorry }
  wait:
    kind: wait
    for: 20m
    next: ready
  ready: { kind: end, text: 'Your {{ size }} pizza is ready: {{ total }} EUR.' }
  sorry: { kind: end, text: 'Sorry, no prices today.' }
";

const MOCKS: &str = "\
user: { first_name: Ada }
mocks:
  menu.price:
    - when: \"input.size == 'L'\"
      output: { total: 14 }
    - output: { total: 9 }
cases: []
";

#[test]
fn chat_with_mocks_quick_replies_and_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pizza.yaml"), FLOW).unwrap();
    std::fs::write(dir.path().join("pizza.test.yaml"), MOCKS).unwrap();
    let output = influxify_in(
        dir.path(),
        &["chat", "pizza.yaml"],
        Some("hello\n2\n/vars\n/advance 25m\n/quit\n"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    for expected in [
        "Plugin calls are answered by the mocks in pizza.test.yaml",
        "bot › Which size, Ada?",
        "[1] Small  [2] Large",
        "(plugin menu.price {\"size\":\"L\"} → ok)",
        "\"total\": 14",
        "bot › Your L pizza is ready: 14 EUR.",
        "(the conversation ended)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn chat_with_a_shipped_flow() {
    let output = influxify(
        &["chat", "flows/lead-capture/lead-capture.yaml"],
        Some("hello\n"),
    );
    assert!(output.status.success());
    assert!(stdout(&output).contains("bot › "), "{}", stdout(&output));
}

#[test]
fn chat_refuses_a_broken_flow_with_its_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "id: bad\nstart: nope\nnodes:\n  a: { kind: end }\n",
    )
    .unwrap();
    let output = influxify_in(dir.path(), &["chat", "bad.yaml"], Some("hi\n"));
    assert_eq!(output.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("error[F0003]: start node `nope` does not exist"),
        "{errors}"
    );
}

#[test]
fn regression_files_that_are_not_flows_beside_a_flow_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.yaml"),
        "id: bot\nstart: a\nnodes:\n  a: { kind: end, text: hello }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        "{\"name\": \"site\", \"version\": \"1.0.0\"}",
    )
    .unwrap();
    let output = influxify_in(dir.path(), &["chat", "bot.yaml"], Some("hi\n"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout(&output).contains("bot › hello"));
    let missing = influxify_in(dir.path(), &["chat", "nope.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read nope.yaml: no such file")
    );
}
