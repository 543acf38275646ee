//! Where the keys live: the seam between the keys in service ([`crate::service::KeyRing`],
//! which compiles and swaps snapshots) and what keeps the keys, chosen at start
//! (`server/startup.rs`, `open_key_store`) as the ledger store is:
//!
//! * [`file::FileStore`] — keys.json, this host's alone, the default: read at start and
//!   on reload, changed under its lock ([`futu_auth_keys::store::update`]);
//! * [`pg::PgKeyStore`] — `--keys-url`: one key store in PostgreSQL shared by the
//!   futu-authd of several gateway hosts. Every change is committed in the database first
//!   and reaches every daemon within a second ([`pg`] says how); each daemon checks
//!   against its own snapshot, never waiting on the database, and knows how long ago it
//!   last confirmed that snapshot current ([`freshness`]).
//!
//! Both apply a change the same way — the same closure over a [`KeysFile`],
//! [`futu_auth_keys::store::apply`] — and hand back what the store holds after it, whole,
//! for the key ring to compile.

use futu_auth_keys::store::{KeysFile, StoreError, TextDigest};

pub mod file;
pub mod freshness;
pub mod pg;

pub use file::FileStore;
pub use freshness::{Freshness, FreshnessEvent, FreshnessReport};
pub use pg::{PgKeyStore, PgKeysError};

/// What a store holds, read whole, and which state of the store it is.
#[derive(Debug)]
pub struct Loaded {
    /// The keys, as keys.json holds them.
    pub file: KeysFile,
    /// Which state of the store `file` is.
    pub stamp: Stamp,
}

/// Which state of a store a [`Loaded`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// keys.json's text, by its digest: a reload of the same text changes nothing.
    Text(TextDigest),
    /// The database's version of the key store, raised by every change.
    Version(i64),
}

/// Why the keys could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The keys could not be read, parsed or changed (keys.json, or what the database
    /// holds read as strictly), or the change itself was refused.
    #[error(transparent)]
    Keys(#[from] StoreError),
    /// The database could not be used.
    #[error(transparent)]
    Database(#[from] PgKeysError),
    /// The blocking task doing the work failed (it panicked or was cancelled).
    #[error("the keys file task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// The store the daemon was started with.
pub enum KeyStore {
    /// keys.json.
    File(FileStore),
    /// The key store in PostgreSQL (`--keys-url`); boxed, being the larger by far.
    Pg(Box<PgKeyStore>),
}

impl KeyStore {
    /// Where the keys are kept, for answers and log lines: keys.json's path, or the
    /// database (without a password) and its schema.
    pub fn stored_in(&self) -> String {
        match self {
            KeyStore::File(f) => f.path().display().to_string(),
            KeyStore::Pg(pg) => pg.stored_in(),
        }
    }

    /// What the keys are, in a log line: `keys file` (keys.json), `keys store <database>`.
    pub fn what(&self) -> String {
        match self {
            KeyStore::File(_) => "keys file".to_owned(),
            KeyStore::Pg(pg) => format!("keys store {}", pg.stored_in()),
        }
    }

    /// Everything the store holds now.
    pub async fn load(&self) -> Result<Loaded, KeyStoreError> {
        match self {
            KeyStore::File(f) => f.load().await,
            KeyStore::Pg(pg) => Ok(pg.load().await?),
        }
    }

    /// What the store holds now, unless it is the state `current` (`Ok(None)`): a reload.
    pub async fn reload(&self, current: Option<Stamp>) -> Result<Option<Loaded>, KeyStoreError> {
        match self {
            KeyStore::File(f) => f.reload(current).await,
            KeyStore::Pg(pg) => {
                let loaded = pg.load().await?;
                Ok((Some(loaded.stamp) != current).then_some(loaded))
            }
        }
    }

    /// Applies `change` as [`futu_auth_keys::store::apply`] does, where the keys are kept
    /// (under keys.json's lock; in one transaction of the database), and returns what it
    /// returned and what the store holds after it.
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, Loaded), KeyStoreError> {
        match self {
            KeyStore::File(f) => f.update(change).await,
            KeyStore::Pg(pg) => Ok(pg.update(change).await?),
        }
    }
}
