//! Data-subject operations on the runtime: erase everything stored for a conversation, and
//! restrict (or resume) its processing. Both take the conversation's single writer first, so
//! that no turn in flight writes back what was just erased.

use std::time::Duration;

use influxify_store::{Applied, ConversationKey, Erasure, Write};

use crate::{Runtime, RuntimeError};

/// How long an erasure waits for a busy conversation's writer.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// Erases the conversation's record, place, inbox, outbox and timers (and its restriction),
    /// durably. Events that arrive meanwhile start a new conversation afterwards.
    pub async fn erase(&self, key: &ConversationKey) -> Result<Erasure, RuntimeError> {
        self.with_writer(key, async {
            let write = Write::Erase {
                conversation: key.clone(),
            };
            match self.inner.commit.apply(vec![write]).await?.pop() {
                Some(Applied::Erased(erasure)) => Ok(erasure),
                other => Err(RuntimeError::Refused(format!(
                    "the store answered {other:?} to an erasure"
                ))),
            }
        })
        .await
    }

    /// Restricts processing of the conversation (its events are acknowledged and dropped,
    /// never stored) or lifts the restriction, durably.
    pub async fn restrict(
        &self,
        key: &ConversationKey,
        restricted: bool,
    ) -> Result<(), RuntimeError> {
        let write = Write::Restrict {
            conversation: key.clone(),
            restricted,
        };
        self.inner.commit.apply(vec![write]).await?;
        if let Ok(mut set) = self.inner.restricted.lock() {
            if restricted {
                set.insert(key.clone());
            } else {
                set.remove(key);
            }
        }
        Ok(())
    }

    /// Whether the conversation's processing is restricted.
    pub fn is_restricted(&self, key: &ConversationKey) -> bool {
        self.inner
            .restricted
            .lock()
            .map(|set| set.contains(key))
            .unwrap_or(false)
    }

    /// Runs `work` while holding the conversation's writer (waiting for a running one to
    /// finish), then hands the conversation back, scheduling its writer if events arrived.
    async fn with_writer<T>(
        &self,
        key: &ConversationKey,
        work: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = std::time::Instant::now();
        loop {
            let claimed = {
                let mut running = self
                    .inner
                    .running
                    .lock()
                    .map_err(|_| RuntimeError::Refused("a writer panicked".into()))?;
                if running.contains_key(key) {
                    false
                } else {
                    running.insert(key.clone(), false);
                    true
                }
            };
            if claimed {
                break;
            }
            if started.elapsed() > CLAIM_TIMEOUT {
                return Err(RuntimeError::Refused(format!(
                    "conversation {key} stayed busy for {}s; try again",
                    CLAIM_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let result = work.await;
        let dirty = self
            .inner
            .running
            .lock()
            .map(|mut running| {
                let dirty = running.remove(key).unwrap_or(false);
                if running.is_empty() {
                    self.inner.idle.notify_waiters();
                }
                dirty
            })
            .unwrap_or(false);
        if dirty {
            self.schedule(key.clone());
        }
        result
    }
}
