//! Key encodings. Every conversation key starts with its partition, so that whole key ranges
//! can later move between machines; integers are big-endian so that keys sort numerically.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The fixed number of partitions. Never change it for an existing store.
pub const PARTITIONS: u16 = 256;

/// Which conversation: a channel instance (e.g. `messenger:PAGE_ID`) and the user's id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConversationKey {
    /// The channel instance.
    pub channel: String,
    /// The user's id on that channel.
    pub user: String,
}

impl ConversationKey {
    /// The key of `user` on `channel`.
    pub fn new(channel: impl Into<String>, user: impl Into<String>) -> Self {
        ConversationKey {
            channel: channel.into(),
            user: user.into(),
        }
    }

    /// hash(channel, user) mod [`PARTITIONS`], with a hash that never changes (FNV-1a).
    pub fn partition(&self) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.channel.bytes().chain([0u8]).chain(self.user.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        u16::try_from(hash % u64::from(PARTITIONS)).unwrap_or(0)
    }

    /// `[partition u16][channel length u16][channel][user]`.
    pub fn encode(&self) -> Vec<u8> {
        let channel = self.channel.as_bytes();
        let mut key = Vec::with_capacity(4 + channel.len() + self.user.len());
        key.extend_from_slice(&self.partition().to_be_bytes());
        key.extend_from_slice(
            &u16::try_from(channel.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        key.extend_from_slice(channel);
        key.extend_from_slice(self.user.as_bytes());
        key
    }

    /// The inverse of [`ConversationKey::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let length = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
        let channel = bytes.get(4..4 + length)?;
        let user = bytes.get(4 + length..)?;
        Some(ConversationKey {
            channel: String::from_utf8(channel.to_vec()).ok()?,
            user: String::from_utf8(user.to_vec()).ok()?,
        })
    }

    /// The encoded key preceded by its length, for use as a prefix of composite keys.
    pub fn prefix(&self) -> Vec<u8> {
        let encoded = self.encode();
        let mut key = Vec::with_capacity(2 + encoded.len());
        key.extend_from_slice(
            &u16::try_from(encoded.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        key.extend_from_slice(&encoded);
        key
    }

    /// Reads a key written by [`ConversationKey::prefix`] and returns it with the rest.
    pub fn split_prefix(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let length = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
        let key = Self::decode(bytes.get(2..2 + length)?)?;
        Some((key, bytes.get(2 + length..)?))
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.user)
    }
}

/// `prefix` followed by `n` in big-endian.
pub fn with_u64(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Reads a big-endian u64 at `at`.
pub fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a big-endian u32 at `at`.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_partitions_are_stable() {
        let key = ConversationKey::new("messenger:123", "psid-42");
        assert_eq!(ConversationKey::decode(&key.encode()), Some(key.clone()));
        let prefixed = with_u64(&key.prefix(), 7);
        let (back, rest) = ConversationKey::split_prefix(&prefixed).unwrap();
        assert_eq!(back, key);
        assert_eq!(read_u64(rest, 0), Some(7));
        // The hash is part of the on-disk format: it must never change.
        assert_eq!(
            key.partition(),
            ConversationKey::new("messenger:123", "psid-42").partition()
        );
        let spread: std::collections::HashSet<u16> = (0..2000)
            .map(|i| ConversationKey::new("web", format!("u{i}")).partition())
            .collect();
        assert!(spread.len() > 200, "{}", spread.len());
    }
}
