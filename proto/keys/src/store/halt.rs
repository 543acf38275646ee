//! The kill switch in keys.json: trading halted for one key or for every key, recorded in
//! the top-level `halts` array beside `keys` and `rotations`, so that a halt survives
//! restarts and reloads and the key records keep their fields:
//!
//! ```json
//! "halts": [
//!   {"all": true, "reason": "market turmoil", "halted_by": {"uid": 0, "user": "root"}, "halted_at": "2026-12-06T09:00:00Z"},
//!   {"key_id": "bot", "reason": "fat finger", "halted_by": {"uid": 1000, "user": "alice"}, "halted_at": "2026-12-06T10:00:00Z"}
//! ]
//! ```
//!
//! Loading checks the array against the keys ([`KeysFile::parse`] refuses a file that
//! breaks a rule, naming the entry and field): each `key_id` names a key of the file, and
//! each key — and every key, `all` — is halted at most once. The entries' own fields (an
//! unknown field, an empty or overlong reason, a time that is not RFC 3339) are checked as
//! they are read.

use std::collections::HashMap;
use std::fmt;

use futu_auth_proto::key::{Halt, HaltReason, HaltTarget, HaltedBy};
use futu_auth_proto::KeyId;
use jiff::Timestamp;

use super::rotation::Fault;
use super::{KeysFile, StoreError};

/// A resume of what is not halted: what was asked, and what is halted instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotHalted {
    /// What the resume named.
    pub target: HaltTarget,
    /// Whether every key is halted (a key resumed on its own stays halted by that).
    pub all_halted: bool,
    /// The keys halted on their own.
    pub keys_halted: Vec<KeyId>,
}

impl fmt::Display for NotHalted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            HaltTarget::Key(id) if self.all_halted => write!(
                f,
                "key {:?} has no halt of its own to resume; trading is halted for every key: resume every key to lift that",
                id.as_str()
            ),
            HaltTarget::Key(id) => write!(f, "key {:?} is not halted; nothing to resume", id.as_str()),
            HaltTarget::All if self.keys_halted.is_empty() => {
                f.write_str("trading is not halted for every key; nothing to resume")
            }
            HaltTarget::All => {
                let ids: Vec<&str> = self.keys_halted.iter().map(KeyId::as_str).collect();
                write!(
                    f,
                    "trading is not halted for every key; only these keys are halted, each on its own: {} (resume each by its id)",
                    ids.join(", ")
                )
            }
        }
    }
}

/// The index of the halt an error path names as a whole (`halts[3]`, no field).
pub(super) fn whole_entry(field: &str) -> Option<usize> {
    field.strip_prefix("halts[")?.strip_suffix(']')?.parse().ok()
}

impl KeysFile {
    /// Halts trading for `target`, for `reason`, as `halted_by` at `now` (kept to the whole
    /// second); returns the halt in force. A halt of what is halted already replaces it (the
    /// new reason, who and when), in its place. A key that is not in the file is
    /// [`StoreError::UnknownKey`].
    pub fn halt(
        &mut self,
        target: HaltTarget,
        reason: HaltReason,
        halted_by: HaltedBy,
        now: Timestamp,
    ) -> Result<Halt, StoreError> {
        if let HaltTarget::Key(id) = &target {
            if self.get(id).is_none() {
                return Err(StoreError::UnknownKey(id.to_string()));
            }
        }
        let halt = Halt {
            target,
            reason,
            halted_by,
            // keys.json keeps whole seconds, like every time in README.md's examples of it.
            halted_at: Timestamp::from_second(now.as_second()).unwrap_or(now),
        };
        match self.halts.iter_mut().find(|h| h.target == halt.target) {
            Some(old) => *old = halt.clone(),
            None => self.halts.push(halt.clone()),
        }
        Ok(halt)
    }

    /// Lifts the halt of `target`; returns it. A key halted only by a halt of every key has
    /// none of its own to lift: that, like a resume of what is not halted, is
    /// [`StoreError::NotHalted`], saying what is halted instead.
    pub fn resume(&mut self, target: &HaltTarget) -> Result<Halt, StoreError> {
        if let HaltTarget::Key(id) = target {
            if self.get(id).is_none() {
                return Err(StoreError::UnknownKey(id.to_string()));
            }
        }
        match self.halts.iter().position(|h| &h.target == target) {
            Some(i) => Ok(self.halts.remove(i)),
            None => Err(StoreError::NotHalted(Box::new(NotHalted {
                target: target.clone(),
                all_halted: self.halts.iter().any(|h| h.target == HaltTarget::All),
                keys_halted: self
                    .halts
                    .iter()
                    .filter_map(|h| h.target.key().cloned())
                    .collect(),
            }))),
        }
    }

    /// The rules `halts` must keep; the first entry that breaks one.
    pub(super) fn check_halts(&self) -> Result<(), Fault> {
        if self.halts.is_empty() {
            return Ok(());
        }
        let keys: HashMap<&KeyId, usize> = self.keys.iter().enumerate().map(|(i, k)| (&k.id, i)).collect();
        let mut seen: HashMap<&HaltTarget, usize> = HashMap::new();
        for (i, h) in self.halts.iter().enumerate() {
            let (field, id) = match &h.target {
                HaltTarget::Key(id) => ("key_id", id.to_string()),
                HaltTarget::All => ("all", "*".to_owned()),
            };
            let fault = |message| {
                Err(Fault {
                    array: "halts",
                    index: i,
                    field,
                    id: id.clone(),
                    message,
                })
            };
            if let HaltTarget::Key(key) = &h.target {
                if !keys.contains_key(key) {
                    return fault(format!(
                        "no key has id {:?}: a halt must name a key of this file; remove the entry",
                        key.as_str()
                    ));
                }
            }
            if let Some(first) = seen.insert(&h.target, i) {
                return fault(match &h.target {
                    HaltTarget::Key(key) => format!(
                        "key {:?} has two halts (halts[{first}] and halts[{i}]); a key is halted at most once",
                        key.as_str()
                    ),
                    HaltTarget::All => format!(
                        "every key is halted twice (halts[{first}] and halts[{i}]); keep one"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The halts in force for key `id`: of every key, and its own.
    pub fn halts_of<'a>(&'a self, id: &'a KeyId) -> impl Iterator<Item = &'a Halt> + 'a {
        self.halts.iter().filter(move |h| match &h.target {
            HaltTarget::All => true,
            HaltTarget::Key(k) => k == id,
        })
    }
}
