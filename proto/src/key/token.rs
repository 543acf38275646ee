//! A key's plaintext, which is never kept, and its digest, which keys.json holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::invalid::{invalid, InvalidValue};

/// A key's plaintext, `fc_` followed by 32 lower-case hex digits. It is shown once when the
/// key is made and never stored, logged or printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a plaintext received from a caller.
    pub fn new(plaintext: impl Into<String>) -> Token {
        Token(plaintext.into())
    }

    /// The plaintext, for hashing or for showing once to the person who made the key.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it has the shape of a key's plaintext, `fc_` and 32 lower-case hex digits
    /// ([`Token::LEN`] bytes). Anything else matches no key: a gateway can refuse it
    /// without asking futu-authd, whatever its size.
    pub fn is_well_formed(&self) -> bool {
        let b = self.0.as_bytes();
        b.len() == Token::LEN
            && b.starts_with(b"fc_")
            && b[3..].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// The length of a key's plaintext in bytes: `fc_` and 32 hex digits.
    pub const LEN: usize = 35;

    /// The SHA-256 of the plaintext, as keys.json's `hash` holds it: what a key is found
    /// by. The daemon's rules, keys.json's store and futucli all take it from here.
    pub fn digest(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The SHA-256 digest of a key's plaintext. keys.json holds it as 64 hex characters
/// (a `sha256:` prefix is accepted when reading; it is written without one).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// The first 8 hex characters, enough to tell keys apart in a listing without showing
    /// the digest.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

impl FromStr for KeyHash {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let bad = || {
            invalid(format!(
                "malformed hash: expected 64 hex characters of a SHA-256 digest (optionally prefixed sha256:), got {} characters",
                s.chars().count()
            ))
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            match (nib(pair[0]), nib(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => return Err(bad()),
            }
        }
        Ok(KeyHash(out))
    }
}

impl TryFrom<String> for KeyHash {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyHash> for String {
    fn from(h: KeyHash) -> String {
        h.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_accepts_hex_with_or_without_prefix_and_refuses_the_rest() {
        let hex = "ab".repeat(32);
        let a: KeyHash = hex.parse().unwrap();
        let b: KeyHash = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), hex);
        assert!("a1b2...".parse::<KeyHash>().is_err());
        assert!("zz".repeat(32).parse::<KeyHash>().is_err());
        assert!("ab".repeat(33).parse::<KeyHash>().is_err());
        assert!(
            format!("{a:?}").len() < 30,
            "Debug must not print the whole digest"
        );
    }

    #[test]
    fn only_fc_and_32_lower_case_hex_digits_is_well_formed() {
        assert!(Token::new("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f").is_well_formed());
        for bad in [
            "",
            "fc_",
            "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9",
            "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f0",
            "fc_8A3F2B9C1E5D7A4B8C2F9E1D3A5B7C9F",
            "FC_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f",
            "fc-8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f",
            "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9g",
            "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7cé",
        ] {
            assert!(!Token::new(bad).is_well_formed(), "{bad:?}");
        }
        assert!(!Token::new("a".repeat(70_000)).is_well_formed());
    }

    #[test]
    fn token_debug_never_shows_the_plaintext() {
        let t = Token::new("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f");
        assert!(!format!("{t:?}").contains("8a3f"));
    }
}
