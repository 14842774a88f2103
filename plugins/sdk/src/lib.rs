//! The SDK for Influxify plugins: WebAssembly components, built for `wasm32-wasip2`, that a
//! conversational flow calls through its `plugin` nodes (action plugins) or that connect the
//! engine to a messaging channel (channel plugins).
//!
//! The contract with the engine is the WIT package `influxify:plugin@0.1.0`
//! (`plugins/wit/plugin.wit`). This crate generates its bindings and wraps them so that a
//! plugin is a short Rust file:
//!
//! - an **action** is a type implementing [`Action`]: a name, a description, typed input and
//!   output (their JSON Schemas are generated with [`schemars`]) and a `run` function;
//! - [`plugin!`] exports a list of actions as the plugin's `action` interface: it lists them
//!   with their schemas, parses each call's JSON input with [`serde`] (a mismatch is reported as
//!   [`Error::InvalidInput`] with the path of the bad field), dispatches by name and serializes
//!   the output;
//! - the host's capabilities have small helpers: [`http`], [`kv`], [`log`], [`config`],
//!   [`clock`], [`secrets`] and [`crypto`]. A plugin reaches the world only through them, and
//!   only as far as its manifest (`plugin.toml`) grants.
//!
//! Channel plugins implement [`channel::Channel`] and export it with [`channel!`]; see the
//! [`channel`](mod@channel) module.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "greeter"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! influxify-plugin-sdk = { path = "../plugins/sdk" }
//! serde = { version = "1", features = ["derive"] }
//! schemars = "1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use influxify_plugin_sdk::prelude::*;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! /// Greets someone, politely or not.
//! struct Greet;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Input {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Output {
//!     /// The greeting.
//!     text: String,
//! }
//!
//! impl Action for Greet {
//!     const NAME: &'static str = "greet";
//!     const DESCRIPTION: &'static str = "Greets someone by name";
//!     const OUTCOMES: &'static [&'static str] = &["nameless"];
//!     type Input = Input;
//!     type Output = Output;
//!
//!     fn run(input: Input, ctx: &Context) -> Result<Outcome<Output>, Error> {
//!         info!("greeting for {}", ctx.conversation_id());
//!         let greeting = config::get("greeting").unwrap_or_else(|| "Hello".to_string());
//!         let name = input.name.trim();
//!         if name.is_empty() {
//!             let text = format!("{greeting}, whoever you are!");
//!             return Ok(Outcome::named("nameless", Output { text }));
//!         }
//!         Ok(Outcome::ok(Output { text: format!("{greeting}, {name}!") }))
//!     }
//! }
//!
//! // Declares `struct Greeter` and exports it as the component's `action` interface.
//! influxify_plugin_sdk::plugin!(Greeter: [Greet]);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; the component is
//! `target/wasm32-wasip2/release/greeter.wasm`. Put it in a plugins directory next to a
//! `plugin.toml` that names it (see `plugins/README.md`), and the flows can call `greeter.greet`.
//!
//! # Errors
//!
//! Actions fail with [`Error`], whose kinds are the WIT `error` variants: the engine retries
//! [`Error::Retryable`] (per the flow node's retry policy) and never the others. The helpers
//! map host failures to sensible kinds (an HTTP timeout is retryable, a request the manifest
//! does not allow is [`Error::Misconfigured`]); `?` converts them.

#![warn(missing_docs)]

mod action;
pub mod channel;
pub mod clock;
pub mod config;
mod context;
pub mod crypto;
mod error;
pub mod http;
pub mod kv;
pub mod log;
pub mod secrets;

pub use action::{Action, NoInput, Outcome};
pub use context::Context;
pub use error::{Error, Result};

/// Re-exported so that plugins use the same versions as the SDK (the derive macros still need
/// `serde` and `schemars` among the plugin's own dependencies).
pub use schemars;
/// Re-exported for plugins' convenience (`serde_json::Value`, `json!`).
pub use serde;
/// Re-exported for plugins' convenience.
pub use serde_json;

/// What most plugins need, in one `use influxify_plugin_sdk::prelude::*;`: the [`Action`]
/// trait and its types, the helper modules, and the logging macros.
pub mod prelude {
    pub use crate::{Action, Context, Error, NoInput, Outcome};
    pub use crate::{clock, config, crypto, http, kv, secrets};
    pub use crate::{debug, error, info, trace, warn};
}

/// The bindings `wit-bindgen` generates for the `action-plugin` world: the host's imports
/// (`influxify::plugin::*`) and the `action` export (`exports::influxify::plugin::action`).
///
/// Plugins rarely need them: [`plugin!`] implements the export and the helper modules wrap the
/// imports. They are public for what the helpers do not cover.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "action-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_action",
        default_bindings_module: "influxify_plugin_sdk::bindings",
    });
}

/// The bindings for the `channel-plugin` world. Its imports are the same as the action world's,
/// so they are not generated again: [`bindings`] has them. Only the `channel` export is here
/// (`exports::influxify::plugin::channel`); [`channel!`] implements it.
#[allow(missing_docs)]
pub mod channel_bindings {
    wit_bindgen::generate!({
        world: "channel-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_channel",
        default_bindings_module: "influxify_plugin_sdk::channel_bindings",
        with: {
            "influxify:plugin/types@0.1.0": crate::bindings::influxify::plugin::types,
            "influxify:plugin/http@0.1.0": crate::bindings::influxify::plugin::http,
            "influxify:plugin/secrets@0.1.0": crate::bindings::influxify::plugin::secrets,
            "influxify:plugin/kv@0.1.0": crate::bindings::influxify::plugin::kv,
            "influxify:plugin/log@0.1.0": crate::bindings::influxify::plugin::log,
            "influxify:plugin/clock@0.1.0": crate::bindings::influxify::plugin::clock,
            "influxify:plugin/crypto@0.1.0": crate::bindings::influxify::plugin::crypto,
            "influxify:plugin/config@0.1.0": crate::bindings::influxify::plugin::config,
        },
    });
}

/// What the macros expand to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::action::{check_actions, describe, invoke, unknown_action};
    pub use crate::bindings::exports::influxify::plugin::action::{
        ActionInfo, ActionResult, Guest as ActionGuest,
    };
    pub use crate::bindings::influxify::plugin::types::{CallContext, Error as WitError};
    pub use std::string::String;
    pub use std::vec::Vec;
}
