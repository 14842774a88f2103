//! An in-memory [`Store`]: fast tests, and the model the sled store is checked against.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::keys::ConversationKey;
use crate::port::{Applied, Erasure, Place, Result, Store, StoreError, Write};
use crate::record::{
    FlowVersion, Inbound, Ingested, OutboxItem, StoredConversation, Timer, TurnCommit, now_ms,
};

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    conversations: BTreeMap<ConversationKey, StoredConversation>,
    inbox: BTreeMap<(ConversationKey, u64), Inbound>,
    /// (partition, channel, the second of the provider's time if the event has it, provider
    /// id), as sled keeps it: dedup never crosses partitions. With when each was ingested (ms
    /// since the Unix epoch).
    dedup: BTreeMap<DedupKey, u64>,
    restricted: BTreeSet<ConversationKey>,
    outbox: BTreeMap<(ConversationKey, u64, u32), OutboxItem>,
    /// Ordered like sled's timer keys: due time, then the encoded conversation key.
    timers: BTreeSet<(u64, Vec<u8>, u64, ConversationKey)>,
    timer_index: BTreeMap<(ConversationKey, u64), u64>,
    places: BTreeSet<(Place, ConversationKey)>,
    versions: BTreeMap<String, FlowVersion>,
    heads: HashMap<String, String>,
}

impl State {
    fn apply(&mut self, write: &Write) -> Applied {
        match write {
            Write::Ingest(events) => {
                Applied::Ingested(events.iter().map(|e| self.ingest(e)).collect())
            }
            Write::Commit(commit) => {
                self.commit(commit);
                Applied::Committed
            }
            Write::Turn { events, commits } => {
                if events.iter().any(|e| self.seen(e)) {
                    return Applied::Turned(None);
                }
                let mut seqs = Vec::with_capacity(events.len());
                for event in events {
                    self.next_seq += 1;
                    self.dedup.insert(dedup_key(event), now_ms());
                    seqs.push(self.next_seq);
                }
                for commit in commits {
                    self.commit(commit);
                }
                Applied::Turned(Some(seqs))
            }
            Write::Complete { item, result } => {
                if self.outbox.remove(&outbox_key(item)).is_none() {
                    Applied::Completed(Ingested::Duplicate)
                } else {
                    Applied::Completed(self.enqueue(result))
                }
            }
            Write::Unpause {
                conversation,
                turns,
                failed,
                skip,
            } => match self.conversations.get_mut(conversation) {
                Some(record) if record.paused.is_some() && record.turns == *turns => {
                    record.paused = None;
                    if let Some(item) = failed {
                        let key = outbox_key(item);
                        if *skip {
                            self.outbox.remove(&key);
                        } else if let Some(pending) = self.outbox.get_mut(&key) {
                            pending.attempts = 0;
                            pending.not_before = 0;
                        }
                    }
                    Applied::Unpaused(true)
                }
                _ => Applied::Unpaused(false),
            },
            Write::Fire { timer, event } => {
                let entry = (
                    timer.due,
                    timer.conversation.prefix(),
                    timer.timer,
                    timer.conversation.clone(),
                );
                if !self.timers.remove(&entry) {
                    return Applied::Fired(false);
                }
                self.timer_index
                    .remove(&(timer.conversation.clone(), timer.timer));
                self.enqueue(event);
                Applied::Fired(true)
            }
            Write::Erase { conversation } => Applied::Erased(self.erase(conversation)),
            Write::Restrict {
                conversation,
                restricted,
            } => {
                if *restricted {
                    self.restricted.insert(conversation.clone());
                } else {
                    self.restricted.remove(conversation);
                }
                Applied::Restricted
            }
        }
    }

    fn erase(&mut self, key: &ConversationKey) -> Erasure {
        let mut erasure = Erasure::default();
        if let Some(record) = self.conversations.remove(key) {
            self.places.remove(&(Place::of(&record), key.clone()));
            erasure.record = true;
        }
        let before = self.inbox.len();
        self.inbox.retain(|(k, _), _| k != key);
        erasure.inbox = before - self.inbox.len();
        let before = self.outbox.len();
        self.outbox.retain(|(k, _, _), _| k != key);
        erasure.outbox = before - self.outbox.len();
        let timers: Vec<(u64, u64)> = self
            .timer_index
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, id), due)| (*id, *due))
            .collect();
        for (id, due) in &timers {
            self.timer_index.remove(&(key.clone(), *id));
            self.timers.remove(&(*due, key.prefix(), *id, key.clone()));
        }
        erasure.timers = timers.len();
        self.restricted.remove(key);
        let prefixes = crate::record::runtime_event_prefixes(key);
        self.dedup.retain(|(partition, channel, _, id), _| {
            !(*partition == key.partition()
                && *channel == key.channel
                && prefixes
                    .iter()
                    .any(|prefix| id.starts_with(prefix.as_str())))
        });
        erasure
    }

    fn commit(&mut self, commit: &TurnCommit) {
        let key = &commit.conversation;
        self.conversations
            .insert(key.clone(), commit.record.clone());
        for seq in &commit.consumed {
            self.inbox.remove(&(key.clone(), *seq));
        }
        for item in &commit.outbox {
            self.outbox.insert(outbox_key(item), item.clone());
        }
        for timer in &commit.set_timers {
            self.timers
                .insert((timer.due, key.prefix(), timer.timer, key.clone()));
            self.timer_index
                .insert((key.clone(), timer.timer), timer.due);
        }
        for id in &commit.cancel_timers {
            if let Some(due) = self.timer_index.remove(&(key.clone(), *id)) {
                self.timers.remove(&(due, key.prefix(), *id, key.clone()));
            }
        }
        let place = Place::of(&commit.record);
        if let Some(previous) = &commit.previous {
            self.places.remove(&(previous.clone(), key.clone()));
        }
        self.places.insert((place, key.clone()));
    }

    /// Whether `event` has a marker; like sled, a provider-time event also counts one kept
    /// without a second (an overflowing second's, or one written before packing).
    fn seen(&self, event: &Inbound) -> bool {
        let (partition, channel, _, id) = dedup_key(event);
        self.dedup.contains_key(&dedup_key(event))
            || self.dedup.contains_key(&(partition, channel, None, id))
    }

    fn ingest(&mut self, event: &Inbound) -> Ingested {
        if self.seen(event) {
            return Ingested::Duplicate;
        }
        self.dedup.insert(dedup_key(event), now_ms());
        self.enqueue(event)
    }

    /// Appends to the inbox without a dedup marker: what the removal of an outbox item or a
    /// timer in the same write already makes happen once.
    fn enqueue(&mut self, event: &Inbound) -> Ingested {
        self.next_seq += 1;
        self.inbox
            .insert((event.conversation.clone(), self.next_seq), event.clone());
        Ingested::New(self.next_seq)
    }
}

type DedupKey = (u16, String, Option<u64>, String);

/// What an event is deduplicated on: (partition, channel, second of provider time, provider
/// id).
fn dedup_key(event: &Inbound) -> DedupKey {
    (
        event.conversation.partition(),
        event.conversation.channel.clone(),
        event.provider_time.then_some(event.timestamp / 1000),
        event.id.clone(),
    )
}

/// The in-memory store. `flush` does nothing: nothing here survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("a thread panicked while holding the store".into()))
    }
}

fn outbox_key(item: &OutboxItem) -> (ConversationKey, u64, u32) {
    (item.conversation.clone(), item.turn, item.step)
}

impl Store for MemoryStore {
    fn apply(&self, writes: &[Write]) -> Result<Vec<Applied>> {
        let mut state = self.lock()?;
        Ok(writes.iter().map(|write| state.apply(write)).collect())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn conversation(&self, key: &ConversationKey) -> Result<Option<StoredConversation>> {
        Ok(self.lock()?.conversations.get(key).cloned())
    }

    fn inbox(&self, key: &ConversationKey) -> Result<Vec<(u64, Inbound)>> {
        let state = self.lock()?;
        Ok(state
            .inbox
            .range((key.clone(), 0)..=(key.clone(), u64::MAX))
            .map(|((_, seq), event)| (*seq, event.clone()))
            .collect())
    }

    fn conversations_with_inbox(&self) -> Result<Vec<ConversationKey>> {
        let state = self.lock()?;
        let keys: BTreeSet<ConversationKey> = state.inbox.keys().map(|(k, _)| k.clone()).collect();
        Ok(keys.into_iter().collect())
    }

    fn outbox(&self, key: &ConversationKey) -> Result<Vec<OutboxItem>> {
        let state = self.lock()?;
        Ok(state
            .outbox
            .range((key.clone(), 0, 0)..=(key.clone(), u64::MAX, u32::MAX))
            .map(|(_, item)| item.clone())
            .collect())
    }

    fn conversations_with_outbox(&self) -> Result<Vec<ConversationKey>> {
        let state = self.lock()?;
        let keys: BTreeSet<ConversationKey> =
            state.outbox.keys().map(|(k, _, _)| k.clone()).collect();
        Ok(keys.into_iter().collect())
    }

    fn update_outbox(&self, item: &OutboxItem) -> Result<()> {
        self.lock()?.outbox.insert(outbox_key(item), item.clone());
        Ok(())
    }

    fn remove_outbox(&self, item: &OutboxItem) -> Result<()> {
        self.lock()?.outbox.remove(&outbox_key(item));
        Ok(())
    }

    fn next_timer(&self) -> Result<Option<Timer>> {
        Ok(self
            .lock()?
            .timers
            .first()
            .map(|(due, _, timer, conversation)| Timer {
                conversation: conversation.clone(),
                timer: *timer,
                due: *due,
            }))
    }

    fn due_timers(&self, until: u64, limit: usize) -> Result<Vec<Timer>> {
        Ok(self
            .lock()?
            .timers
            .iter()
            .take_while(|(due, ..)| *due <= until)
            .take(limit)
            .map(|(due, _, timer, conversation)| Timer {
                conversation: conversation.clone(),
                timer: *timer,
                due: *due,
            })
            .collect())
    }

    fn timers(&self, key: &ConversationKey) -> Result<Vec<Timer>> {
        let state = self.lock()?;
        Ok(state
            .timer_index
            .range((key.clone(), 0)..=(key.clone(), u64::MAX))
            .map(|((conversation, timer), due)| Timer {
                conversation: conversation.clone(),
                timer: *timer,
                due: *due,
            })
            .collect())
    }

    fn put_version(&self, version: &FlowVersion) -> Result<()> {
        self.lock()?
            .versions
            .insert(version.hash.clone(), version.clone());
        Ok(())
    }

    fn version(&self, hash: &str) -> Result<Option<FlowVersion>> {
        Ok(self.lock()?.versions.get(hash).cloned())
    }

    fn set_head(&self, bot: &str, hash: &str) -> Result<()> {
        self.lock()?.heads.insert(bot.to_string(), hash.to_string());
        Ok(())
    }

    fn head(&self, bot: &str) -> Result<Option<String>> {
        Ok(self.lock()?.heads.get(bot).cloned())
    }

    fn placed(&self, version: &str) -> Result<Vec<(Place, ConversationKey)>> {
        let state = self.lock()?;
        Ok(state
            .places
            .iter()
            .filter(|(place, _)| place.version == version)
            .cloned()
            .collect())
    }

    fn versions(&self) -> Result<Vec<String>> {
        Ok(self.lock()?.versions.keys().cloned().collect())
    }

    fn restricted(&self) -> Result<Vec<ConversationKey>> {
        Ok(self.lock()?.restricted.iter().cloned().collect())
    }

    fn idle_conversations(&self, before: u64) -> Result<Vec<ConversationKey>> {
        Ok(self
            .lock()?
            .conversations
            .iter()
            .filter(|(_, record)| record.updated_at < before)
            .map(|(key, _)| key.clone())
            .collect())
    }

    fn sweep_dedup(&self, before: u64) -> Result<usize> {
        let mut state = self.lock()?;
        let count = state.dedup.len();
        // Markers kept by the provider's time go by that time, to the second; the others by
        // when they were written.
        state.dedup.retain(|(_, _, second, _), at| match second {
            Some(second) => second.saturating_mul(1000) >= before,
            None => *at >= before,
        });
        Ok(count - state.dedup.len())
    }
}
