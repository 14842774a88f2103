//! The plugins' key-value store: entries scoped to a plugin, or to a plugin and one end user
//! (so that erasing the user's data reaches them), with a byte quota per plugin. Kept in its own
//! sled tree, `kv`:
//!
//! - `[0][plugin length u8][plugin][key]`: a plugin-scoped entry;
//! - `[1][length-prefixed conversation][plugin length u8][plugin][key]`: a user-scoped entry (the conversation
//!   first, so that one prefix holds everything a user has in every plugin);
//! - `[2][plugin]`: the plugin's usage in bytes (keys plus values), for its quota.

use std::sync::Mutex;

use crate::keys::ConversationKey;
use crate::port::{Result, StoreError};

/// Whose entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvScope<'a> {
    /// Shared by every conversation of the plugin.
    Plugin,
    /// One end user's (by conversation).
    User(&'a ConversationKey),
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    /// Written.
    Done,
    /// Refused: the plugin's quota would be exceeded.
    QuotaExceeded,
}

/// A user's entry, for export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The plugin.
    pub plugin: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
}

/// The plugins' key-value store on sled.
#[derive(Debug)]
pub struct PluginKv {
    tree: sled::Tree,
    /// Serializes writes, so that usage stays exact.
    writer: Mutex<()>,
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn entry_key(plugin: &str, scope: KvScope<'_>, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + key.len() + 64);
    match scope {
        KvScope::Plugin => out.push(0),
        KvScope::User(user) => {
            out.push(1);
            out.extend_from_slice(&user.prefix());
        }
    }
    out.push(u8::try_from(plugin.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(plugin.as_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn usage_key(plugin: &str) -> Vec<u8> {
    let mut out = vec![2];
    out.extend_from_slice(plugin.as_bytes());
    out
}

fn read_u64(bytes: Option<sled::IVec>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl PluginKv {
    /// Opens the `kv` tree of `db`.
    pub fn open(db: &sled::Db) -> Result<Self> {
        Ok(PluginKv {
            tree: db.open_tree("kv").map_err(backend)?,
            writer: Mutex::new(()),
        })
    }

    /// A store in a temporary sled database (tools and tests).
    pub fn temporary() -> Result<Self> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(backend)?;
        PluginKv::open(&db)
    }

    /// An entry's value.
    pub fn get(&self, plugin: &str, scope: KvScope<'_>, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(entry_key(plugin, scope, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    /// Writes an entry if the plugin's usage stays within `quota` bytes.
    pub fn set(
        &self,
        plugin: &str,
        scope: KvScope<'_>,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<KvWrite> {
        let _one_writer = self.writer.lock().map_err(|_| backend("poisoned"))?;
        let entry = entry_key(plugin, scope, key);
        let old = self
            .tree
            .get(&entry)
            .map_err(backend)?
            .map_or(0, |v| (key.len() + v.len()) as u64);
        let usage = read_u64(self.tree.get(usage_key(plugin)).map_err(backend)?);
        let new_usage = usage - old.min(usage) + (key.len() + value.len()) as u64;
        if new_usage > quota {
            return Ok(KvWrite::QuotaExceeded);
        }
        let mut batch = sled::Batch::default();
        batch.insert(entry, value);
        batch.insert(usage_key(plugin), &new_usage.to_be_bytes());
        self.tree.apply_batch(batch).map_err(backend)?;
        Ok(KvWrite::Done)
    }

    /// Removes an entry (nothing if absent).
    pub fn delete(&self, plugin: &str, scope: KvScope<'_>, key: &str) -> Result<()> {
        let _one_writer = self.writer.lock().map_err(|_| backend("poisoned"))?;
        let entry = entry_key(plugin, scope, key);
        if let Some(old) = self.tree.get(&entry).map_err(backend)? {
            let usage = read_u64(self.tree.get(usage_key(plugin)).map_err(backend)?);
            let freed = (key.len() + old.len()) as u64;
            let mut batch = sled::Batch::default();
            batch.remove(entry);
            batch.insert(
                usage_key(plugin),
                &usage.saturating_sub(freed).to_be_bytes(),
            );
            self.tree.apply_batch(batch).map_err(backend)?;
        }
        Ok(())
    }

    /// A plugin's usage, in bytes.
    pub fn usage(&self, plugin: &str) -> Result<u64> {
        Ok(read_u64(self.tree.get(usage_key(plugin)).map_err(backend)?))
    }

    /// Everything a user has in every plugin (export).
    pub fn user_entries(&self, user: &ConversationKey) -> Result<Vec<UserEntry>> {
        let mut prefix = vec![1];
        prefix.extend_from_slice(&user.prefix());
        let mut entries = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, value) = item.map_err(backend)?;
            let rest = &key[prefix.len()..];
            let Some((&length, rest)) = rest.split_first() else {
                continue;
            };
            let length = usize::from(length);
            if rest.len() < length {
                continue;
            }
            entries.push(UserEntry {
                plugin: String::from_utf8_lossy(&rest[..length]).into_owned(),
                key: String::from_utf8_lossy(&rest[length..]).into_owned(),
                value: value.to_vec(),
            });
        }
        Ok(entries)
    }

    /// Removes everything a user has in every plugin (erasure); returns how many entries.
    pub fn erase_user(&self, user: &ConversationKey) -> Result<usize> {
        let entries = self.user_entries(user)?;
        for entry in &entries {
            self.delete(&entry.plugin, KvScope::User(user), &entry.key)?;
        }
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_scopes_and_erasure() {
        let kv = PluginKv::temporary().unwrap();
        let ada = ConversationKey::new("web", "ada");
        let bo = ConversationKey::new("web", "bo");
        let ada2 = ConversationKey::new("web", "ada2");
        assert_eq!(
            kv.set("p", KvScope::Plugin, "k", b"12345", 10).unwrap(),
            KvWrite::Done
        );
        assert_eq!(kv.usage("p").unwrap(), 6);
        assert_eq!(
            kv.set("p", KvScope::User(&ada), "k", b"12345", 10).unwrap(),
            KvWrite::QuotaExceeded
        );
        assert_eq!(
            kv.set("p", KvScope::Plugin, "k", b"123456789", 10).unwrap(),
            KvWrite::Done,
            "replacing counts the new size only"
        );
        kv.delete("p", KvScope::Plugin, "k").unwrap();
        assert_eq!(kv.usage("p").unwrap(), 0);
        kv.set("p", KvScope::User(&ada2), "name", b"Other", 100)
            .unwrap();
        kv.set("p", KvScope::User(&ada), "name", b"Ada", 100)
            .unwrap();
        kv.set("q", KvScope::User(&ada), "x", b"1", 100).unwrap();
        kv.set("p", KvScope::User(&bo), "name", b"Bo", 100).unwrap();
        assert_eq!(
            kv.get("p", KvScope::User(&ada), "name").unwrap().as_deref(),
            Some(&b"Ada"[..])
        );
        assert_eq!(kv.get("p", KvScope::Plugin, "name").unwrap(), None);
        assert_eq!(kv.user_entries(&ada).unwrap().len(), 2);
        assert_eq!(kv.erase_user(&ada).unwrap(), 2);
        assert!(kv.user_entries(&ada).unwrap().is_empty());
        assert_eq!(
            kv.get("p", KvScope::User(&bo), "name").unwrap().as_deref(),
            Some(&b"Bo"[..])
        );
        assert_eq!(
            kv.get("p", KvScope::User(&ada2), "name")
                .unwrap()
                .as_deref(),
            Some(&b"Other"[..]),
            "a user whose id extends another's keeps their entries"
        );
        assert_eq!(kv.usage("p").unwrap(), 6 + 9);
    }
}
