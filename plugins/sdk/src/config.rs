//! Settings that are not secret (a base URL, a model name), from the `[config]` table of the
//! plugin's manifest, which the engine's configuration may override.

use std::str::FromStr;

use crate::Error;
use crate::bindings::influxify::plugin::config as wit;

/// The setting `key`, if it is set.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// The setting `key`, or `default` when it is not set.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The setting `key`; [`Error::Misconfigured`] when it is not set.
pub fn require(key: &str) -> Result<String, Error> {
    get(key).ok_or_else(|| Error::misconfigured(format!("the setting `{key}` is not set")))
}

/// The setting `key` parsed as `T` (a number, a bool ...), or `default` when it is not set;
/// [`Error::Misconfigured`] when it does not parse.
pub fn parse_or<T: FromStr>(key: &str, default: T) -> Result<T, Error> {
    match get(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| {
            Error::misconfigured(format!("the setting `{key}` has an invalid value `{text}`"))
        }),
    }
}
