//! Key activity: when each key was last used, and until when a rotated key's previous
//! plaintext is accepted.
//!
//! With a key store shared by several hosts, a key's last use is the newest any host
//! allowed: the database's (each host writes its own at most once a minute), or this
//! host's own when it is newer than what it wrote last.

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
        let (held, overlaps) = {
            let snapshot = self.keys.snapshot();
            // One pass over the keys in service (a lookup by id is a scan).
            let asked: HashSet<&str> = ids.iter().map(KeyId::as_str).collect();
            let in_service: HashSet<&str> = snapshot
                .ids()
                .map(KeyId::as_str)
                .filter(|id| asked.contains(id))
                .collect();
            let held: Vec<KeyId> = ids
                .iter()
                .filter(|id| in_service.contains(id.as_str()))
                .cloned()
                .collect();
            let now = Timestamp::now();
            let overlaps: HashMap<String, Timestamp> = snapshot
                .overlaps()
                .filter(|(id, until)| *until > now && asked.contains(id.as_str()))
                .map(|(id, until)| (id.to_string(), until))
                .collect();
            (held, overlaps)
        };
        let everywhere = match self.keys.shared() {
            None => HashMap::new(),
            Some(pg) => match pg.read_last_used(&held).await {
                Ok(uses) => uses,
                Err(e) => {
                    return Response::Error {
                        request_id,
                        kind: ErrorKind::Internal,
                        message: format!("the last uses across hosts are not known: {e}"),
                    }
                }
            },
        };
        let keys = held
            .into_iter()
            .map(|id| {
                let here = self.last_used.get(&id);
                let there = everywhere
                    .get(id.as_str())
                    .and_then(|&secs| Timestamp::from_second(secs).ok());
                KeyActivity {
                    last_used: here.max(there),
                    previous_valid_until: overlaps.get(id.as_str()).copied(),
                    id,
                }
            })
            .collect();
        Response::KeyActivity { request_id, keys }
    }
}
