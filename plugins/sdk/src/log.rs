//! Logs into the engine's tracing, tagged with the plugin's name: the macros [`trace!`],
//! [`debug!`], [`info!`], [`warn!`] and [`error!`] take `format!` arguments. Keep personal data
//! out of logs.
//!
//! ```no_run
//! use influxify_plugin_sdk::log::{info, warn};
//!
//! info!("fetched {} rates", 31);
//! warn!("cache unavailable, going on without it");
//! ```
//!
//! [`trace!`]: crate::trace
//! [`debug!`]: crate::debug
//! [`info!`]: crate::info
//! [`warn!`]: crate::warn
//! [`error!`]: crate::error

use crate::bindings::influxify::plugin::log as wit;

pub use crate::{debug, error, info, trace, warn};
/// How much a message matters: `Trace`, `Debug`, `Info`, `Warn`, `Error`.
pub use wit::Level;

/// Logs `message` at `level` (what the macros call).
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

/// Logs at [`Level::Trace`], with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Debug`], with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Info`], with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Warn`], with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Error`], with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}
