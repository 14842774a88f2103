//! A short-lived cache of `values.get` answers in the plugin-scoped kv, so that a busy bot
//! stays under Google's read quota (60 reads per minute per user): the answer for a
//! (spreadsheet, range) is reused for `cache_seconds` (setting; default 30, 0 turns the cache
//! off, at most 3600).
//!
//! Entries live in a fixed number of slots (`sheets-cache/<n>`, by a hash of the spreadsheet and
//! the range), each holding the spreadsheet and range it is for, so the cache never outgrows
//! its slots whatever ranges flows ask for; two ranges sharing a slot take turns. The cache is
//! an optimisation: a kv that fails or is full is logged and the look-up goes on.

use influxify_plugin_sdk::kv::Scope;
use influxify_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Sheet;

/// Seconds an answer is reused unless the setting `cache_seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 30;
/// The longest `cache_seconds`: the cache is for bursts, not for keeping copies.
const MAX_SECONDS: u64 = 3600;
/// How many answers are kept (each at most 1 MiB, the host's largest kv value).
pub const SLOTS: u64 = 32;

/// An answer, as kept.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The spreadsheet and range it answers.
    spreadsheet: String,
    range: String,
    /// When it was read, in ms since the Unix epoch.
    at: u64,
    /// The range as the API answered it.
    answered: String,
    values: Vec<Vec<String>>,
}

/// `cache_seconds`, in ms (0: no cache).
fn ttl_ms() -> Result<u64, Error> {
    let seconds = config::parse_or("cache_seconds", DEFAULT_SECONDS)?;
    if seconds > MAX_SECONDS {
        return Err(Error::misconfigured(format!(
            "the setting `cache_seconds` is {seconds}; it must be between 0 (no cache) and {MAX_SECONDS}"
        )));
    }
    Ok(seconds * 1000)
}

/// The answer for `range` of `spreadsheet`: from the cache while it is fresh, else from
/// `read`, then kept.
pub fn through(
    spreadsheet: &str,
    range: &str,
    read: impl FnOnce() -> Result<Sheet, Error>,
) -> Result<Sheet, Error> {
    let ttl = ttl_ms()?;
    if ttl == 0 {
        return read();
    }
    let key = slot(spreadsheet, range);
    let now = clock::now_ms();
    match kv::get(Scope::Plugin, &key) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry)
                if entry.spreadsheet == spreadsheet
                    && entry.range == range
                    && now.checked_sub(entry.at).is_some_and(|age| age < ttl) =>
            {
                return Ok(Sheet {
                    range: entry.answered,
                    values: entry.values,
                });
            }
            Ok(_) => {}
            Err(err) => warn!("the cache entry {key} does not parse ({err}); reading again"),
        },
        Ok(None) => {}
        Err(err) => warn!("the look-up cache is unavailable: {err}"),
    }
    let sheet = read()?;
    let entry = Entry {
        spreadsheet: spreadsheet.to_string(),
        range: range.to_string(),
        at: clock::now_ms(),
        answered: sheet.range,
        values: sheet.values,
    };
    if let Err(err) = kv::set_json(Scope::Plugin, &key, &entry) {
        warn!("the answer for `{range}` is not cached: {err}");
    }
    Ok(Sheet {
        range: entry.answered,
        values: entry.values,
    })
}

/// The slot of (spreadsheet, range): FNV-1a of both, modulo [`SLOTS`].
fn slot(spreadsheet: &str, range: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in spreadsheet
        .bytes()
        .chain(std::iter::once(0))
        .chain(range.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("sheets-cache/{}", hash % SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_bounded() {
        assert_eq!(slot("1Abc", "Orders!A:E"), slot("1Abc", "Orders!A:E"));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let key = slot("1Abc", &format!("Tab{i}!A:E"));
            assert!(key.len() <= "sheets-cache/31".len(), "{key}");
            seen.insert(key);
        }
        assert_eq!(seen.len() as u64, SLOTS);
    }
}
