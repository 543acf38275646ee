//! What a connection holds while it is served, given back when it ends: a place among
//! `--max-connections`, a place in its uid's share (`--max-connections-per-uid`) and a
//! count in `futu_auth_connections`. One place counts up ([`Shares::admit`]); dropping the
//! [`ConnectionSlot`] counts down, whichever way the connection's task ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedSemaphorePermit;

use crate::metrics::Metrics;

/// How many connections each uid holds now, and how many it may.
#[derive(Debug, Clone)]
pub(super) struct Shares {
    /// Connections held, by uid; a uid holding none has no entry.
    held: Arc<Mutex<HashMap<u32, usize>>>,
    /// The most one uid may hold, so another uid's gateway always finds room.
    share: usize,
}

impl Shares {
    /// No connection held yet; each uid may hold `share`.
    pub(super) fn new(share: usize) -> Shares {
        Shares {
            held: Arc::default(),
            share,
        }
    }

    /// The most one uid may hold.
    pub(super) fn share(&self) -> usize {
        self.share
    }

    /// A slot for a new connection of `uid`, which holds `permit` (its place among every
    /// connection) and counts in the open connections of `metrics`; `None` when `uid`
    /// holds its share already (then `permit` goes back at once).
    pub(super) fn admit(
        &self,
        uid: u32,
        permit: OwnedSemaphorePermit,
        metrics: &Arc<Metrics>,
    ) -> Option<ConnectionSlot> {
        {
            let mut held = self.lock();
            let n = held.entry(uid).or_insert(0);
            if *n >= self.share {
                return None;
            }
            *n += 1;
        }
        metrics.connection(1);
        Some(ConnectionSlot {
            shares: self.clone(),
            uid,
            metrics: Arc::clone(metrics),
            _permit: permit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's places, held by its task and given back when it is dropped.
#[derive(Debug)]
pub(super) struct ConnectionSlot {
    /// Where its uid's count is kept.
    shares: Shares,
    /// Whose share it counts in.
    uid: u32,
    /// Where it counts as open.
    metrics: Arc<Metrics>,
    /// Its place among `--max-connections`, released with the slot.
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.metrics.connection(-1);
        let mut held = self.shares.lock();
        if let Some(n) = held.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;

    #[test]
    fn a_uid_holds_at_most_its_share_and_a_dropped_slot_gives_its_places_back() {
        let slots = Arc::new(Semaphore::new(10));
        let metrics = Arc::new(Metrics::new());
        let shares = Shares::new(2);
        let permit = || Arc::clone(&slots).try_acquire_owned().unwrap();
        let a = shares.admit(1000, permit(), &metrics).unwrap();
        let b = shares.admit(1000, permit(), &metrics).unwrap();
        assert!(
            shares.admit(1000, permit(), &metrics).is_none(),
            "uid 1000 is full"
        );
        let other = shares.admit(1001, permit(), &metrics).unwrap();
        assert_eq!(
            slots.available_permits(),
            7,
            "a refused connection's permit went back"
        );
        drop(a);
        assert_eq!(slots.available_permits(), 8);
        let c = shares.admit(1000, permit(), &metrics).unwrap();
        drop((b, c, other));
        assert_eq!(slots.available_permits(), 10);
        assert!(shares.lock().is_empty(), "no uid holds anything");
        assert!(
            metrics.encode().contains("futu_auth_connections 0"),
            "{}",
            metrics.encode()
        );
    }
}
