//! The durable-timer task: it sleeps until the first timer in the store falls due (or until a
//! commit sets an earlier one), then moves due timers into their conversations' inboxes
//! atomically, so a timer fires exactly once, and timers that fell due while the process was
//! down fire at start, many per group.

use std::sync::atomic::Ordering;
use std::time::Duration;

use influxify_core::Event;
use influxify_store::{Applied, Inbound, Timer, Write};

use crate::Runtime;
use crate::clock::now_ms;

/// The most timers fired in one group.
const TIMERS_PER_GROUP: usize = 512;

/// Starts the timer task.
pub(crate) fn spawn(runtime: Runtime) {
    tokio::spawn(async move {
        while !runtime.inner.stopping.load(Ordering::Acquire) {
            match runtime.next_due().await {
                Ok(due) if due.is_empty() => {}
                Ok(due) => {
                    if let Err(err) = runtime.fire(due).await {
                        tracing::error!(error = %err, "cannot fire timers; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot read timers; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
}

impl Runtime {
    /// Makes the timer task look at the timer wheel again now: after the clock moved forward
    /// (a test clock), timers that fell due fire at once instead of after the sleep it began.
    pub fn wake_timers(&self) {
        self.inner.timer_wake.notify_one();
    }

    /// Waits for timers to fall due and returns them; empty when woken to look again.
    async fn next_due(&self) -> Result<Vec<Timer>, crate::RuntimeError> {
        let wake = self.inner.timer_wake.notified();
        let now = now_ms();
        let due = self.inner.store.due_timers(now, TIMERS_PER_GROUP)?;
        if !due.is_empty() {
            return Ok(due);
        }
        match self.inner.store.next_timer()? {
            Some(timer) => {
                let wait = Duration::from_millis(timer.due.saturating_sub(now).max(1));
                tokio::select! {
                    () = tokio::time::sleep(wait) => Ok(Vec::new()),
                    () = wake => Ok(Vec::new()),
                }
            }
            None => {
                wake.await;
                Ok(Vec::new())
            }
        }
    }

    async fn fire(&self, timers: Vec<Timer>) -> Result<(), crate::RuntimeError> {
        let now = now_ms();
        let writes: Vec<Write> = timers
            .iter()
            .map(|timer| Write::Fire {
                timer: timer.clone(),
                event: Inbound::new(
                    timer.conversation.clone(),
                    influxify_store::record::timer_event_id(&timer.conversation, timer.timer),
                    now,
                    Event::Timer { timer: timer.timer },
                ),
            })
            .collect();
        let applied = self.inner.commit.apply(writes).await?;
        for (timer, result) in timers.into_iter().zip(applied) {
            if result == Applied::Fired(true) {
                self.inner.stats.timers.fetch_add(1, Ordering::Relaxed);
                self.schedule(timer.conversation);
            }
        }
        Ok(())
    }
}
