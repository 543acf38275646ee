//! Key rotation: a new plaintext for a key, the old one accepted for an overlap.
//!
//! The change is made in keys.json (its `rotations` array records the overlap) under the
//! store's lock and installed at once; the key keeps its id, so its counters in the ledger
//! carry over. The new plaintext goes into the answer only: the admin audit record
//! ([`super::admin`]) names the key, never a plaintext.

use std::time::Duration;

use futu_auth_proto::{KeyId, Response};
use jiff::Timestamp;

use super::admin::keyring_error;
use super::Authd;

impl Authd {
    /// [`futu_auth_proto::Request::RotateKey`].
    pub(super) async fn rotate_key(&self, request_id: u64, id: KeyId, overlap_secs: u64) -> Response {
        let now = Timestamp::now();
        let stored_in = self.keys.stored_in();
        let rotated = id.clone();
        let overlap = Duration::from_secs(overlap_secs);
        match self.keys.update(move |f| f.rotate(&rotated, overlap, now)).await {
            Ok((plaintext, previous_valid_until)) => Response::KeyRotated {
                request_id,
                id,
                plaintext,
                previous_valid_until,
                stored_in,
            },
            Err(e) => keyring_error(request_id, e),
        }
    }
}
