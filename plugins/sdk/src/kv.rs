//! A small key-value store, run by the host: plugin-scoped entries are shared by every
//! conversation the plugin serves, user-scoped ones belong to the current end user (and are
//! erased with the user's data). The manifest's `kv_bytes` is the quota (0: no kv).
//!
//! ```no_run
//! # use influxify_plugin_sdk::{kv, Error};
//! # fn f() -> Result<(), Error> {
//! use influxify_plugin_sdk::kv::Scope;
//!
//! let visits: u32 = kv::get_json(Scope::User, "visits")?.unwrap_or(0);
//! kv::set_json(Scope::User, "visits", &(visits + 1))?;
//! # Ok(()) }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::influxify::plugin::kv as wit;

/// The host's own kv error, which converts into [`Error`].
pub use wit::KvError;
/// Whose entry: `Scope::Plugin` (shared by every conversation) or `Scope::User` (the current
/// end user's own).
pub use wit::Scope;

/// The value stored under `key`, if any.
pub fn get(scope: Scope, key: &str) -> Result<Option<Vec<u8>>, Error> {
    wit::get(scope, key).map_err(|e| Error::from(e).context(format_args!("kv get `{key}`")))
}

/// Stores `value` under `key`, replacing any previous value. Fails with [`Error::Permanent`]
/// when the quota would be exceeded.
pub fn set(scope: Scope, key: &str, value: &[u8]) -> Result<(), Error> {
    wit::set(scope, key, value).map_err(|e| Error::from(e).context(format_args!("kv set `{key}`")))
}

/// Removes `key` (nothing happens if it is absent).
pub fn delete(scope: Scope, key: &str) -> Result<(), Error> {
    wit::delete(scope, key).map_err(|e| Error::from(e).context(format_args!("kv delete `{key}`")))
}

/// The value stored under `key` as text, if any (invalid UTF-8 is [`Error::Permanent`]).
pub fn get_string(scope: Scope, key: &str) -> Result<Option<String>, Error> {
    get(scope, key)?
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| Error::permanent(format!("kv entry `{key}` is not UTF-8 text")))
        })
        .transpose()
}

/// The value stored under `key`, parsed from JSON, if any (an entry that does not parse as `T`
/// is [`Error::Permanent`]).
pub fn get_json<T: DeserializeOwned>(scope: Scope, key: &str) -> Result<Option<T>, Error> {
    get(scope, key)?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::permanent(format!("kv entry `{key}` does not parse: {e}")))
        })
        .transpose()
}

/// Stores `value` under `key` as JSON.
pub fn set_json<T: Serialize + ?Sized>(scope: Scope, key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::permanent(format!("kv entry `{key}` cannot be serialized: {e}")))?;
    set(scope, key, &bytes)
}
