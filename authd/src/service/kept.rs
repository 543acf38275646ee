//! What an admin request continued over several requests keeps between them — a listing
//! read once and paged through, an import received a chunk at a time, an export sent a
//! chunk at a time: kept under a random id for a minute after its last use, a few at a
//! time, the oldest going first.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many are kept at once; more start by replacing the oldest.
const MAX_KEPT: usize = 4;

/// One left this long without a request is forgotten.
const IDLE: Duration = Duration::from_secs(60);

/// Values kept between the requests of an admin operation, by id.
pub(super) struct Kept<T> {
    open: Mutex<VecDeque<Entry<T>>>,
}

struct Entry<T> {
    id: u64,
    value: T,
    used: Instant,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            open: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T> Kept<T> {
    /// Keeps `value`; returns its id (never 0: a request says 0 to start).
    pub(super) fn start(&self, value: T) -> Result<u64, getrandom::Error> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)?;
        let id = u64::from_le_bytes(id).max(1);
        let mut open = self.lock();
        open.retain(|x| x.used.elapsed() < IDLE);
        while open.len() >= MAX_KEPT {
            open.pop_front();
        }
        open.push_back(Entry {
            id,
            value,
            used: Instant::now(),
        });
        Ok(id)
    }

    /// `work` on the value kept as `id`, if it still is (its minute starts again).
    pub(super) fn with<R>(&self, id: u64, work: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut open = self.lock();
        open.retain(|x| x.used.elapsed() < IDLE);
        let x = open.iter_mut().find(|x| x.id == id)?;
        x.used = Instant::now();
        Some(work(&mut x.value))
    }

    /// Forgets `id` (its operation is over); returns what was kept.
    pub(super) fn finish(&self, id: u64) -> Option<T> {
        let mut open = self.lock();
        let i = open.iter().position(|x| x.id == id)?;
        open.remove(i).map(|x| x.value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry<T>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The answer to a request that could not start what it keeps: the OS random source, which
/// names it, failed.
pub(super) fn no_random(request_id: u64, e: getrandom::Error) -> futu_auth_proto::Response {
    super::admin::error(
        request_id,
        futu_auth_proto::ErrorKind::Internal,
        format!("the OS random source failed: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_when_more_are_started_and_a_finished_one_is_gone() {
        let kept = Kept::default();
        let ids: Vec<u64> = (0..5).map(|i| kept.start(i).unwrap()).collect();
        assert!(ids.iter().all(|&id| id != 0));
        assert_eq!(kept.with(ids[0], |v| *v), None, "pushed out by the fifth");
        assert_eq!(kept.with(ids[4], |v| *v), Some(4));
        assert_eq!(kept.finish(ids[4]), Some(4));
        assert_eq!(kept.with(ids[4], |v| *v), None);
        assert_eq!(
            kept.with(ids[1], |v| {
                *v += 10;
                *v
            }),
            Some(11)
        );
    }
}
