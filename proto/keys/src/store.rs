//! keys.json on disk: strict loading, atomic crash-safe saving under an advisory lock, and
//! the mutations `futucli` and the daemon's admin requests make.
//!
//! Loading refuses anything it does not understand — a typo such as `max_order_valeu` must
//! never silently remove a limit — and the error names the file, line, column, key id and
//! field. Saving writes a temporary file in the same directory, fsyncs it, renames it over
//! keys.json and fsyncs the directory, with mode 0600; a crash at any point leaves either
//! the old file or the new one. Writers hold an exclusive `flock` on a sibling
//! `.keys.json.lock` for the whole read-modify-write, so two writers never interleave.
//!
//! A rotated key's previous plaintext, still accepted for an overlap, is recorded in the
//! top-level `rotations` array ([`Rotation`], [`KeysFile::rotate`]); a halt of trading, in
//! the top-level `halts` array ([`Halt`], [`KeysFile::halt`], [`KeysFile::resume`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use futu_auth_proto::key::{redact, InvalidValue};
use futu_auth_proto::{BindOp, KeyId, KeyRecord, KeySpec, Token};
use jiff::Timestamp;
use nix::fcntl::{Flock, FlockArg};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Digest;

use crate::token::{digest, generate_token};

mod halt;
mod import;
mod parts;
mod rotation;

pub use futu_auth_proto::key::{Halt, HaltReason, HaltTarget, HaltedBy, Rotation};
pub use halt::NotHalted;
pub use import::Merged;
pub use parts::{Parts, RecordText};
pub use rotation::MAX_OVERLAP;

/// The only keys.json version this daemon reads and writes.
pub const KEYS_FILE_VERSION: u32 = 1;

/// The whole keys.json: `{"version": 1, "keys": [...]}`, `"rotations": [...]` while a
/// rotated key's previous plaintext is still accepted, and `"halts": [...]` while trading
/// is halted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Always [`KEYS_FILE_VERSION`].
    pub version: Version,
    /// Every key, in the order they were made.
    #[serde(deserialize_with = "unique_keys")]
    pub keys: Vec<KeyRecord>,
    /// The overlaps of rotated keys, oldest rotation first; omitted when there is none, so
    /// a file without rotations is exactly what daemons before rotation read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Rotation>,
    /// Trading halted (the kill switch), for one key or every key, in the order the halts
    /// were made; omitted when there is none, so a file without halts is exactly what
    /// daemons before the kill switch read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub halts: Vec<Halt>,
}

/// The `version` field; anything but 1 is refused when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u32")]
pub struct Version(u32);

impl TryFrom<u64> for Version {
    type Error = InvalidValue;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        if v == u64::from(KEYS_FILE_VERSION) {
            Ok(Version(KEYS_FILE_VERSION))
        } else {
            Err(InvalidValue(format!(
                "unsupported keys.json version {v} (this futu-authd reads version {KEYS_FILE_VERSION})"
            )))
        }
    }
}

impl From<Version> for u32 {
    fn from(v: Version) -> u32 {
        v.0
    }
}

/// Reads the `keys` array and refuses a repeated id or a repeated hash while reading, so
/// the error carries the position of the second one.
fn unique_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyRecord>, D::Error> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<KeyRecord>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of key records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut keys: Vec<KeyRecord> = Vec::new();
            let mut ids: HashMap<KeyId, usize> = HashMap::new();
            let mut hashes: HashMap<[u8; 32], usize> = HashMap::new();
            while let Some(rec) = seq.next_element::<KeyRecord>()? {
                let i = keys.len();
                if let Some(first) = ids.insert(rec.id.clone(), i) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate key id {:?} (keys[{first}] and keys[{i}])",
                        rec.id.as_str()
                    )));
                }
                if let Some(first) = hashes.insert(rec.hash.0, i) {
                    return Err(serde::de::Error::custom(format!(
                        "key {:?} has the same hash as keys[{first}] ({:?}); revoke one and generate a new key",
                        rec.id.as_str(),
                        keys[first].id.as_str()
                    )));
                }
                keys.push(rec);
            }
            Ok(keys)
        }
    }
    d.deserialize_seq(Keys)
}

impl Default for KeysFile {
    fn default() -> Self {
        KeysFile {
            version: Version(KEYS_FILE_VERSION),
            keys: Vec::new(),
            rotations: Vec::new(),
            halts: Vec::new(),
        }
    }
}

/// Everything that can go wrong with keys.json.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read, written, locked or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a valid keys.json.
    #[error("{0}")]
    Invalid(Box<InvalidFile>),
    /// A key with this id already exists.
    #[error("a key with id {0:?} already exists; revoke it first or choose another id")]
    DuplicateKey(String),
    /// No key has this id.
    #[error("no key with id {0:?}")]
    UnknownKey(String),
    /// The OS random source failed while making a key.
    #[error("cannot make a key: the OS random source failed: {0}")]
    Random(String),
    /// A rotation's overlap (in seconds) is longer than [`MAX_OVERLAP`].
    #[error("an overlap of {0} s is longer than the longest allowed, 90 days (7776000 s)")]
    OverlapTooLong(u64),
    /// A resume of a key, or of every key, that is not halted.
    #[error("{0}")]
    NotHalted(Box<NotHalted>),
    /// An import brings keys whose ids the store holds already (and was not asked to
    /// replace them).
    #[error("{}", import::describe_present(.0))]
    AlreadyPresent(Vec<String>),
    /// An import's keys and the store's would not load together (a hash shared by two
    /// ids, a rotation's previous plaintext in service).
    #[error("the file's keys and the key store's do not go together; nothing was imported: {0}")]
    ImportConflict(Box<InvalidFile>),
}

/// Where and why keys.json was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFile {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The id of the key the error is in, when it is inside one and its id could be read.
    pub key_id: Option<String>,
    /// The path to the field, e.g. `keys[1].limits.max_order_value` (empty for the top).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InvalidFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.column)?;
        if let Some(id) = &self.key_id {
            write!(f, "key {id:?}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "field {}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl KeysFile {
    /// Parses keys.json text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<KeysFile, StoreError> {
        // The plain parse is twice as fast; the path-tracking one runs only to explain an
        // error.
        let file = match serde_json::from_str::<KeysFile>(text) {
            Ok(file) => file,
            Err(_) => KeysFile::parse_explained(text, path)?,
        };
        file.check_rotations()
            .and_then(|()| file.check_halts())
            .map_err(|fault| fault.into_invalid(text, path))?;
        Ok(file)
    }

    /// The path-tracking parse: the error names the line, column, key and field.
    fn parse_explained(text: &str, path: &Path) -> Result<KeysFile, StoreError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed: Result<KeysFile, _> = serde_path_to_error::deserialize(&mut de);
        let file = parsed.map_err(|e| {
            let field = e.path().to_string();
            let inner = e.inner();
            let field = if field == "." { String::new() } else { field };
            // A halt that names no target, or two, is known only once the whole entry is
            // read: shown where the entry starts.
            let (line, column) = halt::whole_entry(&field)
                .and_then(|i| rotation::entry_position(text, "halts", i))
                .unwrap_or((inner.line(), inner.column()));
            // Everything quoted from the file is redacted: a plaintext pasted in the wrong
            // place must not reach the log, an admin reply or the audit trail.
            StoreError::Invalid(Box::new(InvalidFile {
                path: path.to_owned(),
                line,
                column,
                key_id: key_id_at(text, &field).map(|id| redact(&id).into_owned()),
                message: redact(&strip_position(&inner.to_string())).into_owned(),
                field: redact(&field).into_owned(),
            }))
        })?;
        de.end().map_err(|e| {
            StoreError::Invalid(Box::new(InvalidFile {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                key_id: None,
                field: String::new(),
                message: redact(&strip_position(&e.to_string())).into_owned(),
            }))
        })?;
        Ok(file)
    }

    /// Reads and parses keys.json.
    pub fn load(path: &Path) -> Result<KeysFile, StoreError> {
        KeysFile::parse(&read_text(path)?, path)
    }

    /// The text [`KeysFile::save`] writes.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("keys.json always serializes");
        s.push('\n');
        s
    }

    /// Writes keys.json atomically: temporary file, fsync, rename, fsync of the directory;
    /// mode 0600, and the owner of the file it replaces when run as root. Callers that
    /// read-modify-write hold the lock ([`update`]). Returns the digest of the text written.
    pub fn save(&self, path: &Path) -> Result<TextDigest, StoreError> {
        let dir = parent_dir(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let owner = owner_for(path);
        let write = || -> io::Result<TextDigest> {
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let text = self.to_json();
            f.write_all(text.as_bytes())?;
            give_to(&f, owner)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(&dir)?.sync_all()?;
            Ok(text_digest(&text))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::Io {
                path: path.to_owned(),
                source: e,
            }
        })
    }

    /// The key with this id.
    pub fn get(&self, id: &KeyId) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| &k.id == id)
    }

    /// Adds a key made from `spec`; returns its plaintext (show it once) and its record.
    /// A scope, market, symbol, side or machine named twice is stored once, where it was
    /// first named.
    pub fn gen_key(&mut self, spec: KeySpec, now: Timestamp) -> Result<(Token, KeyRecord), StoreError> {
        fn first_seen<T: Clone + Eq + std::hash::Hash>(mut list: Vec<T>) -> Vec<T> {
            let mut seen = std::collections::HashSet::with_capacity(list.len());
            list.retain(|x| seen.insert(x.clone()));
            list
        }
        if self.get(&spec.id).is_some() {
            return Err(StoreError::DuplicateKey(spec.id.to_string()));
        }
        let token = generate_token().map_err(|e| StoreError::Random(e.to_string()))?;
        let mut limits = spec.limits;
        limits.allowed_markets = limits.allowed_markets.map(first_seen);
        limits.allowed_symbols = limits.allowed_symbols.map(first_seen);
        limits.allowed_trd_sides = limits.allowed_trd_sides.map(first_seen);
        let record = KeyRecord {
            id: spec.id,
            hash: digest(&token),
            scopes: first_seen(spec.scopes),
            limits,
            allowed_machines: spec.allowed_machines.map(first_seen),
            // keys.json keeps whole seconds, like every time in README.md's examples of it.
            created_at: Timestamp::from_second(now.as_second()).unwrap_or(now),
            expires_at: spec.expires_at,
            note: spec.note,
        };
        self.keys.push(record.clone());
        Ok((token, record))
    }

    /// Removes a key, its rotation (its previous plaintext is refused too) and its halt;
    /// returns what it was.
    pub fn revoke(&mut self, id: &KeyId) -> Result<KeyRecord, StoreError> {
        let i = self
            .keys
            .iter()
            .position(|k| &k.id == id)
            .ok_or_else(|| StoreError::UnknownKey(id.to_string()))?;
        self.rotations.retain(|r| &r.id != id);
        self.halts.retain(|h| h.target.key() != Some(id));
        Ok(self.keys.remove(i))
    }

    /// Changes a key's machine binding; returns the record after the change.
    pub fn bind(&mut self, id: &KeyId, op: BindOp) -> Result<KeyRecord, StoreError> {
        let rec = self
            .keys
            .iter_mut()
            .find(|k| &k.id == id)
            .ok_or_else(|| StoreError::UnknownKey(id.to_string()))?;
        rec.allowed_machines = match op {
            BindOp::Add(fps) => {
                let mut list = rec.allowed_machines.take().unwrap_or_default();
                for fp in fps {
                    if !list.contains(&fp) {
                        list.push(fp);
                    }
                }
                Some(list)
            }
            BindOp::Replace(fps) => {
                let mut list = Vec::with_capacity(fps.len());
                for fp in fps {
                    if !list.contains(&fp) {
                        list.push(fp);
                    }
                }
                Some(list)
            }
            BindOp::Freeze => Some(Vec::new()),
            BindOp::Clear => None,
        };
        Ok(rec.clone())
    }
}

/// Reads keys.json (an absent file counts as empty), applies `change`, and saves the result
/// if `change` succeeded — all under the exclusive lock, so concurrent writers (the daemon,
/// several `futucli` processes) never lose each other's changes. Rotations whose overlap
/// has ended are dropped from what is saved ([`apply`]).
pub fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError>,
) -> Result<Updated<T>, StoreError> {
    let _lock = lock(path)?;
    let mut file = match fs::read_to_string(path) {
        Ok(text) => KeysFile::parse(&text, path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => KeysFile::default(),
        Err(e) => return Err(io_err(path)(e)),
    };
    let value = apply(&mut file, change)?;
    let digest = file.save(path)?;
    Ok(Updated { value, file, digest })
}

/// A change to the keys, as every store makes it: `change`, then the rotations whose
/// overlap has ended dropped. [`update`] applies it to keys.json under its lock; a store
/// that keeps the keys elsewhere (a database) applies the same to what it read, in its own
/// transaction, and writes what changed. When `change` fails, `file` is to be thrown away.
pub fn apply<T>(
    file: &mut KeysFile,
    change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let value = change(file)?;
    file.drop_ended_rotations(Timestamp::now());
    Ok(value)
}

/// What [`update`] did.
#[derive(Debug)]
pub struct Updated<T> {
    /// What the change returned.
    pub value: T,
    /// keys.json as saved.
    pub file: KeysFile,
    /// The digest of the text saved.
    pub digest: TextDigest,
}

/// The SHA-256 of keys.json's text: tells a reload whether anything changed.
pub type TextDigest = [u8; 32];

/// The digest of keys.json text.
pub fn text_digest(text: &str) -> TextDigest {
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// keys.json's text.
pub fn read_text(path: &Path) -> Result<String, StoreError> {
    fs::read_to_string(path).map_err(io_err(path))
}

/// Takes the exclusive advisory lock for `path` (blocking until it is free). The lock lives
/// on a sibling file, since keys.json itself is replaced by rename on every save.
pub fn lock(path: &Path) -> Result<Flock<File>, StoreError> {
    let lock_path = lock_path(path);
    exclusive_lock(&lock_path, owner_for(path), FlockArg::LockExclusive).map_err(io_err(&lock_path))
}

/// Opens (creating, mode 0600, handed to `owner` when root) the lock file `path` and takes
/// an exclusive `flock` on it: waiting with `LockExclusive`, failing at once with
/// `LockExclusiveNonblock`. The lock is held until the returned [`Flock`] is dropped.
/// keys.json's writers take it through [`lock`]; the daemon also takes it on its state
/// directory, so that two daemons never share one ledger.
pub fn exclusive_lock(path: &Path, owner: Option<(u32, u32)>, how: FlockArg) -> io::Result<Flock<File>> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    give_to(&f, owner)?;
    Flock::lock(f, how).map_err(|(_, errno)| errno.into())
}

/// Who files written for `path` should belong to: the owner of keys.json when it exists,
/// else of its directory. When root edits the file of a daemon running as its own user
/// (futucli with the daemon down), the daemon must still be able to read it and take the
/// lock afterwards.
fn owner_for(path: &Path) -> Option<(u32, u32)> {
    fs::metadata(path)
        .or_else(|_| fs::metadata(parent_dir(path)))
        .ok()
        .map(|m| (m.uid(), m.gid()))
}

/// Hands `f` to `owner` when running as root (others cannot, and need not: their files
/// are theirs).
fn give_to(f: &File, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) if nix::unistd::geteuid().is_root() => {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid))
        }
        _ => Ok(()),
    }
}

/// `.NAME.lock` beside `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.lock"))
}

/// A one-line warning when keys.json can be read by others than its owner.
pub fn mode_warning(path: &Path) -> Option<String> {
    let mode = fs::metadata(path).ok()?.mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} has mode {mode:04o}; it should be 0600 (chmod 600 {})",
            path.display(),
            path.display()
        )
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The id of the key `keys[N]`, the rotation `rotations[N]` or the halt `halts[N]` in
/// `field` points into (`*` for a halt of every key), read leniently from the raw text.
fn key_id_at(text: &str, field: &str) -> Option<String> {
    let (array, rest) = ["keys", "rotations", "halts"]
        .into_iter()
        .find_map(|a| Some((a, field.strip_prefix(a)?.strip_prefix('[')?)))?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    // Only the ids are read: serde_json skips other values without converting them, so a
    // number out of range elsewhere does not stop this.
    #[derive(Deserialize)]
    struct Ids {
        #[serde(default)]
        keys: Vec<IdOf>,
        #[serde(default)]
        rotations: Vec<IdOf>,
        #[serde(default)]
        halts: Vec<HaltOf>,
    }
    #[derive(Deserialize)]
    struct IdOf {
        #[serde(default)]
        id: Option<String>,
    }
    #[derive(Deserialize)]
    struct HaltOf {
        #[serde(default)]
        key_id: Option<String>,
        #[serde(default)]
        all: Option<serde_json::Value>,
    }
    let ids: Ids = serde_json::from_str(text).ok()?;
    match array {
        "keys" => ids.keys.into_iter().nth(index)?.id,
        "rotations" => ids.rotations.into_iter().nth(index)?.id,
        _ => {
            let h = ids.halts.into_iter().nth(index)?;
            h.key_id
                .or_else(|| (h.all == Some(serde_json::Value::Bool(true))).then(|| "*".into()))
        }
    }
}

#[cfg(test)]
mod tests;
