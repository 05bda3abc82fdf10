//! The llmgw API key format.
//!
//! A key is `sk-llmgw-` + 22 base62 characters (128 random bits from the
//! operating system) + 6 base62 characters of checksum (the first 4 bytes of
//! SHA-256 of those 22 characters), 37 characters in all:
//!
//! ```text
//! sk-llmgw-RRRRRRRRRRRRRRRRRRRRRRCCCCCC
//!          └──── 22 random ─────┘└ 6 ┘ checksum
//! ```
//!
//! The checksum lets the edge, and secret scanners on
//! code hosts, tell a real key from a typo or a look-alike without a database
//! lookup. Only [`digest`] of a key is ever stored: keys carry 128 bits of
//! entropy, so a fast hash is as good as a slow one and keeps the per-request
//! lookup cheap.
//!
//! Admin credentials (billing's admin API and console) have the same shape
//! under their own prefix, [`ADMIN_PREFIX`]: [`generate_admin`],
//! [`is_well_formed_admin`]. The prefixes are disjoint, so neither kind is
//! ever accepted as the other, and secret scanners still see `sk-llmgw-`.

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Every llmgw key starts with this.
pub const PREFIX: &str = "sk-llmgw-";

/// Every admin credential starts with this (the key prefix, then `admin-`).
pub const ADMIN_PREFIX: &str = "sk-llmgw-admin-";

/// Characters of the random part: 62^22 > 2^128, so 128 bits fit.
const BODY_LEN: usize = 22;
/// Characters of the checksum: 62^6 > 2^32, so 4 bytes fit.
const CHECKSUM_LEN: usize = 6;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

/// Characters of the body shown in listings by [`display_prefix`].
const DISPLAY_CHARS: usize = 4;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new key: [`PREFIX`], 128 bits from the operating system's random number
/// generator in base62, and a checksum.
///
/// # Panics
/// If the operating system cannot provide randomness. A key from a weaker
/// source would be a silent security hole, so failing loudly is the only safe
/// answer (and on Linux `getrandom` does not fail once the pool is seeded).
pub fn generate() -> String {
    generate_with(PREFIX)
}

/// A new admin credential: [`ADMIN_PREFIX`], then as [`generate`].
///
/// # Panics
/// As [`generate`], if the operating system cannot provide randomness.
pub fn generate_admin() -> String {
    generate_with(ADMIN_PREFIX)
}

fn generate_with(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    // `unwrap_err` turns OsRng's fallible interface into one that panics on
    // failure, see the doc comment above for why that is wanted here.
    let mut rng = OsRng.unwrap_err();
    rand::RngCore::fill_bytes(&mut rng, &mut bytes);
    let body = base62(u128::from_le_bytes(bytes), BODY_LEN);
    let mut key = String::with_capacity(prefix.len() + BODY_LEN + CHECKSUM_LEN);
    key.push_str(prefix);
    key.push_str(&body);
    key.push_str(&checksum(&body));
    key
}

/// True if `key` has the prefix, the right length and alphabet, and a correct
/// checksum. A false answer means the key cannot exist; a true answer still
/// needs a lookup of its [`digest`].
pub fn is_well_formed(key: &str) -> bool {
    well_formed_with(PREFIX, key)
}

/// As [`is_well_formed`], for admin credentials.
pub fn is_well_formed_admin(credential: &str) -> bool {
    well_formed_with(ADMIN_PREFIX, credential)
}

fn well_formed_with(prefix: &str, key: &str) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    // Length is checked in bytes; the alphabet check below makes sure every
    // byte is an ASCII character, so the split indices are char boundaries.
    if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = rest.split_at(BODY_LEN);
    // Not constant time, and it need not be: the checksum is derived from the
    // key itself and proves nothing about whether the key exists.
    checksum(body) == sum
}

/// SHA-256 of the whole key text: the only form in which keys are stored.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A short prefix that is safe to show in listings and logs, e.g.
/// `sk-llmgw-AbCd`: 4 of the 22 random characters leave 105 unknown bits.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(PREFIX.len() + DISPLAY_CHARS).collect()
}

/// As [`display_prefix`], for admin credentials: `sk-llmgw-admin-AbCd`.
pub fn display_prefix_admin(credential: &str) -> String {
    credential
        .chars()
        .take(ADMIN_PREFIX.len() + DISPLAY_CHARS)
        .collect()
}

/// The 6-character checksum of a body.
fn checksum(body: &str) -> String {
    let hash = Sha256::digest(body.as_bytes());
    let first4 = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    base62(u128::from(first4), CHECKSUM_LEN)
}

/// `value` in base62, most significant digit first, zero-padded to `width`
/// (a fixed width makes the key length constant). Callers guarantee that
/// 62^width > value.
fn base62(mut value: u128, width: usize) -> String {
    let mut digits = vec![ALPHABET[0]; width];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits.into_iter().map(char::from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_are_well_formed_and_unique() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let key = generate();
            assert_eq!(key.len(), KEY_LEN, "{key}");
            assert!(key.starts_with(PREFIX));
            assert!(is_well_formed(&key), "{key}");
            assert!(seen.insert(key), "duplicate key");
        }
    }

    #[test]
    fn any_single_changed_character_fails() {
        let key = generate();
        for i in PREFIX.len()..key.len() {
            let original = key.as_bytes()[i];
            for &c in ALPHABET.iter().filter(|&&c| c != original) {
                let mut bytes = key.clone().into_bytes();
                bytes[i] = c;
                let changed = String::from_utf8(bytes).unwrap();
                // A 32-bit checksum misses one change in 2^32; over these
                // ~1,700 variants a false pass would point at a real bug.
                assert!(!is_well_formed(&changed), "{changed} passed");
            }
        }
    }

    #[test]
    fn wrong_prefix_length_or_alphabet_fails() {
        let key = generate();
        let rest = &key[PREFIX.len()..];
        assert!(!is_well_formed(&format!("sk-other-{rest}")));
        assert!(!is_well_formed(&format!("SK-LLMGW-{rest}")));
        assert!(!is_well_formed(rest));
        assert!(!is_well_formed(&key[..key.len() - 1]));
        assert!(!is_well_formed(&format!("{key}0")));
        assert!(!is_well_formed(""));
        assert!(!is_well_formed(PREFIX));
        assert!(!is_well_formed("sk-llmgw-dev-0000000000000000"));
        // Same length, a character outside the alphabet.
        let mut bytes = key.clone().into_bytes();
        bytes[PREFIX.len()] = b'-';
        assert!(!is_well_formed(&String::from_utf8(bytes).unwrap()));
        // Multi-byte characters must not panic the slicing.
        assert!(!is_well_formed(&format!("{PREFIX}{}", "é".repeat(14))));
    }

    #[test]
    fn digest_is_sha256_of_the_text_and_stable() {
        assert_eq!(digest("abc"), digest("abc"));
        assert_ne!(digest("abc"), digest("abd"));
        // Known SHA-256 test vector, so the stored form never drifts.
        let hex: String = digest("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn display_prefix_shows_four_body_characters() {
        let key = generate();
        let shown = display_prefix(&key);
        assert_eq!(shown.len(), PREFIX.len() + 4);
        assert!(key.starts_with(&shown));
        assert_eq!(display_prefix("short"), "short");
    }

    #[test]
    fn admin_credentials_and_keys_are_never_taken_for_each_other() {
        let credential = generate_admin();
        assert!(credential.starts_with(ADMIN_PREFIX));
        assert_eq!(
            credential.len(),
            ADMIN_PREFIX.len() + BODY_LEN + CHECKSUM_LEN
        );
        assert!(is_well_formed_admin(&credential));
        assert!(!is_well_formed(&credential));
        let key = generate();
        assert!(!is_well_formed_admin(&key));
        assert!(!is_well_formed_admin(&credential[..credential.len() - 1]));
        let shown = display_prefix_admin(&credential);
        assert_eq!(shown.len(), ADMIN_PREFIX.len() + 4);
        assert!(credential.starts_with(&shown));
    }

    #[test]
    fn base62_is_fixed_width() {
        assert_eq!(base62(0, 6), "000000");
        assert_eq!(base62(61, 2), "0z");
        assert_eq!(base62(u128::from(u32::MAX), 6).len(), 6);
        assert_eq!(base62(u128::MAX, 22).len(), 22);
    }
}
