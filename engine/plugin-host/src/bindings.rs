//! The WIT contract (`plugins/wit`) as Rust types, generated once for each world; the channel
//! world reuses the action world's imports, so every host capability is implemented once.

/// The `action-plugin` world.
pub mod action {
    wasmtime::component::bindgen!({
        world: "action-plugin",
        path: "../../plugins/wit",
    });
}

/// The `channel-plugin` world.
pub mod channel {
    wasmtime::component::bindgen!({
        world: "channel-plugin",
        path: "../../plugins/wit",
        with: {
            "influxify:plugin/types": super::action::influxify::plugin::types,
            "influxify:plugin/http": super::action::influxify::plugin::http,
            "influxify:plugin/secrets": super::action::influxify::plugin::secrets,
            "influxify:plugin/kv": super::action::influxify::plugin::kv,
            "influxify:plugin/log": super::action::influxify::plugin::log,
            "influxify:plugin/clock": super::action::influxify::plugin::clock,
            "influxify:plugin/crypto": super::action::influxify::plugin::crypto,
            "influxify:plugin/config": super::action::influxify::plugin::config,
        },
    });
}

pub use action::influxify::plugin::{clock, config, crypto, http, kv, log, secrets, types};
