//! The entry format: every journal and the base are the file's magic ([`MAGIC`]) followed
//! by records, one entry each, written by the `push_*` functions here and read by
//! [`Records`]. Files written before the binary format (one JSON object a line, `json.rs`)
//! are still read, so a state directory of an older release replays after an upgrade.
//!
//! A record is, little-endian throughout:
//!
//! ```text
//! len: u32       bytes of the payload (its tag included)
//! crc: u32       CRC32C of `len`'s four bytes then the payload
//! payload:       tag: u8, then the entry's fields in a fixed order
//! ```
//!
//! A record whose bytes run past the end of the file is a torn tail; one whose checksum,
//! tag or fields do not hold is corruption: replay stops at either, as at a JSON line
//! without its end or one that does not parse.

use futu_auth_proto::{KeyId, OrderEventKind};
use serde::{Deserialize, Serialize};

use futu_auth_rules::ledger::{Consumption, FollowedOrder, FollowedPosition, Track};

use super::json::parse_line;
use crate::ledger::AuditMark;

/// The first bytes of every file in the binary format; a file of the JSON format starts
/// with `{`.
pub const MAGIC: &[u8; 8] = b"FUTULDG1";

/// The largest payload a record may announce: far above any entry, so a length that
/// corruption made huge is reported as such rather than read as a torn tail.
const MAX_PAYLOAD: u32 = 1 << 20;

/// Bytes before a record's payload: its length and its checksum.
const FRAME: usize = 8;

/// One entry of a journal or of the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Entry {
    /// First entry of a journal: its generation.
    Journal { gen: u64 },
    /// First entry of the base: the newest journal generation it includes, and the next
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
    /// Base, binary format only: one key's orders still in the release window, as many
    /// `recent` entries (a record of them takes ~12 bytes an order where `recent` records
    /// took ~60: the base of a busy release window is written in a fifth of the bytes).
    #[serde(skip)]
    Recents { key_id: KeyId, orders: Vec<RecentOrder> },
}

/// One order of a [`Entry::Recents`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RecentOrder {
    /// Its ledger number.
    pub(super) ticket: u64,
    /// When it was allowed, Unix nanoseconds (what it counts in a rate window from).
    pub(super) unix_ns: i64,
    /// The UTC day its value counts in.
    pub(super) day: i64,
    /// Its value, in the ledger's units.
    pub(super) value: u128,
    /// Whether it was released already (a second release refunds nothing).
    pub(super) released: bool,
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
    /// The entries' records, ready to be appended.
    pub(super) bytes: Vec<u8>,
    /// How many records `bytes` holds: the count the commit record announces.
    pub(super) count: u32,
}

impl Entries {
    /// No entries yet.
    pub fn new() -> Entries {
        Entries::default()
    }

    /// Empties it, keeping its buffer for the next commit.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
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
        push_consume(&mut self.bytes, c, track);
        self.count += 1;
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
        let r = Record::begin(&mut self.bytes, Tag::Event);
        put_u64(&mut self.bytes, number);
        self.bytes.push(kind_code(kind));
        put_i64(&mut self.bytes, clamp_i64(unix_ns));
        put_opt_f64(&mut self.bytes, filled_qty);
        put_opt_f64(&mut self.bytes, fill_price);
        r.end(&mut self.bytes);
        self.count += 1;
    }

    /// Adds a release of ledger number `number`.
    pub fn release(&mut self, number: u64) {
        let r = Record::begin(&mut self.bytes, Tag::Release);
        put_u64(&mut self.bytes, number);
        r.end(&mut self.bytes);
        self.count += 1;
    }
}

/// Each entry's tag, the first byte of its payload. Never renumbered: files keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Tag {
    Journal = 1,
    Base = 2,
    Commit = 3,
    Consume = 4,
    Release = 5,
    Event = 6,
    Open = 7,
    Position = 8,
    Seen = 9,
    Finished = 10,
    Total = 11,
    Recents = 12,
}

/// A record being written: where it starts, so that [`Record::end`] can fill in its
/// length and checksum once the payload is there.
#[must_use]
pub(super) struct Record {
    start: usize,
}

impl Record {
    /// Starts a record of `tag` at the end of `out`.
    pub(super) fn begin(out: &mut Vec<u8>, tag: Tag) -> Record {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME]);
        out.push(tag as u8);
        Record { start }
    }

    /// Fills in the length and checksum of the record begun at `self.start`.
    pub(super) fn end(self, out: &mut [u8]) {
        let payload_at = self.start + FRAME;
        let len = u32::try_from(out.len() - payload_at).expect("an entry is far below 4 GiB");
        out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
        let crc = checksum(&out[self.start..self.start + 4], &out[payload_at..]);
        out[self.start + 4..payload_at].copy_from_slice(&crc.to_le_bytes());
    }
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), payload)
}

/// Appends a journal's header: its generation.
pub(super) fn push_journal(out: &mut Vec<u8>, gen: u64) {
    let r = Record::begin(out, Tag::Journal);
    put_u64(out, gen);
    r.end(out);
}

/// Appends a base's header.
pub(super) fn push_base(out: &mut Vec<u8>, covers: u64, next_ticket: u64, ticket_key: &[u8; 16]) {
    let r = Record::begin(out, Tag::Base);
    put_u64(out, covers);
    put_u64(out, next_ticket);
    out.push(1);
    out.extend_from_slice(ticket_key);
    r.end(out);
}

/// Appends the record that leads a commit of `entries` entries.
pub(super) fn push_commit(out: &mut Vec<u8>, entries: u32, audit: Option<&AuditMark>) {
    let r = Record::begin(out, Tag::Commit);
    put_u32(out, entries);
    match audit {
        Some(m) => {
            out.push(1);
            for v in [m.dev, m.ino, m.at, m.records] {
                put_u64(out, v);
            }
        }
        None => out.push(0),
    }
    r.end(out);
}

/// Appends an allowed order, with its track when its key's orders are followed.
fn push_consume(out: &mut Vec<u8>, c: &Consumption, track: Option<&Track>) {
    let r = Record::begin(out, Tag::Consume);
    put_key(out, &c.key_id);
    put_u64(out, c.number);
    put_i64(out, clamp_i64(c.unix_ns));
    put_i64(out, c.day);
    put_u128(out, c.value.0);
    match track {
        Some(t) => {
            out.push(1);
            put_str(out, &t.symbol);
            out.push(u8::from(t.buys));
            put_f64(out, t.qty);
            put_opt_f64(out, t.price);
            match t.acc_id {
                Some(a) => {
                    out.push(1);
                    put_u64(out, a);
                }
                None => out.push(0),
            }
            out.push(u8::from(
                t.max_open_orders.is_some() || t.max_position_value.is_some(),
            ));
            match t.duplicate_window_ns {
                Some(d) => {
                    out.push(1);
                    put_u64(out, d);
                }
                None => out.push(0),
            }
        }
        None => out.push(0),
    }
    r.end(out);
}

/// Appends a base's total of `key_id` on `day`.
pub(super) fn push_total(out: &mut Vec<u8>, key_id: &KeyId, day: i64, used: u128) {
    let r = Record::begin(out, Tag::Total);
    put_key(out, key_id);
    put_i64(out, day);
    put_u128(out, used);
    r.end(out);
}

/// The most orders one [`Entry::Recents`] record holds (~50 KiB).
const RECENTS_PER_RECORD: u32 = 4096;

/// Writes a base's orders still in the release window as [`Entry::Recents`] records:
/// each run of one key's orders (the ledger's order, so usually a burst's) in one record,
/// every field but the first a difference from the order before, in LEB128.
#[derive(Default)]
pub(super) struct RecentsWriter {
    /// The record being written, its key, and where its count is.
    open: Option<(Record, KeyId, usize)>,
    /// Orders in the open record.
    count: u32,
    /// The order before, for the differences (0 before the first of a record).
    prev: (u64, i64, i64),
}

impl RecentsWriter {
    /// Appends an order allowed at `unix_ns` (the rest from `c`).
    pub(super) fn push(&mut self, out: &mut Vec<u8>, c: &Consumption, unix_ns: i64, released: bool) {
        let same = self
            .open
            .as_ref()
            .is_some_and(|(_, key, _)| *key == c.key_id && self.count < RECENTS_PER_RECORD);
        if !same {
            self.finish(out);
            let r = Record::begin(out, Tag::Recents);
            put_key(out, &c.key_id);
            let count_at = out.len();
            put_u32(out, 0);
            self.open = Some((r, c.key_id.clone(), count_at));
            self.prev = (0, 0, 0);
        }
        let (number, unix, day) = self.prev;
        put_leb(out, u128::from(c.number.wrapping_sub(number)));
        put_leb(out, u128::from(zigzag(unix_ns.wrapping_sub(unix))));
        put_leb(out, u128::from(zigzag(c.day.wrapping_sub(day))));
        put_leb(out, c.value.0);
        out.push(u8::from(released));
        self.prev = (c.number, unix_ns, c.day);
        self.count += 1;
    }

    /// Ends the open record, if any.
    pub(super) fn finish(&mut self, out: &mut [u8]) {
        if let Some((r, _, count_at)) = self.open.take() {
            out[count_at..count_at + 4].copy_from_slice(&self.count.to_le_bytes());
            r.end(out);
        }
        self.count = 0;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// An unsigned number in LEB128: seven bits a byte, low first, the high bit set on every
/// byte but the last.
fn put_leb(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a base's open order.
pub(super) fn push_open(out: &mut Vec<u8>, o: &FollowedOrder) {
    let r = Record::begin(out, Tag::Open);
    put_key(out, &o.key_id);
    put_u64(out, o.number);
    put_str(out, &o.symbol);
    out.push(u8::from(o.buys));
    put_f64(out, o.qty);
    put_opt_f64(out, o.price);
    put_f64(out, o.filled_qty);
    put_u128(out, o.filled_value.0);
    put_u128(out, o.open_value.0);
    out.push(u8::from(o.accepted));
    r.end(out);
}

/// Appends a base's position.
pub(super) fn push_position(out: &mut Vec<u8>, p: &FollowedPosition) {
    let r = Record::begin(out, Tag::Position);
    put_key(out, &p.key_id);
    put_str(out, &p.symbol);
    put_u128(out, p.bought.0);
    put_u128(out, p.sold.0);
    r.end(out);
}

/// Appends a base's fingerprint seen at `unix_ns`.
pub(super) fn push_seen(out: &mut Vec<u8>, key_id: &KeyId, fp: u64, unix_ns: i64) {
    let r = Record::begin(out, Tag::Seen);
    put_key(out, key_id);
    put_u64(out, fp);
    put_i64(out, unix_ns);
    r.end(out);
}

/// Appends a base's finished order.
pub(super) fn push_finished(out: &mut Vec<u8>, key_id: &KeyId, number: u64) {
    let r = Record::begin(out, Tag::Finished);
    put_key(out, key_id);
    put_u64(out, number);
    r.end(out);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn put_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => {
            out.push(1);
            put_f64(out, v);
        }
        None => out.push(0),
    }
}

/// A key id: one byte of length (an id is 1 to 64 bytes), then its bytes.
fn put_key(out: &mut Vec<u8>, key_id: &KeyId) {
    let s = key_id.as_str().as_bytes();
    out.push(u8::try_from(s.len()).expect("a key id is at most 64 bytes"));
    out.extend_from_slice(s);
}

/// A text: four bytes of length, then its bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, u32::try_from(s.len()).expect("a symbol is far below 4 GiB"));
    out.extend_from_slice(s.as_bytes());
}

fn kind_code(kind: OrderEventKind) -> u8 {
    match kind {
        OrderEventKind::Accepted => 0,
        OrderEventKind::PartiallyFilled => 1,
        OrderEventKind::Filled => 2,
        OrderEventKind::Cancelled => 3,
        OrderEventKind::Rejected => 4,
    }
}

fn kind_of(code: u8) -> Option<OrderEventKind> {
    Some(match code {
        0 => OrderEventKind::Accepted,
        1 => OrderEventKind::PartiallyFilled,
        2 => OrderEventKind::Filled,
        3 => OrderEventKind::Cancelled,
        4 => OrderEventKind::Rejected,
        _ => return None,
    })
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The entries of one file in either format, in order: each an entry, or why the bytes
/// there are not one (after which there is nothing more).
pub(super) struct Records<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
    /// The binary format (else JSON lines).
    binary: bool,
    /// The entries read so far, counting the one being read: "record 3" or "line 3".
    number: usize,
}

impl<'a> Records<'a> {
    /// The entries of a whole file, its format told by its first bytes.
    pub(super) fn of(bytes: &'a [u8]) -> Records<'a> {
        let binary = bytes.first() != Some(&b'{') && !bytes.is_empty();
        let rest = if binary {
            &bytes[MAGIC.len().min(bytes.len())..]
        } else {
            bytes
        };
        let mut records = Records {
            rest,
            binary,
            number: 0,
        };
        if binary && !bytes.starts_with(MAGIC) {
            // Not ours, or a magic cut short: the first "record" is the problem.
            records.rest = b"";
            records.number = usize::MAX;
        }
        records
    }

    /// Where the last entry read was: `record N` or `line N`.
    pub(super) fn at(&self) -> String {
        let unit = if self.binary { "record" } else { "line" };
        format!("{unit} {}", self.number)
    }

    /// The next record's payload, or why there is none.
    fn next_payload(&mut self) -> Result<&'a [u8], String> {
        let rest = self.rest;
        if rest.len() < FRAME {
            return Err("truncated (a record's length and checksum are cut short)".into());
        }
        let len_bytes = &rest[..4];
        let len = u32::from_le_bytes(len_bytes.try_into().expect("four bytes"));
        let crc = u32::from_le_bytes(rest[4..FRAME].try_into().expect("four bytes"));
        if len == 0 || len > MAX_PAYLOAD {
            return Err(format!("corrupt (a record of {len} bytes)"));
        }
        let Some(payload) = rest.get(FRAME..FRAME + len as usize) else {
            return Err(format!(
                "truncated ({} of the record's {len} bytes)",
                rest.len() - FRAME
            ));
        };
        if checksum(len_bytes, payload) != crc {
            return Err("corrupt (checksum mismatch)".into());
        }
        self.rest = &rest[FRAME + len as usize..];
        Ok(payload)
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Result<Entry, String>> {
        if self.number == usize::MAX {
            self.number = 1;
            return Some(Err("no ledger file magic".into()));
        }
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let read = if self.binary {
            self.next_payload()
                .and_then(|p| decode(p).map_err(|e| format!("corrupt ({e})")))
        } else {
            match self.rest.iter().position(|b| *b == b'\n') {
                None => Err("truncated (no end of line)".into()),
                Some(end) => {
                    let line = &self.rest[..end];
                    self.rest = &self.rest[end + 1..];
                    parse_line(line).map_err(|e| e.to_string())
                }
            }
        };
        if read.is_err() {
            self.rest = b"";
        }
        Some(read.map_err(|e| format!("{}: {e}", self.at())))
    }
}

/// Reads a payload's fields in order.
struct Fields<'a> {
    rest: &'a [u8],
}

type Field<T> = Result<T, &'static str>;

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Field<&'a [u8]> {
        if self.rest.len() < n {
            return Err("a field runs past the record");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Field<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Field<u8> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Field<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("a flag is neither 0 nor 1"),
        }
    }

    fn u32(&mut self) -> Field<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Field<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Field<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn u128(&mut self) -> Field<u128> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Field<f64> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// An unsigned number in LEB128 of at most `bits` bits.
    fn leb(&mut self, bits: u32) -> Field<u128> {
        let mut v = 0u128;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            let low = u128::from(byte & 0x7f);
            if shift >= bits || (shift > 0 && low >> (bits - shift).min(127) != 0) {
                return Err("a number too large for its field");
            }
            v |= low << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn leb_u64(&mut self) -> Field<u64> {
        Ok(self.leb(64)? as u64)
    }

    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Field<T>) -> Field<Option<T>> {
        if self.bool()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn key(&mut self) -> Field<KeyId> {
        let n = self.u8()?;
        let text = std::str::from_utf8(self.take(usize::from(n))?).map_err(|_| "a key id is not UTF-8")?;
        text.parse().map_err(|_| "not a valid key id")
    }

    fn text(&mut self) -> Field<Box<str>> {
        let n = self.u32()?;
        let bytes = self.take(n as usize)?;
        Ok(std::str::from_utf8(bytes)
            .map_err(|_| "a text is not UTF-8")?
            .into())
    }
}

/// The entry of one record's payload.
fn decode(payload: &[u8]) -> Field<Entry> {
    let mut f = Fields { rest: payload };
    let tag = f.u8()?;
    let entry = match tag {
        t if t == Tag::Journal as u8 => Entry::Journal { gen: f.u64()? },
        t if t == Tag::Base as u8 => Entry::Base {
            covers: f.u64()?,
            next_ticket: f.u64()?,
            ticket_key: f.opt(|f| f.array::<16>())?.map(|k| key_hex(&k)),
        },
        t if t == Tag::Commit as u8 => Entry::Commit {
            entries: f.u32()?,
            audit: f.opt(|f| {
                Ok(AuditMark {
                    dev: f.u64()?,
                    ino: f.u64()?,
                    at: f.u64()?,
                    records: f.u64()?,
                })
            })?,
        },
        t if t == Tag::Consume as u8 => Entry::Consume {
            key_id: f.key()?,
            ticket: f.u64()?,
            unix_ns: f.i64()?,
            day: f.i64()?,
            value: f.u128()?,
            track: f.opt(|f| {
                Ok(Followed {
                    symbol: f.text()?,
                    buys: f.bool()?,
                    qty: f.f64()?,
                    price: f.opt(Fields::f64)?,
                    acc_id: f.opt(Fields::u64)?,
                    open: f.bool()?,
                    dup_ns: f.opt(Fields::u64)?,
                })
            })?,
        },
        t if t == Tag::Release as u8 => Entry::Release { ticket: f.u64()? },
        t if t == Tag::Event as u8 => Entry::Event {
            ticket: f.u64()?,
            kind: kind_of(f.u8()?).ok_or("an unknown order event")?,
            unix_ns: f.i64()?,
            filled_qty: f.opt(Fields::f64)?,
            fill_price: f.opt(Fields::f64)?,
        },
        t if t == Tag::Open as u8 => Entry::Open {
            key_id: f.key()?,
            ticket: f.u64()?,
            symbol: f.text()?,
            buys: f.bool()?,
            qty: f.f64()?,
            price: f.opt(Fields::f64)?,
            filled_qty: f.f64()?,
            filled_value: f.u128()?,
            open_value: f.u128()?,
            accepted: f.bool()?,
        },
        t if t == Tag::Position as u8 => Entry::Position {
            key_id: f.key()?,
            symbol: f.text()?,
            bought: f.u128()?,
            sold: f.u128()?,
        },
        t if t == Tag::Seen as u8 => Entry::Seen {
            key_id: f.key()?,
            fp: f.u64()?,
            unix_ns: f.i64()?,
        },
        t if t == Tag::Finished as u8 => Entry::Finished {
            key_id: f.key()?,
            ticket: f.u64()?,
        },
        t if t == Tag::Total as u8 => Entry::Total {
            key_id: f.key()?,
            day: f.i64()?,
            used: f.u128()?,
        },
        t if t == Tag::Recents as u8 => {
            let key_id = f.key()?;
            let count = f.u32()?;
            if count == 0 {
                return Err("a record of no orders");
            }
            // An order takes at least five bytes: a count beyond that is corruption.
            if count as usize > f.rest.len() / 5 {
                return Err("more orders announced than the record holds");
            }
            let mut orders = Vec::with_capacity(count as usize);
            let (mut ticket, mut unix_ns, mut day) = (0u64, 0i64, 0i64);
            for _ in 0..count {
                ticket = ticket.wrapping_add(f.leb_u64()?);
                unix_ns = unix_ns.wrapping_add(unzigzag(f.leb_u64()?));
                day = day.wrapping_add(unzigzag(f.leb_u64()?));
                orders.push(RecentOrder {
                    ticket,
                    unix_ns,
                    day,
                    value: f.leb(128)?,
                    released: f.bool()?,
                });
            }
            Entry::Recents { key_id, orders }
        }
        _ => return Err("an unknown entry tag"),
    };
    if !f.rest.is_empty() {
        return Err("bytes after the entry's fields");
    }
    Ok(entry)
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

/// The ticket cipher's key as a base's header holds it once read: 32 lower-case hex
/// digits.
pub(super) fn key_hex(key: &[u8; 16]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
