//! A rotation's record in keys.json: the previous plaintext of a rotated key, accepted
//! for an overlap. The store (futu-auth-keys) makes and checks these; the daemon's rules
//! compile them into the keys in service.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{KeyHash, KeyId};

/// One entry of keys.json's `rotations`: key `id` was given a new plaintext, and the
/// previous one (digest `previous_hash`) is accepted until `until`, then refused as
/// `unknown_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The rotated key; a key of the same file.
    pub id: KeyId,
    /// The SHA-256 of the plaintext the key had before its last rotation (never a
    /// plaintext: keys.json holds digests only).
    pub previous_hash: KeyHash,
    /// When the previous plaintext stops being accepted (never after the key's
    /// `expires_at`).
    pub until: Timestamp,
}
