//! Data-subject operations on the runtime: erase everything stored for a conversation, and
//! restrict (or resume) its processing. An erasure takes the conversation's single writer and
//! waits for its plugin calls in flight, so that nothing writes back what was just erased; a
//! restriction holds the writer back (timers, plugin results and effects wait) until lifted.

use std::time::Duration;

use influxify_store::{Applied, ConversationKey, Erasure, Write};

use crate::{Runtime, RuntimeError};

/// How long an erasure waits for a busy conversation's writer.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// Erases the conversation's record, place, inbox, outbox and timers (and its restriction),
    /// durably. Events that arrive meanwhile start a new conversation afterwards.
    /// The restriction, if any, goes with it.
    pub async fn erase(&self, key: &ConversationKey) -> Result<Erasure, RuntimeError> {
        self.with_writer(key, self.erase_now(key)).await
    }

    /// Erases the conversation if it is still idle since before `before` (ms since the Unix
    /// epoch) once its writer is held, and not restricted: the retention sweeper's erasure,
    /// which must not catch a conversation that just woke up.
    pub async fn erase_if_idle(
        &self,
        key: &ConversationKey,
        before: u64,
    ) -> Result<Option<Erasure>, RuntimeError> {
        self.with_writer(key, async {
            let idle = self
                .inner
                .store
                .conversation(key)?
                .is_some_and(|record| record.updated_at < before);
            if !idle || self.is_restricted(key) {
                return Ok(None);
            }
            self.erase_now(key).await.map(Some)
        })
        .await
    }

    async fn erase_now(&self, key: &ConversationKey) -> Result<Erasure, RuntimeError> {
        let write = Write::Erase {
            conversation: key.clone(),
        };
        let erasure = match self.inner.commit.apply(vec![write]).await?.pop() {
            Some(Applied::Erased(erasure)) => erasure,
            other => {
                return Err(RuntimeError::Refused(format!(
                    "the store answered {other:?} to an erasure"
                )));
            }
        };
        if let Ok(mut set) = self.inner.restricted.lock() {
            set.remove(key);
        }
        Ok(erasure)
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
        if !restricted {
            // What waited (timers, plugin results, effects) goes on now.
            self.schedule(key.clone());
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

    /// Runs `work` while holding the conversation's writer (waiting for a running one, and for
    /// its plugin calls in flight, to finish), then hands the conversation back, scheduling its
    /// writer if events arrived. The claim is released even if `work` is dropped half-way.
    async fn with_writer<T>(
        &self,
        key: &ConversationKey,
        work: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = std::time::Instant::now();
        loop {
            let calls = self
                .inner
                .in_flight
                .lock()
                .map(|calls| calls.iter().any(|(k, _, _)| k == key))
                .unwrap_or(true);
            let claimed = !calls && {
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
        let _claim = Claim { runtime: self, key };
        work.await
    }
}

/// A held writer claim: released on drop, scheduling the writer if events arrived meanwhile.
struct Claim<'a> {
    runtime: &'a Runtime,
    key: &'a ConversationKey,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let inner = &self.runtime.inner;
        let dirty = inner
            .running
            .lock()
            .map(|mut running| {
                let dirty = running.remove(self.key).unwrap_or(false);
                if running.is_empty() {
                    inner.idle.notify_waiters();
                }
                dirty
            })
            .unwrap_or(false);
        if dirty {
            self.runtime.schedule(self.key.clone());
        }
    }
}
