//! The engine's one wall clock: milliseconds since the Unix epoch, plus an offset that stays 0
//! in production. The store (dedup markers, restrictions), the runtime (turns, timers, the
//! outbox) and the plugin host (deadlines, the plugins' `clock` import) all read [`now_ms`], so
//! that a test-mode server can move time forward for all of them at once ([`TestClock`]):
//! timers fall due, and Messenger's 24-hour window sees the same time as the flows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How far the clock is ahead of the wall clock, in milliseconds (only a [`TestClock`] moves it).
static OFFSET_MS: AtomicU64 = AtomicU64::new(0);
/// Whether a [`TestClock`] was handed out in this process.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The wall clock, without any test offset: milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The engine's time: milliseconds since the Unix epoch (the wall clock, plus what a test clock
/// moved it forward by).
pub fn now_ms() -> u64 {
    wall_ms().saturating_add(OFFSET_MS.load(Ordering::Acquire))
}

/// The right to move the engine's clock forward. At most one exists per process, and only a
/// server started in test mode takes it: production never moves time.
#[derive(Debug)]
pub struct TestClock {
    _private: (),
}

impl TestClock {
    /// Takes control of the clock; `None` when it was taken already.
    pub fn take() -> Option<TestClock> {
        (!TAKEN.swap(true, Ordering::AcqRel)).then_some(TestClock { _private: () })
    }

    /// Moves time forward by `ms`; returns the new offset. Time never goes back.
    pub fn advance(&self, ms: u64) -> u64 {
        let before = OFFSET_MS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |offset| {
                Some(offset.saturating_add(ms))
            })
            .unwrap_or_else(|offset| offset);
        before.saturating_add(ms)
    }

    /// How far the clock is ahead of the wall clock, in milliseconds.
    pub fn offset_ms(&self) -> u64 {
        OFFSET_MS.load(Ordering::Acquire)
    }
}
