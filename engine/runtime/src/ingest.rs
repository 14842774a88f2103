//! Ingest: events are deduplicated and durable before they are acknowledged. A conversation
//! that has no writer and nothing queued takes its events on the fast path: ingest claims its
//! writer, runs the turn at once and commits state, effects and dedup markers in one write, so
//! no inbox entry is written and then removed. Every other event goes to its conversation's
//! inbox for the writer to take in order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use influxify_store::{
    Applied, ConversationKey, Inbound, Ingested, Place, StoreError, TurnCommit, Write,
};

use crate::actor::Known;
use crate::{MAX_CHANNEL_BYTES, MAX_ID_BYTES, Runtime, RuntimeError};

/// The events of one conversation in one ingest call, by position in the call.
struct Arrivals {
    key: ConversationKey,
    positions: Vec<usize>,
    /// Whether this call claimed the conversation's writer (and must start it).
    claimed: bool,
    /// The turns, when they run on the fast path.
    commits: Option<Vec<TurnCommit>>,
    /// Whether the fast turns were committed.
    landed: bool,
}

impl Runtime {
    /// Ingests events and returns once they are durable: acknowledge the webhook only then. A
    /// batch is applied in the order of the provider's timestamps.
    pub async fn ingest(&self, mut events: Vec<Inbound>) -> Result<Vec<Ingested>, RuntimeError> {
        for event in &mut events {
            // Migrations are queued by `publish` only.
            event.migration = None;
            let key = &event.conversation;
            if key.channel.len() > MAX_CHANNEL_BYTES
                || key.user.len() > MAX_ID_BYTES
                || event.id.len() > MAX_ID_BYTES
            {
                return Err(RuntimeError::Refused(format!(
                    "an event's channel ({} bytes), user id ({} bytes) or event id ({} bytes) is too long: at most {MAX_CHANNEL_BYTES}, {MAX_ID_BYTES} and {MAX_ID_BYTES}",
                    key.channel.len(),
                    key.user.len(),
                    event.id.len()
                )));
            }
        }
        // Restricted conversations: acknowledged, never stored.
        let restricted: Vec<bool> = match self.inner.restricted.lock() {
            Ok(set) if !set.is_empty() => events
                .iter()
                .map(|e| set.contains(&e.conversation))
                .collect(),
            _ => Vec::new(),
        };
        if !restricted.contains(&true) {
            return self.ingest_checked(events).await;
        }
        let kept: Vec<Inbound> = events
            .into_iter()
            .zip(&restricted)
            .filter(|(_, r)| !**r)
            .map(|(e, _)| e)
            .collect();
        let mut results = self.ingest_checked(kept).await?.into_iter();
        Ok(restricted
            .iter()
            .map(|r| {
                if *r {
                    Ingested::Restricted
                } else {
                    results.next().unwrap_or(Ingested::Duplicate)
                }
            })
            .collect())
    }

    /// Ingests events already checked (or made by the runtime itself, such as migrations).
    pub(crate) async fn ingest_checked(
        &self,
        mut events: Vec<Inbound>,
    ) -> Result<Vec<Ingested>, RuntimeError> {
        // Stable: events with equal timestamps keep their arrival order.
        events.sort_by_key(|event| event.timestamp);
        let mut by_conversation: Vec<Arrivals> = Vec::new();
        let mut index: HashMap<&ConversationKey, usize> = HashMap::new();
        for (position, event) in events.iter().enumerate() {
            let slot = *index.entry(&event.conversation).or_insert_with(|| {
                by_conversation.push(Arrivals {
                    key: event.conversation.clone(),
                    positions: Vec::new(),
                    claimed: false,
                    commits: None,
                    landed: false,
                });
                by_conversation.len() - 1
            });
            by_conversation[slot].positions.push(position);
        }
        let outcome = self.ingest_sorted(&events, &mut by_conversation).await;
        // Whatever happened, a claimed conversation gets its writer: it runs the effects of a
        // fast turn, or takes what reached the inbox.
        for arrivals in &mut by_conversation {
            if arrivals.claimed {
                let runtime = self.clone();
                let key = arrivals.key.clone();
                // A fast turn that landed leaves the writer its record and effects.
                let known = match arrivals.commits.take() {
                    Some(commits) if arrivals.landed && outcome.is_ok() => {
                        commits.last().map(|last| Known {
                            record: last.record.clone(),
                            pending: commits.iter().flat_map(TurnCommit::effects).collect(),
                        })
                    }
                    _ => None,
                };
                tokio::spawn(async move { runtime.writer(key, known).await });
            } else if arrivals
                .positions
                .iter()
                .any(|p| matches!(outcome.as_ref().map(|r| r[*p]), Ok(Ingested::New(_))))
            {
                self.schedule(arrivals.key.clone());
            }
        }
        let results = outcome?;
        for result in &results {
            match result {
                Ingested::New(_) => self.inner.stats.ingested.fetch_add(1, Ordering::Relaxed),
                Ingested::Duplicate => self.inner.stats.duplicates.fetch_add(1, Ordering::Relaxed),
                Ingested::Restricted => 0,
            };
        }
        Ok(results)
    }

    /// Ingests `events` (sorted), grouped by conversation: fast turns where possible, inbox
    /// entries otherwise. Returns the result per event.
    async fn ingest_sorted(
        &self,
        events: &[Inbound],
        by_conversation: &mut [Arrivals],
    ) -> Result<Vec<Ingested>, RuntimeError> {
        let mut writes = Vec::new();
        let mut queued: Vec<Inbound> = Vec::new();
        let mut queued_positions: Vec<usize> = Vec::new();
        for arrivals in by_conversation.iter_mut() {
            arrivals.claimed = self.claim(&arrivals.key);
            if arrivals.claimed {
                let mine: Vec<&Inbound> = arrivals.positions.iter().map(|p| &events[*p]).collect();
                // Anything that keeps the fast path from applying (a paused conversation, queued
                // work, no published version yet) sends the events to the inbox instead.
                arrivals.commits = self.fast_turns(&arrivals.key, &mine).ok().flatten();
            }
            match &arrivals.commits {
                Some(commits) => writes.push(Write::Turn {
                    events: arrivals
                        .positions
                        .iter()
                        .map(|p| events[*p].clone())
                        .collect(),
                    commits: commits.clone(),
                }),
                None => {
                    queued.extend(arrivals.positions.iter().map(|p| events[*p].clone()));
                    queued_positions.extend(&arrivals.positions);
                }
            }
        }
        let fast: Vec<usize> = (0..by_conversation.len())
            .filter(|i| by_conversation[*i].commits.is_some())
            .collect();
        if !queued.is_empty() {
            writes.push(Write::Ingest(queued));
        }
        let mut applied = self.inner.commit.apply(writes).await?;
        let mut results = vec![Ingested::Duplicate; events.len()];
        if !queued_positions.is_empty() {
            match applied.pop() {
                Some(Applied::Ingested(ingested)) => {
                    for (position, result) in queued_positions.iter().zip(ingested) {
                        results[*position] = result;
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
        // Turns whose events were seen before wrote nothing: ingest those the ordinary way.
        let mut retry: Vec<Inbound> = Vec::new();
        let mut retry_positions: Vec<usize> = Vec::new();
        for (slot, result) in fast.into_iter().zip(applied) {
            let arrivals = &mut by_conversation[slot];
            match result {
                Applied::Turned(Some(seqs)) => {
                    arrivals.landed = true;
                    for (position, seq) in arrivals.positions.iter().zip(seqs) {
                        results[*position] = Ingested::New(seq);
                    }
                    let commits = arrivals.commits.as_deref().unwrap_or_default();
                    self.inner
                        .stats
                        .turns
                        .fetch_add(commits.len() as u64, Ordering::Relaxed);
                    if commits.iter().any(|c| !c.set_timers.is_empty()) {
                        self.inner.timer_wake.notify_one();
                    }
                }
                Applied::Turned(None) => {
                    retry.extend(arrivals.positions.iter().map(|p| events[*p].clone()));
                    retry_positions.extend(&arrivals.positions);
                }
                other => return Err(unexpected(Some(other))),
            }
        }
        if !retry.is_empty() {
            match self
                .inner
                .commit
                .apply(vec![Write::Ingest(retry)])
                .await?
                .pop()
            {
                Some(Applied::Ingested(ingested)) => {
                    for (position, result) in retry_positions.iter().zip(ingested) {
                        results[*position] = result;
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
        Ok(results)
    }

    /// Claims the conversation's writer if none runs.
    fn claim(&self, key: &ConversationKey) -> bool {
        let Ok(mut running) = self.inner.running.lock() else {
            return false;
        };
        if running.contains_key(key) {
            return false;
        }
        running.insert(key.clone(), false);
        true
    }

    /// The turns `events` make on a conversation with nothing queued, or `None` when it has
    /// queued work or is paused (the events must then wait their turn in the inbox).
    fn fast_turns(
        &self,
        key: &ConversationKey,
        events: &[&Inbound],
    ) -> Result<Option<Vec<TurnCommit>>, RuntimeError> {
        let store = &self.inner.store;
        let record = store.conversation(key)?;
        if record.as_ref().is_some_and(|r| r.paused.is_some())
            || !store.outbox(key)?.is_empty()
            || !store.inbox(key)?.is_empty()
        {
            return Ok(None);
        }
        let mut previous = record.as_ref().map(Place::of);
        let mut current = match record {
            Some(record) => record,
            None => self.new_record()?,
        };
        if self.needs_profile(&current, events.iter().copied())? {
            // The channel is asked for the profile first, by the writer.
            return Ok(None);
        }
        let mut commits = Vec::with_capacity(events.len());
        for event in events {
            let mut commit = self.apply(key, &mut current, previous.take(), 0, event)?;
            commit.consumed.clear();
            previous = Some(Place::of(&current));
            commits.push(commit);
        }
        Ok(Some(commits))
    }
}

fn unexpected(applied: Option<Applied>) -> RuntimeError {
    StoreError::Backend(format!("unexpected result {applied:?}")).into()
}
