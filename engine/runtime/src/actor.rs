//! A conversation's single writer: it applies inbox entries in order, commits each turn, waits
//! for the group flush, then runs the conversation's effects in order.

use std::sync::atomic::Ordering;

use influxify_core::compiled::Op;
use influxify_core::conversation::{Effect, Event, Waiting};
use influxify_core::{ConversationState, FlowSet, Status, step};
use influxify_store::{
    ConversationKey, Inbound, Migration, OutboxItem, Place, StoredConversation, Timer, TurnCommit,
    Write,
};

use crate::clock::now_ms;
use crate::effects::{Reach, backoff_ms};
use crate::{Runtime, RuntimeError};

/// How many event summaries a conversation keeps for inspection.
const RECENT_EVENTS: usize = 8;
/// The longest typing indicator shown before a message.
pub(crate) const MAX_TYPING_MS: u64 = 10_000;
/// The longest wait a provider's `Retry-After` may impose on one retry.
const MAX_RETRY_AFTER_MS: u64 = 300_000;
/// How much of a failure's reason a conversation's recent events keep.
const MAX_REASON_CHARS: usize = 300;
/// How long a plugin call runs before the user is shown a typing indicator.
const TYPING_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a user's profile is asked of their channel at most.
const PROFILE_REFRESH_MS: u64 = 24 * 60 * 60 * 1000;

/// Whether a conversation can stay at node `to` of `flow` without running it again: its live
/// waiting state is the one that node kind produces.
pub(crate) fn waiting_fits(
    flows: &FlowSet,
    flow: &str,
    to: &str,
    state: &ConversationState,
) -> bool {
    let Some(flow) = flows.get(flow) else {
        return false;
    };
    let Some(ix) = flow.node_index(to) else {
        return false;
    };
    matches!(
        (&flow.node(ix).op, &state.waiting, &state.status),
        (Op::Ask { .. }, Some(Waiting::Reply { .. }), Status::Active)
            | (Op::Wait { .. }, Some(Waiting::Timer { .. }), Status::Active)
            | (
                Op::Handoff { .. },
                Some(Waiting::Operator),
                Status::HandedOff
            )
            | (Op::End { .. }, None, Status::Ended)
    )
}

/// Why a conversation cannot move to `flows` without being stranded, if it cannot.
fn strands(flows: &FlowSet, state: &ConversationState, target: Option<&str>) -> Option<String> {
    let has = |flow: &str, node: &str| {
        flows
            .get(flow)
            .is_some_and(|f| f.node_index(node).is_some())
    };
    if flows.get(&state.flow).is_none() {
        return Some(format!("flow `{}` is gone", state.flow));
    }
    if let Some(target) = target
        && !has(&state.flow, target)
    {
        return Some(format!(
            "node `{}` of flow `{}` is gone",
            target, state.flow
        ));
    }
    state
        .stack
        .iter()
        .find(|frame| !has(&frame.flow, &frame.node))
        .map(|frame| {
            format!(
                "the caller's node `{}` of flow `{}` is gone",
                frame.node, frame.flow
            )
        })
}

/// What a writer knows of its conversation without reading the store: the record and the
/// pending effects, just committed.
pub(crate) struct Known {
    pub(crate) record: StoredConversation,
    pub(crate) pending: Vec<OutboxItem>,
}

/// Unmarks a conversation as running when its writer unwinds from a panic.
struct RunningGuard<'r> {
    runtime: &'r Runtime,
    key: &'r ConversationKey,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut running) = self.runtime.inner.running.lock()
        {
            running.remove(self.key);
            tracing::error!(conversation = %self.key, "conversation writer panicked; its work resumes with its next event");
        }
    }
}

/// A short description of an event, without message text.
fn summary(event: &Event, timestamp: u64) -> String {
    let what = match event {
        Event::User(message) if message.payload.is_some() => "user tapped a payload".to_string(),
        Event::User(_) => "user message".to_string(),
        Event::PluginResult { call, outcome, .. } => format!("plugin result {call} ({outcome})"),
        // The reason is the plugin's or the provider's (a status, a code), never the user's
        // words: plugins' errors describe the failure, not the input.
        Event::PluginFailed { call, error } => {
            let reason: String = error.chars().take(MAX_REASON_CHARS).collect();
            format!("plugin call {call} failed: {reason}")
        }
        Event::Timer { timer } => format!("timer {timer}"),
        Event::Operator(action) => format!(
            "operator {}",
            serde_json::to_value(action)
                .ok()
                .and_then(|v| v["action"].as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        Event::Profile { .. } => "profile".to_string(),
        Event::PersonReplied { .. } => "a person answered from the channel".to_string(),
    };
    format!("{timestamp} {what}")
}

impl Runtime {
    /// The writer task of one conversation: runs until its inbox and outbox are drained and no
    /// new work arrived meanwhile. `known` is the conversation's record and pending effects
    /// when the caller has just committed them (saves reading them back).
    pub(crate) async fn writer(&self, key: ConversationKey, mut known: Option<Known>) {
        // If an effect handler panics, the conversation must not stay marked as running with
        // nobody working on it: its work is durable and resumes with its next event or restart.
        let _guard = RunningGuard {
            runtime: self,
            key: &key,
        };
        loop {
            if let Some(why) = self.inner.commit.broken() {
                // What the store shows may not be on disk: act on none of it.
                tracing::error!(conversation = %key, why, "conversation writer stopped");
                if let Ok(mut running) = self.inner.running.lock() {
                    running.remove(&key);
                    if running.is_empty() {
                        self.inner.idle.notify_waiters();
                    }
                }
                return;
            }
            if let Err(err) = self.drain(&key, known.take()).await {
                if err.is_permanent() {
                    // Trying again cannot help (a record or flow version that cannot be read):
                    // pause the conversation with the reason, for an operator to see.
                    tracing::error!(conversation = %key, error = %err, "conversation paused: it cannot be processed");
                    if let Err(pause) = self.pause(&key, format!("cannot be processed: {err}")) {
                        tracing::error!(conversation = %key, error = %pause, "cannot pause the conversation");
                    }
                } else {
                    tracing::error!(conversation = %key, error = %err, "conversation writer failed; its work stays queued");
                    // The work is durable in the inbox/outbox: back off and try again.
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            }
            let Ok(mut running) = self.inner.running.lock() else {
                return;
            };
            match running.get_mut(&key) {
                Some(dirty) if *dirty => *dirty = false,
                _ => {
                    running.remove(&key);
                    if running.is_empty() {
                        self.inner.idle.notify_waiters();
                    }
                    return;
                }
            }
        }
    }

    async fn drain(&self, key: &ConversationKey, known: Option<Known>) -> Result<(), RuntimeError> {
        let store = &self.inner.store;
        // Read once; afterwards the writer knows its record and the effects it queued (it is
        // the only one writing them), which saves decoding them again on every turn.
        // A caller that just committed for an idle conversation knows its inbox was empty, and
        // whatever lands there since marks the conversation dirty (see `schedule`).
        let mut inbox_empty = known.is_some();
        let (mut record, mut pending) = match known {
            Some(known) => (Some(known.record), known.pending),
            None => (store.conversation(key)?, store.outbox(key)?),
        };
        loop {
            if record.as_ref().is_some_and(|r| r.paused.is_some()) {
                // An effect failed for good: the conversation waits for an operator.
                return self.keep_notices(pending);
            }
            if self.is_restricted(key) {
                // The user restricted processing: timers, plugin results and pending effects
                // wait until the restriction is lifted.
                return self.keep_notices(pending);
            }
            if !pending.is_empty() && !self.run_effects(key, std::mem::take(&mut pending)).await? {
                return Ok(());
            }
            if std::mem::take(&mut inbox_empty) && !self.dirty(key) {
                return Ok(());
            }
            let inbox = store.inbox(key)?;
            if inbox.is_empty() {
                return Ok(());
            }
            let mut previous = record.as_ref().map(Place::of);
            let mut current = match record.take() {
                Some(record) => record,
                None => self.new_record()?,
            };
            if self.needs_profile(&current, inbox.iter().map(|(_, inbound)| inbound))? {
                // Asked through the account the user wrote to (their first message's).
                if let Some(account) = inbox.iter().find_map(|(_, i)| i.account.clone()) {
                    current.account = Some(account);
                }
                self.fetch_profile(key, &mut current).await?;
            }
            let mut timers_set = false;
            let mut commits = Vec::with_capacity(inbox.len());
            for (seq, inbound) in inbox {
                let commit = self.apply(key, &mut current, previous.take(), seq, &inbound)?;
                timers_set |= !commit.set_timers.is_empty();
                pending.extend(commit.effects());
                commits.push(Write::Commit(commit));
                previous = Some(Place::of(&current));
            }
            // All the turns go into the committer's next transaction, and are durable on return.
            let turns = commits.len() as u64;
            self.inner.commit.apply(commits).await?;
            self.inner.stats.turns.fetch_add(turns, Ordering::Relaxed);
            record = Some(current);
            if timers_set {
                self.inner.timer_wake.notify_one();
            }
        }
    }

    /// Whether the user's profile should be asked of their channel before `events` are applied:
    /// the conversation's flows read profile fields, a user wrote, and it was not asked today.
    pub(crate) fn needs_profile<'e>(
        &self,
        record: &StoredConversation,
        mut events: impl Iterator<Item = &'e Inbound>,
    ) -> Result<bool, RuntimeError> {
        let fresh = record
            .profile_at
            .is_some_and(|at| now_ms().saturating_sub(at) < PROFILE_REFRESH_MS);
        if fresh || !events.any(|e| matches!(e.event, Event::User(_)) && e.migration.is_none()) {
            return Ok(false);
        }
        Ok(self.inner.registry.flows(&record.version)?.reads_profile())
    }

    /// Asks the channel for the profile fields the flows read and merges them into the
    /// conversation's `user`. A channel that cannot answer now is asked again with the next
    /// message; one that refuses is asked again tomorrow. The fields are the conversation's
    /// state from then on: exported and erased with it.
    async fn fetch_profile(
        &self,
        key: &ConversationKey,
        record: &mut StoredConversation,
    ) -> Result<(), RuntimeError> {
        let flows = self.inner.registry.flows(&record.version)?;
        let fields = flows.profile_fields();
        let reach = Reach {
            last_user_at: record.last_user_at,
            account: record.account.as_deref(),
        };
        match self.inner.effects.profile(key, reach, &fields).await {
            Ok(profile) => {
                record.profile_at = Some(now_ms());
                if !profile.is_empty() {
                    let state = std::mem::replace(&mut record.state, ConversationState::new(""));
                    record.state = step(&flows, state, &Event::Profile { profile }, now_ms()).state;
                }
            }
            Err(err) => {
                tracing::warn!(conversation = %key, error = %err, "the user's profile could not be fetched");
                if !err.retryable {
                    record.profile_at = Some(now_ms());
                }
            }
        }
        Ok(())
    }

    /// Whether work arrived for a running conversation since its writer last looked.
    fn dirty(&self, key: &ConversationKey) -> bool {
        self.inner
            .running
            .lock()
            .map(|running| running.get(key).copied().unwrap_or(true))
            .unwrap_or(true)
    }

    pub(crate) fn new_record(&self) -> Result<StoredConversation, RuntimeError> {
        let version = self
            .inner
            .registry
            .head()?
            .ok_or_else(|| RuntimeError::NoVersion(self.inner.config.bot.clone()))?;
        Ok(StoredConversation {
            version,
            state: ConversationState::new(self.inner.config.entry_flow.clone()),
            turns: 0,
            paused: None,
            updated_at: now_ms(),
            recent: Vec::new(),
            last_user_at: None,
            account: None,
            profile_at: None,
        })
    }

    /// Runs one inbox entry through the step function and returns what to commit.
    pub(crate) fn apply(
        &self,
        key: &ConversationKey,
        record: &mut StoredConversation,
        previous: Option<Place>,
        seq: u64,
        inbound: &Inbound,
    ) -> Result<TurnCommit, RuntimeError> {
        let mut event = Some(inbound.event.clone());
        if let Some(migration) = &inbound.migration {
            event = self.migrate(key, record, migration)?;
        }
        let mut commit = TurnCommit {
            conversation: key.clone(),
            record: record.clone(),
            previous,
            consumed: vec![seq],
            outbox: Vec::new(),
            notices: Vec::new(),
            set_timers: Vec::new(),
            cancel_timers: Vec::new(),
        };
        if let (Event::User(_), None) = (&inbound.event, &inbound.migration) {
            record.last_user_at = Some(inbound.timestamp);
            if inbound.account.is_some() {
                record.account = inbound.account.clone();
            }
        }
        if let Some(event) = event {
            let flows = self.inner.registry.flows(&record.version)?;
            let state = std::mem::replace(&mut record.state, ConversationState::new(""));
            let turn = step(&flows, state, &event, inbound.timestamp);
            record.state = turn.state;
            record.turns += 1;
            let mut step_index = 0u32;
            let durable_notifications = self.inner.effects.durable_notifications();
            for effect in turn.effects {
                match effect {
                    Effect::SetTimer { timer, due } => commit.set_timers.push(Timer {
                        conversation: key.clone(),
                        timer,
                        due,
                    }),
                    Effect::CancelTimer { timer } => commit.cancel_timers.push(timer),
                    effect => {
                        let stored = durable_notifications || !is_notification(&effect);
                        let item = OutboxItem {
                            conversation: key.clone(),
                            turn: record.turns,
                            step: step_index,
                            effect,
                            attempts: 0,
                            not_before: 0,
                            last_error: None,
                            last_user_at: record.last_user_at,
                            account: record.account.clone(),
                            notice: !stored,
                        };
                        match stored {
                            true => commit.outbox.push(item),
                            false => commit.notices.push(item),
                        }
                        step_index += 1;
                    }
                }
            }
            if let Some(why) = turn.ignored {
                tracing::debug!(conversation = %key, why, "event changed nothing");
            }
        }
        record.updated_at = now_ms();
        record
            .recent
            .push(summary(&inbound.event, inbound.timestamp));
        if record.recent.len() > RECENT_EVENTS {
            let excess = record.recent.len() - RECENT_EVENTS;
            record.recent.drain(..excess);
        }
        commit.record = record.clone();
        Ok(commit)
    }

    /// Moves the record to the migration's version, resolving the target from the live state.
    /// Returns the event to run: a `Goto` when the conversation must run its new node again
    /// because what it waits for does not fit the node kind there.
    fn migrate(
        &self,
        key: &ConversationKey,
        record: &mut StoredConversation,
        migration: &Migration,
    ) -> Result<Option<Event>, RuntimeError> {
        let flows = self.inner.registry.flows(&migration.version)?;
        if migration.restart {
            let mut fresh = ConversationState::new(record.state.entry.clone());
            fresh.seq = record.state.seq;
            if let Some(user) = record.state.vars.get("user") {
                fresh.vars.insert("user".into(), user.clone());
            }
            if flows.get(&fresh.flow).is_none() {
                fresh = ConversationState::new(self.inner.config.entry_flow.clone());
            }
            record.state = fresh;
            record.version = migration.version.clone();
            return Ok(None);
        }
        let current = record.state.node.clone();
        let target = current.as_ref().map(|node| {
            migration
                .map
                .get(node)
                .cloned()
                .unwrap_or_else(|| node.clone())
        });
        if let Some(why) = strands(&flows, &record.state, target.as_deref()) {
            // Moving would strand the user: the conversation stays on the version it is on.
            tracing::warn!(conversation = %key, version = %migration.version, why, "migration refused");
            record.recent.push(format!(
                "{} migration to {} refused: {why}",
                now_ms(),
                migration.version
            ));
            return Ok(None);
        }
        record.version = migration.version.clone();
        let Some(target) = target else {
            return Ok(None);
        };
        let fits = waiting_fits(&flows, &record.state.flow, &target, &record.state);
        record.state.node = Some(target.clone());
        Ok(
            (!fits).then_some(Event::Operator(influxify_core::OperatorAction::Goto {
                node: target,
            })),
        )
    }

    /// Stores the notices among `items`, effects that will not run now (the conversation was
    /// paused or restricted first), as ordinary outbox items: they then run, in order, with
    /// the stored effects when the conversation goes on.
    fn keep_notices(
        &self,
        items: impl IntoIterator<Item = OutboxItem>,
    ) -> Result<(), RuntimeError> {
        for mut item in items.into_iter().filter(|item| item.notice) {
            item.notice = false;
            self.inner.store.update_outbox(&item)?;
        }
        Ok(())
    }

    /// Runs a conversation's pending effects in order. Returns `false` when the conversation is
    /// paused (an effect failed for good) and must not go on.
    async fn run_effects(
        &self,
        key: &ConversationKey,
        items: Vec<OutboxItem>,
    ) -> Result<bool, RuntimeError> {
        let store = self.inner.store.clone();
        let mut items = items.into_iter();
        while let Some(mut item) = items.next() {
            let idempotency = item.idempotency_key();
            match &item.effect {
                Effect::CallPlugin { .. } => {
                    let id = (item.conversation.clone(), item.turn, item.step);
                    let fresh = self
                        .inner
                        .in_flight
                        .lock()
                        .map(|mut f| f.insert(id))
                        .unwrap_or(false);
                    if fresh {
                        let runtime = self.clone();
                        tokio::spawn(async move { runtime.call_plugin(item).await });
                    }
                    continue;
                }
                Effect::SetTimer { .. } | Effect::CancelTimer { .. } => {
                    store.remove_outbox(&item)?;
                    continue;
                }
                _ if item.notice => {
                    // Not stored: delivered once, a failure only reported.
                    let handler = &self.inner.effects;
                    if let Err(err) = handler.notify(key, &item.effect, &idempotency).await {
                        tracing::warn!(conversation = %key, error = %err, "notification not delivered");
                    }
                    self.inner.stats.effects.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                _ => {}
            }
            loop {
                let wait = item.not_before.saturating_sub(now_ms());
                if wait > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                let handler = &self.inner.effects;
                let result = match &item.effect {
                    Effect::Send(message) => {
                        if let Some(ms) = message.typing_ms.filter(|ms| *ms > 0)
                            && item.attempts == 0
                        {
                            // The pause is the runtime's: a timer, not a thread or a plugin
                            // instance held while the user watches the indicator.
                            let pause = ms.min(MAX_TYPING_MS);
                            if let Err(err) = handler
                                .typing(key, Reach::of(&item), pause, &idempotency)
                                .await
                            {
                                tracing::debug!(conversation = %key, error = %err, "typing indicator not shown");
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                        }
                        handler
                            .send(key, message, &idempotency, Reach::of(&item))
                            .await
                    }
                    other => handler.notify(key, other, &idempotency).await,
                };
                match result {
                    Ok(()) => {
                        // Removed at once (the writer may read its outbox again), durable with
                        // the next group flush: a crash repeats only a send that just went out.
                        store.remove_outbox(&item)?;
                        self.inner.commit.flush_soon();
                        self.inner.stats.effects.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(err)
                        if err.retryable && item.attempts + 1 < self.inner.config.send_attempts =>
                    {
                        item.attempts += 1;
                        let config = &self.inner.config;
                        let delay = err.delay_ms(
                            backoff_ms(
                                item.attempts,
                                config.send_backoff_ms,
                                config.send_max_backoff_ms,
                                item.turn ^ u64::from(item.step),
                            ),
                            MAX_RETRY_AFTER_MS,
                        );
                        item.not_before = now_ms() + delay;
                        item.last_error = Some(err.message.clone());
                        store.update_outbox(&item)?;
                        tracing::warn!(conversation = %key, attempt = item.attempts, error = %err, "effect failed; retrying");
                    }
                    Err(err) => {
                        item.attempts += 1;
                        item.last_error = Some(err.message.clone());
                        store.update_outbox(&item)?;
                        self.keep_notices(items)?;
                        self.pause(key, format!("effect {idempotency} failed: {}", err.message))?;
                        self.inner.commit.durable().await?;
                        tracing::error!(conversation = %key, error = %err, "effect failed for good; conversation paused");
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    pub(crate) fn pause(&self, key: &ConversationKey, why: String) -> Result<(), RuntimeError> {
        let store = &self.inner.store;
        if let Some(mut record) = store.conversation(key)? {
            record.paused = Some(why);
            record.updated_at = now_ms();
            store.put_conversation(key, &record)?;
        }
        Ok(())
    }

    /// Calls a plugin with retries, then feeds the result back as an event, exactly once.
    async fn call_plugin(&self, item: OutboxItem) {
        let Effect::CallPlugin {
            action,
            input,
            attempts,
            backoff_ms: base,
            max_backoff_ms,
            call,
        } = &item.effect
        else {
            return;
        };
        let key = item.idempotency_key();
        let mut attempt = 0;
        let mut typing_shown = false;
        let event = loop {
            attempt += 1;
            let handler = &self.inner.effects;
            let running = handler.call(&item.conversation, action, input, &key);
            tokio::pin!(running);
            // A slow call (a model thinking) shows the user a typing indicator meanwhile.
            let result = match tokio::time::timeout(TYPING_AFTER, &mut running).await {
                Ok(result) => result,
                Err(_) => {
                    if !typing_shown {
                        typing_shown = true;
                        if let Err(err) = handler
                            .typing(&item.conversation, Reach::of(&item), 0, &key)
                            .await
                        {
                            tracing::debug!(conversation = %item.conversation, error = %err, "typing indicator not shown");
                        }
                    }
                    running.await
                }
            };
            match result {
                Ok((outcome, output)) => {
                    break Event::PluginResult {
                        call: *call,
                        outcome,
                        output,
                    };
                }
                Err(err) if err.retryable && attempt < (*attempts).max(1) => {
                    let delay = err.delay_ms(
                        backoff_ms(
                            attempt,
                            *base,
                            *max_backoff_ms,
                            item.turn ^ u64::from(attempt),
                        ),
                        MAX_RETRY_AFTER_MS,
                    );
                    tracing::warn!(conversation = %item.conversation, action, attempt, error = %err, "plugin call failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                }
                Err(err) => {
                    // Once per call that failed for good, with what an operator needs.
                    tracing::error!(
                        conversation = %item.conversation,
                        action,
                        attempts = attempt,
                        retryable = err.retryable,
                        error = %err,
                        "plugin call failed for good"
                    );
                    break Event::PluginFailed {
                        call: *call,
                        error: err.message,
                    };
                }
            }
        };
        let inbound = Inbound::new(
            item.conversation.clone(),
            influxify_store::record::result_event_id(&item.conversation, item.turn, item.step),
            now_ms(),
            event,
        );
        let write = Write::Complete {
            item: item.clone(),
            result: inbound,
        };
        let stored = self.inner.commit.apply(vec![write]).await;
        let id = (item.conversation.clone(), item.turn, item.step);
        if let Err(err) = stored {
            // The call stays in the outbox: it stops counting as in flight first, so that the
            // writer scheduled next starts it again.
            tracing::error!(conversation = %item.conversation, error = %err, "cannot store a plugin result; the call will run again");
            self.finish_call(&id);
            self.schedule(item.conversation.clone());
            return;
        }
        // Scheduled before the call stops counting as in flight, so the conversation never looks
        // idle in between.
        self.schedule(item.conversation.clone());
        self.finish_call(&id);
        self.inner.stats.effects.fetch_add(1, Ordering::Relaxed);
    }

    fn finish_call(&self, id: &(ConversationKey, u64, u32)) {
        if let Ok(mut in_flight) = self.inner.in_flight.lock() {
            in_flight.remove(id);
            if in_flight.is_empty() {
                self.inner.idle.notify_waiters();
            }
        }
    }
}

/// Whether `effect` is a notification for operators (`EffectHandler::notify`).
fn is_notification(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::Handoff { .. } | Effect::ForwardToOperator(_) | Effect::End | Effect::Failed { .. }
    )
}
