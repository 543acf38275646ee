//! keys.json as the key store: this host's alone, read at start and on reload, changed by
//! admin requests under its lock with an atomic write ([`futu_auth_keys::store`]).

use std::path::{Path, PathBuf};

use futu_auth_keys::store::{self, KeysFile, StoreError};

use super::{KeyStoreError, Loaded, Stamp};

/// keys.json.
#[derive(Debug)]
pub struct FileStore {
    /// `--keys-file`.
    path: PathBuf,
}

impl FileStore {
    /// The store of the keys.json at `path`.
    pub fn new(path: PathBuf) -> FileStore {
        FileStore { path }
    }

    /// keys.json's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// keys.json as it is on disk now, strictly read (blocking work, off the runtime).
    pub async fn load(&self) -> Result<Loaded, KeyStoreError> {
        let path = self.path.clone();
        spawn_blocking(move || {
            let text = store::read_text(&path)?;
            let file = KeysFile::parse(&text, &path)?;
            Ok(Loaded {
                file,
                stamp: Stamp::Text(store::text_digest(&text)),
            })
        })
        .await
    }

    /// keys.json again, parsed unless its text is `current`'s (a SIGHUP for logrotate):
    /// `Ok(None)` when unchanged.
    pub async fn reload(&self, current: Option<Stamp>) -> Result<Option<Loaded>, KeyStoreError> {
        let path = self.path.clone();
        spawn_blocking(move || {
            let text = store::read_text(&path)?;
            // The digest (which keeps the snapshot when the text is unchanged) is taken on
            // a thread of its own while the text is parsed: a reload of a large file waits
            // for the longer of the two, not for both. An unchanged text is parsed for
            // nothing.
            let (digest, parsed) = std::thread::scope(|s| {
                let digest = std::thread::Builder::new()
                    .name("keys-digest".into())
                    .spawn_scoped(s, || store::text_digest(&text));
                let parsed = KeysFile::parse(&text, &path);
                let digest = match digest {
                    Ok(thread) => thread.join().unwrap_or_else(|_| store::text_digest(&text)),
                    // No thread to be had: here, after the parse.
                    Err(_) => store::text_digest(&text),
                };
                (digest, parsed)
            });
            if current == Some(Stamp::Text(digest)) {
                return Ok(None);
            }
            Ok(Some(Loaded {
                file: parsed?,
                stamp: Stamp::Text(digest),
            }))
        })
        .await
    }

    /// Applies `change` to keys.json under its lock ([`store::update`]).
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, Loaded), KeyStoreError> {
        let path = self.path.clone();
        spawn_blocking(move || {
            let u = store::update(&path, change)?;
            Ok((
                u.value,
                Loaded {
                    file: u.file,
                    stamp: Stamp::Text(u.digest),
                },
            ))
        })
        .await
    }

    /// A warning when keys.json can be read by others than its owner.
    pub fn mode_warning(&self) -> Option<String> {
        store::mode_warning(&self.path)
    }
}

async fn spawn_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KeyStoreError> + Send + 'static,
) -> Result<T, KeyStoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(KeyStoreError::Task)?
}
