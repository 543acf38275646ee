//! Keys that need attention: each key's expiry as the gauge
//! `futu_auth_key_expires_timestamp_seconds{key_id}`, and a warning in the log for each key
//! that expires within [`WARN_WITHIN_SECS`] (or has expired and is still in keys.json),
//! given at start, at every reload, and once each UTC day in between.

use std::sync::atomic::{AtomicI64, Ordering};

use futu_auth_proto::KeyId;
use futu_auth_rules::clock::{expiry_in_words, utc_day};
use futu_auth_rules::Snapshot;
use jiff::Timestamp;

use crate::metrics::Metrics;

/// How soon an expiry is warned of: 7 days, the alert README.md suggests on the gauge.
pub const WARN_WITHIN_SECS: i64 = 7 * 86_400;

/// Sets the expiry gauge to the keys of `snapshot`: a sample for each key with an
/// `expires_at`, none for the others (nor for keys no longer in service).
pub fn show(metrics: &Metrics, snapshot: &Snapshot) {
    metrics.key_expiries(
        snapshot
            .iter()
            .filter_map(|k| Some((&k.id, k.expires_at?.as_second()))),
    );
}

/// The keys of `snapshot` that expire within [`WARN_WITHIN_SECS`] of `now`, or have expired,
/// soonest first.
pub fn expiring(snapshot: &Snapshot, now: Timestamp) -> Vec<(&KeyId, Timestamp)> {
    let horizon = now.as_second().saturating_add(WARN_WITHIN_SECS);
    let mut soon: Vec<(&KeyId, Timestamp)> = snapshot
        .iter()
        .filter_map(|k| Some((&k.id, k.expires_at?)))
        .filter(|(_, t)| t.as_second() <= horizon)
        .collect();
    soon.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    soon
}

/// The warning about key `id` expiring at `expires_at`, seen at `now` (the key's id, its
/// expiry and the time left; nothing of its hash).
pub fn warning(id: &KeyId, expires_at: Timestamp, now: Timestamp) -> String {
    if expires_at > now {
        format!(
            "key_id={id} expires_at={expires_at} key expires {}: give its callers a new key before then",
            expiry_in_words(expires_at, now)
        )
    } else {
        format!(
            "key_id={id} expires_at={expires_at} key {} and is refused: revoke it, or give its callers a new key",
            expiry_in_words(expires_at, now)
        )
    }
}

/// Logs [`warning`] for each key of `snapshot` [`expiring`] at `now`.
pub fn warn(snapshot: &Snapshot, now: Timestamp) {
    for (id, t) in expiring(snapshot, now) {
        tracing::warn!("{}", warning(id, t, now));
    }
}

/// Which UTC day the warnings were last given: they are given again when it changes.
#[derive(Debug)]
pub struct DailyWarning {
    /// Days since 1970-01-01; `i64::MIN` before the first.
    last_day: AtomicI64,
}

impl Default for DailyWarning {
    fn default() -> Self {
        DailyWarning {
            last_day: AtomicI64::new(i64::MIN),
        }
    }
}

impl DailyWarning {
    /// Notes that the warnings were given at `now`.
    pub fn given(&self, now: Timestamp) {
        self.last_day.store(utc_day(now.as_second()), Ordering::Relaxed);
    }

    /// Whether the warnings are due at `now` (not given yet this UTC day); notes them given
    /// when they are, so that one caller gives them.
    pub fn due(&self, now: Timestamp) -> bool {
        let day = utc_day(now.as_second());
        self.last_day.swap(day, Ordering::Relaxed) != day
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futu_auth_keys::store::KeysFile;

    fn snapshot(expiries: &[(&str, Option<&str>)]) -> Snapshot {
        let keys: Vec<String> = expiries
            .iter()
            .enumerate()
            .map(|(i, (id, t))| {
                let expires = t.map_or("null".to_owned(), |t| format!("\"{t}\""));
                format!(
                    r#"{{"id":"{id}","hash":"sha256:{i:064x}","scopes":["qot:read"],"created_at":"2026-01-01T00:00:00Z","expires_at":{expires}}}"#
                )
            })
            .collect();
        let text = format!(r#"{{"version":1,"keys":[{}]}}"#, keys.join(","));
        let file = KeysFile::parse(&text, std::path::Path::new("keys.json")).unwrap();
        Snapshot::compile(&file.keys, &file.rotations, &file.halts, None)
    }

    #[test]
    fn keys_expiring_within_seven_days_or_expired_are_warned_of_soonest_first() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let s = snapshot(&[
            ("in-30d", Some("2027-01-05T12:00:00Z")),
            ("in-3d", Some("2026-12-09T12:00:00Z")),
            ("just-inside", Some("2026-12-13T12:00:00Z")),
            ("just-outside", Some("2026-12-13T12:00:01Z")),
            ("expired", Some("2026-12-01T00:00:00Z")),
            ("never", None),
        ]);
        let ids: Vec<&str> = expiring(&s, now).iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["expired", "in-3d", "just-inside"]);
        let (id, t) = expiring(&s, now)[1];
        assert_eq!(
            warning(id, t, now),
            "key_id=in-3d expires_at=2026-12-09T12:00:00Z key expires in 3d 0h: give its callers a new key before then"
        );
        let (id, t) = expiring(&s, now)[0];
        assert!(warning(id, t, now).contains("key expired 5d 12h ago and is refused"));
    }

    #[test]
    fn the_warnings_are_due_once_each_utc_day() {
        let daily = DailyWarning::default();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        assert!(daily.due(at("2026-12-06T12:00:00Z")), "at start");
        assert!(!daily.due(at("2026-12-06T12:01:00Z")));
        assert!(!daily.due(at("2026-12-06T23:59:59Z")));
        assert!(daily.due(at("2026-12-07T00:00:00Z")), "the next UTC day");
        assert!(!daily.due(at("2026-12-07T08:00:00Z")));
        daily.given(at("2026-12-08T01:00:00Z"));
        assert!(!daily.due(at("2026-12-08T02:00:00Z")), "a reload gave them today");
    }
}
