//! How many long-lived sessions — WebSocket connections, MCP sessions — each key holds
//! through one client, and the most it may hold: one key cannot take every session a
//! gateway can serve. Sessions are opened by the HTTP layer (feature `http`); without it
//! the book only counts none.
#![cfg_attr(not(feature = "http"), allow(dead_code))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futu_auth_proto::{KeyId, Token};

/// The default of [`Builder::max_sessions_per_key`](crate::Builder::max_sessions_per_key).
pub const DEFAULT_MAX_SESSIONS_PER_KEY: usize = 32;

/// The sessions open per key, shared by every clone of a client (and so by every
/// front-end of the gateway process).
#[derive(Debug)]
pub(crate) struct SessionBook {
    /// The most sessions one key may hold at once.
    max: usize,
    /// Sessions open, by key, and the plaintexts they hold.
    open: Mutex<Open>,
}

/// What the book counts.
#[derive(Debug, Default)]
struct Open {
    /// Sessions open, by key; a key with none has no entry.
    by_key: HashMap<KeyId, usize>,
    /// The key of each plaintext that holds sessions, and how many: a key known to be at
    /// its limit is refused before futu-authd is asked (no audit record, no round trip
    /// for a client that opens sockets in a loop).
    by_token: HashMap<Token, (KeyId, usize)>,
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
    token: Token,
}

impl SessionBook {
    pub(crate) fn new(max: usize) -> SessionBook {
        SessionBook {
            max,
            open: Mutex::default(),
        }
    }

    /// A place for one more session of `key_id` (opened with `token`), unless the key
    /// holds the most it may.
    pub(crate) fn open(self: &Arc<Self>, key_id: &KeyId, token: &Token) -> Result<SessionSlot, SessionsFull> {
        let mut open = self.lock();
        let n = open.by_key.entry(key_id.clone()).or_insert(0);
        if *n >= self.max {
            return Err(SessionsFull { max: self.max });
        }
        *n += 1;
        open.by_token
            .entry(token.clone())
            .or_insert_with(|| (key_id.clone(), 0))
            .1 += 1;
        Ok(SessionSlot {
            book: Arc::clone(self),
            key_id: key_id.clone(),
            token: token.clone(),
        })
    }

    /// The key of `token`, when sessions of it are open and the key holds the most it
    /// may: the next is refused without asking futu-authd.
    pub(crate) fn full_for(&self, token: &Token) -> Option<(KeyId, SessionsFull)> {
        let open = self.lock();
        let (key_id, _) = open.by_token.get(token)?;
        let n = open.by_key.get(key_id).copied().unwrap_or(0);
        (n >= self.max).then(|| (key_id.clone(), SessionsFull { max: self.max }))
    }

    /// Sessions open now, all keys together.
    pub(crate) fn total(&self) -> usize {
        self.lock().by_key.values().sum()
    }

    /// Sessions `key_id` holds now.
    pub(crate) fn of(&self, key_id: &KeyId) -> usize {
        self.lock().by_key.get(key_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.book.lock();
        if let Some(n) = open.by_key.get_mut(&self.key_id) {
            *n -= 1;
            if *n == 0 {
                open.by_key.remove(&self.key_id);
            }
        }
        if let Some((_, n)) = open.by_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.by_token.remove(&self.token);
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
        let (ta, ta2, tb) = (Token::new("ta"), Token::new("ta2"), Token::new("tb"));
        let first = book.open(&a, &ta).unwrap();
        assert!(book.full_for(&ta).is_none());
        let _second = book
            .open(&a, &ta2)
            .expect("a key's other plaintext shares its places");
        assert_eq!(book.open(&a, &ta).unwrap_err(), SessionsFull { max: 2 });
        assert_eq!(book.full_for(&ta).map(|(k, _)| k), Some(a.clone()));
        assert_eq!(book.full_for(&ta2).map(|(k, _)| k), Some(a.clone()));
        let _other = book.open(&b, &tb).expect("another key has places of its own");
        assert!(book.full_for(&tb).is_none());
        assert_eq!((book.of(&a), book.total()), (2, 3));
        drop(first);
        assert_eq!(book.of(&a), 1);
        assert!(book.full_for(&ta).is_none(), "ta holds no session now");
        let _again = book.open(&a, &ta).expect("a place was freed");
    }
}
