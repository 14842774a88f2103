//! Stable ids for events Meta gives none (postbacks from before API v11, referrals): 128-bit
//! FNV-1a over length-prefixed fields, so that a re-delivered event gets the same id and two
//! events that differ in any field get different ones.

/// FNV-1a, 128 bits.
const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// `{kind}-{32 hex digits}`, from `fields` (each length-prefixed, so `("ab", "c")` and
/// `("a", "bc")` differ).
pub fn stable_id(kind: &str, fields: &[&[u8]]) -> String {
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u128::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    eat(kind.as_bytes());
    for field in fields {
        eat(&(field.len() as u64).to_be_bytes());
        eat(field);
    }
    format!("{kind}-{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_fields_do_not_run_together() {
        let a = stable_id("postback", &[b"u1", b"5", b"GO"]);
        assert_eq!(a, stable_id("postback", &[b"u1", b"5", b"GO"]));
        assert_eq!(a.len(), "postback-".len() + 32);
        assert_ne!(a, stable_id("postback", &[b"u1", b"5", b"GO!"]));
        assert_ne!(a, stable_id("referral", &[b"u1", b"5", b"GO"]));
        assert_ne!(
            stable_id("x", &[b"ab", b"c"]),
            stable_id("x", &[b"a", b"bc"])
        );
        // The empty input's hash is FNV-1a's offset basis.
        assert_eq!(stable_id("", &[]), format!("-{OFFSET:032x}"));
    }
}
