//! [`PgLedger`]: the limit ledger on PostgreSQL, shared by the futu-authd of several
//! gateway hosts (`--ledger-url`), so a key bound to two machines gets its daily cap and
//! its orders per minute once, not once per host.
//!
//! # Schema (version 3, in the schema `futu_ledger`; [`schema`], `pg/v1.sql` to `pg/v3.sql`)
//!
//! * `keys` — one row a key: `day` and `used` (today's total, UTC), `window_count` and
//!   `window_edge` (the orders of the last 60 s, counted incrementally: a charge subtracts
//!   the consumptions that left the window since the last one), `last_at`, `open_count`
//!   (its orders open now).
//! * `consumptions` — one row an allowed order: `ticket` (the primary key: 64 random bits
//!   from the OS of the host that allowed it), `key_id`, `at`, `day`, `value`, `released`;
//!   kept for the 15-minute release window.
//! * `orders` — one row an order the ledger follows (its key has `max_open_orders` or
//!   `max_position_value`): its symbol, direction, qty and price (`float8`, bit for bit),
//!   account, what is filled (qty, value) and still open (value), whether the broker took
//!   it, and when and how it finished; open ones are kept whatever their age, finished
//!   ones a day (an event for one is a duplicate).
//! * `positions` — per key and symbol, the value filled and still open in each direction,
//!   as the in-memory ledger keeps them.
//! * `recent_orders` — per key, the fingerprint of each order of the duplicate window
//!   (text: account, direction, the bits of qty and price, symbol) and when it was last
//!   allowed; kept an hour, the longest window.
//! * `schema_version` — the versions applied, by whom and when.
//!
//! The orders of a key are followed exactly as the in-memory ledger follows them
//! ([`futu_auth_rules::ledger::Ledger`]): a charge checks duplicate, rate, daily value,
//! open orders and position in that order, under the key's row, and `order_event` applies
//! what became of an order once, under the same row, whichever host issued its ticket.
//! A partial fill's rest is valued in the database as [`Money::order_value`] values it
//! (each `float8` as its shortest decimal, multiplied exactly, rounded up).
//!
//! Amounts are whole units of 1e-8 ([`Money`]) as `numeric`, exact to the cent and
//! beyond. The database's clock (`clock_timestamp()`, read after the key's row is locked,
//! never behind the key's last order) decides the 60 s window, the UTC day and the release
//! window, so hosts whose clocks disagree still agree on the caps.
//!
//! # One round trip a group commit
//!
//! A group commit's charges (the bursts of every connection that asked while the previous
//! commit was being made) go in one call of the PL/pgSQL function `futu_ledger.charge(keys,
//! values, rates, caps, dry_runs, tickets)` — a prepared statement, sent as Bind, Execute
//! and Sync in one write — which locks each key's row (`SELECT … FOR UPDATE`, keys in
//! sorted order so hosts never deadlock), checks and takes each charge in order, inserts
//! the consumptions and updates the row: one statement, one implicit transaction, answered
//! once it is committed. No read-then-write from the daemon; the row lock makes a key's
//! check and consumption atomic across hosts. `cancel`, `release`, `cancel_release` and
//! `usage` are one call each too. A transaction never waits on the daemon, so a daemon
//! killed mid-call holds no lock: the statement commits or aborts on its own.
//!
//! # Failing closed
//!
//! Every call has a deadline (`--ledger-timeout`, 30 ms by default: shorter than the
//! client's 50 ms). The database unreachable, late or failing makes the call fail
//! transient, so the service refuses the burst's orders `internal`; reads never reach the
//! store. A charge whose outcome is unknown (late after it was sent) is never retried: what
//! it may have taken stays counted, the safe side, and its connection is closed. While the
//! database is unreachable, lacks the schema, or was late three calls in a row, calls are
//! refused at once (the commit lock is not held a deadline per burst, so the reads queued
//! behind it go on) and a probe runs every 25 ms ([`health`]); the first that works
//! resumes service, and re-creates the schema if the database lost it.
//!
//! Housekeeping, off the checks' path every 10 s: keys idle for a minute get an empty
//! window, and consumptions older than the release window are deleted in batches.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futu_auth_proto::{KeyId, OrderEvent, OrderEventKind, OrderEventRefusal, PositionUsage};
use tokio::time::{timeout_at, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use futu_auth_rules::ledger::{
    event_figures, Charge, Charged, Consumption, EventApplied, OrderBook, ReleaseError, Released, Track,
};
use futu_auth_rules::money::Money;
use futu_auth_rules::Now;

use super::{
    AuditMark, BoxFuture, EventDone, HealthReport, LedgerError, LedgerStore, ReleaseFailure, Trouble, Undo,
};

pub mod health;
pub mod schema;

use health::Health;

/// Connections kept: charges are serialized by the commit lock; usage, probes and
/// housekeeping use the others.
const POOL_SIZE: usize = 4;

/// How often the housekeeping probes a database that is down (a probe runs off the
/// checks' path; a short stall of the database then refuses orders only briefly).
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// The deadline of a probe (it may have to connect, and to create the schema).
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// How long the start waits for the database before it starts refusing orders instead.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// How often old consumptions are deleted, and how many a statement.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
const PRUNE_BATCH: i32 = 20_000;

/// The slowest usage report waits this long at least (an admin request, off the order path).
const USAGE_DEADLINE: Duration = Duration::from_secs(1);

const CHARGE: &str = "SELECT r_idx, r_outcome, r_in_window, r_retry_ns, r_used, r_at, r_day, \
                      r_since_ns, r_open, r_position \
                      FROM futu_ledger.charge($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
const CANCEL: &str = "SELECT futu_ledger.cancel($1)";
const RELEASE: &str = "SELECT r_outcome, r_key_id, r_refunded, r_day FROM futu_ledger.release($1)";
const CANCEL_RELEASE: &str = "SELECT futu_ledger.cancel_release($1, $2, $3, $4)";
const ORDER_EVENT: &str = "SELECT r_outcome, r_key_id, r_bad, r_qty, r_refunded, r_day, \
                           r_prev_filled_qty, r_prev_filled_value, r_prev_open_value, r_prev_accepted, r_finished \
                           FROM futu_ledger.order_event($1, $2, $3, $4, $5)";
const CANCEL_EVENT: &str = "SELECT futu_ledger.cancel_event($1, $2, $3, $4, $5, $6, $7, $8)";
const USAGE: &str = "SELECT r_in_window, r_used FROM futu_ledger.usage($1)";
const OPEN_COUNT: &str = "SELECT open_count FROM futu_ledger.keys WHERE key_id = $1";
/// Each symbol's position in each direction, as the in-memory ledger's `exposure`.
const POSITIONS: &str = "SELECT symbol, (greatest(0, bought - sold) + open_buys)::text, \
                         (greatest(0, sold - bought) + open_sells)::text \
                         FROM futu_ledger.positions WHERE key_id = $1 ORDER BY symbol";
const PRUNE: &str = "SELECT futu_ledger.prune($1)";

/// `--ledger-url`: a PostgreSQL connection URL (`postgres://user@host/db`, or with
/// `?host=/run/postgresql` for a Unix socket) or `key=value` string. Shown without its
/// password.
///
/// Several hosts are read as libpq reads them — `postgres://u@db1,db2/futu`,
/// `postgres:///futu?host=/run/a,/run/b&port=5432,5433`, `host=db1,db2 port=5432` — and
/// tried in turn. Every connection is read-write (`target_session_attrs=read-write`
/// whether the URL says it or not): a server that does not take writes, such as a standby,
/// is skipped, so after a failover the daemon finds the promoted one.
#[derive(Clone)]
pub struct LedgerUrl {
    config: tokio_postgres::Config,
    shown: String,
}

/// Why `--ledger-url` is not a ledger's address.
#[derive(Debug, thiserror::Error)]
pub enum LedgerUrlError {
    /// Not a connection URL or string tokio-postgres reads.
    #[error("not a PostgreSQL URL such as postgres://futu@db.example/futu ({0})")]
    NotAUrl(#[source] tokio_postgres::Error),
    /// A URL without a host.
    #[error("the URL names no host (for a Unix socket: postgres:///futu?host=/run/postgresql)")]
    NoHost,
    /// Several ports, but not one a host.
    #[error("the URL names {hosts} hosts and {ports} ports: give one port for all of them, or one a host")]
    Ports {
        /// The hosts named.
        hosts: usize,
        /// The ports named.
        ports: usize,
    },
    /// `target_session_attrs=read-only`: servers that do not take writes.
    #[error("the ledger writes: target_session_attrs must be read-write (or left out), not read-only")]
    ReadOnly,
}

impl FromStr for LedgerUrl {
    type Err = LedgerUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut config =
            tokio_postgres::Config::from_str(&one_host_a_parameter(s)).map_err(LedgerUrlError::NotAUrl)?;
        let hosts = config.get_hosts().len();
        if hosts == 0 {
            return Err(LedgerUrlError::NoHost);
        }
        let ports = config.get_ports().len();
        if ports > 1 && ports != hosts.max(config.get_hostaddrs().len()) {
            return Err(LedgerUrlError::Ports { hosts, ports });
        }
        use tokio_postgres::config::TargetSessionAttrs;
        if config.get_target_session_attrs() == TargetSessionAttrs::ReadOnly {
            return Err(LedgerUrlError::ReadOnly);
        }
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let shown = format!(
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        );
        Ok(LedgerUrl { config, shown })
    }
}

/// `s` with each comma-separated list of a URL's `host` parameter given as one `host`
/// parameter a host (`?host=/run/a,/run/b` → `?host=/run/a&host=/run/b`): libpq reads such
/// a list as several hosts, tokio-postgres as one host named `/run/a,/run/b` (its
/// `key=value` form and a URL's authority part split lists already). The query is found
/// as tokio-postgres finds it: after the credentials (up to the first `@`, when there is one).
fn one_host_a_parameter(s: &str) -> std::borrow::Cow<'_, str> {
    let Some(rest) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| s.strip_prefix(prefix))
    else {
        return s.into();
    };
    let after_credentials = rest.find('@').map_or(0, |at| at + 1);
    let Some(query_at) = rest[after_credentials..].find('?') else {
        return s.into();
    };
    let query_at = s.len() - rest.len() + after_credentials + query_at + 1;
    let (head, query) = s.split_at(query_at);
    if !query
        .split('&')
        .any(|p| p.strip_prefix("host=").is_some_and(|list| list.contains(',')))
    {
        return s.into();
    }
    let params: Vec<String> = query
        .split('&')
        .flat_map(|p| match p.strip_prefix("host=") {
            Some(list) => list.split(',').map(|h| format!("host={h}")).collect(),
            None => vec![p.to_owned()],
        })
        .collect();
    format!("{head}{}", params.join("&")).into()
}

impl std::fmt::Display for LedgerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl LedgerUrl {
    /// How to connect: the URL as tokio-postgres reads it (the key store in PostgreSQL,
    /// `--keys-url`, takes a URL of the same kind).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A pool of at most `size` connections to this URL's database, named
    /// `application_name` and giving up connecting after `connect_timeout` unless the URL
    /// says otherwise; and the configuration its connections use.
    pub fn pool(
        &self,
        application_name: &str,
        connect_timeout: Duration,
        size: usize,
    ) -> Result<(Pool, tokio_postgres::Config), deadpool_postgres::BuildError> {
        let mut config = self.config.clone();
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .build()?;
        Ok((pool, config))
    }
}

impl std::fmt::Debug for LedgerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LedgerUrl({})", self.shown)
    }
}

/// The limit ledger on PostgreSQL, behind [`LedgerStore`].
pub struct PgLedger {
    db: Arc<Db>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("target", &self.db.target)
            .finish_non_exhaustive()
    }
}

/// Why the PostgreSQL ledger cannot be used (a database that does not answer yet is not
/// one: the daemon starts and refuses orders until it does).
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    /// The connection pool could not be made.
    #[error("the ledger database pool: {0}")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// The database holds a ledger schema newer than this daemon knows.
    #[error(transparent)]
    Schema(schema::SchemaError),
}

/// The pool, the deadline and the health every call shares with the housekeeping.
struct Db {
    pool: Pool,
    /// How long a call may take before it is given up.
    deadline: Duration,
    health: Health,
    /// Where, without a password, for log lines.
    target: String,
}

impl PgLedger {
    /// Connects to the ledger database and creates or migrates its schema. A database that
    /// cannot be reached within a few seconds is not an error — the daemon starts, refusing
    /// orders until it answers — but a schema newer than this daemon knows is. Every
    /// change in whether the database answers goes to `report`.
    pub async fn open(
        url: &LedgerUrl,
        deadline: Duration,
        report: HealthReport,
    ) -> Result<PgLedger, PgOpenError> {
        let (pool, _) = url
            .pool("futu-authd", PROBE_DEADLINE, POOL_SIZE)
            .map_err(PgOpenError::Pool)?;
        let target = url.to_string();
        let db = Arc::new(Db {
            pool,
            deadline,
            health: Health::new(target.clone(), report),
            target,
        });
        match db.probe(START_DEADLINE).await {
            Ok(()) => tracing::info!(
                "ledger: PostgreSQL at {} (schema {}.{}, deadline {deadline:?})",
                db.target,
                schema::SCHEMA,
                schema::VERSION
            ),
            Err(Probe::Schema(e @ schema::SchemaError::TooNew { .. })) => return Err(PgOpenError::Schema(e)),
            Err(e) => tracing::error!(
                "ledger: PostgreSQL at {} does not serve the ledger yet ({e}); orders are refused until it does",
                db.target
            ),
        }
        tokio::spawn(housekeeping(Arc::downgrade(&db)));
        Ok(PgLedger { db })
    }
}

/// Why a probe failed.
enum Probe {
    Schema(schema::SchemaError),
    Call(LedgerError),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Schema(e) => e.fmt(f),
            Probe::Call(e) => e.fmt(f),
        }
    }
}

impl Db {
    /// Gets a connection and makes sure the schema is there; notes the outcome in the health.
    async fn probe(&self, deadline: Duration) -> Result<(), Probe> {
        let until = Instant::now() + deadline;
        let mut client = match timeout_at(until, self.pool.get()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Probe::Call(self.health.failed(Trouble::Unreachable, e))),
            Err(_) => {
                return Err(Probe::Call(
                    self.health
                        .failed(Trouble::Timeout, "no connection within the deadline"),
                ))
            }
        };
        match timeout_at(until, schema::ensure(&mut client)).await {
            Ok(Ok(applied)) => {
                for v in applied {
                    tracing::info!("ledger: schema {}.{v} created in {}", schema::SCHEMA, self.target);
                }
                self.health.answered();
                Ok(())
            }
            Ok(Err(schema::SchemaError::Database(e))) => {
                let kind = trouble_of(&e);
                Err(Probe::Call(self.health.failed(kind, describe(&e))))
            }
            Ok(Err(e)) => {
                self.health.failed(Trouble::Database, &e);
                Err(Probe::Schema(e))
            }
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(Probe::Call(self.health.failed(
                    Trouble::Timeout,
                    "the schema check did not finish in time",
                )))
            }
        }
    }

    /// Runs the prepared statement `sql` once, within `deadline`: one round trip once the
    /// connection has prepared it. Refused at once while the database is down.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        deadline: Duration,
    ) -> Result<Vec<Row>, LedgerError> {
        if let Some(e) = self.health.refusal() {
            return Err(e);
        }
        let until = Instant::now() + deadline;
        let client = match timeout_at(until, self.pool.get()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.health.failed(Trouble::Unreachable, e)),
            Err(_) => {
                return Err(self
                    .health
                    .failed(Trouble::Timeout, "no connection within the deadline"))
            }
        };
        let answered = timeout_at(until, async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        })
        .await;
        match answered {
            Ok(Ok(rows)) => {
                self.health.answered();
                Ok(rows)
            }
            Ok(Err(e)) => {
                let kind = trouble_of(&e);
                if kind != Trouble::Database {
                    drop(deadpool_postgres::Object::take(client));
                }
                Err(self.health.failed(kind, describe(&e)))
            }
            Err(_) => {
                // The statement may still commit: what it took stays counted. Its
                // connection is not reused, so nothing waits behind it.
                drop(deadpool_postgres::Object::take(client));
                Err(self
                    .health
                    .failed(Trouble::Timeout, format!("no answer within {deadline:?}")))
            }
        }
    }
}

/// Probes a database that is down every [`PROBE_EVERY`]; prunes every [`PRUNE_EVERY`].
/// Ends when the store is dropped.
async fn housekeeping(db: Weak<Db>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    loop {
        tick.tick().await;
        let Some(db) = db.upgrade() else {
            return;
        };
        if db.health.is_refusing() {
            let _ = db.probe(PROBE_DEADLINE).await;
        } else if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            prune(&db).await;
        }
    }
}

/// Deletes consumptions past the release window, a batch at a time, and empties idle
/// keys' windows.
async fn prune(db: &Db) {
    let mut gone = 0i64;
    // Bounded: a backlog left by a long outage is worked off over the next rounds.
    for _ in 0..50 {
        let batch = match db.query(PRUNE, &[&PRUNE_BATCH], PROBE_DEADLINE).await {
            Ok(rows) => rows.first().map_or(0, |r| r.get::<_, i64>(0)),
            Err(e) => {
                tracing::warn!("ledger: pruning old consumptions failed: {e}");
                return;
            }
        };
        gone += batch;
        if batch < i64::from(PRUNE_BATCH) {
            break;
        }
    }
    if gone > 0 {
        tracing::debug!("ledger: pruned {gone} consumptions past the release window");
    }
}

/// Whether an error means the connection is gone, rather than a statement that failed.
fn trouble_of(e: &tokio_postgres::Error) -> Trouble {
    if e.is_closed() {
        return Trouble::Unreachable;
    }
    match e.code() {
        None => Trouble::Unreachable,
        // Class 08 (connection exception) and 57P0x (the server shutting down, or gone).
        Some(code)
            if code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW =>
        {
            Trouble::Unreachable
        }
        Some(code)
            if *code == SqlState::UNDEFINED_FUNCTION
                || *code == SqlState::UNDEFINED_TABLE
                || *code == SqlState::INVALID_SCHEMA_NAME =>
        {
            Trouble::Schema
        }
        Some(_) => Trouble::Database,
    }
}

/// An error's text with the database's message when there is one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A money amount the database sent as the text of a whole number of 1e-8 units.
fn money(text: &str) -> Result<Money, LedgerError> {
    let whole = text.split_once('.').map_or(text, |(w, _)| w);
    whole.parse::<u128>().map(Money).map_err(|_| LedgerError {
        transient: true,
        message: format!("the ledger database sent an amount that is not one: {text:?}"),
    })
}

fn unix_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A fresh random ticket a charge (never 0).
fn random_tickets(n: usize) -> Result<Vec<i64>, LedgerError> {
    let mut bytes = vec![0u8; n * 8];
    getrandom::fill(&mut bytes).map_err(|e| LedgerError {
        transient: true,
        message: format!("the OS random source failed: {e}"),
    })?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let t = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            t.max(1) as i64
        })
        .collect())
}

/// For each charge, `f` of the order it follows (`None` for one it does not).
fn per_track<'a, T>(charges: &'a [Charge], f: impl Fn(&'a Track) -> Option<T>) -> Vec<Option<T>> {
    charges.iter().map(|c| c.track.as_ref().and_then(&f)).collect()
}

/// What makes two orders the same for `duplicate_window_ms`, as the database keeps it:
/// account, direction, the bits of qty and price, then the symbol — the same text on every
/// host and every build (never a process's hash).
fn fingerprint(t: &Track) -> String {
    let acc = t.acc_id.map_or_else(|| "-".to_owned(), |a| a.to_string());
    let price = t
        .price
        .map_or_else(|| "-".to_owned(), |p| format!("{:016x}", p.to_bits()));
    let side = if t.buys { 'b' } else { 's' };
    format!("{acc}|{side}|{:016x}|{price}|{}", t.qty.to_bits(), t.symbol)
}

/// An order event's kind as `futu_ledger.order_event` takes it.
fn kind_code(kind: OrderEventKind) -> i8 {
    (match kind {
        OrderEventKind::Accepted => b'A',
        OrderEventKind::PartiallyFilled => b'P',
        OrderEventKind::Filled => b'F',
        OrderEventKind::Cancelled => b'C',
        OrderEventKind::Rejected => b'R',
    }) as i8
}

/// What an applied event changed in the database, to take it back
/// (`futu_ledger.cancel_event`).
#[derive(Debug, Clone)]
pub struct EventPrior {
    ticket: u64,
    /// The order as it was (filled qty, filled value, open value, accepted), when the event
    /// changed a followed order.
    order: Option<(f64, String, String, bool)>,
    /// The event finished the order.
    finished: bool,
    /// The value a rejection gave back and its day.
    refunded: Option<(String, i32)>,
}

fn broken(what: impl std::fmt::Display) -> LedgerError {
    LedgerError {
        transient: true,
        message: format!("the ledger database answered unexpectedly: {what}"),
    }
}

impl PgLedger {
    async fn charge_all(&self, at: &Now, charges: &[Charge]) -> Result<Vec<Charged>, LedgerError> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = charges.iter().map(|c| c.key_id.as_str()).collect();
        let values: Vec<String> = charges.iter().map(|c| c.value.0.to_string()).collect();
        let rates: Vec<Option<i64>> = charges
            .iter()
            .map(|c| c.max_orders_per_minute.map(i64::from))
            .collect();
        let caps: Vec<Option<String>> = charges
            .iter()
            .map(|c| c.max_daily_value.map(|m| m.0.to_string()))
            .collect();
        let dry: Vec<bool> = charges.iter().map(|c| c.dry_run).collect();
        let tickets = random_tickets(charges.len())?;
        let symbols: Vec<Option<&str>> = per_track(charges, |t| Some(&*t.symbol));
        let buys: Vec<Option<bool>> = per_track(charges, |t| Some(t.buys));
        let qtys: Vec<Option<f64>> = per_track(charges, |t| Some(t.qty));
        let prices: Vec<Option<f64>> = per_track(charges, |t| t.price);
        let accs: Vec<Option<String>> = per_track(charges, |t| t.acc_id.map(|a| a.to_string()));
        let max_open: Vec<Option<i64>> = per_track(charges, |t| t.max_open_orders.map(i64::from));
        let max_pos: Vec<Option<String>> =
            per_track(charges, |t| t.max_position_value.map(|m| m.0.to_string()));
        let dup_ns: Vec<Option<i64>> = per_track(charges, |t| {
            t.duplicate_window_ns
                .map(|w| i64::try_from(w).unwrap_or(i64::MAX))
        });
        let fps: Vec<Option<String>> = per_track(charges, |t| Some(fingerprint(t)));
        let rows = self
            .db
            .query(
                CHARGE,
                &[
                    &keys, &values, &rates, &caps, &dry, &tickets, &symbols, &buys, &qtys, &prices, &accs,
                    &max_open, &max_pos, &dup_ns, &fps,
                ],
                self.db.deadline,
            )
            .await?;
        let mut outcomes: Vec<Option<Charged>> = vec![None; charges.len()];
        for row in rows {
            let idx: i32 = row.get(0);
            let i = usize::try_from(idx - 1)
                .ok()
                .filter(|i| *i < charges.len())
                .ok_or_else(|| broken(format!("charge number {idx}")))?;
            let outcome: i8 = row.get(1);
            let charge = &charges[i];
            outcomes[i] = Some(match outcome as u8 {
                b'P' => {
                    let at_db: SystemTime = row.get(5);
                    let day: i32 = row.get(6);
                    let ticket = tickets[i] as u64;
                    Charged::Passed(Some(Consumption {
                        key_id: charge.key_id.clone(),
                        number: ticket,
                        ticket,
                        mono_ns: at.mono_ns,
                        unix_ns: unix_ns(at_db),
                        day: i64::from(day),
                        value: charge.value,
                    }))
                }
                b'D' => Charged::Passed(None),
                b'R' => {
                    let in_window: i64 = row.get(2);
                    let retry: i64 = row.get(3);
                    Charged::Rate {
                        in_window: u32::try_from(in_window.max(0)).unwrap_or(u32::MAX),
                        retry_after_ns: u64::try_from(retry).unwrap_or(0),
                    }
                }
                b'V' => Charged::Daily {
                    used: money(row.get(4))?,
                },
                b'X' => {
                    let since: i64 = row.get(7);
                    Charged::Duplicate {
                        since_ns: u64::try_from(since).unwrap_or(0),
                    }
                }
                b'O' => {
                    let open: i64 = row.get(8);
                    Charged::OpenOrders {
                        open: u32::try_from(open.max(0)).unwrap_or(u32::MAX),
                    }
                }
                b'S' => Charged::Position {
                    position: money(row.get(9))?,
                },
                other => return Err(broken(format!("outcome {:?}", other as char))),
            });
        }
        outcomes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| broken("fewer outcomes than charges"))
    }
}

impl PgLedger {
    async fn apply_event(&self, event: &OrderEvent) -> Result<EventDone, LedgerError> {
        let refused = |reason, message: String| EventDone {
            result: Err((reason, message)),
            undo: None,
        };
        if let Err(m) = event_figures(event.kind, event.filled_qty, event.fill_price) {
            return Ok(refused(OrderEventRefusal::BadFigures, m));
        }
        let (q, p) = (event.filled_qty, event.fill_price);
        let filled_value = match (q, p) {
            (Some(q), Some(p)) => Money::order_value(q, p).map(|m| m.0.to_string()),
            _ => None,
        };
        let params: [&(dyn ToSql + Sync); 5] = [
            &(event.ticket as i64),
            &kind_code(event.kind),
            &q,
            &p,
            &filled_value,
        ];
        let rows = self.db.query(ORDER_EVENT, &params, self.db.deadline).await?;
        let row = rows.first().ok_or_else(|| broken("no order event outcome"))?;
        let outcome: i8 = row.get(0);
        let key_id = || -> Result<KeyId, LedgerError> {
            let key: String = row.get(1);
            KeyId::try_from(key).map_err(|e| broken(format!("key id: {e}")))
        };
        let (q, p) = (q.unwrap_or(0.0), p.unwrap_or(0.0));
        Ok(match outcome as u8 {
            b'A' => {
                let key_id = key_id()?;
                let refunded: Option<String> = row.get(4);
                let day: Option<i32> = row.get(5);
                let released = match (&refunded, day) {
                    (Some(r), Some(day)) => Some(Released {
                        number: event.ticket,
                        key_id: key_id.clone(),
                        refunded: money(r)?,
                        day: i64::from(day),
                    }),
                    _ => None,
                };
                let prev_qty: Option<f64> = row.get(6);
                let prev_filled: Option<String> = row.get(7);
                let prev_open: Option<String> = row.get(8);
                let prev_accepted: Option<bool> = row.get(9);
                let order = match (prev_qty, prev_filled, prev_open, prev_accepted) {
                    (Some(a), Some(b), Some(c), Some(d)) => Some((a, b, c, d)),
                    _ => None,
                };
                EventDone {
                    result: Ok(EventApplied::Applied { key_id, released }),
                    undo: Some(Undo::Pg(EventPrior {
                        ticket: event.ticket,
                        order,
                        finished: row.get(10),
                        refunded: refunded.zip(day),
                    })),
                }
            }
            b'D' => EventDone {
                result: Ok(EventApplied::Duplicate { key_id: key_id()? }),
                undo: None,
            },
            b'U' => refused(
                OrderEventRefusal::UnknownTicket,
                "no order the ledger knows has this ticket".to_owned(),
            ),
            b'B' => {
                let bad: Option<i8> = row.get(2);
                let qty: Option<f64> = row.get(3);
                let qty = qty.unwrap_or(0.0);
                let message = match bad.map(|b| b as u8) {
                    Some(b'Q') => format!("{q} filled of an order of {qty}"),
                    Some(b'J') => format!("the order has {qty} filled: it can be cancelled, not rejected"),
                    Some(b'V') => format!("a fill of {q} at {p} is too large to count"),
                    other => return Err(broken(format!("bad figures {other:?}"))),
                };
                refused(OrderEventRefusal::BadFigures, message)
            }
            other => return Err(broken(format!("order event outcome {:?}", other as char))),
        })
    }
}

impl LedgerStore for PgLedger {
    /// `note` is not needed: a consumption is counted once the database committed it,
    /// whether or not its audit records were written (the safe side).
    fn charge<'a>(
        &'a self,
        at: &'a Now,
        charges: &'a [Charge],
        _note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<Vec<Charged>, LedgerError>> {
        Box::pin(self.charge_all(at, charges))
    }

    fn cancel<'a>(&'a self, taken: &'a [Consumption]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if taken.is_empty() {
                return;
            }
            let tickets: Vec<i64> = taken.iter().map(|c| c.ticket as i64).collect();
            if let Err(e) = self.db.query(CANCEL, &[&tickets], self.db.deadline).await {
                tracing::error!(
                    "ledger: {} refused orders could not be taken back ({e}); they stay counted",
                    taken.len()
                );
            }
        })
    }

    fn release<'a>(
        &'a self,
        _at: &'a Now,
        ticket: u64,
        _note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<Released, ReleaseFailure>> {
        Box::pin(async move {
            let rows = self
                .db
                .query(RELEASE, &[&(ticket as i64)], self.db.deadline)
                .await?;
            let row = rows.first().ok_or_else(|| broken("no release outcome"))?;
            let outcome: i8 = row.get(0);
            match outcome as u8 {
                b'R' => {
                    let key: String = row.get(1);
                    let key_id = KeyId::try_from(key).map_err(|e| broken(format!("key id: {e}")))?;
                    let day: i32 = row.get(3);
                    Ok(Released {
                        number: ticket,
                        key_id,
                        refunded: money(row.get(2))?,
                        day: i64::from(day),
                    })
                }
                b'U' => Err(ReleaseError::Unknown.into()),
                b'A' => Err(ReleaseError::AlreadyReleased.into()),
                b'E' => Err(ReleaseError::Expired.into()),
                other => Err(broken(format!("release outcome {:?}", other as char)).into()),
            }
        })
    }

    fn cancel_release<'a>(&'a self, released: &'a Released) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let refunded = released.refunded.0.to_string();
            let day = i32::try_from(released.day).unwrap_or(i32::MAX);
            let params: [&(dyn ToSql + Sync); 4] = [
                &(released.number as i64),
                &released.key_id.as_str(),
                &refunded,
                &day,
            ];
            if let Err(e) = self.db.query(CANCEL_RELEASE, &params, self.db.deadline).await {
                tracing::error!(
                    "ledger: the release of a ticket of {} could not be taken back ({e}); it stays released",
                    released.key_id
                );
            }
        })
    }

    fn follows_orders(&self) -> bool {
        true
    }

    /// `note` is not needed, as for `charge`.
    fn order_event<'a>(
        &'a self,
        _at: &'a Now,
        event: &'a OrderEvent,
        _note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<EventDone, LedgerError>> {
        Box::pin(self.apply_event(event))
    }

    fn cancel_event<'a>(&'a self, done: &'a EventDone) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(Undo::Pg(prior)) = &done.undo else {
                return;
            };
            let (qty, filled, open, accepted) = match &prior.order {
                Some((q, f, o, a)) => (Some(*q), Some(f.as_str()), Some(o.as_str()), Some(*a)),
                None => (None, None, None, None),
            };
            let (refunded, day) = match &prior.refunded {
                Some((r, d)) => (Some(r.as_str()), Some(*d)),
                None => (None, None),
            };
            let params: [&(dyn ToSql + Sync); 8] = [
                &(prior.ticket as i64),
                &qty,
                &filled,
                &open,
                &accepted,
                &prior.finished,
                &refunded,
                &day,
            ];
            if let Err(e) = self.db.query(CANCEL_EVENT, &params, self.db.deadline).await {
                tracing::error!(
                    "ledger: an order event for ticket {} could not be taken back ({e}); it stays applied",
                    prior.ticket
                );
            }
        })
    }

    fn order_book<'a>(&'a self, key_id: &'a KeyId) -> BoxFuture<'a, Result<OrderBook, LedgerError>> {
        Box::pin(async move {
            let deadline = self.db.deadline.max(USAGE_DEADLINE);
            let open = self.db.query(OPEN_COUNT, &[&key_id.as_str()], deadline).await?;
            let open_orders = open
                .first()
                .map(|r| u32::try_from(r.get::<_, i64>(0).max(0)).unwrap_or(u32::MAX))
                .unwrap_or(0);
            let rows = self.db.query(POSITIONS, &[&key_id.as_str()], deadline).await?;
            let mut positions = Vec::with_capacity(rows.len());
            for row in rows {
                let (long, short) = (money(row.get(1))?, money(row.get(2))?);
                if long == Money::ZERO && short == Money::ZERO {
                    continue;
                }
                positions.push(PositionUsage {
                    symbol: row.get(0),
                    long: long.as_f64(),
                    short: short.as_f64(),
                });
            }
            Ok(OrderBook {
                open_orders,
                positions,
            })
        })
    }

    fn usage<'a>(
        &'a self,
        _at: &'a Now,
        key_id: &'a KeyId,
    ) -> BoxFuture<'a, Result<(u32, Money), LedgerError>> {
        Box::pin(async move {
            let deadline = self.db.deadline.max(USAGE_DEADLINE);
            let rows = self.db.query(USAGE, &[&key_id.as_str()], deadline).await?;
            let row = rows.first().ok_or_else(|| broken("no usage"))?;
            let in_window: i64 = row.get(0);
            Ok((
                u32::try_from(in_window.max(0)).unwrap_or(u32::MAX),
                money(row.get(1))?,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::{Host, TargetSessionAttrs};

    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        let url: LedgerUrl = "postgres://futu:s3cret@db.example:5433/ledger".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://futu@db.example/ledger");
        assert!(!format!("{url:?}").contains("s3cret"));
        let socket: LedgerUrl = "postgresql:///ledger?host=/run/postgresql&user=futu"
            .parse()
            .unwrap();
        assert_eq!(socket.to_string(), "postgres://futu@/run/postgresql/ledger");
        assert!("mysql://nope".parse::<LedgerUrl>().is_err());
    }

    /// The Unix socket directories and ports a URL names, in order, and its session attrs.
    fn hosts_of(url: &str) -> (Vec<String>, Vec<u16>, TargetSessionAttrs) {
        let url: LedgerUrl = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let hosts = url
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Unix(p) => p.display().to_string(),
                Host::Tcp(name) => format!("tcp:{name}"),
            })
            .collect();
        (
            hosts,
            url.config.get_ports().to_vec(),
            url.config.get_target_session_attrs(),
        )
    }

    #[test]
    fn several_hosts_are_read_as_libpq_reads_them_and_only_a_read_write_one_is_used() {
        let two = |hosts: &[&str], ports: &[u16]| {
            (
                hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
                ports.to_vec(),
                TargetSessionAttrs::ReadWrite,
            )
        };
        let sockets = two(&["/run/pg-a", "/run/pg-b"], &[5432, 5433]);
        for url in [
            "postgresql:///futu?host=/run/pg-a,/run/pg-b&port=5432,5433&target_session_attrs=read-write",
            "postgresql:///futu?host=/run/pg-a&host=/run/pg-b&port=5432,5433",
            "postgresql://futu@%2Frun%2Fpg-a:5432,%2Frun%2Fpg-b:5433/futu?target_session_attrs=read-write",
            "host=/run/pg-a,/run/pg-b port=5432,5433 dbname=futu target_session_attrs=read-write",
        ] {
            assert_eq!(hosts_of(url), sockets, "{url}");
        }
        assert_eq!(
            hosts_of("postgres://futu:p?ss@/futu?host=db1.example,db2.example"),
            two(&["tcp:db1.example", "tcp:db2.example"], &[]),
            "a ? in the password does not start the query"
        );
        assert_eq!(
            hosts_of("postgresql:///futu?host=/run/postgresql").2,
            TargetSessionAttrs::ReadWrite,
            "read-write whether the URL says it or not"
        );
        let shown: LedgerUrl = "postgresql:///futu?host=/run/pg-a,/run/pg-b&user=futu"
            .parse()
            .unwrap();
        assert_eq!(shown.to_string(), "postgres://futu@/run/pg-a,/run/pg-b/futu");
        for (url, why) in [
            (
                "postgresql:///futu?host=/run/a,/run/b,/run/c&port=5432,5433",
                "3 hosts and 2 ports",
            ),
            (
                "postgresql:///futu?host=/run/a&target_session_attrs=read-only",
                "must be read-write",
            ),
        ] {
            let e = url.parse::<LedgerUrl>().expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn amounts_come_back_exact() {
        assert_eq!(money("0").unwrap(), Money::ZERO);
        assert_eq!(
            money("123456789012345678901234567").unwrap(),
            Money(123_456_789_012_345_678_901_234_567)
        );
        assert_eq!(money("42.00000000").unwrap(), Money(42));
        assert!(money("-1").is_err());
    }

    #[test]
    fn tickets_are_random_and_never_zero() {
        let t = random_tickets(1000).unwrap();
        let mut sorted = t.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert!(!t.contains(&0));
    }
}
