//! Release tickets that cannot be guessed.
//!
//! The ledger numbers the orders it admits consecutively (the number indexes its ticket
//! ring and its journal), but a client is never shown that number: it gets the number
//! encrypted under a secret key, a 64-bit block cipher applied to a counter. Knowing any
//! number of one's own tickets says nothing about anyone else's, so a socket peer cannot
//! release another key's orders by counting; a guess hits one of the (at most a million)
//! outstanding tickets once in some 2^44 tries.
//!
//! The cipher is a four-round Feistel network on two 32-bit halves whose round function
//! is SipHash-1-3 under the 128-bit key (Luby–Rackoff: four rounds of a pseudo-random
//! function make a strong pseudo-random permutation). The key is made from the OS random
//! source when a ledger is first created and kept in the ledger's base file, so tickets
//! handed out before a restart can still be released after it.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

const ROUNDS: u8 = 4;

/// The secret permutation between ledger numbers and client tickets.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketCipher {
    key: [u8; 16],
}

impl std::fmt::Debug for TicketCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketCipher(<secret>)")
    }
}

impl TicketCipher {
    /// A cipher under a fresh key from the OS random source.
    ///
    /// # Panics
    /// When the OS random source fails (the daemon cannot run safely without it).
    pub fn random() -> TicketCipher {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).expect("the OS random source works");
        TicketCipher { key }
    }

    /// The cipher under `key` (from the ledger's base file).
    pub fn from_key(key: [u8; 16]) -> TicketCipher {
        TicketCipher { key }
    }

    /// The key, to be kept with the ledger.
    pub fn key(&self) -> [u8; 16] {
        self.key
    }

    fn round(&self, i: u8, half: u32) -> u32 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write_u8(i);
        h.write_u32(half);
        h.finish() as u32
    }

    /// The ticket a client is given for ledger number `number`.
    pub fn ticket(&self, number: u64) -> u64 {
        let (mut left, mut right) = ((number >> 32) as u32, number as u32);
        for i in 0..ROUNDS {
            let next = left ^ self.round(i, right);
            left = right;
            right = next;
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    /// The ledger number behind a client's ticket (the inverse of [`TicketCipher::ticket`]).
    pub fn number(&self, ticket: u64) -> u64 {
        let (mut left, mut right) = ((ticket >> 32) as u32, ticket as u32);
        for i in (0..ROUNDS).rev() {
            let prev = right ^ self.round(i, left);
            right = left;
            left = prev;
        }
        (u64::from(left) << 32) | u64::from(right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn consecutive_numbers_give_tickets_with_no_visible_order() {
        let c = TicketCipher::random();
        let tickets: Vec<u64> = (1..=1000).map(|n| c.ticket(n)).collect();
        let mut sorted = tickets.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "a permutation: no two numbers share a ticket");
        let ascending = tickets.windows(2).filter(|w| w[0] < w[1]).count();
        assert!((350..650).contains(&ascending), "{ascending} of 999 steps go up");
        let small = tickets.iter().filter(|t| **t < 1 << 40).count();
        assert!(
            small < 5,
            "tickets are spread over 64 bits, not counters: {small}"
        );
    }

    #[test]
    fn another_key_gives_other_tickets() {
        let (a, b) = (TicketCipher::random(), TicketCipher::random());
        assert_ne!(a.ticket(1), b.ticket(1));
        assert_eq!(TicketCipher::from_key(a.key()).ticket(7), a.ticket(7));
        assert_eq!(
            format!("{a:?}"),
            "TicketCipher(<secret>)",
            "Debug never shows the key"
        );
    }

    proptest! {
        #[test]
        fn number_undoes_ticket(key: [u8; 16], n: u64) {
            let c = TicketCipher::from_key(key);
            prop_assert_eq!(c.number(c.ticket(n)), n);
            prop_assert_eq!(c.ticket(c.number(n)), n);
        }
    }
}
