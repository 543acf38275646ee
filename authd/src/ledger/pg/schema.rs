//! The ledger's tables and functions in the database: created and migrated by the daemon
//! at start (and whenever it reconnects to a database that lacks them), versioned in
//! `futu_ledger.schema_version`.
//!
//! Migrated as every schema of the daemon's is ([`crate::pg_schema`]): once, under an
//! advisory lock; a database whose schema is newer than this daemon knows is refused (the
//! newer daemon that wrote it may count differently).

use deadpool_postgres::Client;

use crate::pg_schema::Schema;
pub use crate::pg_schema::SchemaError;

/// The schema's name: every table and function of the ledger lives in it.
pub const SCHEMA: &str = "futu_ledger";

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`: 1 the tables and
/// functions, 2 a release that refunds nothing once the order's UTC day is over, 3 the
/// orders of keys with `max_open_orders`, `max_position_value` or `duplicate_window_ms`
/// followed (open orders, positions, recent orders) and order events.
const MIGRATIONS: &[&str] = &[
    include_str!("v1.sql"),
    include_str!("v2.sql"),
    include_str!("v3.sql"),
];

/// The schema, with the advisory lock its migrations hold ("futuledg").
const THIS: Schema = Schema {
    name: SCHEMA,
    what: "ledger",
    lock: 0x6675_7475_6c65_6467,
    migrations: MIGRATIONS,
};

/// The schema version this daemon reads and writes.
pub const VERSION: i32 = THIS.version();

/// Makes sure the schema is at [`VERSION`], migrating it when it is older or absent.
/// Returns the versions applied (none when it was current).
pub async fn ensure(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    THIS.ensure(client).await
}
