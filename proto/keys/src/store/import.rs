//! Importing one keys.json into another: `futucli import-keys`, for a move from keys.json
//! to a key store shared by several hosts, or a restore from an export.
//!
//! The keys of the file are added after the store's own, in the file's order; an id the
//! store holds already refuses the whole import, unless asked to replace it (its record
//! then takes the place of the old one, and its rotation, if the file has one, that of the
//! old one's). What the two make together must load as keys.json does: a hash shared by
//! two ids, or a rotation whose previous plaintext is another key's, refuses the import.
//!
//! Every top-level field of keys.json has its merge here: `keys`, `rotations` and `halts`.
//! A halt of an imported key takes the place of the store's halt of that id (a replaced
//! key keeps no halt the file does not give it); the file's halt of every key, if it has
//! one, takes the place of the store's; an import never lifts the store's halt of every
//! key.

use std::path::Path;

use futu_auth_proto::KeyId;

use super::{HaltTarget, KeysFile, StoreError};

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Merged {
    /// Keys of the file the store did not hold.
    pub added: usize,
    /// Keys of the file that replaced the store's key of the same id.
    pub replaced: usize,
}

/// At most this many ids are named in an error; the rest are counted.
const NAMED: usize = 10;

/// The error text of [`StoreError::AlreadyPresent`].
pub(super) fn describe_present(ids: &[String]) -> String {
    let mut named: Vec<String> = ids.iter().take(NAMED).map(|id| format!("{id:?}")).collect();
    if ids.len() > NAMED {
        named.push(format!("and {} more", ids.len() - NAMED));
    }
    format!(
        "the key store holds {} of the file's ids already ({}); nothing was imported: import with replace (futucli import-keys --replace) to replace them, or revoke them first",
        ids.len(),
        named.join(", ")
    )
}

impl KeysFile {
    /// Adds the keys (and their rotations) of `file`; with `replace`, a key whose id this
    /// one holds replaces it in place, otherwise such an id refuses the import
    /// ([`StoreError::AlreadyPresent`]). The result is checked as loading checks keys.json.
    /// When this fails, `self` is to be thrown away (as with every change, [`super::apply`]).
    pub fn import(&mut self, file: KeysFile, replace: bool) -> Result<Merged, StoreError> {
        let present: Vec<String> = file
            .keys
            .iter()
            .filter(|k| self.get(&k.id).is_some())
            .map(|k| k.id.to_string())
            .collect();
        if !present.is_empty() && !replace {
            return Err(StoreError::AlreadyPresent(present));
        }
        let KeysFile {
            version: _,
            keys,
            rotations,
            halts,
        } = file;
        let imported: Vec<KeyId> = keys.iter().map(|k| k.id.clone()).collect();
        let mut merged = Merged::default();
        for key in keys {
            match self.keys.iter_mut().find(|k| k.id == key.id) {
                Some(old) => {
                    *old = key;
                    merged.replaced += 1;
                }
                None => {
                    self.keys.push(key);
                    merged.added += 1;
                }
            }
        }
        self.rotations.retain(|r| !imported.contains(&r.id));
        self.rotations.extend(rotations);
        let file_halts_all = halts.iter().any(|h| h.target == HaltTarget::All);
        self.halts.retain(|h| match &h.target {
            HaltTarget::Key(id) => !imported.contains(id),
            HaltTarget::All => !file_halts_all,
        });
        self.halts.extend(halts);
        // What loads is what the store may hold: the same strict reading as keys.json's.
        let text = self.to_json();
        match KeysFile::parse(&text, Path::new("the key store with the file imported")) {
            Ok(_) => Ok(merged),
            Err(StoreError::Invalid(e)) => Err(StoreError::ImportConflict(e)),
            Err(e) => Err(e),
        }
    }
}
