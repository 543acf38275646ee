//! The ledger's tables and functions in the database: created and migrated by the daemon
//! at start (and whenever it reconnects to a database that lacks them), versioned in
//! `futu_ledger.schema_version`.
//!
//! A migration runs in one transaction under an advisory lock, so daemons starting together
//! on several hosts apply it once. A database whose schema is newer than this daemon knows
//! is refused: the newer daemon that wrote it may count differently.

use deadpool_postgres::Client;

/// The schema version this daemon reads and writes.
pub const VERSION: i32 = 3;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`: 1 the tables and
/// functions, 2 a release that refunds nothing once the order's UTC day is over, 3 the
/// orders of keys with `max_open_orders`, `max_position_value` or `duplicate_window_ms`
/// followed (open orders, positions, recent orders) and order events.
const MIGRATIONS: [&str; VERSION as usize] = [
    include_str!("v1.sql"),
    include_str!("v2.sql"),
    include_str!("v3.sql"),
];

/// The advisory lock migrations hold ("futuledg").
const MIGRATION_LOCK: i64 = 0x6675_7475_6c65_6467;

/// The schema's name: every table and function of the ledger lives in it.
pub const SCHEMA: &str = "futu_ledger";

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A newer futu-authd migrated the database.
    #[error(
        "the ledger schema in the database is version {found}, newer than this futu-authd knows ({VERSION}); \
         upgrade futu-authd on this host"
    )]
    TooNew {
        /// The version found.
        found: i32,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// Makes sure the schema is at [`VERSION`], migrating it when it is older or absent.
/// Returns the versions applied (none when it was current).
pub async fn ensure(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    let current = client
        .query_one(&format!("SELECT max(version) FROM {SCHEMA}.schema_version"), &[])
        .await
        .ok()
        .and_then(|row| row.get::<_, Option<i32>>(0));
    match current {
        Some(v) if v == VERSION => Ok(Vec::new()),
        Some(found) if found > VERSION => Err(SchemaError::TooNew { found }),
        _ => migrate(client).await,
    }
}

/// Applies the migrations the database lacks, in one transaction.
async fn migrate(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
         CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now(),
             applied_by text NOT NULL
         );"
    ))
    .await?;
    let found: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version"),
            &[],
        )
        .await?
        .get(0);
    if found > VERSION {
        return Err(SchemaError::TooNew { found });
    }
    let by = format!("futu-authd {}", env!("CARGO_PKG_VERSION"));
    let mut applied = Vec::new();
    for version in found + 1..=VERSION {
        tx.batch_execute(MIGRATIONS[version as usize - 1]).await?;
        tx.execute(
            &format!("INSERT INTO {SCHEMA}.schema_version (version, applied_by) VALUES ($1, $2)"),
            &[&version, &by],
        )
        .await?;
        applied.push(version);
    }
    tx.commit().await?;
    Ok(applied)
}
