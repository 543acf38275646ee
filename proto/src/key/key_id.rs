//! Key ids: the public name of a key, in keys.json, audit and metrics.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};
use super::redact::redact;

/// A key's human-readable name, unique within keys.json and shown as `key_id` in audit and
/// metrics: 1 to 64 letters, digits, `.`, `_` or `-`. Cheap to clone (shared text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// The same id in an allocation of its own, not shared with `self` (so that what holds
    /// the copy does not keep `self`'s allocation, and its neighbours, alive).
    pub fn fresh_copy(&self) -> KeyId {
        KeyId(Arc::from(self.as_str()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok && redact(s) != s {
            return Err(invalid(
                "a key id must not look like a key's plaintext (fc_ and 32 hex digits): ids are public, in audit and metrics",
            ));
        }
        if ok {
            Ok(KeyId(Arc::from(s)))
        } else {
            Err(invalid(format!(
                "malformed key id {s:?} (expected 1 to 64 letters, digits, '.', '_' or '-')"
            )))
        }
    }
}

impl TryFrom<String> for KeyId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0.as_ref().to_owned()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_checked() {
        assert!("sim-bot".parse::<KeyId>().is_ok());
        assert!("".parse::<KeyId>().is_err());
        assert!("a b".parse::<KeyId>().is_err());
        assert!("x".repeat(65).parse::<KeyId>().is_err());
    }
}
