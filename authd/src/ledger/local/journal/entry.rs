//! The entry format: one JSON object a line, in the journals and in the base. Every line
//! is written by [`push_line`] and read by [`parse_line`].

use std::io;

use futu_auth_proto::{KeyId, OrderEventKind};
use serde::{Deserialize, Serialize};

use futu_auth_rules::ledger::{Consumption, Track};

use crate::ledger::AuditMark;

/// One line of a journal or of the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// The order, for a key whose orders the ledger follows (absent otherwise, and in
        /// journals written before orders were followed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        track: Option<Followed>,
    },
    /// A ticket's value was refunded (a followed order is finished).
    Release { ticket: u64 },
    /// What became of an allowed order: applied to the ledger as it was when answered.
    Event {
        ticket: u64,
        kind: OrderEventKind,
        unix_ns: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filled_qty: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fill_price: Option<f64>,
    },
    /// Base: an order open now (its open value counts in its position).
    Open {
        key_id: KeyId,
        ticket: u64,
        symbol: Box<str>,
        buys: bool,
        qty: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<f64>,
        filled_qty: f64,
        filled_value: u128,
        open_value: u128,
        accepted: bool,
    },
    /// Base: a key's filled values in a symbol.
    Position {
        key_id: KeyId,
        symbol: Box<str>,
        bought: u128,
        sold: u128,
    },
    /// Base: an order's fingerprint ([`Track::fingerprint`], the same in every build)
    /// allowed within its duplicate window.
    Seen { key_id: KeyId, fp: u64, unix_ns: i64 },
    /// Base: an order finished (an event for it is a duplicate).
    Finished { key_id: KeyId, ticket: u64 },
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

/// A followed order as a `consume` entry keeps it: what its fingerprint and position are
/// made of, and which of the limits that follow orders its key had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Followed {
    symbol: Box<str>,
    buys: bool,
    qty: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acc_id: Option<u64>,
    /// Kept open until it finishes (`max_open_orders` or `max_position_value`).
    open: bool,
    /// `duplicate_window_ms`, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dup_ns: Option<u64>,
}

impl Followed {
    fn of(t: &Track) -> Followed {
        Followed {
            symbol: t.symbol.clone(),
            buys: t.buys,
            qty: t.qty,
            price: t.price,
            acc_id: t.acc_id,
            open: t.max_open_orders.is_some() || t.max_position_value.is_some(),
            dup_ns: t.duplicate_window_ns,
        }
    }

    /// The track to replay it with (the limits' figures do not matter to a replay, only
    /// which of them the key had).
    pub(super) fn track(self) -> Track {
        Track {
            symbol: self.symbol,
            buys: self.buys,
            qty: self.qty,
            price: self.price,
            acc_id: self.acc_id,
            max_open_orders: self.open.then_some(u32::MAX),
            max_position_value: None,
            duplicate_window_ns: self.dup_ns,
        }
    }
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
        self.consume_followed(c, None);
    }

    /// Adds an allowed order, followed after its check when `track` is given.
    pub fn consume_followed(&mut self, c: &Consumption, track: Option<&Track>) {
        self.push(&Entry::Consume {
            key_id: c.key_id.clone(),
            ticket: c.number,
            unix_ns: clamp_i64(c.unix_ns),
            day: c.day,
            value: c.value.0,
            track: track.map(Followed::of),
        });
    }

    /// Adds an order event applied to ledger number `number` at `unix_ns`.
    pub fn event(
        &mut self,
        number: u64,
        kind: OrderEventKind,
        filled_qty: Option<f64>,
        fill_price: Option<f64>,
        unix_ns: i128,
    ) {
        self.push(&Entry::Event {
            ticket: number,
            kind,
            unix_ns: clamp_i64(unix_ns),
            filled_qty,
            fill_price,
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
