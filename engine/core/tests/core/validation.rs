//! Every defect `influxify validate` promises to catch, with its code, node and line.

use influxify_core::Code;

use crate::compile_one;

/// The diagnostics of `text` as `(code, node, line)`, errors and warnings alike.
fn check(text: &str) -> Vec<(&'static str, Option<String>, Option<usize>)> {
    compile_one(text)
        .diagnostics
        .into_iter()
        .map(|d| (d.code.as_str(), d.node, d.position.map(|p| p.line)))
        .collect()
}

fn has(
    found: &[(&'static str, Option<String>, Option<usize>)],
    code: Code,
    node: Option<&str>,
    line: Option<usize>,
) {
    let wanted = (code.as_str(), node.map(str::to_string), line);
    assert!(
        found.contains(&wanted),
        "expected {wanted:?} among {found:#?}"
    );
}

const GOOD: &str = "
id: good
variables:
  name: { type: string }
start: ask_name
nodes:
  ask_name:
    kind: ask
    prompt: Name?
    store: name
    next: hello
  hello:
    kind: message
    text: 'Hi {{ name }}'
    next: done
  done:
    kind: end
";

#[test]
fn a_good_flow_has_no_diagnostics() {
    let compilation = compile_one(GOOD);
    assert!(
        compilation.diagnostics.is_empty(),
        "{:#?}",
        compilation.diagnostics
    );
    assert!(compilation.flows.is_some());
}

#[test]
fn missing_and_unknown_start() {
    let found = check("id: f\nnodes:\n  a: { kind: end }\n");
    assert_eq!(
        found,
        vec![("F0002", None, Some(1))],
        "missing `start` is a shape error"
    );
    let found = check("id: f\nstart: nope\nnodes:\n  a: { kind: end }\n");
    has(&found, Code::Start, None, Some(2));
}

#[test]
fn edges_to_unknown_nodes() {
    let found =
        check("id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: hi\n    next: b\n");
    has(&found, Code::UnknownNode, Some("a"), Some(7));
}

#[test]
fn unreachable_nodes() {
    let found = check("id: f\nstart: a\nnodes:\n  a: { kind: end }\n  lost: { kind: end }\n");
    has(&found, Code::Unreachable, Some("lost"), Some(5));
}

#[test]
fn intents_make_nodes_reachable() {
    let text = "id: f\nstart: a\nintents:\n  stop: { keywords: [stop], goto: bye }\nnodes:\n  a: { kind: end }\n  bye: { kind: end }\n";
    assert!(check(text).is_empty());
}

#[test]
fn dead_ends() {
    let found = check("id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: hi\n");
    has(&found, Code::DeadEnd, Some("a"), Some(4));
}

#[test]
fn cycles_that_never_wait() {
    let text = "id: f\nvariables:\n  n: { type: number, default: 0 }\nstart: a\nnodes:\n  a:\n    kind: set\n    assign: { n: 'n + 1' }\n    next: b\n  b:\n    kind: condition\n    if: n > 3\n    then: done\n    else: a\n  done: { kind: end }\n";
    has(&check(text), Code::BusyCycle, Some("a"), Some(6));
    // The same loop through an `ask` waits for the user each time round: fine.
    let waiting = text.replace(
        "    kind: set\n    assign: { n: 'n + 1' }",
        "    kind: ask\n    prompt: again?\n    store: n\n    validate: { type: number }",
    );
    assert!(check(&waiting).is_empty(), "{:#?}", check(&waiting));
}

#[test]
fn undeclared_variables() {
    let found = check(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: 'Hi {{ nmae }}'\n    next: b\n  b: { kind: end }\n",
    );
    has(&found, Code::UndefinedVariable, Some("a"), Some(6));
    // Built-ins and loop variables are fine.
    let ok = "id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: 'Hi {{ user.first_name }} {{ message.text }} {% for i in range(3) %}{{ i }}{% endfor %}'\n    next: b\n  b: { kind: end }\n";
    assert!(check(ok).is_empty(), "{:#?}", check(ok));
}

#[test]
fn template_and_expression_syntax_errors() {
    let found = check(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: 'Hi {{ name'\n    next: b\n  b:\n    kind: condition\n    if: 'x >'\n    then: c\n    else: c\n  c: { kind: end }\n",
    );
    has(&found, Code::TemplateSyntax, Some("a"), Some(6));
    has(&found, Code::ExpressionSyntax, Some("b"), Some(10));
}

#[test]
fn duplicate_node_ids() {
    let found = check("id: f\nstart: a\nnodes:\n  a: { kind: end }\n  a: { kind: end }\n");
    has(&found, Code::Duplicate, Some("a"), Some(5));
}

#[test]
fn unknown_kinds_and_actions() {
    let found = check("id: f\nstart: a\nnodes:\n  a: { kind: mesage, text: hi }\n");
    has(&found, Code::UnknownKind, Some("a"), Some(4));
    let found = check(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: plugin\n    action: sheets.lokup\n    on: { ok: b, error: b }\n  b: { kind: end }\n",
    );
    has(&found, Code::UnknownAction, Some("a"), Some(6));
    let found = check(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: plugin\n    action: consent.check\n    on: { allowed: b, error: b }\n  b: { kind: end }\n",
    );
    has(&found, Code::UnknownOutcome, Some("a"), Some(7));
}

#[test]
fn messenger_limits() {
    let replies: String = (0..14)
        .map(|i| format!("      - {{ title: 'r{i}' }}\n"))
        .collect();
    let text = format!(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: '{}'\n    quick_replies:\n{replies}      - {{ title: 'a title that is far too long' }}\n    next: b\n  b:\n    kind: message\n    text: pick\n    buttons:\n      - {{ title: a, payload: A }}\n      - {{ title: b, payload: B }}\n      - {{ title: c, payload: C }}\n      - {{ title: d, url: 'https://example.com' }}\n    next: c\n  c: {{ kind: end }}\n",
        "x".repeat(2001)
    );
    let found = check(&text);
    has(&found, Code::TextTooLong, Some("a"), Some(6));
    has(&found, Code::TooManyQuickReplies, Some("a"), Some(7));
    has(&found, Code::TitleTooLong, Some("a"), Some(7));
    has(&found, Code::TooManyButtons, Some("b"), Some(27));
}

#[test]
fn bad_input_never_panics() {
    let long_line = format!("id: {}\n", "x".repeat(100_000));
    let deep = format!(
        "id: f\nstart: a\nnodes: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases = [
        "",
        "# only a comment\n",
        "just a string",
        "[1, 2, 3]",
        "id: [unclosed",
        "id: 1\nstart: 2\nnodes: 3\n",
        "id: f\nstart: a\nnodes:\n  a: 42\n",
        "id: f\nstart: a\nnodes:\n  a: { kind: [1] }\n",
        "\t\tid: f",
        "id: f\n---\nid: g\n",
        "id: f\nstart: a\nnodes:\n  a: { kind: ask, prompt: p, store: '1bad', next: a }\n",
        long_line.as_str(),
        deep.as_str(),
    ];
    for text in cases {
        let compilation = compile_one(text);
        assert!(
            compilation.has_errors(),
            "expected an error for {:?}",
            &text[..text.len().min(40)]
        );
        assert!(compilation.flows.is_none());
    }
}

#[test]
fn json_flows_are_accepted() {
    let text = r#"{"id": "j", "start": "a", "nodes": {"a": {"kind": "message", "text": "hi", "next": "b"}, "b": {"kind": "end"}}}"#;
    let compilation = influxify_core::compile(&[influxify_core::Source::new("j.json", text)], None);
    assert!(
        compilation.diagnostics.is_empty(),
        "{:#?}",
        compilation.diagnostics
    );
}

#[test]
fn references_between_flows() {
    let main = "id: main\nstart: a\nnodes:\n  a: { kind: call, flow: sub, next: b }\n  b: { kind: jump, flow: other }\n";
    let sub = "id: sub\nstart: s\nnodes:\n  s: { kind: end }\n";
    let sources = [
        influxify_core::Source::new("main.yaml", main),
        influxify_core::Source::new("sub.yaml", sub),
    ];
    let compilation = influxify_core::compile(&sources, None);
    let found: Vec<_> = compilation
        .diagnostics
        .iter()
        .map(|d| (d.code, d.node.clone()))
        .collect();
    assert_eq!(found, vec![(Code::UnknownFlow, Some("b".to_string()))]);
}

#[test]
fn regression_unknown_filters_are_caught_before_a_conversation_fails() {
    let found = check(
        "id: f\nvariables:\n  x: { type: string }\nstart: a\nnodes:\n  a:\n    kind: message\n    text: '{{ x | shout }}'\n    next: b\n  b:\n    kind: condition\n    if: x is weird\n    then: c\n    else: c\n  c: { kind: end, text: '{{ x | urlencode | upper }}' }\n",
    );
    assert_eq!(
        found,
        vec![
            ("F0009", Some("a".to_string()), Some(8)),
            ("F0010", Some("b".to_string()), Some(12))
        ]
    );
}

#[test]
fn regression_unhandled_plugin_outcomes_without_ok() {
    let found = check(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: plugin\n    action: consent.check\n    on: { granted: b, error: b }\n  b: { kind: end }\n",
    );
    has(&found, Code::DeadEnd, Some("a"), Some(7));
}

#[test]
fn regression_a_broken_start_node_is_not_reported_missing() {
    let found =
        check("id: f\nstart: a\nnodes:\n  a: { kind: ask, prompt: [1, 2], store: x, next: a }\n");
    assert_eq!(
        found.iter().map(|f| f.0).collect::<Vec<_>>(),
        ["F0002"],
        "{found:#?}"
    );
}

#[test]
fn regression_unknown_fields_point_at_the_field() {
    let found =
        check("id: f\nstart: a\nnodes:\n  a:\n    kind: end\n    text: bye\n    colour: red\n");
    assert_eq!(found, vec![("F0002", Some("a".to_string()), Some(7))]);
}

#[test]
fn regression_user_is_reserved_and_empty_texts_are_refused() {
    let found = check(
        "id: f\nstart: a\nnodes:\n  a: { kind: ask, prompt: Name?, store: user, next: b }\n  b: { kind: message, text: '', next: c }\n  c: { kind: message, text: [], quick_replies: [{ title: '' }], next: d }\n  d: { kind: end }\n",
    );
    has(&found, Code::BadReference, Some("a"), Some(4));
    has(&found, Code::Shape, Some("b"), Some(5));
    has(&found, Code::Shape, Some("c"), Some(6));
}

#[test]
fn regression_a_byte_order_mark_is_not_content() {
    let text = format!(
        "\u{feff}{}",
        "id: f\nstart: a\nnodes:\n  a: { kind: end }\n"
    );
    assert!(check(&text).is_empty(), "{:#?}", check(&text));
}

#[test]
fn regression_many_bad_edges_stay_fast() {
    let nodes: String = (0..5000)
        .map(|i| format!("  n{i}: {{ kind: message, text: hi, next: gone{i} }}\n"))
        .collect();
    let text = format!("id: f\nstart: n0\nnodes:\n{nodes}");
    let started = std::time::Instant::now();
    let found = check(&text);
    assert!(found.len() >= 5000);
    // Quadratic suggestions took seconds here; this is a bound far above the linear cost.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn regression_titles_count_what_a_reader_sees() {
    let family = "👨‍👩‍👧‍👦";
    let ok = format!(
        "id: f\nstart: a\nnodes:\n  a:\n    kind: message\n    text: hi\n    quick_replies: [{{ title: '{}' }}]\n    next: b\n  b: {{ kind: end }}\n",
        family.repeat(3)
    );
    assert!(check(&ok).is_empty(), "{:#?}", check(&ok));
    let long = ok.replace(&family.repeat(3), &"é".repeat(21));
    assert_eq!(
        check(&long).iter().map(|f| f.0).collect::<Vec<_>>(),
        ["F0017"]
    );
}

#[test]
fn retired_message_tags_are_refused_and_say_since_when() {
    for tag in [
        "CONFIRMED_EVENT_UPDATE",
        "POST_PURCHASE_UPDATE",
        "ACCOUNT_UPDATE",
        "HUMAN_AGENT",
    ] {
        let flow = format!(
            "
id: tagged
start: later
nodes:
  later: {{ kind: message, text: Your parcel, tag: {tag}, next: done }}
  done: {{ kind: end }}
"
        );
        let compilation = compile_one(&flow);
        let found: Vec<_> = compilation
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::RetiredTag)
            .collect();
        assert_eq!(found.len(), 1, "{tag}: {:#?}", compilation.diagnostics);
        assert_eq!(found[0].code.as_str(), "F0024");
        assert_eq!(found[0].node.as_deref(), Some("later"));
        if tag == "HUMAN_AGENT" {
            assert!(
                found[0].message.contains("a person's reply"),
                "{}",
                found[0].message
            );
        } else {
            assert!(
                found[0].message.contains("2026-04-27"),
                "{}",
                found[0].message
            );
        }
        assert!(compilation.flows.is_none());
    }
}

#[test]
fn the_profile_fields_flows_read_are_known() {
    let compilation = compile_one(
        "
id: greet
start: hello
nodes:
  hello: { kind: message, text: 'Hi {{ user.first_name }}!', next: check }
  check: { kind: condition, if: \"user.locale == 'fr'\", then: done, else: done }
  done: { kind: end }
",
    );
    let flows = compilation.flows.unwrap();
    assert_eq!(flows.profile_fields(), ["first_name", "locale"]);
    assert!(flows.reads_profile());
    let none = compile_one(GOOD).flows.unwrap();
    assert!(!none.reads_profile());
}

#[test]
fn a_text_that_can_render_empty_is_a_warning_unless_it_has_a_fallback() {
    let flow = |extra: &str| {
        format!(
            "
id: answer
variables:
  answer: {{ type: string }}
start: say
nodes:
  say: {{ kind: message, text: '  {{{{ answer | trim }}}} ', {extra} next: done }}
  done: {{ kind: end, text: 'Bye {{{{ answer }}}}' }}
"
        )
    };
    let found = check(&flow(""));
    has(&found, Code::MayRenderEmpty, Some("say"), Some(7));
    assert_eq!(
        found.iter().filter(|d| d.0 == "F0025").count(),
        1,
        "{found:#?}"
    );
    assert!(check(&flow("fallback: 'No answer',")).is_empty());
}
