//! When each key was last used: the minute of its last allowed check or scope check (dry
//! runs included — a front-end used the key), kept in memory, exported as the gauge
//! `futu_auth_key_last_used_timestamp_seconds{key_id}` and kept across restarts in
//! `<state-dir>/last-used.json`.
//!
//! A burst notes each key it allowed once ([`LastUsed::note`]); shared state is written
//! only when a key's minute moves on, so a key checked thousands of times a minute costs
//! one map read a burst. The file is written by a background task at most once a minute
//! when something changed, and at shutdown ([`LastUsed::save`]): a crash loses at most the
//! last minute of updates. It is a convenience, never a reason to refuse: a damaged file
//! is logged and ignored, and a failed write is logged and tried again a minute later.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;
use futu_auth_proto::KeyId;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use futu_auth_rules::Snapshot;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "last-used.json";

/// How often the file is written when something changed.
pub const WRITE_EVERY: Duration = Duration::from_secs(60);

/// How often the uses noted since the last write go to a key store shared by several
/// hosts (one row a key whose minute moved on): how long another host may show an older
/// last use.
pub const SHARED_WRITE_EVERY: Duration = Duration::from_secs(5);

/// The file's format version.
const VERSION: u32 = 1;

/// `unix_secs` rounded down to its minute.
pub fn minute_of(unix_secs: i64) -> i64 {
    unix_secs - unix_secs.rem_euclid(60)
}

/// The file: `{"version": 1, "last_used": {"<key id>": "<RFC 3339 minute>", …}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LastUsedFile {
    version: u32,
    last_used: BTreeMap<KeyId, Timestamp>,
}

/// Per key, the minute of its last use, and where it is kept.
#[derive(Debug)]
pub struct LastUsed {
    /// Per key id, the minute (unix seconds, a multiple of 60) of its last allowed check.
    minutes: DashMap<KeyId, AtomicI64>,
    /// Whether something changed since the file was last written (a newer minute, or an
    /// entry dropped for a key no longer in keys.json).
    changed: AtomicBool,
    /// Keys whose minute moved on since the uses were last written to a shared store.
    unwritten: Mutex<HashSet<KeyId>>,
    /// The file; `None`: kept in memory only.
    path: Option<PathBuf>,
    /// For the gauge of each key.
    metrics: Arc<Metrics>,
}

impl LastUsed {
    /// Nothing known, kept in memory only (for tests and benchmarks).
    pub fn in_memory(metrics: Arc<Metrics>) -> LastUsed {
        LastUsed {
            minutes: DashMap::new(),
            changed: AtomicBool::new(false),
            unwritten: Mutex::new(HashSet::new()),
            path: None,
            metrics,
        }
    }

    /// What `<state_dir>/last-used.json` holds about the keys `snapshot` has, with their
    /// gauges set. A missing file is no use yet; an unreadable or damaged one is logged and
    /// ignored (the keys start as never used): it never stops the daemon from starting.
    pub fn open(state_dir: &Path, snapshot: &Snapshot, metrics: Arc<Metrics>) -> LastUsed {
        let path = state_dir.join(FILE_NAME);
        let mut me = LastUsed::in_memory(metrics);
        if let Err(e) = fs::create_dir_all(state_dir) {
            tracing::warn!(
                "state dir {}: {e}; last-used times will not be kept across restarts",
                state_dir.display()
            );
        }
        match read_file(&path) {
            Ok(None) => {}
            Ok(Some(entries)) => {
                let held: HashSet<&str> = snapshot.ids().map(KeyId::as_str).collect();
                let mut dropped = 0;
                for (id, t) in entries {
                    if held.contains(id.as_str()) {
                        me.note(&id, t.as_second());
                    } else {
                        dropped += 1;
                    }
                }
                tracing::info!(
                    "last used: {} keys read from {}",
                    me.minutes.len(),
                    path.display()
                );
                // Written again without them at the next write.
                me.changed.store(dropped > 0, Ordering::Relaxed);
            }
            Err(why) => tracing::warn!(
                "last-used file {}: {why}; every key starts as never used (the file is replaced at the next write)",
                path.display()
            ),
        }
        me.path = Some(path);
        me
    }

    /// Notes a use of `key` at `unix_secs`: only a newer minute than the one known is
    /// written, and only then is the gauge set.
    pub fn note(&self, key: &KeyId, unix_secs: i64) {
        let minute = minute_of(unix_secs);
        let before = match self.minutes.get(key) {
            Some(m) if m.load(Ordering::Relaxed) >= minute => return,
            Some(m) => m.fetch_max(minute, Ordering::Relaxed),
            // Its own copy of the id: the map must not keep a snapshot's allocation alive.
            None => self
                .minutes
                .entry(key.fresh_copy())
                .or_insert_with(|| AtomicI64::new(i64::MIN))
                .fetch_max(minute, Ordering::Relaxed),
        };
        if before < minute {
            self.metrics.key_last_used(key, minute);
            self.changed.store(true, Ordering::Relaxed);
            self.unwritten().insert(key.fresh_copy());
        }
    }

    fn unwritten(&self) -> std::sync::MutexGuard<'_, HashSet<KeyId>> {
        self.unwritten.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The uses noted since the last call, as `(key, minute in Unix seconds)`, for a shared
    /// store; keys `snapshot` does not hold are dropped first (as [`LastUsed::save`] does).
    /// What could not be written goes back with [`LastUsed::unwritten_again`].
    pub fn take_unwritten(&self, snapshot: &Snapshot) -> Vec<(KeyId, i64)> {
        self.drop_gone(snapshot);
        let ids = std::mem::take(&mut *self.unwritten());
        ids.into_iter()
            .filter_map(|id| {
                let minute = self.minutes.get(&id)?.load(Ordering::Relaxed);
                Some((id, minute))
            })
            .collect()
    }

    /// Uses [`LastUsed::take_unwritten`] gave that could not be written: written next time.
    pub fn unwritten_again(&self, uses: Vec<(KeyId, i64)>) {
        self.unwritten().extend(uses.into_iter().map(|(id, _)| id));
    }

    /// Drops the entries (and gauges) of keys `snapshot` does not hold; whether any went.
    fn drop_gone(&self, snapshot: &Snapshot) -> bool {
        let held: HashSet<&str> = snapshot.ids().map(KeyId::as_str).collect();
        let gone: Vec<KeyId> = self
            .minutes
            .iter()
            .filter(|e| !held.contains(e.key().as_str()))
            .map(|e| e.key().clone())
            .collect();
        let mut unwritten = self.unwritten();
        for id in &gone {
            self.minutes.remove(id);
            unwritten.remove(id);
            self.metrics.forget_key_last_used(id);
        }
        !gone.is_empty()
    }

    /// The minute `key` was last used, if known.
    pub fn get(&self, key: &KeyId) -> Option<Timestamp> {
        let secs = self.minutes.get(key)?.load(Ordering::Relaxed);
        Timestamp::from_second(secs).ok()
    }

    /// How many keys have a last use.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    /// Whether no key has a last use.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Drops the entries (and gauges) of keys `snapshot` does not hold, sets every other
    /// gauge again (a gauge set out of order by two bursts racing is so put right), and
    /// writes the file if anything changed since the last write. Blocking IO. `Ok(true)`:
    /// written.
    pub fn save(&self, snapshot: &Snapshot) -> io::Result<bool> {
        let gone = self.drop_gone(snapshot);
        let changed = self.changed.swap(false, Ordering::Relaxed) || gone;
        let mut last_used = BTreeMap::new();
        for e in self.minutes.iter() {
            let secs = e.value().load(Ordering::Relaxed);
            self.metrics.key_last_used(e.key(), secs);
            if let Ok(t) = Timestamp::from_second(secs) {
                last_used.insert(e.key().clone(), t);
            }
        }
        let Some(path) = &self.path else {
            return Ok(false);
        };
        if !changed {
            return Ok(false);
        }
        let file = LastUsedFile {
            version: VERSION,
            last_used,
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
        text.push('\n');
        crate::atomic_file::replace(path, text.as_bytes()).inspect_err(|_| {
            // Try again at the next write.
            self.changed.store(true, Ordering::Relaxed);
        })?;
        Ok(true)
    }
}

/// Why the last-used file cannot be used, in a few words.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// It could not be read.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// It is not a last-used file.
    #[error("not a last-used file: {0}")]
    NotLastUsed(#[source] serde_json::Error),
    /// It is one of another version.
    #[error("version {0} is not the version {VERSION} this futu-authd writes")]
    Version(u32),
}

/// The entries of the file at `path`; `Ok(None)` when there is none.
fn read_file(path: &Path) -> Result<Option<BTreeMap<KeyId, Timestamp>>, ReadError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file: LastUsedFile = serde_json::from_str(&text).map_err(ReadError::NotLastUsed)?;
    if file.version != VERSION {
        return Err(ReadError::Version(file.version));
    }
    Ok(Some(file.last_used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futu_auth_keys::store::KeysFile;
    use std::os::unix::fs::PermissionsExt;

    fn id(s: &str) -> KeyId {
        s.parse().unwrap()
    }

    /// A snapshot holding keys with these ids.
    fn snapshot(ids: &[&str]) -> Snapshot {
        let keys: Vec<serde_json::Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                serde_json::json!({
                    "id": id,
                    "hash": format!("{:064x}", i + 1),
                    "scopes": ["qot:read"],
                    "created_at": "2026-01-01T00:00:00Z",
                })
            })
            .collect();
        let text = serde_json::json!({ "version": 1, "keys": keys }).to_string();
        let file = KeysFile::parse(&text, Path::new("keys.json")).unwrap();
        Snapshot::compile(&file.keys, &file.rotations, &file.halts, None)
    }

    fn gauge(m: &Metrics, key: &str) -> Option<i64> {
        let text = m.encode();
        let want = format!("futu_auth_key_last_used_timestamp_seconds{{key_id=\"{key}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn a_use_is_kept_to_the_minute_rounded_down() {
        assert_eq!(minute_of(1_700_000_000), 1_699_999_980);
        assert_eq!(minute_of(1_699_999_980), 1_699_999_980);
        assert_eq!(minute_of(1_700_000_039), 1_700_000_039 - 59);
        assert_eq!(minute_of(-1), -60);
        let m = Arc::new(Metrics::new());
        let lu = LastUsed::in_memory(Arc::clone(&m));
        lu.note(&id("a"), 1_700_000_000);
        assert_eq!(lu.get(&id("a")).unwrap().as_second(), 1_699_999_980);
        assert_eq!(gauge(&m, "a"), Some(1_699_999_980));
        assert_eq!(lu.get(&id("b")), None);
        assert_eq!(gauge(&m, "b"), None);
    }

    #[test]
    fn only_a_newer_minute_overwrites() {
        let m = Arc::new(Metrics::new());
        let lu = LastUsed::in_memory(Arc::clone(&m));
        let a = id("a");
        lu.note(&a, 6000);
        lu.changed.store(false, Ordering::Relaxed);
        // The same minute, and an older one: nothing changes.
        lu.note(&a, 6059);
        lu.note(&a, 5999);
        assert_eq!(lu.get(&a).unwrap().as_second(), 6000);
        assert!(!lu.changed.load(Ordering::Relaxed));
        assert_eq!(gauge(&m, "a"), Some(6000));
        lu.note(&a, 6060);
        assert_eq!(lu.get(&a).unwrap().as_second(), 6060);
        assert!(lu.changed.load(Ordering::Relaxed));
        assert_eq!(gauge(&m, "a"), Some(6060));
    }

    #[test]
    fn the_file_round_trips_and_drops_keys_no_longer_held() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let snap = snapshot(&["a", "b", "c"]);
        let lu = LastUsed::open(&state, &snap, Arc::new(Metrics::new()));
        assert!(lu.is_empty());
        assert!(!lu.save(&snap).unwrap(), "nothing to write yet");
        assert!(!state.join(FILE_NAME).exists());
        lu.note(&id("a"), 1_780_000_000);
        lu.note(&id("b"), 1_780_000_100);
        assert!(lu.save(&snap).unwrap());
        assert!(!lu.save(&snap).unwrap(), "nothing changed since");
        let meta = fs::metadata(state.join(FILE_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        let m = Arc::new(Metrics::new());
        let again = LastUsed::open(&state, &snap, Arc::clone(&m));
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(&id("a")), lu.get(&id("a")));
        assert_eq!(again.get(&id("b")), lu.get(&id("b")));
        assert_eq!(again.get(&id("c")), None);
        assert_eq!(gauge(&m, "b"), Some(minute_of(1_780_000_100)));

        // "a" is no longer in keys.json: it is not loaded, and the next write drops it.
        let fewer = snapshot(&["b", "c"]);
        let m = Arc::new(Metrics::new());
        let third = LastUsed::open(&state, &fewer, Arc::clone(&m));
        assert_eq!(third.get(&id("a")), None);
        assert_eq!(gauge(&m, "a"), None);
        assert!(third.save(&fewer).unwrap());
        let text = fs::read_to_string(state.join(FILE_NAME)).unwrap();
        assert!(!text.contains("\"a\""), "{text}");
        assert!(text.contains("\"b\""), "{text}");
    }

    #[test]
    fn a_revoked_key_loses_its_entry_and_gauge_at_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::new());
        let lu = LastUsed::open(dir.path(), &snapshot(&["a", "b"]), Arc::clone(&m));
        lu.note(&id("a"), 6000);
        lu.note(&id("b"), 6000);
        assert!(lu.save(&snapshot(&["a", "b"])).unwrap());
        assert!(
            lu.save(&snapshot(&["b"])).unwrap(),
            "dropping an entry is a change"
        );
        assert_eq!(lu.get(&id("a")), None);
        assert_eq!(gauge(&m, "a"), None);
        assert_eq!(gauge(&m, "b"), Some(6000));
    }

    #[test]
    fn a_damaged_file_is_ignored_and_replaced_at_the_next_write() {
        let snap = snapshot(&["a"]);
        for damaged in [
            "{\"version\": 1, \"last_used\": {\"a\": \"2026-11-30T08:41",
            "not json",
            "{\"version\": 9, \"last_used\": {}}",
            "{\"version\": 1, \"last_used\": {\"a\": \"yesterday\"}}",
            "{\"version\": 1, \"last_used\": {\"bad id!\": \"2026-11-30T08:41:00Z\"}}",
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(FILE_NAME), damaged).unwrap();
            let lu = LastUsed::open(dir.path(), &snap, Arc::new(Metrics::new()));
            assert!(lu.is_empty(), "{damaged}");
            lu.note(&id("a"), 6000);
            assert!(lu.save(&snap).unwrap());
            let again = LastUsed::open(dir.path(), &snap, Arc::new(Metrics::new()));
            assert_eq!(again.get(&id("a")).unwrap().as_second(), 6000, "{damaged}");
        }
    }

    #[test]
    fn the_uses_for_a_shared_store_are_those_noted_since_the_last_write() {
        let m = Arc::new(Metrics::new());
        let lu = LastUsed::in_memory(Arc::clone(&m));
        let snap = snapshot(&["a", "b"]);
        assert!(lu.take_unwritten(&snap).is_empty());
        lu.note(&id("a"), 6000);
        lu.note(&id("b"), 6001);
        lu.note(&id("gone"), 6000);
        let mut uses = lu.take_unwritten(&snap);
        uses.sort();
        assert_eq!(uses, [(id("a"), 6000), (id("b"), 6000)]);
        assert!(lu.take_unwritten(&snap).is_empty(), "written once");
        // The same minute again is not a use to write; a newer one is.
        lu.note(&id("a"), 6030);
        lu.note(&id("b"), 6060);
        let uses = lu.take_unwritten(&snap);
        assert_eq!(uses, [(id("b"), 6060)]);
        // What could not be written is written next time.
        lu.unwritten_again(uses);
        assert_eq!(lu.take_unwritten(&snap), [(id("b"), 6060)]);
    }

    #[test]
    fn a_failed_write_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot(&["a"]);
        let lu = LastUsed::open(&dir.path().join("state"), &snap, Arc::new(Metrics::new()));
        lu.note(&id("a"), 6000);
        // The state dir replaced by a file: the write fails.
        fs::remove_dir_all(dir.path().join("state")).unwrap();
        fs::write(dir.path().join("state"), "").unwrap();
        assert!(lu.save(&snap).is_err());
        fs::remove_file(dir.path().join("state")).unwrap();
        fs::create_dir(dir.path().join("state")).unwrap();
        assert!(lu.save(&snap).unwrap(), "still to be written after the failure");
    }
}
