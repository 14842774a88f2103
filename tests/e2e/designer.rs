//! `influxify test` and `influxify graph` on the shipped flows.

use crate::{influxify, influxify_in, stdout};

#[test]
fn shipped_transcript_tests_pass_and_are_many() {
    let output = influxify(&["test", "flows"], None);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let last = text.lines().last().unwrap_or_default();
    let (passed, failed) = last.split_once(" passed, ").expect("a summary line");
    let passed: usize = passed.parse().unwrap();
    assert_eq!(failed, "0 failed");
    assert!(passed >= 30, "only {passed} cases");
}

#[test]
fn a_failing_case_prints_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("greet.yaml"),
        "id: greet\nvariables:\n  name: { type: string }\nstart: ask\nnodes:\n  ask:\n    kind: ask\n    prompt: Name?\n    store: name\n    next: hi\n  hi:\n    kind: end\n    text: 'Hello {{ name }}!'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("greet.test.yaml"),
        "cases:\n  - name: greets by name\n    turns:\n      - user: hi\n        bot: [Name?]\n      - user: Ada\n        bot: ['Hi Ada!']\n        status: ended\n  - name: passes\n    turns:\n      - user: hi\n        bot: [Name?]\n",
    )
    .unwrap();
    let output = influxify_in(dir.path(), &["test", "."], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for expected in [
        "FAIL  greets by name",
        "turn 2 (./greet.test.yaml:6): user › Ada",
        "- Hi Ada!   (text differs)",
        "+ Hello Ada!",
        "user › hi",
        "bot › Name?",
        "ok    passes",
        "1 passed, 1 failed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn graphs_in_mermaid_and_dot() {
    let mermaid = influxify(&["graph", "flows/order-status/order-status.yaml"], None);
    assert!(mermaid.status.success());
    let text = stdout(&mermaid);
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    assert!(text.contains("-->|"), "{text}");
    let dot = influxify(
        &[
            "graph",
            "--format",
            "dot",
            "flows/order-status/order-status.yaml",
        ],
        None,
    );
    assert!(dot.status.success());
    let text = stdout(&dot);
    assert!(text.starts_with("digraph \"order-status\" {"), "{text}");
    assert!(text.contains(" -> "), "{text}");
}
