//! The audit log: every admin action and data-subject request, in the store's `audit` tree,
//! oldest first. An erasure's entry names no user: only that an erasure happened, on which
//! channel, by whom, and what it removed.

use std::sync::atomic::{AtomicU64, Ordering};

use influxify_runtime::clock::now_ms;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    /// When, in ms since the Unix epoch.
    pub at: u64,
    /// Who: an admin key's name, or `user` for an end user's in-chat request, or `retention`.
    pub actor: String,
    /// What, e.g. `publish`, `erase`, `secret.set`.
    pub action: String,
    /// What it applied to (a version, a conversation, a secret's name), when that is not
    /// personal data to be forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Details (counts, outcomes); never message text or secret values.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// The audit log.
#[derive(Debug)]
pub struct AuditLog {
    tree: sled::Tree,
    counter: AtomicU64,
}

/// The audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("the audit log failed: {0}")]
pub struct AuditError(String);

impl AuditLog {
    /// The log in `db`'s `audit` tree.
    pub fn open(db: &sled::Db) -> Result<Self, AuditError> {
        Ok(AuditLog {
            tree: db
                .open_tree("audit")
                .map_err(|e| AuditError(e.to_string()))?,
            counter: AtomicU64::new(0),
        })
    }

    /// Appends an entry, durably.
    pub fn record(
        &self,
        actor: &str,
        action: &str,
        target: Option<String>,
        detail: serde_json::Value,
    ) -> Result<(), AuditError> {
        let entry = AuditEntry {
            at: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            target,
            detail,
        };
        let mut key = entry.at.to_be_bytes().to_vec();
        key.extend_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let value = serde_json::to_vec(&entry).map_err(|e| AuditError(e.to_string()))?;
        self.tree
            .insert(key, value)
            .map_err(|e| AuditError(e.to_string()))?;
        self.tree.flush().map_err(|e| AuditError(e.to_string()))?;
        Ok(())
    }

    /// The newest `limit` entries, oldest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let mut entries = Vec::new();
        for item in self.tree.iter().rev().take(limit) {
            let (_, value) = item.map_err(|e| AuditError(e.to_string()))?;
            if let Ok(entry) = serde_json::from_slice(&value) {
                entries.push(entry);
            }
        }
        entries.reverse();
        Ok(entries)
    }

    /// The entries whose target is `target`.
    pub fn about(&self, target: &str) -> Result<Vec<AuditEntry>, AuditError> {
        let mut entries = Vec::new();
        for item in self.tree.iter() {
            let (_, value) = item.map_err(|e| AuditError(e.to_string()))?;
            if let Ok(entry) = serde_json::from_slice::<AuditEntry>(&value)
                && entry.target.as_deref() == Some(target)
            {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Removes the entries that name `target` (an erased user's), keeping the others.
    pub fn forget(&self, target: &str) -> Result<usize, AuditError> {
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, value) = item.map_err(|e| AuditError(e.to_string()))?;
            if serde_json::from_slice::<AuditEntry>(&value)
                .is_ok_and(|e| e.target.as_deref() == Some(target))
            {
                self.tree
                    .remove(key)
                    .map_err(|e| AuditError(e.to_string()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes entries older than `before` (ms since the Unix epoch); how many.
    pub fn sweep(&self, before: u64) -> Result<usize, AuditError> {
        let mut removed = 0;
        for item in self.tree.range(..before.to_be_bytes().to_vec()) {
            let (key, _) = item.map_err(|e| AuditError(e.to_string()))?;
            self.tree
                .remove(key)
                .map_err(|e| AuditError(e.to_string()))?;
            removed += 1;
        }
        Ok(removed)
    }
}
