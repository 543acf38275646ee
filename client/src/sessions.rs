//! How many long-lived sessions — WebSocket connections, MCP sessions — each key holds
//! through one client, and the most it may hold: one key cannot take every session a
//! gateway can serve.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futu_auth_proto::KeyId;

/// The default of [`Builder::max_sessions_per_key`](crate::Builder::max_sessions_per_key).
pub const DEFAULT_MAX_SESSIONS_PER_KEY: usize = 32;

/// The sessions open per key, shared by every clone of a client (and so by every
/// front-end of the gateway process).
#[derive(Debug)]
pub(crate) struct SessionBook {
    /// The most sessions one key may hold at once.
    max: usize,
    /// Sessions open, by key; a key with none has no entry.
    open: Mutex<HashMap<KeyId, usize>>,
}

/// A key's session count is at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionsFull {
    /// The limit.
    pub(crate) max: usize,
}

/// One open session's place in the book; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    book: Arc<SessionBook>,
    key_id: KeyId,
}

impl SessionBook {
    pub(crate) fn new(max: usize) -> SessionBook {
        SessionBook {
            max,
            open: Mutex::default(),
        }
    }

    /// A place for one more session of `key_id`, unless it holds the most it may.
    pub(crate) fn open(self: &Arc<Self>, key_id: &KeyId) -> Result<SessionSlot, SessionsFull> {
        let mut open = self.lock();
        let n = open.entry(key_id.clone()).or_insert(0);
        if *n >= self.max {
            return Err(SessionsFull { max: self.max });
        }
        *n += 1;
        Ok(SessionSlot {
            book: Arc::clone(self),
            key_id: key_id.clone(),
        })
    }

    /// Sessions open now, all keys together.
    pub(crate) fn total(&self) -> usize {
        self.lock().values().sum()
    }

    /// Sessions `key_id` holds now.
    pub(crate) fn of(&self, key_id: &KeyId) -> usize {
        self.lock().get(key_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.book.lock();
        if let Some(n) = open.get_mut(&self.key_id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_sessions_and_a_dropped_one_frees_its_place() {
        let book = Arc::new(SessionBook::new(2));
        let a: KeyId = "a".parse().unwrap();
        let b: KeyId = "b".parse().unwrap();
        let first = book.open(&a).unwrap();
        let _second = book.open(&a).unwrap();
        assert_eq!(book.open(&a).unwrap_err(), SessionsFull { max: 2 });
        let _other = book.open(&b).expect("another key has places of its own");
        assert_eq!((book.of(&a), book.total()), (2, 3));
        drop(first);
        assert_eq!(book.of(&a), 1);
        let _again = book.open(&a).expect("a place was freed");
    }
}
