//! A versioned schema of the daemon's in PostgreSQL — the ledger's (`futu_ledger`) and the
//! key store's (`futu_keys`) — created and migrated by the daemon itself.
//!
//! A migration runs in one transaction under an advisory lock of the schema's own, so
//! daemons starting together on several hosts apply it once; the versions applied are
//! recorded in `<schema>.schema_version`, by whom and when. A database whose schema is
//! newer than this daemon knows is refused.

use deadpool_postgres::Client;

/// One schema: its name, its migrations and the lock they hold.
#[derive(Debug)]
pub struct Schema {
    /// The schema's name, e.g. `futu_ledger`.
    pub name: &'static str,
    /// What it holds, for messages: `ledger`, `keys store`.
    pub what: &'static str,
    /// The advisory lock its migrations hold.
    pub lock: i64,
    /// Migration `n` (1-based) brings the schema from version `n - 1` to `n`; the newest
    /// is the version this daemon reads and writes.
    pub migrations: &'static [&'static str],
}

/// Why a schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A newer futu-authd migrated the database.
    #[error(
        "the {what} schema in the database is version {found}, newer than this futu-authd knows ({known}); \
         upgrade futu-authd on this host"
    )]
    TooNew {
        /// Which schema.
        what: &'static str,
        /// The version found.
        found: i32,
        /// The version this daemon knows.
        known: i32,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

impl Schema {
    /// The version this daemon reads and writes.
    pub const fn version(&self) -> i32 {
        self.migrations.len() as i32
    }

    fn too_new(&self, found: i32) -> SchemaError {
        SchemaError::TooNew {
            what: self.what,
            found,
            known: self.version(),
        }
    }

    /// Makes sure the schema is at [`Schema::version`], migrating it when it is older or
    /// absent. Returns the versions applied (none when it was current).
    pub async fn ensure(&self, client: &mut Client) -> Result<Vec<i32>, SchemaError> {
        let current = client
            .query_one(
                &format!("SELECT max(version) FROM {}.schema_version", self.name),
                &[],
            )
            .await
            .ok()
            .and_then(|row| row.get::<_, Option<i32>>(0));
        match current {
            Some(v) if v == self.version() => Ok(Vec::new()),
            Some(found) if found > self.version() => Err(self.too_new(found)),
            _ => self.migrate(client).await,
        }
    }

    /// Applies the migrations the database lacks, in one transaction.
    async fn migrate(&self, client: &mut Client) -> Result<Vec<i32>, SchemaError> {
        let (name, lock) = (self.name, self.lock);
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({lock});
             CREATE SCHEMA IF NOT EXISTS {name};
             CREATE TABLE IF NOT EXISTS {name}.schema_version (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 applied_by text NOT NULL
             );"
        ))
        .await?;
        let found: i32 = tx
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {name}.schema_version"),
                &[],
            )
            .await?
            .get(0);
        if found > self.version() {
            return Err(self.too_new(found));
        }
        let by = format!("futu-authd {}", env!("CARGO_PKG_VERSION"));
        let mut applied = Vec::new();
        for version in found + 1..=self.version() {
            tx.batch_execute(self.migrations[version as usize - 1]).await?;
            tx.execute(
                &format!("INSERT INTO {name}.schema_version (version, applied_by) VALUES ($1, $2)"),
                &[&version, &by],
            )
            .await?;
            applied.push(version);
        }
        tx.commit().await?;
        Ok(applied)
    }
}
