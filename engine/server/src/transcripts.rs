//! Transcripts, for bots that opt in (`[privacy] transcript_ttl`): the text of each message a
//! user sent and each message the bot sent, kept in the store's `transcripts` tree for the
//! configured period, exported and erased with the rest of the user's data. Without the setting
//! nothing here is written: message text is not kept beyond the turn that processes it.

use std::sync::atomic::{AtomicU64, Ordering};

use influxify_runtime::clock::now_ms;
use influxify_store::ConversationKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The end user.
    User,
    /// The bot (or an operator speaking through it).
    Bot,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Line {
    /// When, in ms since the Unix epoch.
    pub at: u64,
    /// Who.
    pub from: Speaker,
    /// What was said.
    pub text: String,
}

/// The transcripts tree could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the transcripts failed: {0}")]
pub struct TranscriptError(String);

fn failed(err: impl std::fmt::Display) -> TranscriptError {
    TranscriptError(err.to_string())
}

/// Transcripts kept for `ttl_ms`.
#[derive(Debug)]
pub struct Transcripts {
    tree: sled::Tree,
    ttl_ms: u64,
    counter: AtomicU64,
}

impl Transcripts {
    /// The transcripts in `db`'s `transcripts` tree, kept `ttl_ms`.
    pub fn open(db: &sled::Db, ttl_ms: u64) -> Result<Self, TranscriptError> {
        Ok(Transcripts {
            tree: db.open_tree("transcripts").map_err(failed)?,
            ttl_ms,
            counter: AtomicU64::new(0),
        })
    }

    /// How long lines are kept, in ms.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Appends a line to `key`'s transcript (made durable by the store's next flush).
    pub fn record(
        &self,
        key: &ConversationKey,
        from: Speaker,
        text: &str,
    ) -> Result<(), TranscriptError> {
        let line = Line {
            at: now_ms(),
            from,
            text: text.to_string(),
        };
        let mut id = key.prefix();
        id.extend_from_slice(&line.at.to_be_bytes());
        id.extend_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let value = serde_json::to_vec(&line).map_err(failed)?;
        self.tree.insert(id, value).map_err(failed)?;
        Ok(())
    }

    /// `key`'s transcript, oldest first.
    pub fn of(&self, key: &ConversationKey) -> Result<Vec<Line>, TranscriptError> {
        let mut lines = Vec::new();
        for item in self.tree.scan_prefix(key.prefix()) {
            let (_, value) = item.map_err(failed)?;
            if let Ok(line) = serde_json::from_slice(&value) {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// Removes `key`'s transcript, durably; how many lines.
    pub fn erase(&self, key: &ConversationKey) -> Result<usize, TranscriptError> {
        let mut removed = 0;
        for item in self.tree.scan_prefix(key.prefix()) {
            let (id, _) = item.map_err(failed)?;
            self.tree.remove(id).map_err(failed)?;
            removed += 1;
        }
        self.tree.flush().map_err(failed)?;
        Ok(removed)
    }

    /// Removes the lines older than the period; how many.
    pub fn sweep(&self) -> Result<usize, TranscriptError> {
        let before = now_ms().saturating_sub(self.ttl_ms);
        let mut removed = 0;
        for item in self.tree.iter() {
            let (id, value) = item.map_err(failed)?;
            let old = serde_json::from_slice::<Line>(&value).map_or(true, |l| l.at < before);
            if old {
                self.tree.remove(id).map_err(failed)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
