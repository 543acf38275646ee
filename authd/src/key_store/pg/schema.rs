//! The key store's tables in the database: created and migrated by the daemon at start
//! (and before an admin change, should the database have lost them), versioned in
//! `futu_keys.schema_version`.
//!
//! Migrated as every schema of the daemon's is ([`crate::pg_schema`]): once, under an
//! advisory lock; a database whose schema is newer than this daemon knows is refused. A new top-level field of keys.json is not a new schema: it travels in
//! `store.top_level`.

use deadpool_postgres::Client;

use crate::pg_schema::Schema;
pub use crate::pg_schema::SchemaError;

/// The schema's name: every table of the key store lives in it. Also the channel its
/// changes are notified on.
pub const SCHEMA: &str = "futu_keys";

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`: 1 the tables.
const MIGRATIONS: &[&str] = &[include_str!("v1.sql")];

/// The schema, with the advisory lock its migrations hold ("futukeys").
const THIS: Schema = Schema {
    name: SCHEMA,
    what: "keys store",
    lock: 0x6675_7475_6b65_7973,
    migrations: MIGRATIONS,
};

/// Makes sure the schema is at its newest version, migrating it when it is older or absent.
/// Returns the versions applied (none when it was current).
pub async fn ensure(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    THIS.ensure(client).await
}
