//! The key ring: the keys in service, compiled from keys.json, swapped whole on reload and
//! after every admin change, never left empty by a file that does not load.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use futu_auth_keys::store::{self, KeysFile, StoreError, TextDigest};
use futu_auth_proto::Fingerprint;

use crate::metrics::Metrics;
use crate::notify;
use futu_auth_rules::Snapshot;

/// Why the key ring could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// keys.json could not be read, parsed or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task doing the work failed (it panicked or was cancelled).
    #[error("the keys file task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// What a reload replaced: the snapshot that was in service and the parsed file the new
/// one was compiled from, freed together after the reload is announced.
struct Retired {
    _snapshot: Arc<Snapshot>,
    _file: KeysFile,
}

/// The keys in service and the file they come from.
pub struct KeyRing {
    /// keys.json: read on start and reload, written by admin requests.
    keys_file: PathBuf,
    /// The keys in service; a reload swaps in a new snapshot whole.
    snapshot: ArcSwap<Snapshot>,
    /// This host's fingerprint, for new snapshots.
    host: Option<Fingerprint>,
    /// Serializes reloads and admin changes, so snapshots are installed in file order.
    serial: tokio::sync::Mutex<()>,
    /// SHA-256 of the keys.json text in service: a reload of the same text (a SIGHUP for
    /// logrotate) keeps the snapshot instead of compiling it again.
    loaded_digest: Mutex<Option<TextDigest>>,
    metrics: Arc<Metrics>,
}

impl KeyRing {
    /// The ring of `file`, keys.json as loaded at start (text digest `digest`), checked on
    /// host `host`.
    pub fn new(
        keys_file: PathBuf,
        file: KeysFile,
        digest: Option<TextDigest>,
        host: Option<Fingerprint>,
        metrics: Arc<Metrics>,
    ) -> KeyRing {
        let snapshot = Snapshot::compile(&file.keys, &file.rotations, &file.halts, host.clone());
        drop(file);
        metrics.keys_loaded(snapshot.len());
        metrics.halts(snapshot.halts());
        KeyRing {
            keys_file,
            snapshot: ArcSwap::from_pointee(snapshot),
            host,
            serial: tokio::sync::Mutex::new(()),
            loaded_digest: Mutex::new(digest),
            metrics,
        }
    }

    /// keys.json's path.
    pub fn keys_file(&self) -> &Path {
        &self.keys_file
    }

    /// The keys in service now.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// How many keys are in service.
    pub fn len(&self) -> usize {
        self.snapshot.load().len()
    }

    /// Compiles and swaps in a new snapshot; returns the number of keys and what to free
    /// off the caller's path (the old snapshot, the parsed file). Blocking work.
    fn install(&self, file: KeysFile, text_digest: TextDigest) -> (usize, Retired) {
        let snapshot = Snapshot::compile(&file.keys, &file.rotations, &file.halts, self.host.clone());
        let n = snapshot.len();
        self.metrics.halts(snapshot.halts());
        let old = self.snapshot.swap(Arc::new(snapshot));
        *self.loaded_digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(text_digest);
        self.metrics.keys_loaded(n);
        (
            n,
            Retired {
                _snapshot: old,
                _file: file,
            },
        )
    }

    /// Reads keys.json and, unless it is the text already in service, parses and installs
    /// it. `Ok(None)`: unchanged.
    fn load_and_install(&self) -> Result<Option<(usize, Retired)>, StoreError> {
        let text = store::read_text(&self.keys_file)?;
        // The digest (which keeps the snapshot when the text is unchanged) is taken on a
        // thread of its own while the text is parsed: a reload of a large file waits for
        // the longer of the two, not for both. An unchanged text (a SIGHUP for logrotate)
        // is parsed for nothing.
        let (digest, parsed) = std::thread::scope(|s| {
            let digest = std::thread::Builder::new()
                .name("keys-digest".into())
                .spawn_scoped(s, || store::text_digest(&text));
            let parsed = KeysFile::parse(&text, &self.keys_file);
            let digest = match digest {
                Ok(thread) => thread.join().unwrap_or_else(|_| store::text_digest(&text)),
                // No thread to be had: here, after the parse.
                Err(_) => store::text_digest(&text),
            };
            (digest, parsed)
        });
        if *self.loaded_digest.lock().unwrap_or_else(|p| p.into_inner()) == Some(digest) {
            return Ok(None);
        }
        let file = parsed?;
        drop(text);
        Ok(Some(self.install(file, digest)))
    }

    /// Re-reads keys.json. A file that does not load leaves the keys in service as they
    /// were: never zero keys, never fail open.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<usize, KeyRingError> {
        let _serial = self.serial.lock().await;
        notify::reloading();
        let me = Arc::clone(self);
        let loaded = match tokio::task::spawn_blocking(move || me.load_and_install()).await {
            Ok(r) => r.map_err(KeyRingError::Store),
            Err(e) => Err(KeyRingError::Task(e)),
        };
        let mut retired = None;
        let result = match loaded {
            Ok(installed) => {
                self.metrics.reload(true);
                let n = match installed {
                    Some((n, old)) => {
                        retired = Some(old);
                        tracing::info!("keys_loaded={n} keys file reloaded ({why})");
                        n
                    }
                    None => {
                        let n = self.len();
                        tracing::info!("keys_loaded={n} keys file unchanged ({why})");
                        n
                    }
                };
                if let Some(w) = store::mode_warning(&self.keys_file) {
                    tracing::warn!("{w}");
                }
                Ok(n)
            }
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(
                    "reload ({why}) failed, keeping the {} keys in service: {e}",
                    self.len()
                );
                Err(e)
            }
        };
        notify::reloaded(self.len());
        if let Some(old) = retired {
            // Freeing 100 000 compiled keys and their parsed records takes a while; not on
            // the reload's clock.
            tokio::task::spawn_blocking(move || {
                drop(old);
                crate::heap::give_back_freed_memory();
            });
        }
        result
    }

    /// Applies a change to keys.json under the store's lock and installs the result.
    pub async fn update<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, KeyRingError> {
        let _serial = self.serial.lock().await;
        let me = Arc::clone(self);
        let (value, n) = tokio::task::spawn_blocking(move || {
            store::update(&me.keys_file, change).map(|u| (u.value, me.install(u.file, u.digest).0))
        })
        .await
        .map_err(KeyRingError::Task)??;
        notify::ready(n);
        Ok(value)
    }

    /// keys.json as it is now on disk (for listings).
    pub async fn read_file(&self) -> Result<KeysFile, KeyRingError> {
        let path = self.keys_file.clone();
        tokio::task::spawn_blocking(move || KeysFile::load(&path))
            .await
            .map_err(KeyRingError::Task)?
            .map_err(KeyRingError::Store)
    }
}
