//! The pure step function: `(flows, state, event, now) -> (state, effects)`.
//!
//! It runs the conversation from node to node until it waits for something (a reply, a plugin
//! result, a timer, an operator) or ends, with a bound on steps per turn. Time comes in with the
//! event and ids come from the state, so the same inputs always give the same outputs.

use minijinja::Value;

use crate::answer;
use crate::compile::normalize_keyword;
use crate::compiled::*;
use crate::conversation::*;
use crate::template::{self, TemplateError, Text};

/// The most nodes one event may run through before the conversation is failed.
pub const MAX_STEPS_PER_TURN: usize = 1000;
/// The deepest subflow nesting.
pub const MAX_CALL_DEPTH: usize = 32;
/// The most user messages kept while the conversation waits for a plugin.
pub const MAX_QUEUED: usize = 16;
/// Said when a reply does not validate and the `ask` has no `reprompt`.
pub const DEFAULT_REPROMPT: &str = "Sorry, I didn't understand that.";

/// Applies `event`, which happened at `now` (milliseconds since the Unix epoch), to `state`.
pub fn step(flows: &FlowSet, state: ConversationState, event: &Event, now: u64) -> Turn {
    let mut machine = Machine {
        flows,
        state,
        effects: Vec::new(),
        now,
        message: None,
        ignored: None,
        origin: Origin::of(event),
    };
    machine.handle(event);
    machine.drain_queue();
    Turn {
        state: machine.state,
        effects: machine.effects,
        ignored: machine.ignored,
    }
}

struct Machine<'a> {
    flows: &'a FlowSet,
    state: ConversationState,
    effects: Vec<Effect>,
    now: u64,
    /// The user message being handled, for templates (`message.text`).
    message: Option<UserMessage>,
    ignored: Option<String>,
    /// What the turn's messages answer (Messenger's `messaging_type` follows it).
    origin: Origin,
}

/// The variables templates see: the conversation's variables plus `message` and `now` (and
/// `output` when binding a plugin's outputs).
struct Vars<'s> {
    vars: &'s serde_json::Map<String, serde_json::Value>,
    message: Option<&'s UserMessage>,
    now: u64,
    output: Option<&'s serde_json::Value>,
}

impl template::Scope for Vars<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        match name {
            "message" => Some(self.message.map_or(Value::from(()), template::to_value)),
            "now" => Some(Value::from(self.now)),
            "output" => self
                .output
                .filter(|o| !o.is_null())
                .map(template::from_json),
            // `user.first_name` must read as undefined, not fail, before a profile is known;
            // so must `referral.ref` for a user who came without one.
            "user" | "referral" => Some(self.vars.get(name).map_or_else(
                || Value::from_pairs(std::iter::empty::<(&str, Value)>()),
                template::from_json,
            )),
            _ => self.vars.get(name).map(template::from_json),
        }
    }
}

/// Where to continue after a node.
enum Next<'a> {
    Node(NodeIx),
    Flow(&'a CompiledFlow, NodeIx),
    Stop,
}

impl<'a> Machine<'a> {
    fn handle(&mut self, event: &Event) {
        if let Status::Failed { error } = &self.state.status {
            match event {
                Event::Operator(OperatorAction::Reset) => self.reset(),
                Event::Operator(OperatorAction::Say { text }) => self.say(text.clone()),
                Event::Operator(action @ OperatorAction::Goto { .. }) => self.on_operator(action),
                _ => self.ignore(format!(
                    "the conversation failed ({error}); an operator must reset it"
                )),
            }
            return;
        }
        match event {
            Event::User(message) => self.on_user(message.clone()),
            Event::PluginResult {
                call,
                outcome,
                output,
            } => self.on_plugin(*call, Ok((outcome, output))),
            Event::PluginFailed { call, error } => self.on_plugin(*call, Err(error)),
            Event::Timer { timer } => self.on_timer(*timer),
            Event::Operator(action) => self.on_operator(action),
            Event::PersonReplied { silence_ms } => {
                self.state.silenced_until = Some(self.now.saturating_add(*silence_ms));
            }
            Event::Profile { profile } => {
                let user = self
                    .state
                    .vars
                    .entry("user")
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(user) = user {
                    user.extend(profile.clone());
                }
            }
        }
    }

    /// Handles messages that arrived while the conversation waited for a plugin.
    fn drain_queue(&mut self) {
        if self.state.queued.is_empty() {
            return;
        }
        // The turn's own outcome stays what the event did, not what a replayed message did.
        let ignored = self.ignored.take();
        if self.state.status == Status::HandedOff {
            // The operator has the conversation now: they get what the user wrote meanwhile.
            for message in std::mem::take(&mut self.state.queued) {
                self.effects.push(Effect::ForwardToOperator(message));
            }
        }
        let mut budget = self.state.queued.len();
        while budget > 0 && !self.state.queued.is_empty() && self.awaits_user() {
            budget -= 1;
            let message = self.state.queued.remove(0);
            self.on_user(message);
        }
        self.ignored = ignored;
    }

    /// Whether a queued message can be handled now: the conversation waits for the user, or
    /// ended (the message starts it again rather than going unanswered).
    fn awaits_user(&self) -> bool {
        match self.state.status {
            Status::Active => matches!(
                self.state.waiting,
                Some(Waiting::Reply { .. }) | Some(Waiting::Timer { .. })
            ),
            Status::Ended => true,
            _ => false,
        }
    }

    fn ignore(&mut self, why: String) {
        self.ignored = Some(why);
    }

    fn fail(&mut self, error: String) {
        self.cancel_timer();
        self.state.waiting = None;
        self.state.status = Status::Failed {
            error: error.clone(),
        };
        self.effects.push(Effect::Failed { error });
    }

    fn say(&mut self, text: String) {
        self.effects.push(Effect::Send(Outbound {
            text,
            origin: self.origin,
            ..Outbound::default()
        }));
    }

    fn flow(&self, id: &str) -> Option<&'a CompiledFlow> {
        self.flows.get(id).map(|f| &**f)
    }

    /// The current flow and node, if the conversation has started.
    fn position(&self) -> Option<(&'a CompiledFlow, NodeIx)> {
        let flow = self.flow(&self.state.flow)?;
        let ix = flow.node_index(self.state.node.as_deref()?)?;
        Some((flow, ix))
    }

    fn cancel_timer(&mut self) {
        match self.state.waiting {
            Some(Waiting::Reply { timer: Some(timer) }) | Some(Waiting::Timer { timer }) => {
                self.effects.push(Effect::CancelTimer { timer });
            }
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.cancel_timer();
        let mut fresh = ConversationState::new(self.state.entry.clone());
        fresh.seq = self.state.seq;
        // Who the user is and how they arrived outlive a restart of the flow.
        for kept in ["user", "referral"] {
            if let Some(value) = self.state.vars.get(kept) {
                fresh.vars.insert(kept.into(), value.clone());
            }
        }
        self.state = fresh;
    }

    // ---- events ------------------------------------------------------------------------------

    fn on_user(&mut self, message: UserMessage) {
        if let Some(referral) = &message.referral
            && let Ok(value) = serde_json::to_value(referral)
        {
            self.state.vars.insert("referral".into(), value);
        }
        if self
            .state
            .silenced_until
            .is_some_and(|until| self.now < until)
        {
            // A person is talking with the user: the bot never talks over them.
            if !message.is_context_only() {
                self.effects.push(Effect::ForwardToOperator(message));
            }
            return;
        }
        self.state.silenced_until = None;
        if message.is_context_only() {
            // A referral alone (an m.me link opened in an existing thread, an ad) starts a
            // conversation that has not started, and is never taken as an answer.
            return match (self.position(), &self.state.status) {
                (None, _) | (_, Status::Ended) => {
                    if self.state.status == Status::Ended {
                        self.reset();
                    }
                    self.message = Some(message);
                    self.start();
                }
                _ => self.ignore("a referral is context, not an answer".into()),
            };
        }
        match self.state.status {
            Status::HandedOff => {
                self.effects.push(Effect::ForwardToOperator(message));
                return;
            }
            Status::Ended => {
                // A new message after the end starts the flow again, with fresh variables.
                self.reset();
            }
            _ => {}
        }
        self.message = Some(message.clone());
        if let Some((flow, intent)) = self.match_intent(&message) {
            self.apply_intent(flow, intent);
            return;
        }
        let Some((flow, ix)) = self.position() else {
            return self.start();
        };
        match (&flow.node(ix).op, &self.state.waiting) {
            (Op::Ask { .. }, Some(Waiting::Reply { .. })) => self.answer(flow, ix, &message),
            (
                Op::Wait {
                    cancel_on_message: true,
                    interrupted,
                    ..
                },
                Some(Waiting::Timer { .. }),
            ) => {
                self.cancel_timer();
                self.state.waiting = None;
                self.run(flow, *interrupted);
            }
            (Op::Wait { .. }, _) => {
                self.ignore("the conversation is waiting and this wait ignores messages".into())
            }
            (_, Some(Waiting::Plugin { .. })) => {
                if self.state.queued.len() < MAX_QUEUED {
                    self.state.queued.push(message);
                } else {
                    self.ignore(format!(
                        "{MAX_QUEUED} messages are already queued while a plugin call runs"
                    ));
                }
            }
            _ => self.ignore("the conversation is not waiting for a reply".into()),
        }
    }

    fn start(&mut self) {
        let id = self.state.flow.clone();
        match self.flow(&id) {
            Some(flow) => {
                self.state.status = Status::Active;
                self.enter_flow(flow);
                self.run(flow, flow.start);
            }
            None => self.fail(format!("flow `{id}` is not loaded")),
        }
    }

    fn answer(&mut self, flow: &'a CompiledFlow, ix: NodeIx, message: &UserMessage) {
        let Op::Ask {
            check,
            store,
            retries,
            next,
            invalid,
            reprompt,
            prompt,
            quick_replies,
            ..
        } = &flow.node(ix).op
        else {
            return;
        };
        if let Some(value) = answer::check(check, message) {
            self.cancel_timer();
            self.state.waiting = None;
            self.state.retries = 0;
            self.state.vars.insert(store.clone(), value);
            return self.run(flow, *next);
        }
        self.state.retries += 1;
        if let Some(invalid) = invalid
            && self.state.retries > *retries
        {
            self.cancel_timer();
            self.state.waiting = None;
            self.state.retries = 0;
            return self.run(flow, *invalid);
        }
        let result = match reprompt {
            Some(reprompt) => self.outbound(flow, reprompt, quick_replies, &[], None),
            None => {
                self.say(DEFAULT_REPROMPT.to_string());
                self.outbound(flow, prompt, quick_replies, &[], None)
            }
        };
        match result {
            Ok(message) => self.effects.push(Effect::Send(message)),
            Err(err) => self.fail(format!("node `{}`: {err}", flow.node(ix).id)),
        }
    }

    fn on_plugin(&mut self, call: u64, result: Result<(&String, &serde_json::Value), &String>) {
        let Some(Waiting::Plugin { call: expected }) = self.state.waiting else {
            return self.ignore(format!("plugin call {call} is not awaited"));
        };
        if expected != call {
            return self.ignore(format!(
                "plugin call {call} is stale; call {expected} is awaited"
            ));
        }
        let Some((flow, ix)) = self.position() else {
            return self.fail("the awaited plugin node no longer exists".into());
        };
        let node = flow.node(ix);
        let Op::Plugin {
            action,
            save,
            outputs,
            on,
            ..
        } = &node.op
        else {
            return self.fail(format!("node `{}` is not a plugin node", node.id));
        };
        self.state.waiting = None;
        let edge = |name: &str| {
            on.iter()
                .find(|(outcome, _)| outcome == name)
                .map(|(_, ix)| *ix)
        };
        match result {
            Ok((outcome, output)) => {
                if let Some(save) = save {
                    self.state.vars.insert(save.clone(), output.clone());
                }
                for (name, expr) in outputs {
                    let scope = Vars {
                        vars: &self.state.vars,
                        message: self.message.as_ref(),
                        now: self.now,
                        output: Some(output),
                    };
                    match expr.eval_json(&scope) {
                        Ok(value) => {
                            self.state.vars.insert(name.clone(), value);
                        }
                        Err(err) => {
                            return self
                                .fail(format!("node `{}`: output `{name}`: {err}", node.id));
                        }
                    }
                }
                // `denied` (the engine refused the call, e.g. without consent to AI processing)
                // and `refused` (the model declined to answer) never fall back to `ok`: without
                // an edge of their own they take the `error` edge.
                let target = edge(outcome).or_else(|| match outcome.as_str() {
                    "error" => None,
                    "denied" | "refused" => edge("error"),
                    _ => edge("ok"),
                });
                match target {
                    Some(target) => self.run(flow, target),
                    None => self.fail(format!(
                        "`{action}` returned outcome `{outcome}` and node `{}` has no edge for it",
                        node.id
                    )),
                }
            }
            Err(error) => match edge("error") {
                Some(target) => self.run(flow, target),
                None => self.fail(format!("`{action}` failed: {error}")),
            },
        }
    }

    fn on_timer(&mut self, timer: u64) {
        let Some((flow, ix)) = self.position() else {
            return self.ignore(format!("timer {timer} is not pending"));
        };
        match (&flow.node(ix).op, &self.state.waiting) {
            (
                Op::Ask {
                    timeout: Some((_, target)),
                    ..
                },
                Some(Waiting::Reply { timer: Some(t) }),
            ) if *t == timer => {
                self.state.waiting = None;
                self.state.retries = 0;
                self.run(flow, *target);
            }
            (Op::Wait { next, .. }, Some(Waiting::Timer { timer: t })) if *t == timer => {
                self.state.waiting = None;
                self.run(flow, *next);
            }
            _ => self.ignore(format!("timer {timer} is not pending")),
        }
    }

    fn on_operator(&mut self, action: &OperatorAction) {
        match action {
            OperatorAction::Say { text } => self.say(text.clone()),
            OperatorAction::Reset => self.reset(),
            OperatorAction::Goto { node } => {
                let Some(flow) = self.flow(&self.state.flow) else {
                    return self.fail(format!("flow `{}` is not loaded", self.state.flow));
                };
                let Some(ix) = flow.node_index(node) else {
                    return self.ignore(format!("flow `{}` has no node `{node}`", flow.id));
                };
                self.cancel_timer();
                self.state.waiting = None;
                self.state.retries = 0;
                self.state.status = Status::Active;
                self.run(flow, ix);
            }
            OperatorAction::Resume => {
                if self.state.status != Status::HandedOff {
                    return self.ignore("the conversation is not handed off".into());
                }
                self.state.status = Status::Active;
                self.state.waiting = None;
                match self.position() {
                    Some((flow, ix)) => match &flow.node(ix).op {
                        Op::Handoff { next, .. } => self.run(flow, *next),
                        _ => self.fail("the handoff node no longer exists".into()),
                    },
                    None => self.fail("the handoff node no longer exists".into()),
                }
            }
        }
    }

    // ---- intents -----------------------------------------------------------------------------

    fn match_intent(
        &self,
        message: &UserMessage,
    ) -> Option<(&'a CompiledFlow, &'a CompiledIntent)> {
        // A tap's title is not what the user said: its payload is (an intent's keywords match
        // typed text only).
        let keyword = match &message.payload {
            Some(_) => None,
            None => message.text.as_deref().map(normalize_keyword),
        };
        let flows = std::iter::once(self.state.flow.as_str())
            .chain(self.state.stack.iter().rev().map(|f| f.flow.as_str()));
        for id in flows {
            let Some(flow) = self.flow(id) else { continue };
            for intent in &flow.intents {
                let by_payload = message
                    .payload
                    .as_ref()
                    .is_some_and(|p| intent.payloads.contains(p));
                let by_keyword = keyword
                    .as_ref()
                    .is_some_and(|k| intent.keywords.contains(k));
                if by_payload || by_keyword {
                    return Some((flow, intent));
                }
            }
        }
        None
    }

    fn apply_intent(&mut self, declaring: &'a CompiledFlow, intent: &'a CompiledIntent) {
        self.cancel_timer();
        self.state.waiting = None;
        self.state.retries = 0;
        // The user changed the subject: what they wrote while a plugin ran no longer applies.
        self.state.queued.clear();
        if self.state.node.is_none() {
            self.enter_flow(declaring);
        }
        match &intent.target {
            IntentAction::Goto(ix) => {
                // Leave the subflows entered since the declaring flow.
                while self.state.flow != declaring.id {
                    match self.state.stack.pop() {
                        Some(frame) => self.state.flow = frame.flow,
                        None => break,
                    }
                }
                self.run(declaring, *ix);
            }
            IntentAction::Flow(id) => match self.flow(id) {
                Some(flow) => {
                    self.state.stack.clear();
                    self.run(flow, flow.start);
                }
                None => self.fail(format!(
                    "intent `{}`: flow `{id}` is not loaded",
                    intent.name
                )),
            },
            IntentAction::Call(id) => {
                let Some(sub) = self.flow(id) else {
                    return self.fail(format!(
                        "intent `{}`: flow `{id}` is not loaded",
                        intent.name
                    ));
                };
                if self.state.flow == sub.id {
                    // Already inside it ("help" twice): start it over rather than nest again.
                    return self.run(sub, sub.start);
                }
                let here = match &self.state.node {
                    Some(node) => node.clone(),
                    None => declaring.nodes[declaring.start].id.clone(),
                };
                if self.state.stack.len() >= MAX_CALL_DEPTH {
                    return self.fail(format!("subflow calls nested deeper than {MAX_CALL_DEPTH}"));
                }
                self.state.stack.push(Frame {
                    flow: self.state.flow.clone(),
                    node: here,
                    reenter: true,
                });
                self.run(sub, sub.start);
            }
        }
    }

    // ---- running nodes -----------------------------------------------------------------------

    fn vars(&self) -> Vars<'_> {
        Vars {
            vars: &self.state.vars,
            message: self.message.as_ref(),
            now: self.now,
            output: None,
        }
    }

    fn render(&self, flow: &CompiledFlow, text: &Text) -> Result<String, TemplateError> {
        match text {
            Text::Plain(text) => Ok(text.clone()),
            Text::Template(..) => flow.templates.render(text, &self.vars()),
        }
    }

    fn outbound(
        &self,
        flow: &CompiledFlow,
        text: &Text,
        quick_replies: &[CompiledQuickReply],
        buttons: &[CompiledButton],
        typing_ms: Option<u64>,
    ) -> Result<Outbound, TemplateError> {
        let mut message = Outbound {
            text: self.render(flow, text)?,
            quick_replies: Vec::with_capacity(quick_replies.len()),
            buttons: Vec::with_capacity(buttons.len()),
            typing_ms,
            tag: None,
            origin: self.origin,
        };
        for reply in quick_replies {
            message.quick_replies.push(QuickReply {
                title: self.render(flow, &reply.title)?,
                payload: self.render(flow, &reply.payload)?,
            });
        }
        for button in buttons {
            let title = self.render(flow, &button.title)?;
            message.buttons.push(match &button.action {
                CompiledButtonAction::Postback(payload) => Button {
                    title,
                    payload: Some(self.render(flow, payload)?),
                    url: None,
                },
                CompiledButtonAction::Url(url) => Button {
                    title,
                    payload: None,
                    url: Some(self.render(flow, url)?),
                },
            });
        }
        Ok(message)
    }

    fn input(&self, input: &Input) -> Result<serde_json::Value, TemplateError> {
        Ok(match input {
            Input::Literal(value) => value.clone(),
            Input::Text(Text::Plain(text)) => serde_json::Value::String(text.clone()),
            Input::Text(text) => {
                let flow = self
                    .flow(&self.state.flow)
                    .ok_or_else(|| TemplateError::new("flow is not loaded"))?;
                serde_json::Value::String(flow.templates.render(text, &self.vars())?)
            }
            Input::Expr(expr) => expr.eval_json(&self.vars())?,
            Input::List(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| self.input(i))
                    .collect::<Result<_, _>>()?,
            ),
            Input::Map(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for (key, value) in entries {
                    map.insert(key.clone(), self.input(value)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }

    fn truthy(&self, expr: &crate::template::Expr) -> Result<bool, TemplateError> {
        Ok(expr.eval(&self.vars())?.is_true())
    }

    /// Runs from node `ix` of `flow` until the conversation waits or ends.
    fn run(&mut self, mut flow: &'a CompiledFlow, mut ix: NodeIx) {
        for _ in 0..MAX_STEPS_PER_TURN {
            if self.state.flow != flow.id {
                // Whatever the way in (jump, call, return, intent), a flow's declared variables
                // get their defaults when it is entered.
                self.state.flow = flow.id.clone();
                self.enter_flow(flow);
            }
            let node = flow.node(ix);
            if self.state.node.as_deref() != Some(node.id.as_str()) {
                self.state.node = Some(node.id.clone());
            }
            let next = match self.exec(flow, node) {
                Ok(next) => next,
                Err(err) => return self.fail(format!("node `{}`: {err}", node.id)),
            };
            match next {
                Next::Node(target) => ix = target,
                Next::Flow(target, at) => {
                    flow = target;
                    ix = at;
                }
                Next::Stop => return,
            }
        }
        // A runaway turn must not flood the user with what it produced on the way.
        self.effects
            .retain(|effect| !matches!(effect, Effect::Send(_)));
        self.fail(format!(
            "the flow ran {MAX_STEPS_PER_TURN} steps without waiting for the user"
        ));
    }

    fn exec(
        &mut self,
        flow: &'a CompiledFlow,
        node: &'a CompiledNode,
    ) -> Result<Next<'a>, TemplateError> {
        Ok(match &node.op {
            Op::Message {
                texts,
                quick_replies,
                buttons,
                typing_ms,
                tag,
                fallback,
                next,
            } => {
                for (i, text) in texts.iter().enumerate() {
                    let last = i + 1 == texts.len();
                    let (q, b) = if last {
                        (&quick_replies[..], &buttons[..])
                    } else {
                        (&[][..], &[][..])
                    };
                    let mut message = self.outbound(flow, text, q, b, *typing_ms)?;
                    if message.text.trim().is_empty()
                        && let Some(fallback) = fallback
                    {
                        message.text = self.render(flow, fallback)?;
                    }
                    if message.text.trim().is_empty() {
                        // An empty message never goes out (Messenger refuses it, and the user
                        // would hear nothing while the conversation paused).
                        continue;
                    }
                    message.tag = tag.map(|t| t.as_str().to_string());
                    self.effects.push(Effect::Send(message));
                }
                Next::Node(*next)
            }
            Op::Ask {
                prompt,
                quick_replies,
                timeout,
                ..
            } => {
                let message = self.outbound(flow, prompt, quick_replies, &[], None)?;
                self.effects.push(Effect::Send(message));
                let timer = timeout.map(|(millis, _)| {
                    let timer = self.state.next_id();
                    self.effects.push(Effect::SetTimer {
                        timer,
                        due: self.now.saturating_add(millis),
                    });
                    timer
                });
                self.state.retries = 0;
                self.state.waiting = Some(Waiting::Reply { timer });
                Next::Stop
            }
            Op::Condition {
                condition,
                then,
                otherwise,
            } => Next::Node(if self.truthy(condition)? {
                *then
            } else {
                *otherwise
            }),
            Op::Switch { cases, default } => {
                let mut target = *default;
                for (when, next) in cases {
                    if self.truthy(when)? {
                        target = *next;
                        break;
                    }
                }
                Next::Node(target)
            }
            Op::Set { assign, next } => {
                for (name, value) in assign {
                    let value = self.input(value)?;
                    self.state.vars.insert(name.clone(), value);
                }
                Next::Node(*next)
            }
            Op::Jump(Goto::Node(target)) => Next::Node(*target),
            Op::Jump(Goto::Flow { flow: id, node: at }) => {
                let target = self
                    .flow(id)
                    .ok_or_else(|| TemplateError::new(format!("flow `{id}` is not loaded")))?;
                let ix = match at {
                    Some(at) => target.node_index(at).ok_or_else(|| {
                        TemplateError::new(format!("flow `{id}` has no node `{at}`"))
                    })?,
                    None => target.start,
                };
                Next::Flow(target, ix)
            }
            Op::Call { flow: id, .. } => {
                let target = self
                    .flow(id)
                    .ok_or_else(|| TemplateError::new(format!("flow `{id}` is not loaded")))?;
                if self.state.stack.len() >= MAX_CALL_DEPTH {
                    return Err(TemplateError::new(format!(
                        "subflow calls nested deeper than {MAX_CALL_DEPTH}"
                    )));
                }
                self.state.stack.push(Frame {
                    flow: flow.id.clone(),
                    node: node.id.clone(),
                    reenter: false,
                });
                Next::Flow(target, target.start)
            }
            Op::Plugin {
                action,
                input,
                retry,
                ..
            } => {
                let input = self.input(input)?;
                let call = self.state.next_id();
                self.effects.push(Effect::CallPlugin {
                    call,
                    action: action.clone(),
                    input,
                    attempts: retry.attempts,
                    backoff_ms: retry.backoff.as_millis(),
                    max_backoff_ms: retry.max_backoff.as_millis(),
                });
                self.state.waiting = Some(Waiting::Plugin { call });
                Next::Stop
            }
            Op::Wait { millis, .. } => {
                let timer = self.state.next_id();
                self.effects.push(Effect::SetTimer {
                    timer,
                    due: self.now.saturating_add(*millis),
                });
                self.state.waiting = Some(Waiting::Timer { timer });
                Next::Stop
            }
            Op::Handoff { text, reason, .. } => {
                if let Some(text) = text {
                    let message = self.outbound(flow, text, &[], &[], None)?;
                    self.effects.push(Effect::Send(message));
                }
                let reason = match reason {
                    Some(reason) => Some(self.render(flow, reason)?),
                    None => None,
                };
                self.effects.push(Effect::Handoff { reason });
                self.state.status = Status::HandedOff;
                self.state.waiting = Some(Waiting::Operator);
                Next::Stop
            }
            Op::End { text } => {
                if let Some(text) = text {
                    let message = self.outbound(flow, text, &[], &[], None)?;
                    self.effects.push(Effect::Send(message));
                }
                match self.state.stack.pop() {
                    Some(frame) => self.return_to(frame)?,
                    None => {
                        self.state.status = Status::Ended;
                        self.state.waiting = None;
                        self.effects.push(Effect::End);
                        Next::Stop
                    }
                }
            }
        })
    }

    /// Sets the defaults of a flow's variables that are not set yet.
    fn enter_flow(&mut self, flow: &CompiledFlow) {
        for (name, value) in &flow.defaults {
            // A variable another flow declared without a default (null) still gets this one's.
            let unset = self
                .state
                .vars
                .get(name)
                .is_none_or(serde_json::Value::is_null);
            if unset && (!value.is_null() || !self.state.vars.contains_key(name)) {
                self.state.vars.insert(name.clone(), value.clone());
            }
        }
    }

    fn return_to(&mut self, frame: Frame) -> Result<Next<'a>, TemplateError> {
        let flow = self
            .flow(&frame.flow)
            .ok_or_else(|| TemplateError::new(format!("flow `{}` is not loaded", frame.flow)))?;
        let ix = flow.node_index(&frame.node).ok_or_else(|| {
            TemplateError::new(format!(
                "flow `{}` has no node `{}`",
                frame.flow, frame.node
            ))
        })?;
        if frame.reenter {
            return Ok(Next::Flow(flow, ix));
        }
        match &flow.node(ix).op {
            Op::Call { next, .. } => Ok(Next::Flow(flow, *next)),
            _ => Err(TemplateError::new(format!(
                "node `{}` is not a call",
                frame.node
            ))),
        }
    }
}
