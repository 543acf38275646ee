//! Machine fingerprints: the hosts a key is bound to (`allowed_machines`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// A machine fingerprint, `fp_` followed by letters, digits, `_` or `-`.
/// futu-authd derives its own host's from /etc/machine-id; keys.json may hold any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The text, e.g. `fp_3f9a…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() <= 67
            && s.strip_prefix("fp_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if ok {
            Ok(Fingerprint(s.to_owned()))
        } else {
            Err(invalid(format!(
                "malformed machine fingerprint {s:?} (expected fp_ followed by letters, digits, _ or -; `futucli machine-id` prints this host's)"
            )))
        }
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_checked() {
        assert!("fp_bot_host_abc123".parse::<Fingerprint>().is_ok());
        assert!("fp_".parse::<Fingerprint>().is_err());
        assert!("bot".parse::<Fingerprint>().is_err());
    }
}
