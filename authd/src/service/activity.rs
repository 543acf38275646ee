//! Key activity: when each key was last used, and until when a rotated key's previous
//! plaintext is accepted.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use futu_auth_proto::{ErrorKind, KeyActivity, KeyId, Response, MAX_ACTIVITY_IDS};

use super::Authd;

impl Authd {
    /// [`futu_auth_proto::Request::KeyActivity`]: for each of `ids` the keys in service
    /// hold, in the order asked, when it was last allowed a check and until when its
    /// plaintext before its last rotation is accepted (only while that is still ahead).
    pub(super) async fn key_activity(&self, request_id: u64, ids: Vec<KeyId>) -> Response {
        if ids.len() > MAX_ACTIVITY_IDS {
            return Response::Error {
                request_id,
                kind: ErrorKind::InvalidSpec,
                message: format!(
                    "KeyActivity asks about {} keys; at most {MAX_ACTIVITY_IDS} at a time",
                    ids.len()
                ),
            };
        }
        let keys = {
            let snapshot = self.keys.snapshot();
            // One pass over the keys in service (a lookup by id is a scan).
            let asked: HashSet<&str> = ids.iter().map(KeyId::as_str).collect();
            let held: HashSet<&str> = snapshot
                .ids()
                .map(KeyId::as_str)
                .filter(|id| asked.contains(id))
                .collect();
            let now = Timestamp::now();
            let overlaps: HashMap<&str, Timestamp> = snapshot
                .overlaps()
                .filter(|(id, until)| *until > now && asked.contains(id.as_str()))
                .map(|(id, until)| (id.as_str(), until))
                .collect();
            ids.iter()
                .filter(|id| held.contains(id.as_str()))
                .map(|id| KeyActivity {
                    id: id.clone(),
                    last_used: self.last_used.get(id),
                    previous_valid_until: overlaps.get(id.as_str()).copied(),
                })
                .collect()
        };
        Response::KeyActivity { request_id, keys }
    }
}
