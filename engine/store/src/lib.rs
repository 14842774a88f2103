//! The runtime's persistence: the [`Store`] port, its sled implementation ([`SledStore`]) and an
//! in-memory one ([`MemoryStore`]). Keys start with the conversation's partition.

pub mod clock;
pub mod keys;
pub mod kv;
mod memory;
pub mod port;
pub mod record;
mod sled_store;

pub use keys::{ConversationKey, PARTITIONS};
pub use kv::{KvScope, KvWrite, PluginKv};
pub use memory::MemoryStore;
pub use port::{Applied, Erasure, Place, Result, Store, StoreError, Write};
pub use record::{
    FlowVersion, Inbound, Ingested, Migration, OutboxItem, StoredConversation, Timer, TurnCommit,
};
pub use sled_store::{DEFAULT_CACHE_BYTES, SledStore};
