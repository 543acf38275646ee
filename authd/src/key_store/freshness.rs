//! Whether the snapshot a daemon serves is known to be the key store's current state: a
//! store shared by several hosts is changed by any of them, and a revocation made elsewhere
//! reaches this host only when it next hears from the database.
//!
//! Each time the database answers that the snapshot is current (or hands over a newer
//! state, which is installed), the snapshot is *confirmed* at the moment that question was
//! sent. While the database cannot be reached the daemon goes on with its snapshot; once it
//! has gone `--keys-max-staleness` (10 s by default) without a confirmation, whatever needs
//! a trading scope is refused `internal` ([`Freshness::trading_refusal`]), reads go on, and
//! the first confirmation ends it. A snapshot never confirmed by this process (read from
//! nowhere but a start without the database) refuses trading from the start.
//!
//! Each change of state is one log line, and the state goes to whoever opened the store
//! through a [`FreshnessReport`] (the server counts it in the metrics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Nanoseconds after `origin` of the last confirmation: never.
const NEVER: u64 = u64::MAX;

/// What a [`Freshness`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FreshnessEvent {
    /// Whether the store's last check confirmed the snapshot current (or brought a newer
    /// state): `futu_auth_keys_store_up`.
    Up(bool),
    /// How long ago the snapshot was last confirmed current (since the start when never):
    /// `futu_auth_keys_snapshot_age_seconds`.
    Age(Duration),
}

/// Where a [`Freshness`] reports: handed to it when it is made; the server wires it to the
/// metrics.
pub type FreshnessReport = Arc<dyn Fn(FreshnessEvent) + Send + Sync>;

/// Where the snapshot stands, for the log lines at each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Confirmed, and the store answers.
    Current,
    /// The store's last check failed; the snapshot is still within the limit.
    Unconfirmed,
    /// Past the limit without a confirmation: trading is refused.
    Stale,
}

/// How fresh the snapshot in service is.
pub struct Freshness {
    /// The store, without a password, for log lines.
    target: String,
    /// `--keys-max-staleness`.
    max_staleness: Duration,
    /// The moment [`Freshness::confirmed`] counts from.
    origin: Instant,
    /// Nanoseconds after `origin` of the last confirmation, or [`NEVER`]: read by every
    /// burst of checks, so an atomic.
    confirmed: AtomicU64,
    /// For the log line at each change.
    state: Mutex<State>,
    /// Told every check's outcome and the snapshot's age.
    report: FreshnessReport,
}

impl std::fmt::Debug for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Freshness")
            .field("target", &self.target)
            .field("max_staleness", &self.max_staleness)
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Freshness {
    /// A snapshot of the store `target` not yet confirmed, refused for trading once
    /// `max_staleness` passes without a confirmation.
    pub fn new(target: String, max_staleness: Duration, report: FreshnessReport) -> Freshness {
        Freshness {
            target,
            max_staleness,
            origin: Instant::now(),
            confirmed: AtomicU64::new(NEVER),
            state: Mutex::new(State::Current),
            report,
        }
    }

    /// How long ago the snapshot was last confirmed; `None`: never.
    pub fn age(&self) -> Option<Duration> {
        let at = self.confirmed.load(Ordering::Relaxed);
        (at != NEVER).then(|| self.origin.elapsed().saturating_sub(Duration::from_nanos(at)))
    }

    /// Why an order, an unlock or a scope check of a trading scope is refused now: the
    /// snapshot was not confirmed current within the limit. `None`: it was.
    pub fn trading_refusal(&self) -> Option<String> {
        match self.age() {
            Some(age) if age <= self.max_staleness => None,
            Some(age) => Some(format!(
                "the keys store has not been confirmed current for {} s: a revocation may have been missed; trading is refused until it is",
                age.as_secs()
            )),
            None => Some(
                "the keys store has not been confirmed current since futu-authd started: a revocation may have been missed; trading is refused until it is"
                    .to_owned(),
            ),
        }
    }

    /// The store answered, at the moment `asked` the question was sent, that the snapshot
    /// in service is its current state (or handed over that state, now installed).
    pub fn confirmed(&self, asked: Instant) {
        let at = asked.saturating_duration_since(self.origin).as_nanos();
        let at = u64::try_from(at).unwrap_or(NEVER - 1);
        let before = self.confirmed.load(Ordering::Relaxed);
        if before == NEVER || before < at {
            self.confirmed.store(at, Ordering::Relaxed);
        }
        let mut state = self.lock();
        match *state {
            State::Current => {}
            State::Unconfirmed => tracing::info!(
                "the keys store {} answers again; the snapshot in service is current",
                self.target
            ),
            State::Stale => tracing::info!(
                "the keys store {} answers again; the snapshot in service is current: trading resumes",
                self.target
            ),
        }
        *state = State::Current;
        drop(state);
        (self.report)(FreshnessEvent::Up(true));
        (self.report)(FreshnessEvent::Age(self.age().unwrap_or_default()));
    }

    /// The store's check failed (`why`): it could not be reached, did not answer in time,
    /// or holds keys that do not load. The snapshot stays in service.
    pub fn failed(&self, why: impl std::fmt::Display) {
        let mut state = self.lock();
        if *state == State::Current {
            let since = match self.age() {
                Some(age) => format!("last confirmed current {:.1} s ago", age.as_secs_f64()),
                None => "never confirmed current since the start".to_owned(),
            };
            tracing::error!(
                "the keys store {} cannot confirm the snapshot in service ({why}); checks go on with it ({since}); trading is refused once it has not been confirmed for {} s",
                self.target,
                self.max_staleness.as_secs_f64()
            );
            *state = State::Unconfirmed;
        }
        drop(state);
        (self.report)(FreshnessEvent::Up(false));
    }

    /// Reports the snapshot's age, and logs the moment it passes the limit.
    pub fn tick(&self) {
        let age = self.age();
        (self.report)(FreshnessEvent::Age(age.unwrap_or_else(|| self.origin.elapsed())));
        if self.trading_refusal().is_none() {
            return;
        }
        let mut state = self.lock();
        if *state != State::Stale {
            tracing::error!(
                "the keys store {} has not confirmed the snapshot in service for over {} s (--keys-max-staleness): a revocation may have been missed; orders, unlocks and scope checks of trade:* scopes are refused `internal` until it does; other checks go on",
                self.target,
                self.max_staleness.as_secs_f64()
            );
            *state = State::Stale;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freshness(max: Duration) -> (Freshness, Arc<Mutex<Vec<FreshnessEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let report: FreshnessReport = Arc::new(move |e| sink.lock().unwrap().push(e));
        (Freshness::new("db".into(), max, report), events)
    }

    #[test]
    fn a_snapshot_never_confirmed_refuses_trading() {
        let (f, _) = freshness(Duration::from_secs(10));
        let why = f.trading_refusal().expect("refused");
        assert!(why.contains("since futu-authd started"), "{why}");
        f.confirmed(Instant::now());
        assert_eq!(f.trading_refusal(), None);
    }

    #[test]
    fn trading_is_refused_past_the_limit_and_resumes_at_the_next_confirmation() {
        let (f, events) = freshness(Duration::from_millis(50));
        f.confirmed(Instant::now());
        f.failed("the database went away");
        assert_eq!(f.trading_refusal(), None, "within the limit");
        std::thread::sleep(Duration::from_millis(80));
        let why = f.trading_refusal().expect("refused past the limit");
        assert!(
            why.starts_with("the keys store has not been confirmed current for 0 s"),
            "{why}"
        );
        assert!(why.contains("a revocation may have been missed"), "{why}");
        f.tick();
        assert_eq!(*f.lock(), State::Stale);
        f.confirmed(Instant::now());
        assert_eq!(f.trading_refusal(), None);
        assert_eq!(*f.lock(), State::Current);
        let events = events.lock().unwrap();
        assert!(events.contains(&FreshnessEvent::Up(false)));
        assert_eq!(
            events.iter().filter(|e| **e == FreshnessEvent::Up(true)).count(),
            2
        );
    }

    #[test]
    fn an_older_confirmation_never_moves_the_last_one_back() {
        let (f, _) = freshness(Duration::from_secs(10));
        let early = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        f.confirmed(Instant::now());
        let age = f.age().unwrap();
        f.confirmed(early);
        assert!(f.age().unwrap() < age + Duration::from_millis(15));
    }
}
