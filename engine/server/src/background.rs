//! The threads that run the effects' plugin calls, at a lower scheduling priority than the
//! threads that acknowledge webhooks: under load, an acknowledgement never waits for the CPU
//! behind a reply or a plugin call. Idle CPU is still theirs; only contention is decided.

use std::sync::Once;

/// The nice value of background threads: CFS gives a nice-10 thread about a tenth of the CPU
/// share of a nice-0 thread when both want it.
pub const BACKGROUND_NICE: i32 = 10;

/// A pool of background threads for blocking work (plugin calls).
#[derive(Debug)]
pub struct Background {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Background {
    /// At most `threads` background threads at once, each lowered to `nice` when it starts
    /// (where lowering is refused, as in some containers, they run at normal priority and a
    /// warning says so).
    pub fn new(threads: usize, nice: i32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(threads.max(1))
            .thread_name("influxify-background")
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Background {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `work` on a background thread (an error if it panicked or the pool is shut down).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        self.handle.spawn_blocking(work).await
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A runtime may not be dropped from async code; its threads end on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Raises the calling thread's nice value (on Linux the value belongs to the thread).
fn lower_priority(nice: i32) {
    static REFUSED: Once = Once::new();
    // A process started with a higher nice value keeps it (lowering it needs privileges).
    if rustix::process::getpriority_process(None).is_ok_and(|current| current >= nice) {
        return;
    }
    if let Err(err) = rustix::process::setpriority_process(None, nice) {
        REFUSED.call_once(|| {
            tracing::warn!(error = %err, "background threads run at normal priority: the nice value was refused");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_threads_run_at_the_lower_priority() {
        let background = Background::new(2, BACKGROUND_NICE).unwrap();
        let ours = rustix::process::getpriority_process(None).unwrap();
        let theirs = background
            .run(|| rustix::process::getpriority_process(None).unwrap())
            .await
            .unwrap();
        assert_eq!(theirs, BACKGROUND_NICE.max(ours));
        assert_ne!(
            std::thread::current().name(),
            Some("influxify-background"),
            "the test thread itself is not lowered"
        );
        let name = background
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("influxify-background"));
    }
}
