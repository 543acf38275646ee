//! [`PgKeyStore`]: the keys in PostgreSQL (`--keys-url`), one key store shared by the
//! futu-authd of several gateway hosts: a key made, revoked, bound, frozen or rotated
//! through any of them is in service on all of them within a second.
//!
//! # Schema (version 1, in the schema `futu_keys`; [`schema`], `pg/v1.sql`)
//!
//! keys.json in parts ([`futu_auth_keys::store::Parts`]):
//!
//! * `store` — one row: `version` (raised by every change), `top_level` (keys.json's
//!   top-level fields but `keys`, as one JSON object: `version`, `rotations`, and any
//!   field keys.json gains later, with no new schema version), `changed_at`, `changed_by`;
//! * `keys` — a row a key: `id`, `seq` (keys.json's order), `record` (the record as
//!   keys.json writes it), `changed_in` (the version that wrote it);
//! * `last_used` — a row a key: the newest minute any host allowed it a check;
//! * `schema_version` — the versions applied, by whom and when.
//!
//! Whatever is read is read back through keys.json's own strict loader, so what the
//! database holds is exactly what a keys.json could say, refused with the same positioned
//! errors when it could not.
//!
//! # A change
//!
//! One transaction: lock the `store` row (`FOR UPDATE`: changes from every host are applied
//! one after another), read the keys, apply the same change closure keys.json's
//! [`futu_auth_keys::store::update`] applies ([`futu_auth_keys::store::apply`]), write
//! the rows that changed (and delete the last uses of keys that went), raise `version`,
//! `pg_notify('futu_keys', version)`, commit. The daemon that made the change installs the
//! result at once; the others hear of it next.
//!
//! # Following the store
//!
//! Every daemon keeps a connection of its own (not from the pool) that `LISTEN`s on
//! `futu_keys` ([`PgKeyStore::listen`]), and asks for the store's version every
//! [`CHECK_EVERY`] besides, in case a notification is lost (the listening connection
//! broke, or the database restarted): a version it does not hold is loaded whole, in one
//! read-only snapshot, and installed. Checks never wait for any of it: they are decided
//! against the snapshot in service. How long ago it was last confirmed current is
//! [`super::freshness`]'s.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::Pool;
use futu_auth_keys::store::{self, KeysFile, StoreError};
use futu_auth_proto::KeyId;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls};

use super::{KeyStoreError, Loaded, Stamp};
use crate::ledger::pg::LedgerUrl;

pub mod schema;

/// How often each daemon asks for the store's version, besides listening for its
/// notifications: the longest a lost notification delays a change.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The deadline of a version check and of connecting.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// The deadline of reading the whole store, and of a change.
const LOAD_DEADLINE: Duration = Duration::from_secs(10);

/// How long the start waits for the database before it starts without it.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// The deadline of reading or writing last uses.
const LAST_USED_DEADLINE: Duration = Duration::from_secs(5);

/// How long the listening connection waits before it is opened again after it broke.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

/// Connections kept: version checks, loads, changes and last uses (the listening
/// connection is not one of them).
const POOL_SIZE: usize = 3;

const VERSION_SQL: &str = "SELECT version FROM futu_keys.store";
const STORE_SQL: &str = "SELECT version, top_level::text FROM futu_keys.store";
const LOCK_SQL: &str = "SELECT version, top_level::text FROM futu_keys.store FOR UPDATE";
const KEYS_SQL: &str = "SELECT id, seq, record::text FROM futu_keys.keys ORDER BY seq, id";
const DELETE_KEYS_SQL: &str = "DELETE FROM futu_keys.keys WHERE id = ANY($1)";
const DELETE_USES_SQL: &str = "DELETE FROM futu_keys.last_used WHERE id = ANY($1)";
const UPSERT_SQL: &str = "INSERT INTO futu_keys.keys (id, seq, record, changed_in) \
     SELECT u.id, u.seq, u.record::json, $4 FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(id, seq, record) \
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, record = excluded.record, changed_in = excluded.changed_in";
const BUMP_SQL: &str = "UPDATE futu_keys.store \
     SET version = $1, top_level = $2::text::json, changed_at = now(), changed_by = $3";
const NOTIFY_SQL: &str = "SELECT pg_notify('futu_keys', $1)";
const WRITE_USES_SQL: &str = "INSERT INTO futu_keys.last_used (id, at) \
     SELECT u.id, to_timestamp(u.secs) FROM unnest($1::text[], $2::bigint[]) AS u(id, secs) \
     WHERE EXISTS (SELECT 1 FROM futu_keys.keys k WHERE k.id = u.id) \
     ON CONFLICT (id) DO UPDATE SET at = greatest(futu_keys.last_used.at, excluded.at)";
const READ_USES_SQL: &str =
    "SELECT id, extract(epoch FROM at)::bigint FROM futu_keys.last_used WHERE id = ANY($1)";

/// The key store in PostgreSQL.
pub struct PgKeyStore {
    /// Connections for checks, loads, changes and last uses.
    pool: Pool,
    /// How to open the listening connection.
    config: tokio_postgres::Config,
    /// Where, without a password, for answers and log lines.
    target: String,
    /// Written as `changed_by` with every change: this daemon's version and host.
    author: String,
}

impl std::fmt::Debug for PgKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The database could not be used for the keys: unreachable, late, failing, or answering
/// what it should not.
#[derive(Debug, thiserror::Error)]
#[error("the keys store {target} {what}")]
pub struct PgKeysError {
    /// Where, without a password.
    target: String,
    /// What went wrong, after the store's name.
    what: String,
}

/// Why the key store in PostgreSQL cannot be used at all (a database that does not answer
/// yet is not one: the daemon starts without it).
#[derive(Debug, thiserror::Error)]
pub enum PgKeysOpenError {
    /// The connection pool could not be made.
    #[error("the keys store database pool: {0}")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// The database holds a key store schema newer than this daemon knows.
    #[error(transparent)]
    Schema(schema::SchemaError),
}

/// What the listening connection tells whoever follows the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The connection listens (again): changes made while it did not may have been missed.
    Listening,
    /// A change was committed: the version it made, when the payload says one.
    Changed(Option<i64>),
}

/// A step of a transaction: the database failed, or the keys did.
enum Failed {
    /// A statement failed.
    Db(tokio_postgres::Error),
    /// What the database holds does not load, or the change was refused.
    Keys(StoreError),
    /// The schema is newer than this daemon knows.
    Schema(schema::SchemaError),
    /// No connection, or no answer in time.
    Away(PgKeysError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Db(e)
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Keys(e)
    }
}

impl PgKeyStore {
    /// The store at `url`; `host` names this daemon's host in `changed_by`. Connects and
    /// creates or migrates the schema, then reads the keys, within a few seconds: what it
    /// read, or `None` when the database did not answer in time (the daemon starts without
    /// keys then, and loads them once it answers). A schema newer than this daemon knows is
    /// an error.
    pub async fn open(
        url: &LedgerUrl,
        host: &str,
    ) -> Result<(PgKeyStore, Result<Loaded, KeyStoreError>), PgKeysOpenError> {
        let (pool, config) = url
            .pool("futu-authd keys", CHECK_DEADLINE, POOL_SIZE)
            .map_err(PgKeysOpenError::Pool)?;
        let me = PgKeyStore {
            pool,
            config,
            target: url.to_string(),
            author: format!("futu-authd {} on {host}", env!("CARGO_PKG_VERSION")),
        };
        let until = Instant::now() + START_DEADLINE;
        match me.ensure_schema(until).await {
            Ok(()) => {}
            Err(Failed::Schema(e @ schema::SchemaError::TooNew { .. })) => {
                return Err(PgKeysOpenError::Schema(e))
            }
            Err(e) => {
                let e = me.error(e);
                return Ok((me, Err(e)));
            }
        }
        let loaded = me.load().await;
        Ok((me, loaded))
    }

    /// Where the keys are kept: the database, without a password, and the schema.
    pub fn stored_in(&self) -> String {
        format!("{} (schema {})", self.target, schema::SCHEMA)
    }

    fn problem(&self, what: impl std::fmt::Display) -> PgKeysError {
        PgKeysError {
            target: self.target.clone(),
            what: what.to_string(),
        }
    }

    fn error(&self, f: Failed) -> KeyStoreError {
        match f {
            Failed::Keys(e) => KeyStoreError::Keys(e),
            Failed::Db(e) => KeyStoreError::Database(self.problem(describe(&e))),
            Failed::Schema(e) => KeyStoreError::Database(self.problem(e)),
            Failed::Away(e) => KeyStoreError::Database(e),
        }
    }

    /// A connection from the pool by `until`.
    async fn client(&self, until: Instant) -> Result<deadpool_postgres::Object, PgKeysError> {
        match timeout_at(until, self.pool.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.problem(format!("cannot be reached ({e})"))),
            Err(_) => Err(self.problem("gave no connection in time")),
        }
    }

    /// Runs `work` on a connection within `deadline`; a connection whose work did not
    /// finish in time, or broke, is not used again.
    async fn with_client<T>(
        &self,
        deadline: Duration,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, Failed>,
    ) -> Result<T, KeyStoreError> {
        let until = Instant::now() + deadline;
        let mut client = self.client(until).await?;
        match timeout_at(until, work(&mut client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if matches!(&e, Failed::Db(db) if db.as_db_error().is_none()) {
                    drop(deadpool_postgres::Object::take(client));
                }
                Err(self.error(e))
            }
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(KeyStoreError::Database(
                    self.problem(format!("did not answer within {deadline:?}")),
                ))
            }
        }
    }

    /// Creates or migrates the schema by `until`.
    async fn ensure_schema(&self, until: Instant) -> Result<(), Failed> {
        let mut client = self.client(until).await.map_err(Failed::Away)?;
        match timeout_at(until, schema::ensure(&mut client)).await {
            Ok(Ok(applied)) => {
                for v in applied {
                    tracing::info!("keys: schema {}.{v} created in {}", schema::SCHEMA, self.target);
                }
                Ok(())
            }
            Ok(Err(schema::SchemaError::Database(e))) => Err(Failed::Db(e)),
            Ok(Err(e)) => Err(Failed::Schema(e)),
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(Failed::Away(
                    self.problem("did not finish the schema check in time"),
                ))
            }
        }
    }

    /// The store's version now.
    pub async fn version(&self) -> Result<i64, KeyStoreError> {
        self.with_client(CHECK_DEADLINE, async |c| {
            let statement = c.prepare_cached(VERSION_SQL).await?;
            Ok(c.query_one(&statement, &[]).await?.get::<_, i64>(0))
        })
        .await
    }

    /// Everything the store holds, read in one snapshot of the database and read back as
    /// strictly as keys.json.
    pub async fn load(&self) -> Result<Loaded, KeyStoreError> {
        let (version, top_level, records) = self
            .with_client(LOAD_DEADLINE, async |c| {
                let tx = c
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let store = tx.query_one(STORE_SQL, &[]).await?;
                let rows = tx.query(KEYS_SQL, &[]).await?;
                tx.commit().await?;
                let records: Vec<String> = rows.iter().map(|r| r.get::<_, String>(2)).collect();
                Ok((store.get::<_, i64>(0), store.get::<_, String>(1), records))
            })
            .await?;
        let origin = PathBuf::from(self.stored_in());
        let file = tokio::task::spawn_blocking(move || {
            KeysFile::from_parts(records.iter().map(String::as_str), &top_level, &origin)
        })
        .await
        .map_err(KeyStoreError::Task)??;
        Ok(Loaded {
            file,
            stamp: Stamp::Version(version),
        })
    }

    /// Applies `change` in one transaction (see the module's documentation); returns what
    /// it returned and what the store holds after it.
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, Loaded), KeyStoreError> {
        // An admin change may find a database that lost the schema: it makes it again.
        self.ensure_schema(Instant::now() + LOAD_DEADLINE)
            .await
            .map_err(|e| self.error(e))?;
        let origin = PathBuf::from(self.stored_in());
        let author = self.author.clone();
        self.with_client(LOAD_DEADLINE, async move |c| {
            let tx = c.transaction().await?;
            let store = tx.query_one(LOCK_SQL, &[]).await?;
            let version: i64 = store.get(0);
            let top_level: String = store.get(1);
            let rows = tx.query(KEYS_SQL, &[]).await?;
            let old: Vec<(String, i64, String)> =
                rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
            let mut file = KeysFile::from_parts(old.iter().map(|r| r.2.as_str()), &top_level, &origin)?;
            let value = store::apply(&mut file, change)?;
            let written = Written::of(&old, &file);
            let next = version + 1;
            if !written.deleted.is_empty() {
                tx.execute(DELETE_KEYS_SQL, &[&written.deleted]).await?;
                tx.execute(DELETE_USES_SQL, &[&written.deleted]).await?;
            }
            if !written.ids.is_empty() {
                tx.execute(
                    UPSERT_SQL,
                    &[&written.ids, &written.seqs, &written.records, &next],
                )
                .await?;
            }
            tx.execute(BUMP_SQL, &[&next, &written.top_level, &author])
                .await?;
            tx.execute(NOTIFY_SQL, &[&next.to_string()]).await?;
            tx.commit().await?;
            Ok((
                value,
                Loaded {
                    file,
                    stamp: Stamp::Version(next),
                },
            ))
        })
        .await
    }

    /// Notes, for each key, the minute (Unix seconds) this host last allowed it a check;
    /// the database keeps the newest of every host's. Keys no longer in the store are left
    /// out.
    pub async fn write_last_used(&self, uses: &[(KeyId, i64)]) -> Result<(), KeyStoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
        let secs: Vec<i64> = uses.iter().map(|(_, s)| *s).collect();
        self.with_client(LAST_USED_DEADLINE, async |c| {
            let statement = c.prepare_cached(WRITE_USES_SQL).await?;
            c.execute(&statement, &[&ids, &secs]).await?;
            Ok(())
        })
        .await
    }

    /// The newest minute (Unix seconds) any host allowed each of `ids` a check, for those
    /// it is known of.
    pub async fn read_last_used(&self, ids: &[KeyId]) -> Result<HashMap<String, i64>, KeyStoreError> {
        let ids: Vec<&str> = ids.iter().map(KeyId::as_str).collect();
        self.with_client(LAST_USED_DEADLINE, async |c| {
            let statement = c.prepare_cached(READ_USES_SQL).await?;
            let rows = c.query(&statement, &[&ids]).await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect())
        })
        .await
    }

    /// Listens for the store's changes on a connection of its own, opened again whenever it
    /// breaks, until the receiver is dropped.
    pub fn listen(&self) -> mpsc::Receiver<Heard> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(listen(self.config.clone(), self.target.clone(), tx));
        rx
    }
}

/// The rows a change writes: what differs from `old` (the rows read, as `(id, seq,
/// record)` in order) in `file`.
#[derive(Debug, Default, PartialEq)]
struct Written {
    /// Ids whose rows go.
    deleted: Vec<String>,
    /// Rows written: ids, their places and records.
    ids: Vec<String>,
    seqs: Vec<i64>,
    records: Vec<String>,
    /// The store row's `top_level`.
    top_level: String,
}

impl Written {
    fn of(old: &[(String, i64, String)], file: &KeysFile) -> Written {
        let parts = file.to_parts();
        let before: HashMap<&str, (i64, &str)> = old
            .iter()
            .map(|(id, seq, record)| (id.as_str(), (*seq, record.as_str())))
            .collect();
        let kept: HashSet<&str> = parts.records.iter().map(|r| r.id.as_str()).collect();
        let mut w = Written {
            deleted: old
                .iter()
                .filter(|(id, ..)| !kept.contains(id.as_str()))
                .map(|(id, ..)| id.clone())
                .collect(),
            top_level: parts.rest,
            ..Written::default()
        };
        // A row keeps its place while the places stay in keys.json's order; a new row (or
        // one that moved) takes the next place after the row before it.
        let mut last = i64::MIN;
        for r in &parts.records {
            let (seq, same) = match before.get(r.id.as_str()) {
                Some(&(seq, record)) if seq > last => (seq, record == r.text),
                _ => (last.max(0) + 1, false),
            };
            last = seq;
            if !same {
                w.ids.push(r.id.to_string());
                w.seqs.push(seq);
                w.records.push(r.text.clone());
            }
        }
        w
    }
}

/// The listening connection: opened, `LISTEN futu_keys`, every notification handed on;
/// opened again [`RELISTEN_AFTER`] after it broke. Ends when `tx`'s receiver is dropped.
async fn listen(config: tokio_postgres::Config, target: String, tx: mpsc::Sender<Heard>) {
    let mut broke_before = false;
    loop {
        let why = tokio::select! {
            _ = tx.closed() => return,
            ended = listen_once(&config, &tx) => ended,
        };
        if !broke_before {
            tracing::warn!(
                "keys: the connection listening for changes of {target} broke ({why}); changes are seen by the check every {CHECK_EVERY:?} until it listens again"
            );
        }
        broke_before = true;
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(RELISTEN_AFTER) => {}
        }
    }
}

/// One listening connection, until it breaks: why it did.
async fn listen_once(config: &tokio_postgres::Config, tx: &mpsc::Sender<Heard>) -> String {
    let connected = tokio::time::timeout(CHECK_DEADLINE, config.connect(NoTls)).await;
    let (client, mut connection) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return describe(&e),
        Err(_) => return "no connection in time".into(),
    };
    let (heard, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = heard.send(n.payload().trim().parse::<i64>().ok());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return describe(&e),
                None => return "the database closed it".to_owned(),
            }
        }
    });
    let listening = tokio::time::timeout(
        CHECK_DEADLINE,
        client.batch_execute(&format!("LISTEN {}", schema::SCHEMA)),
    )
    .await;
    let why = match listening {
        Ok(Ok(())) => {
            if tx.send(Heard::Listening).await.is_err() {
                driver.abort();
                return "no longer followed".into();
            }
            while let Some(version) = notes.recv().await {
                if tx.send(Heard::Changed(version)).await.is_err() {
                    driver.abort();
                    return "no longer followed".into();
                }
            }
            None
        }
        Ok(Err(e)) => Some(describe(&e)),
        Err(_) => Some("LISTEN was not answered in time".into()),
    };
    drop(client);
    driver.abort();
    match why {
        Some(why) => why,
        None => driver
            .await
            .unwrap_or_else(|_| "the database closed it".to_owned()),
    }
}

/// An error's text with the database's message when there is one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("answered {}: {}", db.code().code(), db.message()),
        None if e.is_closed() => "cannot be reached (the connection is closed)".to_owned(),
        None => format!("cannot be reached ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(ids: &[&str]) -> KeysFile {
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
        KeysFile::parse(&text, Path::new("keys.json")).unwrap()
    }

    fn rows(f: &KeysFile) -> Vec<(String, i64, String)> {
        f.to_parts()
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r.id.to_string(), i as i64 + 1, r.text))
            .collect()
    }

    #[test]
    fn a_change_writes_only_the_rows_that_changed() {
        let before = file(&["a", "b", "c"]);
        let old = rows(&before);
        // Nothing changed: no row, and the top level as it was.
        let w = Written::of(&old, &before);
        assert!(w.ids.is_empty() && w.deleted.is_empty(), "{w:?}");
        assert_eq!(w.top_level, r#"{"version":1}"#);
        // A key revoked, another added: one row deleted, one written after the last.
        let mut after = before.clone();
        after.revoke(&"b".parse().unwrap()).unwrap();
        after.keys.push(file(&["a", "b", "c", "d"]).keys.pop().unwrap());
        let w = Written::of(&old, &after);
        assert_eq!(w.deleted, ["b"]);
        assert_eq!(w.ids, ["d"]);
        assert_eq!(w.seqs, [4]);
        // A record changed in place keeps its place.
        let mut bound = before.clone();
        bound
            .bind(&"b".parse().unwrap(), futu_auth_proto::BindOp::Freeze)
            .unwrap();
        let w = Written::of(&old, &bound);
        assert_eq!(
            (w.ids.as_slice(), w.seqs.as_slice()),
            (&["b".to_owned()][..], &[2][..])
        );
    }

    #[test]
    fn keys_out_of_order_are_given_new_places_in_order() {
        let before = file(&["a", "b", "c"]);
        let old = rows(&before);
        let mut moved = before.clone();
        moved.keys.swap(0, 2); // c, b, a
        let w = Written::of(&old, &moved);
        // c keeps 3; b and a follow it.
        assert_eq!(w.ids, ["b", "a"]);
        assert_eq!(w.seqs, [4, 5]);
    }
}
