//! A local conversation with a flow: the pure state machine driven by a simulated clock, with
//! timers kept in memory and plugin calls answered by mocks. Used by `influxify chat` and by
//! transcript tests.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use influxify_core::conversation::{Effect, Event, OperatorAction, Outbound, Status, UserMessage};
use influxify_core::template::Expr;
use influxify_core::{ConversationState, FlowSet, step};

use crate::spec::Mock;

/// 2026-01-01T09:00:00Z, where every session's clock starts, so that runs are reproducible.
pub const EPOCH_MS: u64 = 1_767_258_000_000;
/// How far the clock moves for each user or operator turn.
pub const TURN_MS: u64 = 1_000;
/// The most events one input may cause (plugin results, timers) before the session stops it.
const MAX_EVENTS_PER_INPUT: usize = 1_000;

/// Something the designer (or a test) does.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The user types a text.
    User(String),
    /// The user taps a quick reply or button with this payload.
    Tap(String),
    /// Time passes; due timers fire.
    Advance(std::time::Duration),
    /// An operator says something.
    Operator(String),
    /// An operator gives the conversation back to the bot.
    Resume,
    /// Start over.
    Reset,
}

/// A plugin call made during a turn, and how the mock answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `plugin.action`.
    pub action: String,
    /// The rendered input.
    pub input: serde_json::Value,
    /// The outcome given, or the failure.
    pub answer: Result<String, String>,
}

/// What happened in one turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// Messages sent to the user.
    pub messages: Vec<Outbound>,
    /// Plugin calls made.
    pub calls: Vec<Call>,
    /// Other things worth telling the designer (handoff, end, failure, ignored events).
    pub notes: Vec<String>,
}

/// One file's (or case's) mocks by action, each with its compiled `when`.
type MockLayer = IndexMap<String, Vec<(Option<Expr>, Mock)>>;

/// Compiled mocks, by action, most specific first.
#[derive(Debug, Default)]
pub struct Mocks {
    layers: Vec<MockLayer>,
}

impl Mocks {
    /// Adds a layer of mocks tried before those added earlier.
    pub fn push_front(&mut self, mocks: &IndexMap<String, Vec<Mock>>) -> Result<(), String> {
        let mut layer = IndexMap::new();
        for (action, list) in mocks {
            let mut compiled = Vec::new();
            for mock in list {
                let when =
                    match &mock.when {
                        Some(source) => Some(Expr::compile(source).map_err(|err| {
                            format!("mock for `{action}`: `when: {source}`: {err}")
                        })?),
                        None => None,
                    };
                compiled.push((when, mock.clone()));
            }
            layer.insert(action.clone(), compiled);
        }
        self.layers.insert(0, layer);
        Ok(())
    }

    /// The answer to a call of `action` with `input`: its outcome and output, or the failure
    /// (a mock's `error`, or no mock answers it).
    pub fn answer(
        &self,
        action: &str,
        input: &serde_json::Value,
    ) -> Result<(String, serde_json::Value), String> {
        let mut scope = serde_json::Map::new();
        scope.insert("input".to_string(), input.clone());
        for layer in &self.layers {
            for (when, mock) in layer.get(action).into_iter().flatten() {
                let matches = match when {
                    Some(expr) => expr
                        .eval(&scope)
                        .map_err(|err| format!("mock for `{action}`: `when`: {err}"))?
                        .is_true(),
                    None => true,
                };
                if matches {
                    if let Some(error) = &mock.error {
                        return Err(error.clone());
                    }
                    let outcome = mock.outcome.clone().unwrap_or_else(|| "ok".to_string());
                    let output = mock.output.clone().unwrap_or(serde_json::Value::Null);
                    return Ok((outcome, output));
                }
            }
        }
        Err(format!("no mock answers `{action}` with input {input}"))
    }
}

/// One conversation with a set of flows.
#[derive(Debug)]
pub struct Session {
    flows: FlowSet,
    flow: String,
    profile: serde_json::Map<String, serde_json::Value>,
    /// The conversation state.
    pub state: ConversationState,
    /// The simulated clock, in milliseconds since the Unix epoch.
    pub clock: u64,
    /// Pending timers: id to due time.
    pub timers: BTreeMap<u64, u64>,
    mocks: Mocks,
    /// The quick replies and buttons offered so far, (title, payload), newest last.
    offered: Vec<(String, String)>,
}

/// How many offered quick replies and buttons a session remembers for their titles.
const MAX_OFFERED: usize = 256;

impl Session {
    /// A new conversation in flow `flow`, with the user's `profile`.
    pub fn new(
        flows: FlowSet,
        flow: &str,
        profile: serde_json::Map<String, serde_json::Value>,
        mocks: Mocks,
    ) -> Self {
        let mut session = Session {
            flows,
            flow: flow.to_string(),
            profile,
            state: ConversationState::new(flow),
            clock: EPOCH_MS,
            timers: BTreeMap::new(),
            mocks,
            offered: Vec::new(),
        };
        session.apply_profile();
        session
    }

    /// The title of the newest quick reply or button offered with `payload`.
    fn title_of(&self, payload: &str) -> Option<&str> {
        self.offered
            .iter()
            .rev()
            .find(|(_, p)| p == payload)
            .map(|(title, _)| title.as_str())
    }

    fn apply_profile(&mut self) {
        if !self.profile.is_empty() {
            let event = Event::Profile {
                profile: self.profile.clone(),
            };
            self.dispatch(event, &mut Reply::default());
        }
    }

    /// The flows this session runs.
    pub fn flows(&self) -> &FlowSet {
        &self.flows
    }

    /// Plays one input and returns what happened.
    pub fn send(&mut self, input: Input) -> Reply {
        let mut reply = Reply::default();
        match input {
            Input::User(text) => {
                self.clock += TURN_MS;
                self.dispatch(Event::User(UserMessage::text(text)), &mut reply);
            }
            Input::Tap(payload) => {
                self.clock += TURN_MS;
                // As a channel sends a tap: its title beside its payload (a payload no message
                // offered, a persistent menu's, comes with itself as the title).
                let title = self.title_of(&payload).unwrap_or(&payload).to_string();
                self.dispatch(Event::User(UserMessage::tap(title, payload)), &mut reply);
            }
            Input::Operator(text) => {
                self.clock += TURN_MS;
                self.dispatch(Event::Operator(OperatorAction::Say { text }), &mut reply);
            }
            Input::Resume => {
                self.clock += TURN_MS;
                self.dispatch(Event::Operator(OperatorAction::Resume), &mut reply);
            }
            Input::Reset => {
                self.timers.clear();
                self.state = ConversationState::new(&self.flow);
                self.apply_profile();
            }
            Input::Advance(duration) => {
                let target = self
                    .clock
                    .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
                while let Some((timer, due)) = self.next_timer(target) {
                    self.timers.remove(&timer);
                    self.clock = self.clock.max(due);
                    self.dispatch(Event::Timer { timer }, &mut reply);
                }
                self.clock = target;
            }
        }
        reply
    }

    fn next_timer(&self, until: u64) -> Option<(u64, u64)> {
        self.timers
            .iter()
            .filter(|(_, due)| **due <= until)
            .min_by_key(|(timer, due)| (**due, **timer))
            .map(|(timer, due)| (*timer, *due))
    }

    /// Runs `event` and whatever plugin results it leads to.
    fn dispatch(&mut self, event: Event, reply: &mut Reply) {
        let mut queue = std::collections::VecDeque::from([event]);
        let mut handled = 0;
        while let Some(event) = queue.pop_front() {
            handled += 1;
            if handled > MAX_EVENTS_PER_INPUT {
                reply.notes.push(format!(
                    "stopped after {MAX_EVENTS_PER_INPUT} events in one turn"
                ));
                return;
            }
            let state = std::mem::replace(&mut self.state, ConversationState::new(&self.flow));
            let turn = step(&self.flows, state, &event, self.clock);
            self.state = turn.state;
            if let Some(why) = turn.ignored {
                reply.notes.push(format!("ignored: {why}"));
            }
            for effect in turn.effects {
                match effect {
                    Effect::Send(message) => {
                        let offers = message
                            .quick_replies
                            .iter()
                            .map(|q| (q.title.clone(), q.payload.clone()))
                            .chain(message.buttons.iter().filter_map(|b| {
                                b.payload.clone().map(|payload| (b.title.clone(), payload))
                            }));
                        self.offered.extend(offers);
                        if self.offered.len() > MAX_OFFERED {
                            let excess = self.offered.len() - MAX_OFFERED;
                            self.offered.drain(..excess);
                        }
                        reply.messages.push(message)
                    }
                    Effect::CallPlugin {
                        call,
                        action,
                        input,
                        ..
                    } => {
                        let answer = self.mocks.answer(&action, &input);
                        let (event, outcome) = match answer {
                            Ok((outcome, output)) => (
                                Event::PluginResult {
                                    call,
                                    outcome: outcome.clone(),
                                    output,
                                },
                                Ok(outcome),
                            ),
                            Err(error) => (
                                Event::PluginFailed {
                                    call,
                                    error: error.clone(),
                                },
                                Err(error),
                            ),
                        };
                        reply.calls.push(Call {
                            action,
                            input,
                            answer: outcome,
                        });
                        queue.push_back(event);
                    }
                    Effect::SetTimer { timer, due } => {
                        self.timers.insert(timer, due);
                    }
                    Effect::CancelTimer { timer } => {
                        self.timers.remove(&timer);
                    }
                    Effect::Handoff { reason } => reply.notes.push(match reason {
                        Some(reason) => format!("handed off to an operator: {reason}"),
                        None => "handed off to an operator".to_string(),
                    }),
                    Effect::ForwardToOperator(_) => {
                        reply.notes.push("forwarded to the operator".to_string())
                    }
                    Effect::End => reply.notes.push("the conversation ended".to_string()),
                    Effect::Failed { error } => reply
                        .notes
                        .push(format!("the conversation failed: {error}")),
                }
            }
        }
    }

    /// The status as written in test files: `active`, `handed_off`, `ended` or `failed`.
    pub fn status_name(&self) -> &'static str {
        status_name(&self.state.status)
    }
}

/// A status as written in test files: `active`, `handed_off`, `ended` or `failed`.
pub fn status_name(status: &Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::HandedOff => "handed_off",
        Status::Ended => "ended",
        Status::Failed { .. } => "failed",
    }
}
