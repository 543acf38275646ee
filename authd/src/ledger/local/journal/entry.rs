//! The entry format: one JSON object a line, in the journals and in the base. Every line
//! is written by [`push_line`] and read by [`parse_line`].

use std::io;

use futu_auth_proto::KeyId;
use serde::{Deserialize, Serialize};

use futu_auth_rules::ledger::Consumption;

use crate::ledger::AuditMark;

/// One line of a journal or of the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Entry {
    /// First line of a journal: its generation.
    Journal { gen: u64 },
    /// First line of the base: the newest journal generation it includes, and the next
    /// ticket number (so a ticket from before a quiet restart never names a new order).
    Base {
        covers: u64,
        #[serde(default)]
        next_ticket: u64,
        /// The ticket cipher's key, 32 hex digits (absent in bases written before tickets
        /// were encrypted: a new key is made, and tickets from before cannot be released).
        #[serde(default)]
        ticket_key: Option<String>,
    },
    /// Leads the entries of one group commit: how many follow, and where the commit's
    /// audit records were to be written (none when there is no audit file).
    Commit { entries: u32, audit: Option<AuditMark> },
    /// An allowed order: adds to its day's total, takes a rate slot, has a ticket.
    Consume {
        key_id: KeyId,
        ticket: u64,
        unix_ns: i64,
        day: i64,
        value: u128,
    },
    /// A ticket's value was refunded.
    Release { ticket: u64 },
    /// Base: a key's total on a day.
    Total { key_id: KeyId, day: i64, used: u128 },
    /// Base: an order still in the release window; its value is in the total.
    Recent {
        key_id: KeyId,
        ticket: u64,
        unix_ns: i64,
        day: i64,
        value: u128,
        released: bool,
    },
}

/// The entries of one commit, encoded before the commit lock is taken.
#[derive(Debug, Default)]
pub struct Entries {
    /// The entries' lines, ready to be appended.
    pub(super) bytes: Vec<u8>,
    /// How many lines `bytes` holds: the count the commit line announces.
    pub(super) count: u32,
}

impl Entries {
    /// No entries yet.
    pub fn new() -> Entries {
        Entries::default()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds an allowed order.
    pub fn consume(&mut self, c: &Consumption) {
        self.push(&Entry::Consume {
            key_id: c.key_id.clone(),
            ticket: c.number,
            unix_ns: clamp_i64(c.unix_ns),
            day: c.day,
            value: c.value.0,
        });
    }

    /// Adds a release of ledger number `number`.
    pub fn release(&mut self, number: u64) {
        self.push(&Entry::Release { ticket: number });
    }

    fn push(&mut self, e: &Entry) {
        push_line(&mut self.bytes, e).expect("ledger entries always serialize");
        self.count += 1;
    }
}

/// Appends `e` to `out` as one line.
pub(super) fn push_line(out: &mut Vec<u8>, e: &Entry) -> io::Result<()> {
    serde_json::to_writer(&mut *out, e).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

/// Reads one line (without its end of line) as an entry.
pub(super) fn parse_line(line: &[u8]) -> serde_json::Result<Entry> {
    serde_json::from_slice(line)
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The ticket cipher's key from its 32 hex digits in the base; `None` if malformed.
pub(super) fn parse_key(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        key[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(key)
}

/// The ticket cipher's key as the base holds it: 32 lower-case hex digits.
pub(super) fn key_hex(key: &[u8; 16]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
