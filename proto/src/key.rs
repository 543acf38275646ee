//! The keys.json model: one [`KeyRecord`] per API key, and the validated value types its
//! fields are made of.
//!
//! Every value type checks its text when it is deserialized, so a malformed scope, market,
//! symbol, trade side, hours window, fingerprint or hash is an error at the place it was read
//! (serde_json reports the line). The same types travel on the wire inside admin messages.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Why a value from keys.json or a request was refused; the text says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Every validation message goes through [`redact`]: the messages quote what was read,
/// and what was read may be a key's plaintext put in the wrong place.
fn invalid(msg: impl Into<String>) -> InvalidValue {
    let msg = msg.into();
    InvalidValue(redact(&msg).into_owned())
}

/// `text` with anything shaped like a plaintext (`fc_` and 32 hex digits) replaced by
/// `fc_<redacted>`: for caller-supplied strings (an endpoint name, say) that are echoed in
/// details, audit records and logs, in case a caller put a token where it does not belong.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let is_token_at = |i: usize| {
        bytes[i..].starts_with(b"fc_")
            && bytes.len() >= i + 35
            && bytes[i + 3..i + 35].iter().all(u8::is_ascii_hexdigit)
    };
    if !(0..bytes.len()).any(is_token_at) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if is_token_at(i) {
            out.push_str("fc_<redacted>");
            i += 35;
        } else {
            let c = text[i..].chars().next().expect("i is on a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    Cow::Owned(out)
}

/// A permission a key holds. The spelling is the seed's (`qot:read`, …) in JSON, a variant
/// index on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Quote read and subscribe.
    #[serde(rename = "qot:read")]
    QotRead,
    /// Account read-only.
    #[serde(rename = "acc:read")]
    AccRead,
    /// Simulated trading writes.
    #[serde(rename = "trade:simulate")]
    TradeSimulate,
    /// Real trading writes.
    #[serde(rename = "trade:real")]
    TradeReal,
    /// Unlocking trade (the MCP `futu_unlock_trade` tool).
    #[serde(rename = "trade:unlock")]
    TradeUnlock,
}

impl Scope {
    /// Every scope, in wire order.
    pub const ALL: [Scope; 5] = [
        Scope::QotRead,
        Scope::AccRead,
        Scope::TradeSimulate,
        Scope::TradeReal,
        Scope::TradeUnlock,
    ];

    /// The seed's spelling, e.g. `trade:simulate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::QotRead => "qot:read",
            Scope::AccRead => "acc:read",
            Scope::TradeSimulate => "trade:simulate",
            Scope::TradeReal => "trade:real",
            Scope::TradeUnlock => "trade:unlock",
        }
    }

    /// The part before the colon (`qot`, `acc`, `trade`), used as the `required_scope`
    /// label of `futu_ws_filtered_pushes_total`.
    pub fn family(self) -> &'static str {
        match self {
            Scope::QotRead => "qot",
            Scope::AccRead => "acc",
            Scope::TradeSimulate | Scope::TradeReal | Scope::TradeUnlock => "trade",
        }
    }

    /// A bit of its own, for scope sets kept as a `u8`.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s).ok_or_else(|| {
            invalid(format!(
                "unknown scope {s:?} (expected qot:read, acc:read, trade:simulate, trade:real or trade:unlock)"
            ))
        })
    }
}

/// A trading market (Futu's TrdMarket), as whitelisted by `allowed_markets` and named by an
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Market {
    /// Hong Kong.
    HK,
    /// United States.
    US,
    /// Mainland China A-shares.
    CN,
    /// Hong Kong Stock Connect to mainland China.
    HKCC,
    /// Futures.
    FUTURES,
    /// Singapore.
    SG,
    /// Japan.
    JP,
    /// Australia.
    AU,
    /// Malaysia.
    MY,
    /// Canada.
    CA,
}

impl Market {
    /// Every market, in wire order.
    pub const ALL: [Market; 10] = [
        Market::HK,
        Market::US,
        Market::CN,
        Market::HKCC,
        Market::FUTURES,
        Market::SG,
        Market::JP,
        Market::AU,
        Market::MY,
        Market::CA,
    ];

    /// The upper-case name, as in keys.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Market::HK => "HK",
            Market::US => "US",
            Market::CN => "CN",
            Market::HKCC => "HKCC",
            Market::FUTURES => "FUTURES",
            Market::SG => "SG",
            Market::JP => "JP",
            Market::AU => "AU",
            Market::MY => "MY",
            Market::CA => "CA",
        }
    }

    /// A bit of its own, for market sets kept as a `u16`.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Whether a symbol whose quote-market prefix is `prefix` (the part before the first dot
    /// of `HK.00700`) can be traded in this market. An order whose symbol does not belong to
    /// its market is malformed: otherwise a market whitelist could be walked around by
    /// naming an allowed market for a foreign symbol.
    pub fn trades_prefix(self, prefix: &str) -> bool {
        match self {
            Market::HK => prefix == "HK",
            Market::US => prefix == "US",
            Market::CN | Market::HKCC => prefix == "SH" || prefix == "SZ",
            Market::FUTURES => matches!(prefix, "HK" | "US" | "SG" | "JP"),
            Market::SG => prefix == "SG",
            Market::JP => prefix == "JP",
            Market::AU => prefix == "AU",
            Market::MY => prefix == "MY",
            Market::CA => prefix == "CA",
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Market {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Market::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            invalid(format!(
                "unknown market {s:?} (expected one of HK, US, CN, HKCC, FUTURES, SG, JP, AU, MY, CA)"
            ))
        })
    }
}

/// The quote-market prefixes a symbol may start with.
pub const SYMBOL_PREFIXES: [&str; 9] = ["HK", "US", "SH", "SZ", "SG", "JP", "AU", "MY", "CA"];

/// A security code with its quote-market prefix, e.g. `HK.00700`, `US.AAPL`, `US.BRK.B`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

impl Symbol {
    /// The full text, e.g. `HK.00700`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quote-market prefix, e.g. `HK`.
    pub fn prefix(&self) -> &str {
        self.0.split_once('.').map(|(p, _)| p).unwrap_or("")
    }
}

impl Symbol {
    /// Checks symbol text without keeping it; returns its quote-market prefix.
    pub fn validate(s: &str) -> Result<&str, InvalidValue> {
        let bad = || {
            invalid(format!(
                "malformed symbol {s:?} (expected MARKET.CODE such as HK.00700 or US.AAPL, MARKET one of {})",
                SYMBOL_PREFIXES.join(", ")
            ))
        };
        let (prefix, code) = s.split_once('.').ok_or_else(bad)?;
        let code_ok = !code.is_empty()
            && code.len() <= 32
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if SYMBOL_PREFIXES.contains(&prefix) && code_ok {
            Ok(prefix)
        } else {
            Err(bad())
        }
    }
}

impl FromStr for Symbol {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::validate(s).map(|_| Symbol(s.to_owned()))
    }
}

impl TryFrom<String> for Symbol {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Symbol> for String {
    fn from(s: Symbol) -> String {
        s.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An order's direction (Futu's TrdSide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum TrdSide {
    /// Buy.
    BUY,
    /// Sell what is held.
    SELL,
    /// Sell short.
    SELL_SHORT,
    /// Buy back a short position.
    BUY_BACK,
}

impl TrdSide {
    /// Every side, in wire order.
    pub const ALL: [TrdSide; 4] = [
        TrdSide::BUY,
        TrdSide::SELL,
        TrdSide::SELL_SHORT,
        TrdSide::BUY_BACK,
    ];

    /// The upper-case name, as in keys.json.
    pub fn as_str(self) -> &'static str {
        match self {
            TrdSide::BUY => "BUY",
            TrdSide::SELL => "SELL",
            TrdSide::SELL_SHORT => "SELL_SHORT",
            TrdSide::BUY_BACK => "BUY_BACK",
        }
    }

    /// A bit of its own, for side sets kept as a `u8`.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for TrdSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrdSide {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrdSide::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            invalid(format!(
                "unknown trade side {s:?} (expected BUY, SELL, SELL_SHORT or BUY_BACK)"
            ))
        })
    }
}

/// A daily time window in the daemon host's local time, `HH:MM-HH:MM`: the start is inside,
/// the end is not, and a window whose end is before its start crosses midnight
/// (`22:00-04:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HoursWindow {
    /// Minutes after local midnight at which the window opens.
    pub start_min: u16,
    /// Minutes after local midnight at which the window closes.
    pub end_min: u16,
}

impl HoursWindow {
    /// Whether a local time of day, in seconds after midnight, lies in the window.
    pub fn contains(&self, local_secs: u32) -> bool {
        let start = u32::from(self.start_min) * 60;
        let end = u32::from(self.end_min) * 60;
        if start < end {
            start <= local_secs && local_secs < end
        } else {
            local_secs >= start || local_secs < end
        }
    }
}

impl FromStr for HoursWindow {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| invalid(format!("malformed hours_window {s:?}: {why}"));
        let parse_hm = |t: &str| -> Option<u16> {
            let b = t.as_bytes();
            if b.len() != 5
                || b[2] != b':'
                || !b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit())
            {
                return None;
            }
            let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
            let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("expected HH:MM-HH:MM, e.g. 09:30-16:00 or 22:00-04:00"))?;
        let start_min = parse_hm(a).ok_or_else(|| bad("start is not a 24-hour HH:MM time"))?;
        let end_min = parse_hm(b).ok_or_else(|| bad("end is not a 24-hour HH:MM time"))?;
        if start_min == end_min {
            return Err(bad(
                "start and end are equal, so the window is empty; omit the limit for all day",
            ));
        }
        Ok(HoursWindow { start_min, end_min })
    }
}

impl TryFrom<String> for HoursWindow {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HoursWindow> for String {
    fn from(w: HoursWindow) -> String {
        w.to_string()
    }
}

impl fmt::Display for HoursWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

/// The SHA-256 digest of a key's plaintext. keys.json holds it as 64 hex characters
/// (a `sha256:` prefix is accepted when reading; it is written without one).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// The first 8 hex characters, enough to tell keys apart in a listing without showing
    /// the digest.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

impl FromStr for KeyHash {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let bad = || {
            invalid(format!(
                "malformed hash: expected 64 hex characters of a SHA-256 digest (optionally prefixed sha256:), got {} characters",
                s.chars().count()
            ))
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            match (nib(pair[0]), nib(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => return Err(bad()),
            }
        }
        Ok(KeyHash(out))
    }
}

impl TryFrom<String> for KeyHash {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyHash> for String {
    fn from(h: KeyHash) -> String {
        h.to_hex()
    }
}

/// A machine fingerprint, `fp_` followed by letters, digits, `_` or `-`.
/// futu-authd derives its own host's from /etc/machine-id; keys.json may hold any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The text, e.g. `fp_3f9a…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() <= 67
            && s.strip_prefix("fp_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if ok {
            Ok(Fingerprint(s.to_owned()))
        } else {
            Err(invalid(format!(
                "malformed machine fingerprint {s:?} (expected fp_ followed by letters, digits, _ or -; `futucli machine-id` prints this host's)"
            )))
        }
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's human-readable name, unique within keys.json and shown as `key_id` in audit and
/// metrics: 1 to 64 letters, digits, `.`, `_` or `-`. Cheap to clone (shared text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok && redact(s) != s {
            return Err(invalid(
                "a key id must not look like a key's plaintext (fc_ and 32 hex digits): ids are public, in audit and metrics",
            ));
        }
        if ok {
            Ok(KeyId(Arc::from(s)))
        } else {
            Err(invalid(format!(
                "malformed key id {s:?} (expected 1 to 64 letters, digits, '.', '_' or '-')"
            )))
        }
    }
}

impl TryFrom<String> for KeyId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0.as_ref().to_owned()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A money cap (`max_order_value`, `max_daily_value`): a finite number that is not
/// negative, with at most 8 decimal places, and at most [`crate::money::MAX`] (10²⁰).
/// `-0` is zero and is kept as `0`. What is and is not a cap is decided by
/// [`Money::try_cap`], for keys.json, the wire (GenKey) and futucli alike.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Cap {
    /// The number as given (with `-0` made `0`), so keys.json keeps what was written.
    value: f64,
    /// The same amount, exactly, for decisions.
    money: Money,
}

impl Cap {
    /// The cap as a number.
    pub fn get(self) -> f64 {
        self.value
    }

    /// The cap exactly, in 10⁻⁸ units.
    pub fn money(self) -> Money {
        self.money
    }
}

impl TryFrom<f64> for Cap {
    type Error = InvalidValue;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        let money = Money::try_cap(v).map_err(|e| invalid(e.to_string()))?;
        // Adding +0.0 turns -0.0 into +0.0 and leaves every other number as it is.
        Ok(Cap {
            value: v + 0.0,
            money,
        })
    }
}

impl From<Cap> for f64 {
    fn from(c: Cap) -> f64 {
        c.value
    }
}

/// A key's limits; every field `None` (or omitted in keys.json) means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Market whitelist for orders.
    #[serde(default)]
    pub allowed_markets: Option<Vec<Market>>,
    /// Symbol whitelist for orders.
    #[serde(default)]
    pub allowed_symbols: Option<Vec<Symbol>>,
    /// Direction whitelist for orders.
    #[serde(default)]
    pub allowed_trd_sides: Option<Vec<TrdSide>>,
    /// Per-order cap on qty × price.
    #[serde(default)]
    pub max_order_value: Option<Cap>,
    /// Cap on the sum of allowed order values in one UTC day.
    #[serde(default)]
    pub max_daily_value: Option<Cap>,
    /// Allowed orders in any 60-second window.
    #[serde(default)]
    pub max_orders_per_minute: Option<u32>,
    /// Local time of day in which the key may be used at all.
    #[serde(default)]
    pub hours_window: Option<HoursWindow>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// Writes every field for compact formats (bincode reads fields by position) and only the
/// limits that are set for human-readable ones (keys.json stays as short as the seed's).
impl Serialize for Limits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all = !s.is_human_readable();
        let n = if all {
            7
        } else {
            [
                self.allowed_markets.is_some(),
                self.allowed_symbols.is_some(),
                self.allowed_trd_sides.is_some(),
                self.max_order_value.is_some(),
                self.max_daily_value.is_some(),
                self.max_orders_per_minute.is_some(),
                self.hours_window.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count()
        };
        let mut st = s.serialize_struct("Limits", n)?;
        macro_rules! field {
            ($name:ident) => {
                if all || self.$name.is_some() {
                    st.serialize_field(stringify!($name), &self.$name)?;
                } else {
                    st.skip_field(stringify!($name))?;
                }
            };
        }
        field!(allowed_markets);
        field!(allowed_symbols);
        field!(allowed_trd_sides);
        field!(max_order_value);
        field!(max_daily_value);
        field!(max_orders_per_minute);
        field!(hours_window);
        st.end()
    }
}

/// One API key as stored in keys.json. The plaintext is never stored, only its digest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Unique name, shown as `key_id` in audit and metrics.
    pub id: KeyId,
    /// SHA-256 of the plaintext.
    pub hash: KeyHash,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Whitelists and caps; empty means unlimited.
    #[serde(default)]
    pub limits: Limits,
    /// `None`: usable on any host; `Some([])`: frozen; `Some(list)`: only on those hosts.
    #[serde(default)]
    pub allowed_machines: Option<Vec<Fingerprint>>,
    /// When the key was made.
    pub created_at: Timestamp,
    /// When the key stops working; `None` never.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Free-form note.
    #[serde(default)]
    pub note: Option<String>,
}

/// As for [`Limits`]: every field for compact formats; for keys.json, `id`, `hash`,
/// `scopes` and `created_at` always and the rest only when set.
impl Serialize for KeyRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all = !s.is_human_readable();
        let optional = [
            !self.limits.is_unlimited(),
            self.allowed_machines.is_some(),
            self.expires_at.is_some(),
            self.note.is_some(),
        ];
        let n = if all {
            8
        } else {
            4 + optional.iter().filter(|b| **b).count()
        };
        let mut st = s.serialize_struct("KeyRecord", n)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("hash", &self.hash)?;
        st.serialize_field("scopes", &self.scopes)?;
        macro_rules! field {
            ($name:ident, $set:expr) => {
                if all || $set {
                    st.serialize_field(stringify!($name), &self.$name)?;
                } else {
                    st.skip_field(stringify!($name))?;
                }
            };
        }
        field!(limits, optional[0]);
        field!(allowed_machines, optional[1]);
        st.serialize_field("created_at", &self.created_at)?;
        field!(expires_at, optional[2]);
        field!(note, optional[3]);
        st.end()
    }
}

/// What an operator asks for when making a key; the daemon adds the hash and `created_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySpec {
    /// Unique name.
    pub id: KeyId,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Whitelists and caps.
    pub limits: Limits,
    /// Machine binding (see [`KeyRecord::allowed_machines`]).
    pub allowed_machines: Option<Vec<Fingerprint>>,
    /// When the key stops working.
    pub expires_at: Option<Timestamp>,
    /// Free-form note.
    pub note: Option<String>,
}

/// A change to a key's machine binding (`futucli bind-key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindOp {
    /// Add these fingerprints to the whitelist (an unbound key becomes bound to them).
    Add(Vec<Fingerprint>),
    /// Make the whitelist exactly these fingerprints.
    Replace(Vec<Fingerprint>),
    /// `allowed_machines: []`: the key is refused everywhere until bound again.
    Freeze,
    /// `allowed_machines: null`: no binding.
    Clear,
}

/// A key's plaintext, `fc_` followed by 32 lower-case hex digits. It is shown once when the
/// key is made and never stored, logged or printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a plaintext received from a caller.
    pub fn new(plaintext: impl Into<String>) -> Token {
        Token(plaintext.into())
    }

    /// The plaintext, for hashing or for showing once to the person who made the key.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_window_start_is_inside_and_end_is_not() {
        let w: HoursWindow = "09:30-16:00".parse().unwrap();
        assert!(!w.contains(9 * 3600 + 29 * 60 + 59));
        assert!(w.contains(9 * 3600 + 30 * 60));
        assert!(w.contains(15 * 3600 + 59 * 60 + 59));
        assert!(!w.contains(16 * 3600));
    }

    #[test]
    fn hours_window_crossing_midnight_covers_both_sides() {
        let w: HoursWindow = "22:00-04:00".parse().unwrap();
        assert!(!w.contains(21 * 3600 + 59 * 60 + 59));
        assert!(w.contains(22 * 3600));
        assert!(w.contains(23 * 3600 + 59 * 60 + 59));
        assert!(w.contains(0));
        assert!(w.contains(3 * 3600 + 59 * 60 + 59));
        assert!(!w.contains(4 * 3600));
        assert!(!w.contains(12 * 3600));
    }

    #[test]
    fn malformed_hours_windows_are_refused() {
        for s in [
            "9:30-16:00",
            "09:30-24:00",
            "09:60-10:00",
            "09:30",
            "09:30-09:30",
            "0930-1600",
            "09:30-16:00 ",
        ] {
            assert!(s.parse::<HoursWindow>().is_err(), "{s} should be refused");
        }
        assert_eq!(
            "00:00-23:59".parse::<HoursWindow>().unwrap().to_string(),
            "00:00-23:59"
        );
    }

    #[test]
    fn hash_accepts_hex_with_or_without_prefix_and_refuses_the_rest() {
        let hex = "ab".repeat(32);
        let a: KeyHash = hex.parse().unwrap();
        let b: KeyHash = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), hex);
        assert!("a1b2...".parse::<KeyHash>().is_err());
        assert!("zz".repeat(32).parse::<KeyHash>().is_err());
        assert!("ab".repeat(33).parse::<KeyHash>().is_err());
        assert!(
            format!("{a:?}").len() < 30,
            "Debug must not print the whole digest"
        );
    }

    #[test]
    fn symbols_need_a_known_prefix_and_a_code() {
        for ok in ["HK.00700", "US.AAPL", "US.BRK.B", "SH.600519", "SZ.000001"] {
            assert_eq!(ok.parse::<Symbol>().unwrap().as_str(), ok);
        }
        for bad in ["AAPL", "XX.AAPL", "US.", ".AAPL", "US.AA PL", "us.AAPL"] {
            assert!(bad.parse::<Symbol>().is_err(), "{bad} should be refused");
        }
        assert_eq!("US.BRK.B".parse::<Symbol>().unwrap().prefix(), "US");
    }

    #[test]
    fn market_prefix_compatibility_fails_closed() {
        assert!(Market::HK.trades_prefix("HK"));
        assert!(!Market::HK.trades_prefix("US"));
        assert!(Market::CN.trades_prefix("SH"));
        assert!(Market::HKCC.trades_prefix("SZ"));
        assert!(!Market::US.trades_prefix(""));
    }

    #[test]
    fn fingerprints_and_ids_are_checked() {
        assert!("fp_bot_host_abc123".parse::<Fingerprint>().is_ok());
        assert!("fp_".parse::<Fingerprint>().is_err());
        assert!("bot".parse::<Fingerprint>().is_err());
        assert!("sim-bot".parse::<KeyId>().is_ok());
        assert!("".parse::<KeyId>().is_err());
        assert!("a b".parse::<KeyId>().is_err());
        assert!("x".repeat(65).parse::<KeyId>().is_err());
    }

    #[test]
    fn caps_refuse_negative_and_non_finite_numbers() {
        assert!(Cap::try_from(0.0).is_ok());
        assert!(Cap::try_from(-0.01).is_err());
        assert!(Cap::try_from(f64::NAN).is_err());
        assert!(Cap::try_from(f64::INFINITY).is_err());
    }

    #[test]
    fn a_negative_zero_cap_is_zero_and_written_as_0() {
        let c = Cap::try_from(-0.0).unwrap();
        assert_eq!(c.get().to_bits(), 0.0f64.to_bits());
        assert_eq!(c.money(), Money::ZERO);
        assert_eq!(serde_json::to_string(&c).unwrap(), "0.0");
        let read: Cap = serde_json::from_str("-0").unwrap();
        assert_eq!(read.get().to_bits(), 0.0f64.to_bits());
        let read: Cap = serde_json::from_str("-0.0").unwrap();
        assert_eq!(read.get().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn caps_are_what_they_say_or_refused() {
        let c = Cap::try_from(2530.5).unwrap();
        assert_eq!((c.get(), c.money()), (2530.5, Money(253_050_000_000)));
        let e = Cap::try_from(0.123456789).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cap 0.123456789 has more than 8 decimal places; amounts are counted to 0.00000001"
        );
        assert!(Cap::try_from(5e-324).is_err());
        assert!(Cap::try_from(1e300).is_err());
        assert!(Cap::try_from(1e20).is_ok());
    }

    #[test]
    fn redact_hides_token_shaped_text_only() {
        let t = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
        assert_eq!(redact(t), "fc_<redacted>");
        assert_eq!(redact(&format!("x{t}y é")), "xfc_<redacted>y é");
        assert_eq!(redact("Trd_PlaceOrder"), "Trd_PlaceOrder");
        assert_eq!(redact("fc_short"), "fc_short");
    }

    #[test]
    fn a_key_id_shaped_like_a_token_is_refused_without_quoting_it() {
        let t = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
        let e = t.parse::<KeyId>().unwrap_err();
        assert!(!e.to_string().contains("8a3f"), "{e}");
        let e = format!("US.{t}").parse::<Symbol>().unwrap_err();
        assert!(!e.to_string().contains("8a3f"), "{e}");
    }

    #[test]
    fn token_debug_never_shows_the_plaintext() {
        let t = Token::new("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f");
        assert!(!format!("{t:?}").contains("8a3f"));
    }

    #[test]
    fn keys_json_omits_unset_fields_and_reads_them_back() {
        let json =
            r#"{"id":"research","hash":"__H__","scopes":["qot:read"],"created_at":"2026-04-15T10:00:00Z"}"#
                .replace("__H__", &"a1".repeat(32));
        let rec: KeyRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&rec).unwrap(), json);
    }
}
