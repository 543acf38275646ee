//! The key ring: the keys in service, compiled from what the key store holds
//! ([`crate::key_store`]: keys.json, or the database shared by several hosts), swapped
//! whole on reload, after every admin change and, with a shared store, at every change
//! another host makes; never left empty by keys that do not load.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, Guard};
use futu_auth_keys::store::{KeysFile, StoreError};
use futu_auth_proto::Fingerprint;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::expiry::{self, DailyWarning};
use crate::key_store::pg::{Heard, CHECK_EVERY};
pub use crate::key_store::KeyStoreError as KeyRingError;
use crate::key_store::{Freshness, KeyStore, Loaded, PgKeyStore, Stamp};
use crate::metrics::Metrics;
use crate::notify;
use futu_auth_rules::Snapshot;
use jiff::Timestamp;

/// What an install replaced: the snapshot that was in service and the parsed file the new
/// one was compiled from, freed together after the change is announced.
struct Retired {
    _snapshot: Arc<Snapshot>,
    _file: KeysFile,
}

/// The keys in service and the store they come from.
pub struct KeyRing {
    /// Where the keys are kept: read on start and reload, written by admin requests.
    store: KeyStore,
    /// The keys in service; every change swaps in a new snapshot whole.
    snapshot: ArcSwap<Snapshot>,
    /// This host's fingerprint, for new snapshots.
    host: Option<Fingerprint>,
    /// Serializes reloads, admin changes and loads of the shared store, so snapshots are
    /// installed in the store's order.
    serial: tokio::sync::Mutex<()>,
    /// Which state of the store is in service: a reload of the same one keeps the
    /// snapshot instead of compiling it again. `None` before anything was read.
    loaded: Mutex<Option<Stamp>>,
    /// With a shared store, whether the snapshot is known to be current (trading is refused
    /// when it has not been for too long); `None` for keys.json, which this host alone
    /// changes.
    freshness: Option<Arc<Freshness>>,
    metrics: Arc<Metrics>,
    /// When keys expiring soon were last warned of: at start, at each reload, and once a
    /// UTC day.
    expiry_warning: DailyWarning,
}

impl KeyRing {
    /// The ring of `store`, serving `loaded` (what the store held at start; `None`: nothing
    /// yet, no key is in service until the store answers), checked on host `host`.
    pub fn new(
        store: KeyStore,
        loaded: Option<Loaded>,
        freshness: Option<Arc<Freshness>>,
        host: Option<Fingerprint>,
        metrics: Arc<Metrics>,
    ) -> KeyRing {
        let (snapshot, stamp) = match loaded {
            Some(Loaded { file, stamp }) => (
                Snapshot::compile(&file.keys, &file.rotations, &file.halts, host.clone()),
                Some(stamp),
            ),
            None => (Snapshot::compile(&[], &[], &[], host.clone()), None),
        };
        metrics.keys_loaded(snapshot.len());
        metrics.halts(snapshot.halts());
        expiry::show(&metrics, &snapshot);
        KeyRing {
            store,
            snapshot: ArcSwap::from_pointee(snapshot),
            host,
            serial: tokio::sync::Mutex::new(()),
            loaded: Mutex::new(stamp),
            freshness,
            metrics,
            expiry_warning: DailyWarning::default(),
        }
    }

    /// Where the keys are kept (keys.json's path, or the database and its schema).
    pub fn stored_in(&self) -> String {
        self.store.stored_in()
    }

    /// The key store in PostgreSQL, when the keys are kept there.
    pub fn shared(&self) -> Option<&PgKeyStore> {
        match &self.store {
            KeyStore::Pg(pg) => Some(pg),
            KeyStore::File(_) => None,
        }
    }

    /// The keys in service now.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// How many keys are in service.
    pub fn len(&self) -> usize {
        self.snapshot.load().len()
    }

    /// Why checks that need a trading scope are refused now: a shared store whose snapshot
    /// has not been confirmed current within `--keys-max-staleness`. `None`: they are not.
    pub fn trading_refusal(&self) -> Option<String> {
        self.freshness.as_ref()?.trading_refusal()
    }

    fn stamp(&self) -> Option<Stamp> {
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compiles and swaps in a new snapshot; returns the number of keys and what to free
    /// off the caller's path (the old snapshot, the parsed file). Blocking work.
    fn install(&self, loaded: Loaded) -> (usize, Retired) {
        let Loaded { file, stamp } = loaded;
        let snapshot = Snapshot::compile(&file.keys, &file.rotations, &file.halts, self.host.clone());
        let n = snapshot.len();
        self.metrics.halts(snapshot.halts());
        expiry::show(&self.metrics, &snapshot);
        let old = self.snapshot.swap(Arc::new(snapshot));
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamp);
        self.metrics.keys_loaded(n);
        (
            n,
            Retired {
                _snapshot: old,
                _file: file,
            },
        )
    }

    /// [`KeyRing::install`] off the runtime's threads.
    async fn install_blocking(self: &Arc<Self>, loaded: Loaded) -> Result<(usize, Retired), KeyRingError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.install(loaded))
            .await
            .map_err(KeyRingError::Task)
    }

    /// Reads the store again (keys.json, or the shared store's current state). Keys that
    /// do not load leave the keys in service as they were: never zero keys, never fail
    /// open.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<usize, KeyRingError> {
        let _serial = self.serial.lock().await;
        notify::reloading();
        let asked = Instant::now();
        let loaded = self.store.reload(self.stamp()).await;
        let mut retired = None;
        let result = match loaded {
            Ok(installed) => {
                self.metrics.reload(true);
                if let Some(f) = &self.freshness {
                    f.confirmed(asked);
                }
                let n = match installed {
                    Some(loaded) => {
                        let (n, old) = self.install_blocking(loaded).await?;
                        retired = Some(old);
                        tracing::info!("keys_loaded={n} {} reloaded ({why})", self.store.what());
                        n
                    }
                    None => {
                        let n = self.len();
                        tracing::info!("keys_loaded={n} {} unchanged ({why})", self.store.what());
                        n
                    }
                };
                if let KeyStore::File(f) = &self.store {
                    if let Some(w) = f.mode_warning() {
                        tracing::warn!("{w}");
                    }
                }
                self.warn_of_expiring_keys();
                Ok(n)
            }
            Err(e) => {
                self.metrics.reload(false);
                if let Some(f) = &self.freshness {
                    f.failed(&e);
                }
                tracing::error!(
                    "reload ({why}) failed, keeping the {} keys in service: {e}",
                    self.len()
                );
                Err(e)
            }
        };
        notify::reloaded(self.len());
        retire(retired);
        result
    }

    /// Logs a warning for each key in service that expires within 7 days (or has expired),
    /// and notes the warnings given today.
    pub fn warn_of_expiring_keys(&self) {
        let now = Timestamp::now();
        self.expiry_warning.given(now);
        expiry::warn(&self.snapshot(), now);
    }

    /// [`KeyRing::warn_of_expiring_keys`] when the warnings were not given yet this UTC day
    /// (at start, and on the first call of each day).
    pub fn warn_of_expiring_keys_daily(&self) {
        let now = Timestamp::now();
        if self.expiry_warning.due(now) {
            expiry::warn(&self.snapshot(), now);
        }
    }

    /// Applies a change where the keys are kept (under keys.json's lock, or in one
    /// transaction of the shared store) and installs the result.
    pub async fn update<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, KeyRingError> {
        let _serial = self.serial.lock().await;
        let asked = Instant::now();
        let (value, loaded) = self.store.update(change).await?;
        let (n, old) = self.install_blocking(loaded).await?;
        if let Some(f) = &self.freshness {
            f.confirmed(asked);
        }
        notify::keys_changed(n);
        retire(Some(old));
        Ok(value)
    }

    /// The keys as the store holds them now (for listings and exports).
    pub async fn read_file(&self) -> Result<KeysFile, KeyRingError> {
        Ok(self.store.load().await?.file)
    }

    /// Follows a shared store until `stop`: installs each change another host makes when
    /// its notification arrives, and asks for the store's version every [`CHECK_EVERY`]
    /// besides (a lost notification), confirming the snapshot current each time it is.
    /// Returns at once for keys.json.
    pub async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let (Some(pg), Some(freshness)) = (self.shared(), self.freshness.clone()) else {
            return;
        };
        let mut heard = pg.listen();
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Versions announced since the last check: a change the check finds that none
        // announced means the listening connection missed it.
        let mut announced = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if self.check_version(announced).await == Checked::Unannounced {
                        tracing::debug!("keys: a change no notification announced; listening again");
                        heard = pg.listen();
                    }
                    announced = false;
                }
                message = heard.recv() => match message {
                    Some(Heard::Changed(version)) => {
                        announced = true;
                        if version.is_none_or(|v| self.stamp() != Some(Stamp::Version(v))) {
                            self.load_and_install("a change was notified").await;
                        }
                    }
                    Some(Heard::Listening) => {
                        // Changes made while nobody listened are found now.
                        let _ = self.check_version(true).await;
                    }
                    None => heard = pg.listen(),
                },
            }
            freshness.tick();
        }
    }

    /// Asks the shared store for its version: the snapshot is confirmed current when it is
    /// the one in service, else the store is loaded and installed.
    async fn check_version(self: &Arc<Self>, announced: bool) -> Checked {
        let (Some(pg), Some(freshness)) = (self.shared(), &self.freshness) else {
            return Checked::Current;
        };
        let asked = Instant::now();
        match pg.version().await {
            Ok(v) if self.stamp() == Some(Stamp::Version(v)) => {
                freshness.confirmed(asked);
                Checked::Current
            }
            Ok(_) => {
                self.load_and_install("the periodic check found a newer version")
                    .await;
                if announced {
                    Checked::Announced
                } else {
                    Checked::Unannounced
                }
            }
            Err(e) => {
                freshness.failed(&e);
                Checked::Failed
            }
        }
    }

    /// Loads the shared store whole and installs it, unless it is the state in service.
    async fn load_and_install(self: &Arc<Self>, why: &str) {
        let (Some(pg), Some(freshness)) = (self.shared(), &self.freshness) else {
            return;
        };
        let _serial = self.serial.lock().await;
        let asked = Instant::now();
        let loaded = match pg.load().await {
            Ok(l) => l,
            Err(e) => {
                freshness.failed(&e);
                return;
            }
        };
        let before = self.stamp();
        if before == Some(loaded.stamp) {
            freshness.confirmed(asked);
            return;
        }
        if let (Some(Stamp::Version(old)), Stamp::Version(new)) = (before, loaded.stamp) {
            if new < old {
                tracing::warn!(
                    "keys: the store's version went back from {old} to {new} (restored from a backup, or made again?); serving what it holds now"
                );
            }
        }
        let version = match loaded.stamp {
            Stamp::Version(v) => v,
            Stamp::Text(_) => 0,
        };
        match self.install_blocking(loaded).await {
            Ok((n, old)) => {
                freshness.confirmed(asked);
                tracing::info!("keys_loaded={n} keys store version {version} in service ({why})");
                notify::keys_changed(n);
                retire(Some(old));
            }
            Err(e) => freshness.failed(&e),
        }
    }
}

/// What a version check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// The snapshot in service is current.
    Current,
    /// A newer version, whose notification arrived since the last check.
    Announced,
    /// A newer version no notification announced.
    Unannounced,
    /// The store did not answer.
    Failed,
}

/// Frees what an install replaced off the runtime's threads: freeing 100 000 compiled keys
/// and their parsed records takes a while.
fn retire(retired: Option<Retired>) {
    if let Some(old) = retired {
        tokio::task::spawn_blocking(move || {
            drop(old);
            crate::heap::give_back_freed_memory();
        });
    }
}
