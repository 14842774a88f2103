//! The sled implementation of [`Store`]. One `sled::Db` per process. Everything a turn touches
//! lives in one tree, `data`, so that a group of writes is one atomic `apply_batch`: sled's
//! multi-tree transactions cost about 40 µs per write here, a batch a fraction of that. The key
//! layout is documented in ARCHITECTURE.md.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sled::{Batch, Db, IVec, Tree};

use crate::keys::{ConversationKey, PARTITIONS, read_u32, read_u64, with_u64};
use crate::port::{Applied, Erasure, Place, Result, Store, StoreError, Write};
use crate::record::{
    FlowVersion, Inbound, Ingested, OutboxItem, StoredConversation, Timer, TurnCommit, now_ms,
};

/// sled's page cache when none is configured.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Kinds of conversation-scoped keys: `[partition u16][kind][...]`.
const RECORD: u8 = 1;
const INBOX: u8 = 2;
const OUTBOX: u8 = 3;
const TIMER_INDEX: u8 = 4;
const DEDUP: u8 = 5;
const DEDUP_BY_SECOND: u8 = 7;

/// The most bytes of ids packed into one second's dedup value.
const MAX_PACKED_BYTES: usize = 16 * 1024;
const RESTRICTED: u8 = 6;
/// Global indexes live after every partition: `[0xFF 0xFF][kind][...]`.
const GLOBAL: [u8; 2] = [0xFF, 0xFF];
const TIMERS: u8 = 1;
const PLACES: u8 = 2;

/// The sled store. Clones share one database.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: Db,
    data: Tree,
    versions: Tree,
    heads: Tree,
    /// Atomic groups read before they write (dedup, timers, outbox): one group at a time.
    writer: Arc<Mutex<()>>,
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|err| StoreError::Corrupt {
        what: "a record to write".into(),
        error: err.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Corrupt {
        what: what.to_string(),
        error: err.to_string(),
    })
}

/// `[partition][kind]`, the start of a conversation-scoped key.
fn scoped(partition: u16, kind: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(&partition.to_be_bytes());
    key.push(kind);
    key
}

/// `[partition][kind][conversation prefix]`.
fn conversation_scoped(conversation: &ConversationKey, kind: u8) -> Vec<u8> {
    let mut key = scoped(conversation.partition(), kind);
    key.extend_from_slice(&conversation.prefix());
    key
}

fn global(kind: u8) -> Vec<u8> {
    let mut key = GLOBAL.to_vec();
    key.push(kind);
    key
}

fn record_key(conversation: &ConversationKey) -> Vec<u8> {
    conversation_scoped(conversation, RECORD)
}

fn inbox_key(conversation: &ConversationKey, seq: u64) -> Vec<u8> {
    with_u64(&conversation_scoped(conversation, INBOX), seq)
}

fn outbox_key(item: &OutboxItem) -> Vec<u8> {
    let mut key = with_u64(&conversation_scoped(&item.conversation, OUTBOX), item.turn);
    key.extend_from_slice(&item.step.to_be_bytes());
    key
}

fn timer_index_key(conversation: &ConversationKey, timer: u64) -> Vec<u8> {
    with_u64(&conversation_scoped(conversation, TIMER_INDEX), timer)
}

/// The dedup key: (channel instance, provider id), under the conversation's partition.
fn dedup_key(event: &Inbound) -> Vec<u8> {
    dedup_prefix(&event.conversation, &event.id)
}

/// `[partition][kind][channel length u16][channel]`: the start of a key about
/// `conversation`'s channel (instance) in its partition.
fn channel_scoped(conversation: &ConversationKey, kind: u8) -> Vec<u8> {
    let channel = conversation.channel.as_bytes();
    let mut key = scoped(conversation.partition(), kind);
    key.extend_from_slice(
        &u16::try_from(channel.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    key.extend_from_slice(channel);
    key
}

/// Dedup keys of `conversation`'s channel whose id starts with `id`.
fn dedup_prefix(conversation: &ConversationKey, id: &str) -> Vec<u8> {
    let mut key = channel_scoped(conversation, DEDUP);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The packed dedup markers of one second of provider time on `conversation`'s channel, in
/// its partition: `[partition][7][channel][second]`.
fn dedup_second_key(conversation: &ConversationKey, timestamp: u64) -> Vec<u8> {
    let mut key = channel_scoped(conversation, DEDUP_BY_SECOND);
    key.extend_from_slice(&(timestamp / 1000).to_be_bytes());
    key
}

/// The provider ids in a packed marker value: each a u32 length, then its bytes.
fn packed_ids(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        let length = read_u32(rest, 0)? as usize;
        let id = rest.get(4..4 + length)?;
        rest = &rest[4 + length..];
        Some(id)
    })
}

fn timer_key(timer: &Timer) -> Vec<u8> {
    let mut key = with_u64(&global(TIMERS), timer.due);
    key.extend_from_slice(&with_u64(&timer.conversation.prefix(), timer.timer));
    key
}

fn place_prefix(version: &str) -> Vec<u8> {
    let mut key = global(PLACES);
    key.extend_from_slice(version.as_bytes());
    key.push(0);
    key
}

fn place_key(place: &Place, conversation: &ConversationKey) -> Vec<u8> {
    let mut key = place_prefix(&place.version);
    for part in [&place.flow, &place.node] {
        key.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(&conversation.encode());
    key
}

fn split_place(prefix_len: usize, version: &str, key: &[u8]) -> Option<(Place, ConversationKey)> {
    let mut rest = key.get(prefix_len..)?;
    let mut parts = Vec::with_capacity(2);
    for _ in 0..2 {
        let length = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        parts.push(String::from_utf8(rest.get(2..2 + length)?.to_vec()).ok()?);
        rest = rest.get(2 + length..)?;
    }
    let node = parts.pop()?;
    let flow = parts.pop()?;
    let place = Place {
        version: version.to_string(),
        flow,
        node,
    };
    Some((place, ConversationKey::decode(rest)?))
}

/// The writes of one atomic group, with reads that see the group's own earlier writes.
struct Group<'s> {
    data: &'s Tree,
    changes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    batch: Batch,
}

impl Group<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        match self.changes.get(key) {
            Some(change) => Ok(change.as_ref().map(|v| IVec::from(v.as_slice()))),
            None => self.data.get(key).map_err(backend),
        }
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.insert(key.as_slice(), value.as_slice());
        self.changes.insert(key, Some(value));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.batch.remove(key.as_slice());
        self.changes.insert(key, None);
    }

    /// Applies a turn: the record, consumed inbox entries, effects, timers, the place index.
    fn commit(&mut self, commit: &TurnCommit) -> Result<()> {
        let conversation = &commit.conversation;
        self.insert(record_key(conversation), encode(&commit.record)?);
        for seq in &commit.consumed {
            self.remove(inbox_key(conversation, *seq));
        }
        for item in &commit.outbox {
            self.insert(outbox_key(item), encode(item)?);
        }
        for timer in &commit.set_timers {
            self.insert(timer_key(timer), Vec::new());
            self.insert(
                timer_index_key(conversation, timer.timer),
                timer.due.to_be_bytes().to_vec(),
            );
        }
        for id in &commit.cancel_timers {
            let index = timer_index_key(conversation, *id);
            if let Some(due) = self.get(&index)? {
                let due = read_u64(&due, 0).unwrap_or(0);
                self.remove(index);
                self.remove(timer_key(&Timer {
                    conversation: conversation.clone(),
                    timer: *id,
                    due,
                }));
            }
        }
        let place = Place::of(&commit.record);
        if commit.previous.as_ref() != Some(&place) {
            if let Some(previous) = &commit.previous {
                self.remove(place_key(previous, conversation));
            }
            self.insert(place_key(&place, conversation), Vec::new());
        }
        Ok(())
    }

    fn ingest(&mut self, event: &Inbound, seq: u64) -> Result<Ingested> {
        if self.seen(event)? {
            return Ok(Ingested::Duplicate);
        }
        self.mark(event, seq)?;
        self.enqueue(event, seq)
    }

    /// Whether `event` was ingested before (its dedup marker exists).
    fn seen(&self, event: &Inbound) -> Result<bool> {
        if event.provider_time {
            let packed = self.get(&dedup_second_key(&event.conversation, event.timestamp))?;
            if packed.is_some_and(|ids| packed_ids(&ids).any(|id| id == event.id.as_bytes())) {
                return Ok(true);
            }
        }
        // Also for provider-time events: a full second's overflow, and the markers a store
        // written before packing holds (a redelivery across an upgrade). The range is small
        // (it holds only events without provider time), so the look-up stays cheap.
        Ok(self.get(&dedup_key(event))?.is_some())
    }

    /// Writes `event`'s dedup marker. With the provider's own time, the marker joins the
    /// others of its second in one value: under load a few keys per second instead of one per
    /// event (sled's memory grows with its number of pages, and a page holds at most 16
    /// keys), and new markers land together instead of all over the key space.
    fn mark(&mut self, event: &Inbound, seq: u64) -> Result<()> {
        if event.provider_time {
            let key = dedup_second_key(&event.conversation, event.timestamp);
            let mut packed = self.get(&key)?.map(|v| v.to_vec()).unwrap_or_default();
            // A second that fills up (many events claiming one time) takes no more ids, so a
            // write never rewrites more than this; its further markers get keys of their own.
            if packed.len() < MAX_PACKED_BYTES {
                let id = event.id.as_bytes();
                packed
                    .extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
                packed.extend_from_slice(id);
                self.insert(key, packed);
                return Ok(());
            }
        }
        // An overflowing provider-time marker expires by its second, like the packed ones.
        let at = match event.provider_time {
            true => event.timestamp / 1000 * 1000,
            false => now_ms(),
        };
        self.insert(dedup_key(event), dedup_value(seq, at));
        Ok(())
    }

    /// Appends to the inbox without a dedup marker: for what the removal of an outbox item or a
    /// timer in the same group already makes happen once (a plugin result, a fired timer).
    fn enqueue(&mut self, event: &Inbound, seq: u64) -> Result<Ingested> {
        self.insert(inbox_key(&event.conversation, seq), encode(event)?);
        Ok(Ingested::New(seq))
    }

    /// Removes every key under `prefix` (not yet removed in this group); what it removed.
    fn remove_prefix(&mut self, data: &Tree, prefix: Vec<u8>) -> Result<Vec<(IVec, IVec)>> {
        let mut removed = Vec::new();
        for entry in data.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(backend)?;
            if self.changes.get(key.as_ref()).is_some_and(Option::is_none) {
                continue;
            }
            self.remove(key.to_vec());
            removed.push((key, value));
        }
        Ok(removed)
    }

    fn erase(&mut self, data: &Tree, conversation: &ConversationKey) -> Result<Erasure> {
        let mut erasure = Erasure::default();
        if let Some(bytes) = self.get(&record_key(conversation))? {
            let record: StoredConversation =
                decode(&format!("conversation {conversation}"), &bytes)?;
            self.remove(place_key(&Place::of(&record), conversation));
            self.remove(record_key(conversation));
            erasure.record = true;
        }
        erasure.inbox = self
            .remove_prefix(data, conversation_scoped(conversation, INBOX))?
            .len();
        erasure.outbox = self
            .remove_prefix(data, conversation_scoped(conversation, OUTBOX))?
            .len();
        let prefix = conversation_scoped(conversation, TIMER_INDEX);
        for (key, due) in self.remove_prefix(data, prefix.clone())? {
            if let (Some(timer), Some(due)) = (read_u64(&key, prefix.len()), read_u64(&due, 0)) {
                self.remove(timer_key(&Timer {
                    conversation: conversation.clone(),
                    timer,
                    due,
                }));
                erasure.timers += 1;
            }
        }
        self.remove(conversation_scoped(conversation, RESTRICTED));
        // The runtime's own event ids name the user. Plugin results and fired timers no longer
        // leave markers (their outbox item or timer makes them happen once), but a store
        // written by an earlier version may still hold some: they go too.
        for prefix in crate::record::runtime_event_prefixes(conversation) {
            self.remove_prefix(data, dedup_prefix(conversation, &prefix))?;
        }
        Ok(erasure)
    }
}

/// A dedup marker: the event's sequence number and the time it expires by (when it was
/// ingested, or its second of provider time).
fn dedup_value(seq: u64, at: u64) -> Vec<u8> {
    let mut value = seq.to_be_bytes().to_vec();
    value.extend_from_slice(&at.to_be_bytes());
    value
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with sled's page cache set to `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Durability comes from explicit flushes (group commit), not from a timer.
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let store = SledStore {
            data: tree("data")?,
            versions: tree("versions")?,
            heads: tree("heads")?,
            writer: Arc::new(Mutex::new(())),
            db: db.clone(),
        };
        // Opened now so that the data directory holds every tree from the start.
        for name in ["consents", "audit"] {
            tree(name)?;
        }
        Ok(store)
    }

    /// The underlying database, for the trees later work adds (consents, audit, secrets).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The conversations with keys of `kind`, partition by partition (recovery: proportional to
    /// pending work, not to the number of conversations).
    fn owners(&self, kind: u8) -> Result<Vec<ConversationKey>> {
        let mut owners: Vec<ConversationKey> = Vec::new();
        for partition in 0..PARTITIONS {
            let prefix = scoped(partition, kind);
            for entry in self.data.scan_prefix(&prefix) {
                let (key, _) = entry.map_err(backend)?;
                if let Some((conversation, _)) = ConversationKey::split_prefix(&key[prefix.len()..])
                    && owners.last() != Some(&conversation)
                {
                    owners.push(conversation);
                }
            }
        }
        Ok(owners)
    }
}

impl Store for SledStore {
    fn apply(&self, writes: &[Write]) -> Result<Vec<Applied>> {
        let _one_group_at_a_time = self
            .writer
            .lock()
            .map_err(|_| backend("a writer panicked"))?;
        let mut group = Group {
            data: &self.data,
            changes: HashMap::new(),
            batch: Batch::default(),
        };
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(match write {
                Write::Ingest(events) => {
                    let mut ingested = Vec::with_capacity(events.len());
                    for event in events {
                        let seq = self.db.generate_id().map_err(backend)?;
                        ingested.push(group.ingest(event, seq)?);
                    }
                    Applied::Ingested(ingested)
                }
                Write::Commit(commit) => {
                    group.commit(commit)?;
                    Applied::Committed
                }
                Write::Turn { events, commits } => {
                    let mut seen = false;
                    for event in events {
                        seen |= group.seen(event)?;
                    }
                    if seen {
                        Applied::Turned(None)
                    } else {
                        let mut seqs = Vec::with_capacity(events.len());
                        for event in events {
                            let seq = self.db.generate_id().map_err(backend)?;
                            group.mark(event, seq)?;
                            seqs.push(seq);
                        }
                        for commit in commits {
                            group.commit(commit)?;
                        }
                        Applied::Turned(Some(seqs))
                    }
                }
                Write::Complete { item, result } => {
                    let key = outbox_key(item);
                    if group.get(&key)?.is_none() {
                        Applied::Completed(Ingested::Duplicate)
                    } else {
                        group.remove(key);
                        let seq = self.db.generate_id().map_err(backend)?;
                        Applied::Completed(group.enqueue(result, seq)?)
                    }
                }
                Write::Unpause {
                    conversation,
                    turns,
                    failed,
                    skip,
                } => {
                    let key = record_key(conversation);
                    let record: Option<StoredConversation> = match group.get(&key)? {
                        Some(bytes) => {
                            Some(decode(&format!("conversation {conversation}"), &bytes)?)
                        }
                        None => None,
                    };
                    match record {
                        Some(mut record) if record.paused.is_some() && record.turns == *turns => {
                            record.paused = None;
                            group.insert(key, encode(&record)?);
                            if let Some(item) = failed {
                                let item_key = outbox_key(item);
                                if let Some(stored) = group.get(&item_key)? {
                                    if *skip {
                                        group.remove(item_key);
                                    } else {
                                        let mut retried: OutboxItem =
                                            decode("outbox item", &stored)?;
                                        retried.attempts = 0;
                                        retried.not_before = 0;
                                        group.insert(item_key, encode(&retried)?);
                                    }
                                }
                            }
                            Applied::Unpaused(true)
                        }
                        _ => Applied::Unpaused(false),
                    }
                }
                Write::Fire { timer, event } => {
                    let key = timer_key(timer);
                    if group.get(&key)?.is_none() {
                        Applied::Fired(false)
                    } else {
                        group.remove(key);
                        group.remove(timer_index_key(&timer.conversation, timer.timer));
                        let seq = self.db.generate_id().map_err(backend)?;
                        group.enqueue(event, seq)?;
                        Applied::Fired(true)
                    }
                }
                Write::Erase { conversation } => {
                    Applied::Erased(group.erase(&self.data, conversation)?)
                }
                Write::Restrict {
                    conversation,
                    restricted,
                } => {
                    let key = conversation_scoped(conversation, RESTRICTED);
                    if *restricted {
                        group.insert(key, now_ms().to_be_bytes().to_vec());
                    } else {
                        group.remove(key);
                    }
                    Applied::Restricted
                }
            });
        }
        self.data.apply_batch(group.batch).map_err(backend)?;
        Ok(results)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn conversation(&self, key: &ConversationKey) -> Result<Option<StoredConversation>> {
        match self.data.get(record_key(key)).map_err(backend)? {
            Some(bytes) => decode(&format!("conversation {key}"), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn inbox(&self, key: &ConversationKey) -> Result<Vec<(u64, Inbound)>> {
        let prefix = conversation_scoped(key, INBOX);
        let mut entries = Vec::new();
        for entry in self.data.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(backend)?;
            let seq = read_u64(&k, prefix.len()).ok_or_else(|| StoreError::Corrupt {
                what: format!("inbox key of {key}"),
                error: "too short".into(),
            })?;
            entries.push((seq, decode(&format!("inbox entry {seq} of {key}"), &v)?));
        }
        Ok(entries)
    }

    fn conversations_with_inbox(&self) -> Result<Vec<ConversationKey>> {
        self.owners(INBOX)
    }

    fn outbox(&self, key: &ConversationKey) -> Result<Vec<OutboxItem>> {
        self.data
            .scan_prefix(conversation_scoped(key, OUTBOX))
            .map(|entry| {
                let (_, v) = entry.map_err(backend)?;
                decode(&format!("outbox item of {key}"), &v)
            })
            .collect()
    }

    fn conversations_with_outbox(&self) -> Result<Vec<ConversationKey>> {
        self.owners(OUTBOX)
    }

    fn update_outbox(&self, item: &OutboxItem) -> Result<()> {
        self.data
            .insert(outbox_key(item), encode(item)?)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_outbox(&self, item: &OutboxItem) -> Result<()> {
        self.data.remove(outbox_key(item)).map_err(backend)?;
        Ok(())
    }

    fn next_timer(&self) -> Result<Option<Timer>> {
        Ok(self.due_timers(u64::MAX, 1)?.pop())
    }

    fn due_timers(&self, until: u64, limit: usize) -> Result<Vec<Timer>> {
        let prefix = global(TIMERS);
        let corrupt = || StoreError::Corrupt {
            what: "timer key".into(),
            error: "malformed".into(),
        };
        let mut timers = Vec::new();
        for entry in self.data.scan_prefix(&prefix) {
            if timers.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(backend)?;
            let due = read_u64(&key, prefix.len()).ok_or_else(corrupt)?;
            if due > until {
                break;
            }
            let (conversation, rest) =
                ConversationKey::split_prefix(&key[prefix.len() + 8..]).ok_or_else(corrupt)?;
            let timer = read_u64(rest, 0).ok_or_else(corrupt)?;
            timers.push(Timer {
                conversation,
                timer,
                due,
            });
        }
        Ok(timers)
    }

    fn timers(&self, key: &ConversationKey) -> Result<Vec<Timer>> {
        let prefix = conversation_scoped(key, TIMER_INDEX);
        let mut timers = Vec::new();
        for entry in self.data.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(backend)?;
            if let (Some(timer), Some(due)) = (read_u64(&k, prefix.len()), read_u64(&v, 0)) {
                timers.push(Timer {
                    conversation: key.clone(),
                    timer,
                    due,
                });
            }
        }
        Ok(timers)
    }

    fn put_version(&self, version: &FlowVersion) -> Result<()> {
        self.versions
            .insert(version.hash.as_bytes(), encode(version)?)
            .map_err(backend)?;
        Ok(())
    }

    fn version(&self, hash: &str) -> Result<Option<FlowVersion>> {
        match self.versions.get(hash.as_bytes()).map_err(backend)? {
            Some(bytes) => decode(&format!("flow version {hash}"), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn set_head(&self, bot: &str, hash: &str) -> Result<()> {
        self.heads
            .insert(bot.as_bytes(), hash.as_bytes())
            .map_err(backend)?;
        Ok(())
    }

    fn head(&self, bot: &str) -> Result<Option<String>> {
        Ok(self
            .heads
            .get(bot.as_bytes())
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn placed(&self, version: &str) -> Result<Vec<(Place, ConversationKey)>> {
        let prefix = place_prefix(version);
        let mut found = Vec::new();
        for entry in self.data.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(backend)?;
            if let Some(placed) = split_place(prefix.len(), version, &key) {
                found.push(placed);
            }
        }
        Ok(found)
    }

    fn versions(&self) -> Result<Vec<String>> {
        self.versions
            .iter()
            .keys()
            .map(|k| {
                k.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(backend)
            })
            .collect()
    }

    fn restricted(&self) -> Result<Vec<ConversationKey>> {
        self.owners(RESTRICTED)
    }

    fn idle_conversations(&self, before: u64) -> Result<Vec<ConversationKey>> {
        let mut idle = Vec::new();
        for partition in 0..PARTITIONS {
            let prefix = scoped(partition, RECORD);
            for entry in self.data.scan_prefix(&prefix) {
                let (key, value) = entry.map_err(backend)?;
                let Some((conversation, _)) = ConversationKey::split_prefix(&key[prefix.len()..])
                else {
                    continue;
                };
                // A record that cannot be read is reported by its writer; it must not stop the
                // sweep of all the others.
                match decode::<StoredConversation>(&format!("conversation {conversation}"), &value)
                {
                    Ok(record) if record.updated_at < before => idle.push(conversation),
                    Ok(_) => {}
                    Err(err) => eprintln!("influxify-store: skipped in the idle scan: {err}"),
                }
            }
        }
        Ok(idle)
    }

    fn sweep_dedup(&self, before: u64) -> Result<usize> {
        let mut swept = 0;
        for partition in 0..PARTITIONS {
            let mut batch = Batch::default();
            let prefix = scoped(partition, DEDUP_BY_SECOND);
            for entry in self.data.scan_prefix(&prefix) {
                let (key, value) = entry.map_err(backend)?;
                // `[partition][7][channel length u16][channel][second u64]`
                let second = key
                    .len()
                    .checked_sub(8)
                    .and_then(|at| read_u64(&key, at))
                    .unwrap_or(0);
                if second.saturating_mul(1000) < before {
                    swept += packed_ids(&value).count();
                    batch.remove(key);
                }
            }
            for entry in self.data.scan_prefix(scoped(partition, DEDUP)) {
                let (key, value) = entry.map_err(backend)?;
                // Markers written before they carried a time count as old.
                if read_u64(&value, 8).unwrap_or(0) < before {
                    batch.remove(key);
                    swept += 1;
                }
            }
            self.data.apply_batch(batch).map_err(backend)?;
        }
        Ok(swept)
    }
}
