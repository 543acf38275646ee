//! The one authoritative limit ledger: per key, the orders allowed in the last 60 s and
//! the value allowed today (UTC), and the tickets that refund a rejected order.
//!
//! The rules ([`futu_auth_rules::decide`]) say what an allowed order would take — a
//! [`Charge`]; a [`LedgerStore`] checks and takes it, atomically per key, for a whole burst
//! in one call, makes it durable, releases tickets and reports usage. Where the counters
//! live is the store's business: [`local::LocalLedger`] keeps them in memory (the rules'
//! [`futu_auth_rules::ledger::Ledger`]) with a journal in the state directory
//! ([`local::journal`]); a store across the network fits the same trait (async, one call
//! per batch, errors that say whether they are transient). The per-key lock never leaves
//! the in-memory ledger.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futu_auth_proto::{KeyId, OrderEvent, OrderEventRefusal};
use futu_auth_rules::ledger::{
    Charge, Charged, Consumption, EventApplied, EventUndo, OrderBook, ReleaseError, Released,
};
use futu_auth_rules::money::Money;
use futu_auth_rules::Now;

mod audit_mark;
pub mod local;
pub mod pg;

pub use audit_mark::{AuditMark, Audited};

/// A future a [`LedgerStore`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The store could not do what was asked; nothing of it was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LedgerError {
    /// Whether trying again later can work (a full disk, a database that is away) rather
    /// than never (a corrupt store).
    pub transient: bool,
    /// One line for a person.
    pub message: String,
}

/// What went wrong with a call to a ledger store across the network: the `kind` label of
/// `futu_auth_ledger_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trouble {
    /// No connection could be made, or it broke.
    Unreachable,
    /// No answer within the deadline (the outcome of a charge is then unknown, and what it
    /// may have taken stays counted).
    Timeout,
    /// The store lacks its tables or functions (dropped, or a database restored without
    /// them).
    Schema,
    /// The store answered with an error.
    Database,
}

impl Trouble {
    /// The `kind` label: `unreachable`, `timeout`, `schema` or `database`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trouble::Unreachable => "unreachable",
            Trouble::Timeout => "timeout",
            Trouble::Schema => "schema",
            Trouble::Database => "database",
        }
    }
}

/// A change in whether a store answers, as the store found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEvent {
    /// A call or probe worked (the store is believed to answer from now on).
    Answered,
    /// A call or probe failed, for this reason.
    Failed(Trouble),
}

/// Where a store reports its health: handed to it when it is opened. The server wires it
/// to the metrics; a store never reaches into the daemon's metrics itself.
pub type HealthReport = Arc<dyn Fn(HealthEvent) + Send + Sync>;

/// Why a release was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseFailure {
    /// The ticket cannot be released (unknown, released before, too old).
    #[error(transparent)]
    Refused(#[from] ReleaseError),
    /// The store failed; nothing was released.
    #[error(transparent)]
    Store(#[from] LedgerError),
}

/// What an order event came to in a store ([`LedgerStore::order_event`]).
#[derive(Debug, Clone)]
pub struct EventDone {
    /// Applied (or a duplicate), or refused with why.
    pub result: Result<EventApplied, (OrderEventRefusal, String)>,
    /// For [`LedgerStore::cancel_event`]: what the event changed.
    pub(crate) undo: Option<Undo>,
}

/// What an applied event changed, as its store needs it to take the event back.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// The in-memory ledger's copy of what the event changed ([`local::LocalLedger`]).
    Local(EventUndo),
    /// The order as it was in the database ([`pg::PgLedger`]).
    Pg(pg::EventPrior),
}

/// Where the limit ledger lives.
///
/// A store whose calls can fail for a while (one across the network) takes a
/// [`HealthReport`] when it is opened and tells it every failed call and the first that
/// works after one; a store that answers from memory reports nothing and counts as up.
///
/// The caller serializes the calls that change the ledger — `charge`, `cancel`,
/// `release`, `cancel_release` and `maintain` — under its commit lock, and writes the
/// burst's audit records between a `charge` and the next call: a store may rely on it (the
/// local journal is cut back by `cancel`).
pub trait LedgerStore: Send + Sync {
    /// Checks the charges of one burst, in order, each atomically against its key's rate
    /// window and daily total, and takes those that pass; what was taken is durable when
    /// this returns `Ok`, together with `note` (where the burst's audit records will go, so
    /// that after a crash between the two writes the store can tell whether they were
    /// written). On `Err` nothing was taken.
    fn charge<'a>(
        &'a self,
        at: &'a Now,
        charges: &'a [Charge],
        note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<Vec<Charged>, LedgerError>>;

    /// Takes back everything the last `charge` took (its audit records could not be
    /// written): the orders were refused, and leave no trace.
    fn cancel<'a>(&'a self, taken: &'a [Consumption]) -> BoxFuture<'a, ()>;

    /// Refunds the order a client's ticket names, durably (with `note`, as for `charge`).
    fn release<'a>(
        &'a self,
        at: &'a Now,
        ticket: u64,
        note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<Released, ReleaseFailure>>;

    /// Takes back the last `release` (its audit record could not be written).
    fn cancel_release<'a>(&'a self, released: &'a Released) -> BoxFuture<'a, ()>;

    /// Whether the store keeps the orders of keys with `max_open_orders`,
    /// `max_position_value` or `duplicate_window_ms` (open orders, positions, recent
    /// orders) and applies order events; a store that does not has such orders refused.
    fn follows_orders(&self) -> bool {
        false
    }

    /// Applies what became of an allowed order, once, durably (with `note`, as for
    /// `charge`). `Err`: the store failed, nothing changed.
    fn order_event<'a>(
        &'a self,
        at: &'a Now,
        event: &'a OrderEvent,
        note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<EventDone, LedgerError>> {
        let _ = (at, note);
        Box::pin(async move {
            Ok(EventDone {
                result: Err((
                    OrderEventRefusal::NotSupported,
                    format!(
                        "ticket {}: order events are not supported by this ledger; send Release for a rejected order",
                        event.ticket
                    ),
                )),
                undo: None,
            })
        })
    }

    /// Takes back the last `order_event` (its audit record could not be written).
    fn cancel_event<'a>(&'a self, done: &'a EventDone) -> BoxFuture<'a, ()> {
        let _ = done;
        Box::pin(async {})
    }

    /// The open orders and positions of `key_id`, for `Usage` (empty from a store that
    /// does not follow orders).
    fn order_book<'a>(&'a self, key_id: &'a KeyId) -> BoxFuture<'a, Result<OrderBook, LedgerError>> {
        let _ = key_id;
        Box::pin(async { Ok(OrderBook::default()) })
    }

    /// Orders in the last 60 s and value used today by `key_id`.
    fn usage<'a>(
        &'a self,
        at: &'a Now,
        key_id: &'a KeyId,
    ) -> BoxFuture<'a, Result<(u32, Money), LedgerError>>;

    /// Housekeeping between bursts (the local journal compacts itself here).
    fn maintain(&self) {}

    /// Makes everything written so far survive a power loss (the caller does it every
    /// second and at shutdown).
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}
