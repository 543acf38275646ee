//! Whether the ledger database answers: reported as it changes to whoever opened the store
//! (the server counts it in the metrics, `futu_auth_ledger_up` and
//! `futu_auth_ledger_errors_total{kind}`), and logged once at each change.
//!
//! While the database is unreachable or without the schema, or after
//! [`TIMEOUTS_BEFORE_REFUSING`] calls in a row found no answer within the deadline, calls
//! are refused at once — an order check does not hold the commit lock for a deadline each,
//! so the reads behind it go on — and the store's housekeeping probes the database; the
//! first probe or call that works resumes service. A single late answer (a slow disk
//! flush) costs only the burst that waited for it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::ledger::{HealthEvent, HealthReport, LedgerError, Trouble};

/// Calls in a row without an answer within the deadline after which calls are refused at
/// once until a probe answers.
pub const TIMEOUTS_BEFORE_REFUSING: u32 = 3;

impl Trouble {
    /// Whether calls are refused at once until a probe works (timeouts: after
    /// [`TIMEOUTS_BEFORE_REFUSING`] in a row).
    fn refuses_at_once(self, timeouts_in_a_row: u32) -> bool {
        match self {
            Trouble::Unreachable | Trouble::Schema => true,
            Trouble::Timeout => timeouts_in_a_row >= TIMEOUTS_BEFORE_REFUSING,
            Trouble::Database => false,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Trouble::Unreachable => "cannot be reached",
            Trouble::Timeout => "did not answer within the deadline",
            Trouble::Schema => "lacks the ledger schema",
            Trouble::Database => "answered with an error",
        }
    }
}

/// The ledger database's health, as the calls to it found it.
pub struct Health {
    /// Where the ledger is, without a password, for log lines.
    target: String,
    /// Told every failed call, and every call that worked after a failure.
    report: HealthReport,
    /// Whether anything is wrong: the fast path of a call that worked reads only this.
    troubled: AtomicBool,
    /// Whether calls are refused at once (see [`Trouble::refuses_at_once`]).
    refusing: AtomicBool,
    /// Calls in a row that found no answer within the deadline.
    timeouts_in_a_row: AtomicU32,
    /// What is wrong, and the last error's text.
    trouble: Mutex<Option<(Trouble, String)>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("target", &self.target)
            .field("trouble", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Health {
    /// A ledger database believed to answer.
    pub fn new(target: String, report: HealthReport) -> Health {
        report(HealthEvent::Answered);
        Health {
            target,
            report,
            troubled: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            timeouts_in_a_row: AtomicU32::new(0),
            trouble: Mutex::new(None),
        }
    }

    /// The error a call gets without trying while the database is unreachable or slow.
    pub fn refusal(&self) -> Option<LedgerError> {
        if !self.refusing.load(Ordering::Relaxed) {
            return None;
        }
        let trouble = self.lock();
        let (kind, message) = trouble.as_ref()?;
        Some(LedgerError {
            transient: true,
            message: format!(
                "the ledger database {} {} ({message}); orders are refused until it answers",
                self.target,
                kind.describe()
            ),
        })
    }

    /// Whether calls are refused at once (the housekeeping probes then).
    pub fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Counts a failed call and returns its error; logs when the trouble is new.
    pub fn failed(&self, kind: Trouble, error: impl std::fmt::Display) -> LedgerError {
        let message = error.to_string();
        let mut trouble = self.lock();
        let changed = trouble.as_ref().is_none_or(|(k, _)| *k != kind);
        if changed {
            tracing::error!(
                "the ledger database {} {} ({message}); orders and releases are refused `internal` until it answers",
                self.target,
                kind.describe()
            );
        }
        *trouble = Some((kind, message.clone()));
        self.troubled.store(true, Ordering::Relaxed);
        let timeouts = if kind == Trouble::Timeout {
            self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            0
        };
        let refusing = kind.refuses_at_once(timeouts);
        if refusing && !self.refusing.swap(true, Ordering::Relaxed) && !changed {
            tracing::error!(
                "the ledger database {} {} {timeouts} times in a row; orders are refused at once until it answers a probe",
                self.target,
                kind.describe()
            );
        }
        self.refusing.store(refusing, Ordering::Relaxed);
        (self.report)(HealthEvent::Failed(kind));
        LedgerError {
            transient: true,
            message: format!(
                "the ledger database {} {} ({message})",
                self.target,
                kind.describe()
            ),
        }
    }

    /// Notes a call or probe that worked; logs when it ends a trouble.
    pub fn answered(&self) {
        if !self.troubled.load(Ordering::Relaxed) {
            return;
        }
        let mut trouble = self.lock();
        if let Some((kind, _)) = trouble.take() {
            tracing::info!(
                "the ledger database {} answers again (it {} before); service resumed",
                self.target,
                kind.describe()
            );
        }
        self.troubled.store(false, Ordering::Relaxed);
        self.refusing.store(false, Ordering::Relaxed);
        self.timeouts_in_a_row.store(0, Ordering::Relaxed);
        (self.report)(HealthEvent::Answered);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Trouble, String)>> {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner())
    }
}
