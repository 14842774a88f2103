//! The durable-timer task: it sleeps until the first timer in the store falls due (or until a
//! commit sets an earlier one), then moves it into its conversation's inbox atomically, so a
//! timer fires exactly once, and timers that fell due while the process was down fire at start.

use std::sync::atomic::Ordering;
use std::time::Duration;

use influxify_core::Event;
use influxify_store::{Applied, Inbound, Timer, Write};

use crate::Runtime;
use crate::clock::now_ms;

/// Starts the timer task.
pub(crate) fn spawn(runtime: Runtime) {
    tokio::spawn(async move {
        loop {
            match runtime.next_due().await {
                Ok(Some(timer)) => {
                    if let Err(err) = runtime.fire(&timer).await {
                        tracing::error!(error = %err, "cannot fire a timer; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %err, "cannot read timers; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
}

impl Runtime {
    /// Waits for the next due timer; `None` when woken to look again.
    async fn next_due(&self) -> Result<Option<Timer>, crate::RuntimeError> {
        let wake = self.inner.timer_wake.notified();
        match self.inner.store.next_timer()? {
            Some(timer) => {
                let now = now_ms();
                if timer.due <= now {
                    return Ok(Some(timer));
                }
                let wait = Duration::from_millis(timer.due - now);
                tokio::select! {
                    () = tokio::time::sleep(wait) => Ok(None),
                    () = wake => Ok(None),
                }
            }
            None => {
                wake.await;
                Ok(None)
            }
        }
    }

    async fn fire(&self, timer: &Timer) -> Result<(), crate::RuntimeError> {
        let inbound = Inbound::new(
            timer.conversation.clone(),
            format!("timer:{}:{}", timer.conversation.user, timer.timer),
            now_ms(),
            Event::Timer { timer: timer.timer },
        );
        let write = Write::Fire {
            timer: timer.clone(),
            event: inbound,
        };
        let fired = matches!(
            self.inner.commit.apply(vec![write]).await?.pop(),
            Some(Applied::Fired(true))
        );
        if fired {
            self.inner.stats.timers.fetch_add(1, Ordering::Relaxed);
            self.schedule(timer.conversation.clone());
        }
        Ok(())
    }
}
