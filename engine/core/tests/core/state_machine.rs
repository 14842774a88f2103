//! The pure step function, driven event by event.

use influxify_core::conversation::{
    Attachment, Effect, Event, OperatorAction, Origin, Referral, Status, UserMessage, Waiting,
};
use influxify_core::{ConversationState, FlowSet, Turn, step};

use crate::flows;

const T0: u64 = 1_767_258_000_000;

fn user(text: &str) -> Event {
    Event::User(UserMessage::text(text))
}

/// Steps through `events` from a new conversation in `flow`, one second apart.
fn run(flows: &FlowSet, flow: &str, events: &[Event]) -> (ConversationState, Vec<Turn>) {
    let mut state = ConversationState::new(flow);
    let mut turns = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let turn = step(flows, state, event, T0 + 1000 * i as u64);
        state = turn.state.clone();
        turns.push(turn);
    }
    (state, turns)
}

fn texts(turn: &Turn) -> Vec<&str> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some(m.text.as_str()),
            _ => None,
        })
        .collect()
}

const SIGNUP: &str = "
id: signup
variables:
  email: { type: string }
  age: { type: number }
start: welcome
intents:
  stop: { keywords: [stop], goto: bye }
  help: { payloads: [HELP], keywords: [help], call: help }
nodes:
  welcome:
    kind: message
    text: 'Hi {{ user.first_name }}!'
    next: ask_email
  ask_email:
    kind: ask
    prompt: Your e-mail?
    store: email
    validate: { type: email }
    reprompt: That is not an e-mail address.
    retries: 1
    next: ask_age
    invalid: bye
    timeout: { after: 10m, next: nudge }
  nudge:
    kind: message
    text: Still there?
    next: bye
  ask_age:
    kind: ask
    prompt: Your age?
    store: age
    validate: { type: number, min: 0, max: 130 }
    next: check
  check:
    kind: condition
    if: age >= 18
    then: adult
    else: bye
  adult:
    kind: set
    assign: { age: 'age + 0' }
    next: bye
  bye:
    kind: end
    text: 'Bye {{ email or \"stranger\" }}.'
";

const HELP: &str = "
id: help
start: info
nodes:
  info:
    kind: message
    text: I can sign you up.
    next: done
  done: { kind: end }
";

#[test]
fn a_conversation_runs_to_its_end() {
    let flows = flows(&[SIGNUP, HELP]);
    let profile = serde_json::json!({"first_name": "Ada"})
        .as_object()
        .cloned()
        .unwrap();
    let (state, turns) = run(
        &flows,
        "signup",
        &[
            Event::Profile { profile },
            user("hi"),
            user("ada@example.com"),
            user("36"),
        ],
    );
    assert_eq!(texts(&turns[1]), ["Hi Ada!", "Your e-mail?"]);
    assert_eq!(texts(&turns[2]), ["Your age?"]);
    assert_eq!(texts(&turns[3]), ["Bye ada@example.com."]);
    assert_eq!(state.status, Status::Ended);
    assert_eq!(state.vars["age"], serde_json::json!(36));
    assert!(turns[3].effects.contains(&Effect::End));
}

#[test]
fn invalid_replies_reprompt_then_follow_invalid() {
    let flows = flows(&[SIGNUP, HELP]);
    let (state, turns) = run(
        &flows,
        "signup",
        &[user("hi"), user("nope"), user("still nope")],
    );
    assert_eq!(texts(&turns[1]), ["That is not an e-mail address."]);
    assert_eq!(texts(&turns[2]), ["Bye stranger."]);
    assert_eq!(state.status, Status::Ended);
}

#[test]
fn ask_timeouts_fire_once_and_late_timers_are_ignored() {
    let flows = flows(&[SIGNUP, HELP]);
    let (state, turns) = run(&flows, "signup", &[user("hi")]);
    let Some(Effect::SetTimer { timer, due }) = turns[0]
        .effects
        .iter()
        .find(|e| matches!(e, Effect::SetTimer { .. }))
        .cloned()
    else {
        panic!("no timer set: {:?}", turns[0].effects)
    };
    assert_eq!(due, T0 + 10 * 60 * 1000);
    let fired = step(&flows, state.clone(), &Event::Timer { timer }, due);
    assert_eq!(texts(&fired), ["Still there?", "Bye stranger."]);
    let again = step(
        &flows,
        fired.state.clone(),
        &Event::Timer { timer },
        due + 1,
    );
    assert!(again.effects.is_empty());
    assert!(again.ignored.is_some());

    // Answering in time cancels the timer; firing it later changes nothing.
    let answered = step(&flows, state, &user("ada@example.com"), T0 + 5000);
    assert!(answered.effects.contains(&Effect::CancelTimer { timer }));
    let late = step(&flows, answered.state.clone(), &Event::Timer { timer }, due);
    assert_eq!(late.state, answered.state);
    assert!(late.ignored.is_some());
}

#[test]
fn intents_interrupt_and_call_returns_to_the_question() {
    let flows = flows(&[SIGNUP, HELP]);
    let (state, turns) = run(&flows, "signup", &[user("hi"), user("Help!")]);
    assert_eq!(texts(&turns[1]), ["I can sign you up.", "Your e-mail?"]);
    assert_eq!(state.node.as_deref(), Some("ask_email"));
    assert!(state.stack.is_empty());
    let (state, turns) = run(&flows, "signup", &[user("hi"), user("STOP")]);
    assert_eq!(texts(&turns[1]), ["Bye stranger."]);
    assert_eq!(state.status, Status::Ended);
}

#[test]
fn a_message_after_the_end_starts_again() {
    let flows = flows(&[SIGNUP, HELP]);
    let (state, turns) = run(
        &flows,
        "signup",
        &[user("hi"), user("stop"), user("hello again")],
    );
    assert_eq!(texts(&turns[2]), ["Hi !", "Your e-mail?"]);
    assert_eq!(state.status, Status::Active);
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let flows = flows(&[SIGNUP, HELP]);
    let events = [user("hi"), user("bad"), user("ada@example.com"), user("17")];
    let (a, turns_a) = run(&flows, "signup", &events);
    let (b, turns_b) = run(&flows, "signup", &events);
    assert_eq!(a, b);
    assert_eq!(turns_a, turns_b);
}

const ORDER: &str = "
id: order
variables:
  order_id: { type: string }
start: ask_id
nodes:
  ask_id:
    kind: ask
    prompt: Order number?
    store: order_id
    validate: { type: regex, pattern: 'A-\\d{4}' }
    next: lookup
  lookup:
    kind: plugin
    action: sheets.lookup
    input:
      column: Order
      value: '{{ order_id }}'
      limit: '{{ 1 + 1 }}'
    outputs:
      status: output.row.status
    on: { ok: tell, not_found: missing, error: oops }
  tell:
    kind: switch
    cases:
      - { when: \"status == 'shipped'\", next: shipped }
    default: pending
  shipped: { kind: end, text: 'Order {{ order_id }} has shipped.' }
  pending: { kind: end, text: 'Order {{ order_id }} is {{ status }}.' }
  missing: { kind: end, text: 'No order {{ order_id }}.' }
  oops: { kind: handoff, text: Let me get a human., reason: 'lookup failed for {{ order_id }}', next: ask_id }
";

#[test]
fn a_denied_call_never_falls_back_to_ok() {
    // The engine answers `denied` when a policy refuses a call (no consent to AI processing):
    // without a `denied` edge it takes the `error` edge, not `ok`.
    let flows = flows(&[ORDER]);
    let (state, turns) = run(&flows, "order", &[user("hi"), user("A-1001")]);
    let Some(Effect::CallPlugin { call, .. }) = turns[1].effects.first().cloned() else {
        panic!("{:?}", turns[1].effects)
    };
    let denied = step(
        &flows,
        state,
        &Event::PluginResult {
            call,
            outcome: "denied".into(),
            output: serde_json::json!({"denied": "consent"}),
        },
        T0 + 5000,
    );
    assert_eq!(texts(&denied), ["Let me get a human."]);
}

#[test]
fn plugin_calls_carry_typed_input_and_route_on_outcomes() {
    let flows = flows(&[ORDER]);
    let (state, turns) = run(&flows, "order", &[user("hi"), user("A-1001")]);
    let Some(Effect::CallPlugin {
        call,
        action,
        input,
        attempts,
        ..
    }) = turns[1].effects.first().cloned()
    else {
        panic!("{:?}", turns[1].effects)
    };
    assert_eq!(action, "sheets.lookup");
    assert_eq!(
        input,
        serde_json::json!({"column": "Order", "value": "A-1001", "limit": 2})
    );
    assert_eq!(attempts, 3);
    assert_eq!(state.waiting, Some(Waiting::Plugin { call }));

    let output = serde_json::json!({"row": {"status": "shipped"}});
    let ok = step(
        &flows,
        state.clone(),
        &Event::PluginResult {
            call,
            outcome: "ok".into(),
            output,
        },
        T0 + 5000,
    );
    assert_eq!(texts(&ok), ["Order A-1001 has shipped."]);
    assert_eq!(ok.state.vars["status"], "shipped");

    let missing = step(
        &flows,
        state.clone(),
        &Event::PluginResult {
            call,
            outcome: "not_found".into(),
            output: serde_json::Value::Null,
        },
        T0 + 5000,
    );
    assert_eq!(texts(&missing), ["No order A-1001."]);

    let stale = step(
        &flows,
        state.clone(),
        &Event::PluginResult {
            call: call + 7,
            outcome: "ok".into(),
            output: serde_json::Value::Null,
        },
        T0 + 5000,
    );
    assert_eq!(stale.state, state);
    assert!(stale.ignored.is_some());

    let failed = step(
        &flows,
        state,
        &Event::PluginFailed {
            call,
            error: "HTTP 500".into(),
        },
        T0 + 5000,
    );
    assert_eq!(texts(&failed), ["Let me get a human."]);
    assert!(failed.effects.contains(&Effect::Handoff {
        reason: Some("lookup failed for A-1001".into())
    }));
    assert_eq!(failed.state.status, Status::HandedOff);

    // While handed off, the user's messages go to the operator; resuming continues at `next`.
    let forwarded = step(&flows, failed.state, &user("hello?"), T0 + 6000);
    assert_eq!(
        forwarded.effects,
        vec![Effect::ForwardToOperator(UserMessage::text("hello?"))]
    );
    let said = step(
        &flows,
        forwarded.state,
        &Event::Operator(OperatorAction::Say {
            text: "Hi, Sam here.".into(),
        }),
        T0 + 7000,
    );
    assert_eq!(texts(&said), ["Hi, Sam here."]);
    let resumed = step(
        &flows,
        said.state,
        &Event::Operator(OperatorAction::Resume),
        T0 + 8000,
    );
    assert_eq!(texts(&resumed), ["Order number?"]);
    assert_eq!(resumed.state.status, Status::Active);
}

#[test]
fn messages_during_a_plugin_call_are_queued_not_lost() {
    let flows = flows(&[ORDER]);
    let (state, _) = run(&flows, "order", &[user("hi"), user("A-1001")]);
    let Some(Waiting::Plugin { call }) = state.waiting else {
        panic!()
    };
    let queued = step(&flows, state, &user("A-2002"), T0 + 3000);
    assert!(queued.effects.is_empty());
    assert_eq!(queued.state.queued.len(), 1);
    // The lookup fails with a handoff... use not_found: the flow ends, and the queued message
    // starts it again, answering nothing yet (a new conversation starts at its first node).
    let done = step(
        &flows,
        queued.state,
        &Event::PluginResult {
            call,
            outcome: "not_found".into(),
            output: serde_json::Value::Null,
        },
        T0 + 4000,
    );
    assert_eq!(texts(&done), ["No order A-1001.", "Order number?"]);
    assert!(done.state.queued.is_empty());
}

#[test]
fn a_plugin_error_without_an_error_edge_fails_visibly() {
    let flow = "id: p\nstart: a\nnodes:\n  a:\n    kind: plugin\n    action: openai.chat\n    on: { ok: b }\n  b: { kind: end }\n";
    let flows = flows(&[flow]);
    let (state, turns) = run(&flows, "p", &[user("hi")]);
    let Some(Effect::CallPlugin { call, .. }) = turns[0].effects.first().cloned() else {
        panic!()
    };
    let failed = step(
        &flows,
        state,
        &Event::PluginFailed {
            call,
            error: "quota".into(),
        },
        T0,
    );
    assert!(matches!(failed.state.status, Status::Failed { ref error } if error.contains("quota")));
    assert!(matches!(failed.effects.as_slice(), [Effect::Failed { .. }]));
    let after = step(&flows, failed.state.clone(), &user("hello"), T0);
    assert!(after.ignored.is_some());
    let reset = step(
        &flows,
        failed.state,
        &Event::Operator(OperatorAction::Reset),
        T0,
    );
    assert_eq!(reset.state.status, Status::Active);
    assert_eq!(reset.state.node, None);
}

const REMINDER: &str = "
id: reminder
start: wait
nodes:
  wait:
    kind: wait
    for: 2h
    cancel_on_message: true
    next: remind
    interrupted: hello
  remind: { kind: end, text: Reminder! }
  hello: { kind: end, text: You wrote first. }
";

#[test]
fn waits_fire_or_are_interrupted() {
    let flows = flows(&[REMINDER]);
    let (state, turns) = run(&flows, "reminder", &[user("hi")]);
    let Some(Effect::SetTimer { timer, due }) = turns[0].effects.first().cloned() else {
        panic!()
    };
    assert_eq!(due, T0 + 2 * 3600 * 1000);
    let fired = step(&flows, state.clone(), &Event::Timer { timer }, due);
    assert_eq!(texts(&fired), ["Reminder!"]);
    let interrupted = step(&flows, state, &user("hey"), T0 + 60_000);
    assert_eq!(texts(&interrupted), ["You wrote first."]);
    assert!(interrupted.effects.contains(&Effect::CancelTimer { timer }));
}

#[test]
fn subflows_return_to_the_caller() {
    let main = "id: main\nstart: a\nnodes:\n  a: { kind: call, flow: sub, next: b }\n  b: { kind: end, text: back }\n";
    let sub = "id: sub\nstart: s\nnodes:\n  s: { kind: message, text: inside, next: t }\n  t: { kind: end }\n";
    let flows = flows(&[main, sub]);
    let (state, turns) = run(&flows, "main", &[user("hi")]);
    assert_eq!(texts(&turns[0]), ["inside", "back"]);
    assert_eq!(state.flow, "main");
    assert_eq!(state.status, Status::Ended);
}

#[test]
fn runaway_loops_across_flows_are_bounded() {
    let a = "id: a\nstart: x\nnodes:\n  x: { kind: jump, flow: b }\n";
    let b = "id: b\nstart: y\nnodes:\n  y: { kind: jump, flow: a }\n";
    let flows = flows(&[a, b]);
    let (state, _) = run(&flows, "a", &[user("hi")]);
    assert!(
        matches!(state.status, Status::Failed { ref error } if error.contains("without waiting")),
        "{state:?}"
    );
}

#[test]
fn runaway_templates_fail_the_turn_cleanly() {
    let flow = "id: r\nstart: a\nnodes:\n  a:\n    kind: message\n    text: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'\n    next: b\n  b: { kind: end }\n";
    let flows = flows(&[flow]);
    let (state, turns) = run(&flows, "r", &[user("hi")]);
    assert!(
        matches!(state.status, Status::Failed { ref error } if error.contains("fuel")),
        "{state:?}"
    );
    assert!(texts(&turns[0]).is_empty());
}

#[test]
fn state_is_compact_and_round_trips() {
    let flows = flows(&[SIGNUP, HELP]);
    let profile =
        serde_json::json!({"first_name": "Ada", "last_name": "Lovelace", "locale": "en_GB"})
            .as_object()
            .cloned()
            .unwrap();
    let (state, _) = run(
        &flows,
        "signup",
        &[
            Event::Profile { profile },
            user("hi"),
            user("ada@example.com"),
        ],
    );
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.len() < 400, "{} bytes: {json}", json.len());
    assert!(json.contains("\"v\":1"));
    let back: ConversationState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
}

#[test]
fn regression_two_templated_texts_of_one_node_keep_their_own_text() {
    let flow = "id: t\nvariables:\n  a: { type: string, default: A }\n  b: { type: string, default: B }\nstart: m\nnodes:\n  m:\n    kind: message\n    text: ['first {{ a }}', 'second {{ b }}']\n    next: e\n  e: { kind: end }\n";
    let flows = flows(&[flow]);
    let (_, turns) = run(&flows, "t", &[user("hi")]);
    assert_eq!(texts(&turns[0]), ["first A", "second B"]);
}

const FEEDBACK: &str = "
id: feedback
variables:
  low: { type: number, default: 2 }
start: ask
nodes:
  ask:
    kind: ask
    prompt: 'Rating? (low is {{ low }})'
    store: rating
    validate: { type: number }
    next: done
  done: { kind: end, text: Thanks. }
";

const FRONT: &str = "
id: front
start: hello
intents:
  bye: { keywords: [bye], flow: feedback }
nodes:
  hello: { kind: ask, prompt: Topic?, store: topic, next: leave }
  leave: { kind: jump, flow: feedback }
";

#[test]
fn regression_a_restart_after_a_jump_starts_in_the_entry_flow() {
    let flows = flows(&[FRONT, FEEDBACK]);
    let (state, turns) = run(
        &flows,
        "front",
        &[user("hi"), user("returns"), user("4"), user("hi again")],
    );
    assert_eq!(texts(&turns[1]), ["Rating? (low is 2)"]);
    assert_eq!(texts(&turns[3]), ["Topic?"]);
    assert_eq!(state.flow, "front");
}

#[test]
fn regression_an_intent_into_another_flow_sets_its_defaults() {
    let flows = flows(&[FRONT, FEEDBACK]);
    let (state, turns) = run(&flows, "front", &[user("hi"), user("Bye!")]);
    assert_eq!(texts(&turns[1]), ["Rating? (low is 2)"]);
    assert_eq!(state.vars["low"], 2);
}

#[test]
fn regression_variables_without_default_render_empty_and_lists_start_empty() {
    let flow = "id: v\nvariables:\n  name: { type: string }\n  items: { type: list }\n  n: { type: number }\nstart: m\nnodes:\n  m:\n    kind: message\n    text: 'Hi {{ name }}|{{ name | upper }}|{{ items | length }}|{{ n }}'\n    next: e\n  e: { kind: end }\n";
    let flows = flows(&[flow]);
    let (_, turns) = run(&flows, "v", &[user("hi")]);
    assert_eq!(texts(&turns[0]), ["Hi ||0|"]);
}

#[test]
fn regression_a_runaway_turn_sends_nothing() {
    let a = "id: a\nstart: x\nnodes:\n  x: { kind: message, text: ping, next: y }\n  y: { kind: jump, flow: b }\n";
    let b = "id: b\nstart: y\nnodes:\n  y: { kind: jump, flow: a }\n";
    let flows = flows(&[a, b]);
    let (state, turns) = run(&flows, "a", &[user("hi")]);
    assert!(texts(&turns[0]).is_empty(), "{:?}", texts(&turns[0]));
    assert!(matches!(state.status, Status::Failed { .. }));
}

#[test]
fn regression_an_intent_during_a_plugin_call_drops_the_queue() {
    let flows = flows(&[ORDER]);
    let stop = ORDER.replace(
        "start: ask_id",
        "start: ask_id\nintents:\n  stop: { keywords: [stop], goto: missing }",
    );
    let flows_with_stop = crate::flows(&[&stop]);
    let _ = flows;
    let (state, _) = run(
        &flows_with_stop,
        "order",
        &[user("hi"), user("A-1001"), user("A-2002")],
    );
    assert_eq!(state.queued.len(), 1);
    let stopped = step(&flows_with_stop, state, &user("stop"), T0 + 9000);
    assert_eq!(texts(&stopped), ["No order A-1001."]);
    assert!(stopped.state.queued.is_empty());
    assert_eq!(stopped.state.status, Status::Ended);
}

#[test]
fn regression_messages_queued_before_a_handoff_go_to_the_operator() {
    let flows = flows(&[ORDER]);
    let (state, _) = run(
        &flows,
        "order",
        &[user("hi"), user("A-1001"), user("are you there?")],
    );
    let Some(Waiting::Plugin { call }) = state.waiting else {
        panic!()
    };
    let failed = step(
        &flows,
        state,
        &Event::PluginFailed {
            call,
            error: "down".into(),
        },
        T0 + 9000,
    );
    assert!(
        failed
            .effects
            .contains(&Effect::ForwardToOperator(UserMessage::text(
                "are you there?"
            ))),
        "{:?}",
        failed.effects
    );
    assert!(failed.state.queued.is_empty());
    assert!(failed.ignored.is_none());
}

#[test]
fn regression_asking_for_help_twice_does_not_nest() {
    let flows = flows(&[
        SIGNUP,
        "id: help\nstart: info\nnodes:\n  info: { kind: ask, prompt: 'Help: what do you need?', store: need, next: done }\n  done: { kind: end }\n",
    ]);
    let mut events = vec![user("hi")];
    events.extend((0..40).map(|_| user("help")));
    let (state, turns) = run(&flows, "signup", &events);
    assert_eq!(state.stack.len(), 1);
    assert_eq!(texts(turns.last().unwrap()), ["Help: what do you need?"]);
}

#[test]
fn regression_a_subflow_default_applies_when_the_caller_declared_it_without_one() {
    let main = "id: main\nvariables:\n  level: { type: number }\nstart: c\nnodes:\n  c: { kind: call, flow: sub, next: e }\n  e: { kind: end }\n";
    let sub = "id: sub\nvariables:\n  level: { type: number, default: 3 }\nstart: s\nnodes:\n  s: { kind: end, text: 'level {{ level }}' }\n";
    let flows = flows(&[main, sub]);
    let (_, turns) = run(&flows, "main", &[user("hi")]);
    assert_eq!(texts(&turns[0]), ["level 3"]);
}

const CHANNEL: &str = "
id: channel
variables:
  topic: { type: string }
  photo: { type: object }
start: ask_topic
intents:
  menu: { keywords: [menu, main menu], goto: ask_topic }
nodes:
  ask_topic:
    kind: ask
    prompt: What about?
    quick_replies: [{ title: Shipping, payload: TOPIC_SHIPPING }, { title: Main menu, payload: MAIN }]
    store: topic
    next: ask_photo
  ask_photo:
    kind: ask
    prompt: 'A photo, please. From {{ referral.ref }}'
    validate: { type: image }
    reprompt: That is not a photo.
    store: photo
    next: route
  route:
    kind: condition
    if: \"referral.ref == 'AD'\"
    then: ad
    else: done
  ad: { kind: message, text: Welcome from the ad, next: done }
  done: { kind: end }
";

fn tap(title: &str, payload: &str) -> Event {
    Event::User(UserMessage::tap(title, payload))
}

fn attachment(kind: &str, sticker: Option<&str>) -> Event {
    Event::User(UserMessage {
        attachments: vec![Attachment {
            kind: kind.into(),
            url: Some(format!("https://cdn.example/{kind}.jpg")),
            sticker_id: sticker.map(str::to_string),
            ..Attachment::default()
        }],
        ..UserMessage::default()
    })
}

#[test]
fn a_tap_is_its_payload_not_its_title() {
    let flows = flows(&[CHANNEL]);
    // "Main menu" is the menu intent's keyword, but a tap's title is not what the user typed.
    let (state, _) = run(&flows, "channel", &[user("hi"), tap("Main menu", "MAIN")]);
    assert_eq!(state.vars["topic"], "MAIN");
    let (state, _) = run(
        &flows,
        "channel",
        &[user("hi"), tap("Shipping", "TOPIC_SHIPPING")],
    );
    assert_eq!(state.vars["topic"], "TOPIC_SHIPPING");
    assert_eq!(state.node.as_deref(), Some("ask_photo"));
    // Typed, the keyword still works.
    let (state, _) = run(
        &flows,
        "channel",
        &[user("hi"), user("x"), user("main menu")],
    );
    assert_eq!(state.node.as_deref(), Some("ask_topic"));
}

#[test]
fn a_sticker_or_a_like_is_never_an_answer_and_a_photo_is() {
    let flows = flows(&[CHANNEL]);
    // A like answers no text question.
    let (state, _) = run(
        &flows,
        "channel",
        &[user("hi"), attachment("image", Some("369239263222822"))],
    );
    assert_eq!(state.node.as_deref(), Some("ask_topic"));
    assert_eq!(state.vars["topic"], "", "no answer stored");
    let (state, turns) = run(
        &flows,
        "channel",
        &[
            user("hi"),
            user("shipping"),
            attachment("image", Some("369239263222822")),
            user("here it is"),
            attachment("image", None),
        ],
    );
    assert_eq!(texts(&turns[2]), ["That is not a photo."]);
    assert_eq!(texts(&turns[3])[0], "That is not a photo.");
    assert_eq!(
        state.vars["photo"],
        serde_json::json!({"kind": "image", "url": "https://cdn.example/image.jpg"})
    );
    assert_eq!(state.status, Status::Ended);
}

#[test]
fn a_referral_is_context_never_an_answer() {
    let flows = flows(&[CHANNEL]);
    let referral = |reference: &str| {
        Event::User(UserMessage {
            referral: Some(Referral {
                reference: Some(reference.into()),
                source: Some("SHORTLINK".into()),
                ad_id: None,
            }),
            ..UserMessage::default()
        })
    };
    // A referral alone starts a new conversation, and answers nothing.
    let (state, turns) = run(&flows, "channel", &[referral("AD")]);
    assert_eq!(texts(&turns[0]), ["What about?"]);
    assert_eq!(state.node.as_deref(), Some("ask_topic"));
    assert_eq!(state.vars["topic"], "", "no answer stored");
    assert_eq!(state.vars["referral"]["ref"], "AD");
    // Mid-conversation it is kept as context; the question stays open, unanswered.
    let (state, turns) = run(
        &flows,
        "channel",
        &[user("hi"), referral("AD"), user("shipping")],
    );
    assert!(turns[1].effects.is_empty());
    assert!(turns[1].ignored.is_some());
    assert_eq!(state.vars["topic"], "shipping");
    assert_eq!(texts(&turns[2]), ["A photo, please. From AD"]);
    // A Get Started tap carrying a referral is one turn: the tap, with the referral beside it.
    let get_started = Event::User(UserMessage {
        referral: Some(Referral {
            reference: Some("AD".into()),
            ..Referral::default()
        }),
        ..UserMessage::tap("Get Started", "GET_STARTED")
    });
    let (state, turns) = run(&flows, "channel", &[get_started]);
    assert_eq!(texts(&turns[0]), ["What about?"]);
    assert_eq!(state.vars["referral"]["ref"], "AD");
    // The flow routes on it explicitly.
    let (state, turns) = run(
        &flows,
        "channel",
        &[referral("AD"), user("x"), attachment("image", None)],
    );
    assert_eq!(texts(&turns[2]), ["Welcome from the ad"]);
    assert_eq!(state.status, Status::Ended);
}

#[test]
fn messages_say_what_made_the_bot_send_them() {
    let flows = flows(&["
id: nudge
start: ask
nodes:
  ask: { kind: ask, prompt: Your e-mail?, store: email, timeout: { after: 10m, next: nudge }, next: done }
  nudge: { kind: message, text: Still there?, next: done }
  done: { kind: end, text: Bye }
"]);
    let (_, turns) = run(
        &flows,
        "nudge",
        &[
            user("hi"),
            Event::Timer { timer: 1 },
            Event::Operator(OperatorAction::Say {
                text: "A person here".into(),
            }),
        ],
    );
    let origins = |turn: &Turn| -> Vec<Origin> {
        turn.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m.origin),
                _ => None,
            })
            .collect()
    };
    assert_eq!(origins(&turns[0]), [Origin::Reply]);
    assert_eq!(origins(&turns[1]), [Origin::Proactive, Origin::Proactive]);
    assert_eq!(origins(&turns[2]), [Origin::Operator]);
}

#[test]
fn an_empty_message_never_goes_out() {
    let flows = flows(&["
id: empty
variables:
  answer: { type: string }
  other: { type: string }
start: a
nodes:
  a: { kind: message, text: '{{ answer }}', fallback: 'No answer, {{ other }}.', next: b }
  b: { kind: message, text: ['{{ other }}', 'Bye'], next: done }
  done: { kind: end }
"]);
    let (_, turns) = run(&flows, "empty", &[user("hi")]);
    assert_eq!(texts(&turns[0]), ["No answer, .", "Bye"]);
    let got: Vec<_> = turns[0]
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::Send(_)))
        .collect();
    assert_eq!(got.len(), 2, "the empty text of `b` is left out: {got:?}");
}

#[test]
fn the_bot_keeps_quiet_while_a_person_answers_from_the_page() {
    let flows = flows(&[CHANNEL]);
    let mut state = ConversationState::new("channel");
    let mut at = T0;
    let turn = |state: &mut ConversationState, event: Event, at: u64| {
        let turn = step(&flows, state.clone(), &event, at);
        *state = turn.state.clone();
        turn
    };
    turn(&mut state, user("hi"), at);
    // A person answers from the Page Inbox: for 30 minutes the bot never answers the user,
    // intents included; what they write goes to the operator.
    at += 1_000;
    turn(
        &mut state,
        Event::PersonReplied {
            silence_ms: 30 * 60_000,
        },
        at,
    );
    for text in ["shipping", "main menu"] {
        at += 1_000;
        let quiet = turn(&mut state, user(text), at);
        assert!(texts(&quiet).is_empty(), "{text}: {:?}", quiet.effects);
        assert!(
            matches!(&quiet.effects[..], [Effect::ForwardToOperator(m)] if m.text.as_deref() == Some(text))
        );
    }
    assert_eq!(state.node.as_deref(), Some("ask_topic"));
    // Afterwards the bot answers again, where the flow was.
    at += 30 * 60_000;
    let back = turn(&mut state, user("shipping"), at);
    assert_eq!(texts(&back), ["A photo, please. From "]);
    assert!(state.silenced_until.is_none());
}
