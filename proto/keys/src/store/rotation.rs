//! Key rotation in keys.json: a key gets a new plaintext and keeps everything else (id,
//! scopes, limits, binding — and its counters, which the ledger keeps by id), while its
//! previous plaintext is still accepted for an overlap.
//!
//! The overlap is recorded in the top-level `rotations` array, beside the keys, so that key
//! records keep their fields and their wire layout:
//!
//! ```json
//! "rotations": [{"id": "bot", "previous_hash": "<64 hex>", "until": "2026-12-01T08:00:00Z"}]
//! ```
//!
//! Loading checks the array against the keys ([`KeysFile::parse`] refuses a file that
//! breaks a rule, naming the entry and field): each entry names a key of the file, at most
//! one entry a key, and no `previous_hash` is a key's hash or another entry's.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futu_auth_proto::key::{redact, Rotation};
use futu_auth_proto::{KeyId, Token};
use jiff::{SignedDuration, Timestamp};

use super::{InvalidFile, KeysFile, StoreError};
use crate::token::{digest, generate_token};

/// The longest overlap a rotation may give the previous plaintext: 90 days.
pub const MAX_OVERLAP: Duration = Duration::from_secs(90 * 86_400);

/// An entry of a top-level array (`rotations`, `halts`) that breaks a rule: which array
/// and entry, which field, the key it names, and why.
#[derive(Debug)]
pub(super) struct Fault {
    pub(super) array: &'static str,
    pub(super) index: usize,
    pub(super) field: &'static str,
    pub(super) id: String,
    pub(super) message: String,
}

impl Fault {
    /// The positioned error [`KeysFile::parse`] reports, read from the file's `text`.
    pub(super) fn into_invalid(self, text: &str, path: &Path) -> StoreError {
        let (line, column) = position_of(text, self.array, self.index, self.field).unwrap_or((0, 0));
        StoreError::Invalid(Box::new(InvalidFile {
            path: path.to_owned(),
            line,
            column,
            key_id: Some(redact(&self.id).into_owned()),
            field: format!("{}[{}].{}", self.array, self.index, self.field),
            message: redact(&self.message).into_owned(),
        }))
    }
}

impl KeysFile {
    /// Gives key `id` a new plaintext, returned with until when the previous one is still
    /// accepted: `now + overlap`, never past the key's `expires_at`; `None` when the
    /// previous plaintext is refused at once (`overlap` zero, or the key expired). Only
    /// the plaintext replaced now gets an overlap: an earlier rotation of the key ends.
    /// Rotations whose overlap has ended are dropped. An overlap longer than
    /// [`MAX_OVERLAP`] is refused.
    pub fn rotate(
        &mut self,
        id: &KeyId,
        overlap: Duration,
        now: Timestamp,
    ) -> Result<(Token, Option<Timestamp>), StoreError> {
        if overlap > MAX_OVERLAP {
            return Err(StoreError::OverlapTooLong(overlap.as_secs()));
        }
        let i = self
            .keys
            .iter()
            .position(|k| &k.id == id)
            .ok_or_else(|| StoreError::UnknownKey(id.to_string()))?;
        let token = generate_token().map_err(|e| StoreError::Random(e.to_string()))?;
        let key = &mut self.keys[i];
        let previous_hash = std::mem::replace(&mut key.hash, digest(&token));
        // keys.json keeps whole seconds, like every time in README.md's examples of it.
        let start = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let until = start
            .checked_add(SignedDuration::from_secs(overlap.as_secs() as i64))
            .ok()
            .map(|t| key.expires_at.map_or(t, |e| e.min(t)))
            .filter(|&t| t > now);
        let id = key.id.clone();
        self.drop_ended_rotations(now);
        self.rotations.retain(|r| r.id != id);
        if let Some(until) = until {
            self.rotations.push(Rotation {
                id,
                previous_hash,
                until,
            });
        }
        Ok((token, until))
    }

    /// Forgets the rotations whose overlap has ended by `now` (their previous plaintexts
    /// are refused already).
    pub fn drop_ended_rotations(&mut self, now: Timestamp) {
        self.rotations.retain(|r| r.until > now);
    }

    /// The rules `rotations` must keep; the first entry that breaks one.
    pub(super) fn check_rotations(&self) -> Result<(), Fault> {
        if self.rotations.is_empty() {
            return Ok(());
        }
        let keys: HashMap<&KeyId, usize> = self.keys.iter().enumerate().map(|(i, k)| (&k.id, i)).collect();
        let hashes: HashMap<[u8; 32], usize> =
            self.keys.iter().enumerate().map(|(i, k)| (k.hash.0, i)).collect();
        let mut ids: HashMap<&KeyId, usize> = HashMap::new();
        let mut previous: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, r) in self.rotations.iter().enumerate() {
            let fault = |field, message| {
                Err(Fault {
                    array: "rotations",
                    index: i,
                    field,
                    id: r.id.to_string(),
                    message,
                })
            };
            let id = r.id.as_str();
            if !keys.contains_key(&r.id) {
                return fault(
                    "id",
                    format!(
                        "no key has id {id:?}: a rotation must name a key of this file; remove the entry"
                    ),
                );
            }
            if let Some(first) = ids.insert(&r.id, i) {
                return fault(
                    "id",
                    format!("key {id:?} has two rotations (rotations[{first}] and rotations[{i}]); a key has at most one"),
                );
            }
            if let Some(&k) = hashes.get(&r.previous_hash.0) {
                return fault(
                    "previous_hash",
                    format!(
                        "previous_hash is the hash of keys[{k}] ({:?}), a plaintext in service; it must be the digest of a replaced plaintext",
                        self.keys[k].id.as_str()
                    ),
                );
            }
            if let Some(first) = previous.insert(r.previous_hash.0, i) {
                return fault(
                    "previous_hash",
                    format!(
                        "the same previous_hash as rotations[{first}]; each replaced plaintext has one entry"
                    ),
                );
            }
        }
        Ok(())
    }
}

/// The 1-based line and column where `array[index].field`'s value starts in `text` (which
/// loaded, so it is valid JSON).
fn position_of(text: &str, array: &str, index: usize, field: &str) -> Option<(usize, usize)> {
    type Entries<'a> = Vec<HashMap<String, &'a serde_json::value::RawValue>>;
    let top: HashMap<String, &serde_json::value::RawValue> = serde_json::from_str(text).ok()?;
    let entries: Entries<'_> = serde_json::from_str(top.get(array)?.get()).ok()?;
    line_and_column(text, entries.get(index)?.get(field)?.get())
}

/// The 1-based line and column where the entry `array[index]` starts in `text`, which
/// need not load (only the top object and the array are read): where an error in the entry
/// as a whole is shown, rather than after its end.
pub(super) fn entry_position(text: &str, array: &str, index: usize) -> Option<(usize, usize)> {
    let top: HashMap<String, &serde_json::value::RawValue> = serde_json::from_str(text).ok()?;
    let entries: Vec<&serde_json::value::RawValue> = serde_json::from_str(top.get(array)?.get()).ok()?;
    line_and_column(text, entries.get(index)?.get())
}

/// The 1-based line and column of `value`, a slice of `text`.
fn line_and_column(text: &str, value: &str) -> Option<(usize, usize)> {
    let offset = (value.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    Some((line, column))
}
