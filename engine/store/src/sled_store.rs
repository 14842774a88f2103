//! The sled implementation of [`Store`]. One `sled::Db` per process, one tree per kind of
//! record; the key layout is documented in ARCHITECTURE.md.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Db, Transactional, Tree};

use crate::keys::{ConversationKey, read_u64, with_u64};
use crate::port::{Applied, Place, Result, Store, StoreError, Write};
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

/// An event ready to be ingested: its keys and encoded value.
struct PreparedEvent {
    dedup_key: Vec<u8>,
    inbox_key: Vec<u8>,
    seq: u64,
    value: Vec<u8>,
}

impl PreparedEvent {
    fn new(event: &Inbound, seq: u64) -> Result<Self> {
        Ok(PreparedEvent {
            dedup_key: dedup_key(event),
            inbox_key: with_u64(&event.conversation.prefix(), seq),
            seq,
            value: encode(event)?,
        })
    }
}

/// A turn ready to be committed.
struct PreparedCommit {
    conversation: ConversationKey,
    prefix: Vec<u8>,
    record_key: Vec<u8>,
    record: Vec<u8>,
    consumed: Vec<Vec<u8>>,
    outbox: Vec<(Vec<u8>, Vec<u8>)>,
    set_timers: Vec<(Vec<u8>, Vec<u8>, u64)>,
    cancel_timers: Vec<u64>,
    /// (old place key, new place key) when the conversation moved.
    moved: Option<(Option<Vec<u8>>, Vec<u8>)>,
}

impl PreparedCommit {
    fn new(commit: &TurnCommit) -> Result<Self> {
        let prefix = commit.conversation.prefix();
        let place = Place::of(&commit.record);
        let moved = (commit.previous.as_ref() != Some(&place)).then(|| {
            let old = commit
                .previous
                .as_ref()
                .map(|p| place_key(p, &commit.conversation));
            (old, place_key(&place, &commit.conversation))
        });
        Ok(PreparedCommit {
            conversation: commit.conversation.clone(),
            record_key: commit.conversation.encode(),
            record: encode(&commit.record)?,
            consumed: commit
                .consumed
                .iter()
                .map(|seq| with_u64(&prefix, *seq))
                .collect(),
            outbox: commit
                .outbox
                .iter()
                .map(|item| Ok((outbox_key(item), encode(item)?)))
                .collect::<Result<_>>()?,
            set_timers: commit
                .set_timers
                .iter()
                .map(|timer| (timer_key(timer), with_u64(&prefix, timer.timer), timer.due))
                .collect(),
            cancel_timers: commit.cancel_timers.clone(),
            moved,
            prefix,
        })
    }
}

enum Prepared {
    Ingest(Vec<PreparedEvent>),
    Commit(PreparedCommit),
    Complete {
        outbox_key: Vec<u8>,
        event: PreparedEvent,
    },
    Fire {
        timer_key: Vec<u8>,
        index_key: Vec<u8>,
        event: PreparedEvent,
    },
}

/// The trees inside one transaction.
struct Trees<'t> {
    conversations: &'t TransactionalTree,
    inbox: &'t TransactionalTree,
    dedup: &'t TransactionalTree,
    outbox: &'t TransactionalTree,
    timers: &'t TransactionalTree,
    timer_index: &'t TransactionalTree,
    places: &'t TransactionalTree,
}

type Abortable<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

impl Trees<'_> {
    fn apply(&self, write: &Prepared) -> Abortable<Applied> {
        Ok(match write {
            Prepared::Ingest(events) => {
                let mut results = Vec::with_capacity(events.len());
                for event in events {
                    results.push(self.ingest(event)?);
                }
                Applied::Ingested(results)
            }
            Prepared::Commit(commit) => {
                self.commit(commit)?;
                Applied::Committed
            }
            Prepared::Complete { outbox_key, event } => {
                if self.outbox.remove(outbox_key.as_slice())?.is_none() {
                    Applied::Completed(Ingested::Duplicate)
                } else {
                    Applied::Completed(self.ingest(event)?)
                }
            }
            Prepared::Fire {
                timer_key,
                index_key,
                event,
            } => {
                if self.timers.remove(timer_key.as_slice())?.is_none() {
                    Applied::Fired(false)
                } else {
                    self.timer_index.remove(index_key.as_slice())?;
                    self.ingest(event)?;
                    Applied::Fired(true)
                }
            }
        })
    }

    fn ingest(&self, event: &PreparedEvent) -> Abortable<Ingested> {
        if self.dedup.get(event.dedup_key.as_slice())?.is_some() {
            return Ok(Ingested::Duplicate);
        }
        self.dedup
            .insert(event.dedup_key.as_slice(), event.seq.to_be_bytes().to_vec())?;
        self.inbox
            .insert(event.inbox_key.as_slice(), event.value.as_slice())?;
        Ok(Ingested::New(event.seq))
    }

    fn commit(&self, commit: &PreparedCommit) -> Abortable<()> {
        self.conversations
            .insert(commit.record_key.as_slice(), commit.record.as_slice())?;
        for key in &commit.consumed {
            self.inbox.remove(key.as_slice())?;
        }
        for (key, value) in &commit.outbox {
            self.outbox.insert(key.as_slice(), value.as_slice())?;
        }
        for (key, index_key, due) in &commit.set_timers {
            self.timers.insert(key.as_slice(), Vec::<u8>::new())?;
            self.timer_index
                .insert(index_key.as_slice(), due.to_be_bytes().to_vec())?;
        }
        for id in &commit.cancel_timers {
            if let Some(due) = self.timer_index.remove(with_u64(&commit.prefix, *id))? {
                let due = read_u64(&due, 0).unwrap_or(0);
                self.timers.remove(timer_key(&Timer {
                    conversation: commit.conversation.clone(),
                    timer: *id,
                    due,
                }))?;
            }
        }
        if let Some((old, new)) = &commit.moved {
            if let Some(old) = old {
                self.places.remove(old.as_slice())?;
            }
            self.places.insert(new.as_slice(), Vec::<u8>::new())?;
        }
        Ok(())
    }
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
    fn apply(&self, writes: &[Write]) -> Result<Vec<Applied>> {
        // Everything that can fail or allocate ids is prepared outside the transaction, which
        // sled may run more than once.
        let mut prepared = Vec::with_capacity(writes.len());
        for write in writes {
            prepared.push(match write {
                Write::Ingest(events) => {
                    let mut items = Vec::with_capacity(events.len());
                    for event in events {
                        items.push(PreparedEvent::new(
                            event,
                            self.db.generate_id().map_err(backend)?,
                        )?);
                    }
                    Prepared::Ingest(items)
                }
                Write::Commit(commit) => Prepared::Commit(PreparedCommit::new(commit)?),
                Write::Complete { item, result } => Prepared::Complete {
                    outbox_key: outbox_key(item),
                    event: PreparedEvent::new(result, self.db.generate_id().map_err(backend)?)?,
                },
                Write::Fire { timer, event } => Prepared::Fire {
                    timer_key: timer_key(timer),
                    index_key: with_u64(&timer.conversation.prefix(), timer.timer),
                    event: PreparedEvent::new(event, self.db.generate_id().map_err(backend)?)?,
                },
            });
        }
        let trees = (
            &self.conversations,
            &self.inbox,
            &self.dedup,
            &self.outbox,
            &self.timers,
            &self.timer_index,
            &self.places,
        );
        trees
            .transaction(
                |(conversations, inbox, dedup, outbox, timers, timer_index, places)| {
                    let t = Trees {
                        conversations,
                        inbox,
                        dedup,
                        outbox,
                        timers,
                        timer_index,
                        places,
                    };
                    let mut results = Vec::with_capacity(prepared.len());
                    for write in &prepared {
                        results.push(t.apply(write)?);
                    }
                    Ok(results)
                },
            )
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
