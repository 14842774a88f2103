//! Wall-clock time for the runtime (the core never reads a clock: time comes in with events):
//! the engine's one clock, kept in the store crate so that the store and the plugin host read
//! the same time (a test-mode server moves it forward for all of them).

pub use influxify_store::clock::now_ms;
