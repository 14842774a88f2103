//! Signatures with secrets the plugin never holds (a channel checking a webhook's signature,
//! an action signing a request), plus hex helpers for signatures sent as text.
//!
//! ```no_run
//! # use influxify_plugin_sdk::{crypto, Error};
//! # fn f(body: &[u8], header: &str) -> Result<bool, Error> {
//! // Messenger's `X-Hub-Signature-256: sha256=<hex>`.
//! let Some(signature) = header.strip_prefix("sha256=").and_then(crypto::from_hex) else {
//!     return Ok(false);
//! };
//! crypto::verify_hmac_sha256("app_secret", body, &signature)
//! # }
//! ```

use crate::Error;
use crate::bindings::influxify::plugin::crypto as wit;

/// The host's own crypto error, which converts into [`Error`].
pub use wit::CryptoError;

/// Whether `signature` (raw bytes) is HMAC-SHA256 of `message` keyed by secret `secret`,
/// compared in constant time by the host. A secret that is missing or not granted is
/// [`Error::Misconfigured`].
pub fn verify_hmac_sha256(secret: &str, message: &[u8], signature: &[u8]) -> Result<bool, Error> {
    Ok(wit::verify_hmac_sha256(secret, message, signature)?)
}

/// HMAC-SHA256 of `message` keyed by secret `secret` (raw bytes; see [`to_hex`]).
pub fn hmac_sha256(secret: &str, message: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(wit::hmac_sha256(secret, message)?)
}

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// The bytes of hex text (either case); `None` if it is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(from_hex("00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(""), Some(Vec::new()));
    }
}
