//! Benchmarks of the step function and of compiling a large flow.
//!
//! Run with `cargo bench -p influxify-core --bench step`.

use divan::{Bencher, black_box};
use influxify_core::conversation::UserMessage;
use influxify_core::{ConversationState, Event, FlowSet, Source, compile, step};

fn main() {
    divan::main();
}

/// A realistic lead-capture flow: the typical turn validates an e-mail address, stores it,
/// renders a personalised confirmation and asks the next question.
const LEAD_FLOW: &str = r#"
id: lead
title: Lead capture
variables:
  name: { type: string }
  email: { type: string }
  phone: { type: string }
start: welcome
intents:
  stop: { keywords: [stop, unsubscribe], goto: bye }
  help: { keywords: [help], payloads: [HELP], goto: welcome }
nodes:
  welcome:
    kind: message
    text: "Hi {{ user.first_name }}! Let's get you a quote."
    next: ask_name
  ask_name:
    kind: ask
    prompt: "What's your name?"
    store: name
    validate: { type: text, min_length: 2, max_length: 60 }
    next: ask_email
  ask_email:
    kind: ask
    prompt: "Thanks {{ name }}! What's your e-mail address?"
    store: email
    validate: { type: email }
    reprompt: "That doesn't look like an e-mail address. Try again?"
    retries: 2
    next: confirm_email
    invalid: bye
  confirm_email:
    kind: message
    text: "Great, we'll write to {{ email }}."
    next: ask_phone
  ask_phone:
    kind: ask
    prompt: "And your phone number?"
    store: phone
    validate: { type: phone }
    next: bye
  bye:
    kind: end
    text: "Thanks, bye!"
"#;

fn lead_flows() -> FlowSet {
    let compilation = compile(&[Source::new("lead.yaml", LEAD_FLOW)], None);
    assert!(!compilation.has_errors(), "{:?}", compilation.diagnostics);
    compilation.flows.expect("compiled")
}

/// The state of a conversation waiting at `ask_email`.
fn at_ask_email(flows: &FlowSet) -> ConversationState {
    let mut state = ConversationState::new("lead");
    let profile = serde_json::json!({"first_name": "Ada"});
    let events = [
        Event::Profile {
            profile: profile.as_object().cloned().unwrap_or_default(),
        },
        Event::User(UserMessage::text("hi")),
        Event::User(UserMessage::text("Ada Lovelace")),
    ];
    for event in &events {
        state = step(flows, state, event, 1_767_258_000_000).state;
    }
    assert_eq!(state.node.as_deref(), Some("ask_email"));
    state
}

/// One typical turn: a user message, its validation, one rendered reply and the next prompt.
#[divan::bench]
fn typical_turn(bencher: Bencher) {
    let flows = lead_flows();
    let state = at_ask_email(&flows);
    let event = Event::User(UserMessage::text("ada@example.com"));
    bencher
        .with_inputs(|| state.clone())
        .bench_local_values(|state| {
            step(
                black_box(&flows),
                state,
                black_box(&event),
                1_767_258_001_000,
            )
        });
}

/// An invalid reply answered with the reprompt.
#[divan::bench]
fn invalid_reply(bencher: Bencher) {
    let flows = lead_flows();
    let state = at_ask_email(&flows);
    let event = Event::User(UserMessage::text("not an address"));
    bencher
        .with_inputs(|| state.clone())
        .bench_local_values(|state| {
            step(
                black_box(&flows),
                state,
                black_box(&event),
                1_767_258_001_000,
            )
        });
}

/// A generated flow of `n` nodes: a chain of asks and messages with templates and branches.
pub fn generated_flow(n: usize) -> String {
    let mut text = String::from(
        "id: big\nvariables:\n  counter: { type: number, default: 0 }\nstart: n0\nnodes:\n",
    );
    for i in 0..n {
        let next = if i + 1 == n {
            "end".to_string()
        } else {
            format!("n{}", i + 1)
        };
        let node = match i % 4 {
            0 => format!(
                "  n{i}:\n    kind: message\n    text: \"Step {i} for {{{{ user.first_name }}}}\"\n    next: {next}\n"
            ),
            1 => format!(
                "  n{i}:\n    kind: ask\n    prompt: \"Question {i}?\"\n    store: a{i}\n    validate: {{ type: number, min: 0, max: 100 }}\n    next: {next}\n"
            ),
            2 => format!(
                "  n{i}:\n    kind: condition\n    if: \"a{} > 50\"\n    then: {next}\n    else: {next}\n",
                i - 1
            ),
            _ => format!(
                "  n{i}:\n    kind: set\n    assign: {{ counter: \"counter + 1\" }}\n    next: {next}\n"
            ),
        };
        text.push_str(&node);
    }
    text.push_str("  end:\n    kind: end\n    text: Done\n");
    text
}

/// Parsing, compiling and validating a generated 1,000-node flow.
#[divan::bench]
fn compile_1000_nodes(bencher: Bencher) {
    let text = generated_flow(1000);
    let source = Source::new("big.yaml", text);
    let compilation = compile(std::slice::from_ref(&source), None);
    assert!(
        !compilation.has_errors(),
        "{:?}",
        &compilation.diagnostics[..1]
    );
    bencher.bench_local(|| compile(black_box(std::slice::from_ref(&source)), None));
}
