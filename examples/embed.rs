//! Embedding the engine as a library: compile a flow and drive a conversation with events.
//!
//! Run with `cargo run --example embed`.

use influxify_core::conversation::{Effect, UserMessage};
use influxify_core::{ConversationState, Event, Source, compile, step};

const FLOW: &str = "
id: hello
variables:
  name: { type: string }
start: ask
nodes:
  ask:
    kind: ask
    prompt: What's your name?
    store: name
    next: greet
  greet:
    kind: end
    text: 'Nice to meet you, {{ name }}!'
";

fn main() {
    let compilation = compile(&[Source::new("hello.yaml", FLOW)], None);
    for diagnostic in &compilation.diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(flows) = compilation.flows else {
        std::process::exit(1);
    };
    let mut state = ConversationState::new("hello");
    let mut now = 1_767_258_000_000;
    for text in ["hi", "Ada"] {
        println!("user › {text}");
        let turn = step(&flows, state, &Event::User(UserMessage::text(text)), now);
        for effect in &turn.effects {
            if let Effect::Send(message) = effect {
                println!("bot  › {}", message.text);
            }
        }
        state = turn.state;
        now += 1_000;
    }
    println!(
        "state: {}",
        serde_json::to_string(&state).unwrap_or_default()
    );
}
