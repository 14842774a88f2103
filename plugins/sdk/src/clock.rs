//! Time, from the host (WASI clocks are not granted to plugins).

use crate::bindings::influxify::plugin::clock as wit;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    wit::now_ms()
}
