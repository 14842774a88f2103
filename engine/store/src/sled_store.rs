//! The sled implementation of [`Store`]. One `sled::Db` per process, one tree per kind of
//! record; the key layout is documented in ARCHITECTURE.md.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Db, Transactional, Tree};

use crate::keys::{ConversationKey, read_u64, with_u64};
use crate::port::{Place, Result, Store, StoreError};
use crate::record::{
    FlowVersion, Inbound, Ingested, OutboxItem, StoredConversation, Timer, TurnCommit,
};

/// sled's page cache when none is configured.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The sled store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: Db,
    conversations: Tree,
    inbox: Tree,
    dedup: Tree,
    outbox: Tree,
    timers: Tree,
    timer_index: Tree,
    places: Tree,
    versions: Tree,
    heads: Tree,
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn tx_error(err: TransactionError<StoreError>) -> StoreError {
    match err {
        TransactionError::Abort(err) => err,
        TransactionError::Storage(err) => backend(err),
    }
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

/// The dedup key: (channel instance, provider id).
fn dedup_key(event: &Inbound) -> Vec<u8> {
    let channel = event.conversation.channel.as_bytes();
    let mut key = Vec::with_capacity(2 + channel.len() + event.id.len());
    key.extend_from_slice(
        &u16::try_from(channel.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    key.extend_from_slice(channel);
    key.extend_from_slice(event.id.as_bytes());
    key
}

fn outbox_key(item: &OutboxItem) -> Vec<u8> {
    let mut key = with_u64(&item.conversation.prefix(), item.turn);
    key.extend_from_slice(&item.step.to_be_bytes());
    key
}

fn timer_key(timer: &Timer) -> Vec<u8> {
    let mut key = with_u64(&[], timer.due);
    key.extend_from_slice(&with_u64(&timer.conversation.prefix(), timer.timer));
    key
}

fn place_prefix(version: &str) -> Vec<u8> {
    let mut key = version.as_bytes().to_vec();
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

fn split_place(version: &str, key: &[u8]) -> Option<(Place, ConversationKey)> {
    let mut rest = key.get(version.len() + 1..)?;
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

type Abortable<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn abort(err: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(err)
}

/// Ingests `event` with inbox sequence `seq` inside a transaction.
fn ingest_in(
    dedup: &TransactionalTree,
    inbox: &TransactionalTree,
    event: &Inbound,
    seq: u64,
) -> Abortable<Ingested> {
    let key = dedup_key(event);
    if dedup.get(&key)?.is_some() {
        return Ok(Ingested::Duplicate);
    }
    dedup.insert(key, seq.to_be_bytes().to_vec())?;
    let value = encode(event).map_err(abort)?;
    inbox.insert(with_u64(&event.conversation.prefix(), seq), value)?;
    Ok(Ingested::New(seq))
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
        Ok(SledStore {
            conversations: tree("conversations")?,
            inbox: tree("inbox")?,
            dedup: tree("dedup")?,
            outbox: tree("outbox")?,
            timers: tree("timers")?,
            timer_index: tree("timer_index")?,
            places: tree("places")?,
            versions: tree("versions")?,
            heads: tree("heads")?,
            // Opened now so that the data directory holds every tree from the start.
            db: {
                for name in ["consents", "audit"] {
                    db.open_tree(name).map_err(backend)?;
                }
                db
            },
        })
    }

    /// The underlying database, for the trees later work adds (consents, audit, secrets).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// How many conversations are stored (sled counts by scanning: for tests and tools only).
    pub fn conversation_count(&self) -> usize {
        self.conversations.len()
    }

    fn keys_with_prefix_owner(tree: &Tree) -> Result<Vec<ConversationKey>> {
        let mut keys: Vec<ConversationKey> = Vec::new();
        for entry in tree.iter() {
            let (key, _) = entry.map_err(backend)?;
            if let Some((conversation, _)) = ConversationKey::split_prefix(&key)
                && keys.last() != Some(&conversation)
            {
                keys.push(conversation);
            }
        }
        keys.dedup();
        Ok(keys)
    }
}

impl Store for SledStore {
    fn ingest(&self, events: &[Inbound]) -> Result<Vec<Ingested>> {
        let mut seqs = Vec::with_capacity(events.len());
        for _ in events {
            seqs.push(self.db.generate_id().map_err(backend)?);
        }
        (&self.dedup, &self.inbox)
            .transaction(|(dedup, inbox)| {
                let mut results = Vec::with_capacity(events.len());
                for (event, seq) in events.iter().zip(&seqs) {
                    results.push(ingest_in(dedup, inbox, event, *seq)?);
                }
                Ok(results)
            })
            .map_err(tx_error)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn conversation(&self, key: &ConversationKey) -> Result<Option<StoredConversation>> {
        match self.conversations.get(key.encode()).map_err(backend)? {
            Some(bytes) => decode(&format!("conversation {key}"), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn inbox(&self, key: &ConversationKey) -> Result<Vec<(u64, Inbound)>> {
        let prefix = key.prefix();
        let mut entries = Vec::new();
        for entry in self.inbox.scan_prefix(&prefix) {
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
        Self::keys_with_prefix_owner(&self.inbox)
    }

    fn commit(&self, commit: &TurnCommit) -> Result<()> {
        let conversation_key = commit.conversation.encode();
        let record = encode(&commit.record)?;
        let prefix = commit.conversation.prefix();
        let outbox: Vec<(Vec<u8>, Vec<u8>)> = commit
            .outbox
            .iter()
            .map(|item| Ok((outbox_key(item), encode(item)?)))
            .collect::<Result<_>>()?;
        let place = Place::of(&commit.record);
        let trees = (
            &self.conversations,
            &self.inbox,
            &self.outbox,
            &self.timers,
            &self.timer_index,
            &self.places,
        );
        trees
            .transaction(
                |(conversations, inbox, outboxes, timers, timer_index, places)| {
                    conversations.insert(conversation_key.as_slice(), record.as_slice())?;
                    for seq in &commit.consumed {
                        inbox.remove(with_u64(&prefix, *seq))?;
                    }
                    for (key, value) in &outbox {
                        outboxes.insert(key.as_slice(), value.as_slice())?;
                    }
                    for timer in &commit.set_timers {
                        timers.insert(timer_key(timer), Vec::<u8>::new())?;
                        timer_index.insert(
                            with_u64(&prefix, timer.timer),
                            timer.due.to_be_bytes().to_vec(),
                        )?;
                    }
                    for id in &commit.cancel_timers {
                        let index_key = with_u64(&prefix, *id);
                        if let Some(due) = timer_index.remove(index_key)? {
                            let due = read_u64(&due, 0).unwrap_or(0);
                            timers.remove(timer_key(&Timer {
                                conversation: commit.conversation.clone(),
                                timer: *id,
                                due,
                            }))?;
                        }
                    }
                    if commit.previous.as_ref() != Some(&place) {
                        if let Some(previous) = &commit.previous {
                            places.remove(place_key(previous, &commit.conversation))?;
                        }
                        places.insert(place_key(&place, &commit.conversation), Vec::<u8>::new())?;
                    }
                    Ok(())
                },
            )
            .map_err(tx_error)
    }

    fn put_conversation(&self, key: &ConversationKey, record: &StoredConversation) -> Result<()> {
        let previous = self.conversation(key)?.map(|r| Place::of(&r));
        let commit = TurnCommit {
            conversation: key.clone(),
            record: record.clone(),
            previous,
            consumed: Vec::new(),
            outbox: Vec::new(),
            set_timers: Vec::new(),
            cancel_timers: Vec::new(),
        };
        self.commit(&commit)
    }

    fn outbox(&self, key: &ConversationKey) -> Result<Vec<OutboxItem>> {
        self.outbox
            .scan_prefix(key.prefix())
            .map(|entry| {
                let (_, v) = entry.map_err(backend)?;
                decode(&format!("outbox item of {key}"), &v)
            })
            .collect()
    }

    fn conversations_with_outbox(&self) -> Result<Vec<ConversationKey>> {
        Self::keys_with_prefix_owner(&self.outbox)
    }

    fn update_outbox(&self, item: &OutboxItem) -> Result<()> {
        self.outbox
            .insert(outbox_key(item), encode(item)?)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_outbox(&self, item: &OutboxItem) -> Result<()> {
        self.outbox.remove(outbox_key(item)).map_err(backend)?;
        Ok(())
    }

    fn complete_with_event(&self, item: &OutboxItem, result: &Inbound) -> Result<Ingested> {
        let seq = self.db.generate_id().map_err(backend)?;
        let key = outbox_key(item);
        (&self.outbox, &self.dedup, &self.inbox)
            .transaction(|(outbox, dedup, inbox)| {
                if outbox.remove(key.as_slice())?.is_none() {
                    return Ok(Ingested::Duplicate);
                }
                ingest_in(dedup, inbox, result, seq)
            })
            .map_err(tx_error)
    }

    fn next_timer(&self) -> Result<Option<Timer>> {
        let Some((key, _)) = self.timers.first().map_err(backend)? else {
            return Ok(None);
        };
        let corrupt = || StoreError::Corrupt {
            what: "timer key".into(),
            error: "malformed".into(),
        };
        let due = read_u64(&key, 0).ok_or_else(corrupt)?;
        let (conversation, rest) = ConversationKey::split_prefix(&key[8..]).ok_or_else(corrupt)?;
        let timer = read_u64(rest, 0).ok_or_else(corrupt)?;
        Ok(Some(Timer {
            conversation,
            timer,
            due,
        }))
    }

    fn timers(&self, key: &ConversationKey) -> Result<Vec<Timer>> {
        let prefix = key.prefix();
        let mut timers = Vec::new();
        for entry in self.timer_index.scan_prefix(&prefix) {
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

    fn fire_timer(&self, timer: &Timer, event: &Inbound) -> Result<bool> {
        let seq = self.db.generate_id().map_err(backend)?;
        let key = timer_key(timer);
        let index_key = with_u64(&timer.conversation.prefix(), timer.timer);
        (&self.timers, &self.timer_index, &self.dedup, &self.inbox)
            .transaction(|(timers, timer_index, dedup, inbox)| {
                if timers.remove(key.as_slice())?.is_none() {
                    return Ok(false);
                }
                timer_index.remove(index_key.as_slice())?;
                ingest_in(dedup, inbox, event, seq)?;
                Ok(true)
            })
            .map_err(tx_error)
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
        let mut found = Vec::new();
        for entry in self.places.scan_prefix(place_prefix(version)) {
            let (key, _) = entry.map_err(backend)?;
            if let Some(placed) = split_place(version, &key) {
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
}
