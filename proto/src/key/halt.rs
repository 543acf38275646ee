//! A halt of trading — the kill switch — as keys.json's `halts` records it: which keys it
//! stops (one, or every key), why, who halted them and when. The store (futu-auth-keys)
//! makes, checks and drops these; the rules refuse orders and unlocks while one is in force.
//!
//! In keys.json a halt names its key by `key_id`, or `"all": true` for every key:
//!
//! ```json
//! {"all": true, "reason": "market turmoil", "halted_by": {"uid": 0, "user": "root"}, "halted_at": "2026-12-06T10:00:00Z"}
//! {"key_id": "bot", "reason": "fat finger", "halted_by": {"uid": 1000, "user": "alice"}, "halted_at": "2026-12-06T10:00:00Z"}
//! ```
//!
//! A frame carries the same halt otherwise: a [`HaltTarget`], then the other fields in
//! order, every one written (`crate::codec`'s `halts`).

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};
use super::redact::redact;
use super::KeyId;

/// The longest reason a halt may give, in characters: a sentence, not a document.
pub const MAX_HALT_REASON: usize = 200;

/// What a halt stops: the trading of one key, or of every key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HaltTarget {
    /// One key, by id.
    Key(KeyId),
    /// Every key, present and future.
    All,
}

impl HaltTarget {
    /// The key id, or `*` for every key: how the audit trail and the metrics name it.
    pub fn label(&self) -> &str {
        match self {
            HaltTarget::Key(id) => id.as_str(),
            HaltTarget::All => "*",
        }
    }

    /// The one key it names, if it names one.
    pub fn key(&self) -> Option<&KeyId> {
        match self {
            HaltTarget::Key(id) => Some(id),
            HaltTarget::All => None,
        }
    }
}

/// `key bot` or `every key`, as a sentence says it.
impl fmt::Display for HaltTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltTarget::Key(id) => write!(f, "key {id}"),
            HaltTarget::All => f.write_str("every key"),
        }
    }
}

/// Why trading was halted, in the operator's words: 1 to [`MAX_HALT_REASON`] characters,
/// not only spaces, no control characters (it is shown on one line, in every refusal), and
/// nothing shaped like a key's plaintext (it is shown to every caller of the key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HaltReason(String);

impl HaltReason {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for HaltReason {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars = s.chars().count();
        if s.trim().is_empty() {
            return Err(invalid(
                "a halt needs a reason: say in a few words why trading stops",
            ));
        }
        if chars > MAX_HALT_REASON {
            return Err(invalid(format!(
                "a halt's reason is at most {MAX_HALT_REASON} characters, not {chars}: say it in a sentence"
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid(
                "a halt's reason is one line: no line breaks, tabs or other control characters",
            ));
        }
        if redact(s) != s {
            return Err(invalid(
                "a halt's reason must not hold a key's plaintext (fc_ and 32 hex digits): every caller of the key is shown it",
            ));
        }
        Ok(HaltReason(s.to_owned()))
    }
}

impl TryFrom<String> for HaltReason {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HaltReason> for String {
    fn from(r: HaltReason) -> String {
        r.0
    }
}

impl fmt::Display for HaltReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who halted: the uid of the process that asked (the daemon reads it from the socket,
/// SO_PEERCRED; futucli on the file, its own) and its user name when the system has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltedBy {
    /// The user id.
    pub uid: u32,
    /// The user's name (1 to 64 characters, no spaces or control characters); `None` when
    /// the uid has none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "user_name"
    )]
    pub user: Option<String>,
}

impl HaltedBy {
    /// `uid` with its `user` name if it is one a halt can show (else none).
    pub fn new(uid: u32, user: Option<String>) -> HaltedBy {
        HaltedBy {
            uid,
            user: user.filter(|u| check_user_name(u).is_ok()),
        }
    }
}

/// The rule for [`HaltedBy::user`].
pub(crate) fn check_user_name(name: &str) -> Result<(), InvalidValue> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
        && redact(name) == name;
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "malformed user name {name:?} (expected 1 to 64 characters without spaces)"
        )))
    }
}

fn user_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    if let Some(n) = &name {
        check_user_name(n).map_err(serde::de::Error::custom)?;
    }
    Ok(name)
}

/// `uid 1000 (alice)`, or `uid 1000` without a name.
impl fmt::Display for HaltedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => write!(f, "uid {} ({user})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// One entry of keys.json's `halts`: trading is halted for `target` since `halted_at`, by
/// `halted_by`, for `reason`. While it is in force, orders and unlocks (whatever needs a
/// `trade:` scope) are refused `halted`; quotes and account reads go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HaltFields", into = "HaltFields")]
pub struct Halt {
    /// What it stops.
    pub target: HaltTarget,
    /// Why.
    pub reason: HaltReason,
    /// Who halted.
    pub halted_by: HaltedBy,
    /// When (whole seconds, as keys.json keeps its times).
    pub halted_at: Timestamp,
}

/// The sentence every refusal, listing and log line gives: `trading halted for key bot by
/// uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger`.
impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trading halted for {} by {} at {}: {}",
            self.target, self.halted_by, self.halted_at, self.reason
        )
    }
}

/// [`Halt`] as keys.json holds it: the target is `key_id`, or `"all": true`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HaltFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<KeyId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
    reason: HaltReason,
    halted_by: HaltedBy,
    halted_at: Timestamp,
}

impl TryFrom<HaltFields> for Halt {
    type Error = InvalidValue;
    fn try_from(h: HaltFields) -> Result<Halt, InvalidValue> {
        let target = match (h.key_id, h.all) {
            (Some(id), None) => HaltTarget::Key(id),
            (None, Some(true)) => HaltTarget::All,
            (None, Some(false)) => {
                return Err(invalid(
                    "\"all\": false halts nothing: write \"all\": true to halt every key, or \"key_id\" to halt one",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "a halt names either one key (\"key_id\") or every key (\"all\": true), not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "a halt names what it stops: \"key_id\" for one key, or \"all\": true for every key",
                ))
            }
        };
        Ok(Halt {
            target,
            reason: h.reason,
            halted_by: h.halted_by,
            halted_at: h.halted_at,
        })
    }
}

impl From<Halt> for HaltFields {
    fn from(h: Halt) -> HaltFields {
        let (key_id, all) = match h.target {
            HaltTarget::Key(id) => (Some(id), None),
            HaltTarget::All => (None, Some(true)),
        };
        HaltFields {
            key_id,
            all,
            reason: h.reason,
            halted_by: h.halted_by,
            halted_at: h.halted_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halt(json: &str) -> Result<Halt, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_halt_reads_and_writes_keys_json_shape() {
        let key = r#"{"key_id":"bot","reason":"fat finger","halted_by":{"uid":1000,"user":"alice"},"halted_at":"2026-12-06T10:00:00Z"}"#;
        let h = halt(key).unwrap();
        assert_eq!(h.target, HaltTarget::Key("bot".parse().unwrap()));
        assert_eq!(serde_json::to_string(&h).unwrap(), key);
        assert_eq!(
            h.to_string(),
            "trading halted for key bot by uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger"
        );
        let all =
            r#"{"all":true,"reason":"turmoil","halted_by":{"uid":0},"halted_at":"2026-12-06T10:00:00Z"}"#;
        let h = halt(all).unwrap();
        assert_eq!(h.target, HaltTarget::All);
        assert_eq!(serde_json::to_string(&h).unwrap(), all);
        assert_eq!(
            h.to_string(),
            "trading halted for every key by uid 0 at 2026-12-06T10:00:00Z: turmoil"
        );
    }

    #[test]
    fn a_halt_names_exactly_one_target() {
        let rest = r#""reason":"r","halted_by":{"uid":0},"halted_at":"2026-12-06T10:00:00Z""#;
        for (json, says) in [
            (format!("{{{rest}}}"), "names what it stops"),
            (format!(r#"{{"all":false,{rest}}}"#), "halts nothing"),
            (format!(r#"{{"all":true,"key_id":"bot",{rest}}}"#), "not both"),
            (format!(r#"{{"key_id":"bot","all":true,{rest}}}"#), "not both"),
            (
                format!(r#"{{"key_id":"bot","until":"x",{rest}}}"#),
                "unknown field `until`",
            ),
        ] {
            let e = halt(&json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn a_reason_is_one_short_line_without_a_plaintext() {
        assert!("fat finger".parse::<HaltReason>().is_ok());
        assert!("x".repeat(MAX_HALT_REASON).parse::<HaltReason>().is_ok());
        assert!(
            "é".repeat(MAX_HALT_REASON).parse::<HaltReason>().is_ok(),
            "characters, not bytes"
        );
        for (bad, says) in [
            ("", "needs a reason"),
            ("   ", "needs a reason"),
            ("two\nlines", "one line"),
            ("tab\there", "one line"),
            (
                "leaked fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f",
                "must not hold a key's plaintext",
            ),
        ] {
            let e = bad.parse::<HaltReason>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(!e.contains("8a3f2b9c"), "{e}");
        }
        let long = "x".repeat(MAX_HALT_REASON + 1);
        let e = long.parse::<HaltReason>().unwrap_err().to_string();
        assert!(e.contains("at most 200 characters, not 201"), "{e}");
    }

    #[test]
    fn a_user_name_the_halt_cannot_show_is_left_out() {
        assert_eq!(
            HaltedBy::new(7, Some("alice".into())).to_string(),
            "uid 7 (alice)"
        );
        assert_eq!(HaltedBy::new(7, Some("a b".into())).to_string(), "uid 7");
        assert_eq!(HaltedBy::new(7, None).to_string(), "uid 7");
        let e = serde_json::from_str::<HaltedBy>(r#"{"uid":7,"user":""}"#).unwrap_err();
        assert!(e.to_string().contains("malformed user name"), "{e}");
    }
}
