//! The messages that travel in frames: a client sends [`Request`]s, the daemon answers each
//! with one [`Response`], in the order the requests arrived.
//!
//! Every request but [`Hello`] carries a `request_id` chosen by the client, and every
//! response to it carries the same id back, so a client may pipeline many requests and
//! match the answers. The variant order of every enum here is part of the wire format
//! (a frame carries the variant index): add new variants at the end only. How the key
//! records in admin messages are laid out in a frame is [`crate::codec`]'s, which these
//! types name in `#[serde(with = …)]`.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::key::{
    BindOp, Halt, HaltTarget, HoursWindow, KeyId, KeyRecord, KeySpec, Market, Scope, Token, TrdSide,
};

/// The newest protocol version this crate speaks: what a client offers in its [`Hello`].
/// Version 2 added `retry_after_ms` and `limit` to [`Decision::Deny`]; version 3 the
/// requests `RotateKey` and `KeyActivity`; version 4 [`Request::SessionCheck`]; version 5
/// the kill switch ([`Reason::Halted`] and the requests `Halt`, `Resume` and `ListHalts`)
/// and the key store's [`Request::ImportKeys`] and [`Request::ExportKeys`]; version 6 the
/// pre-trade risk limits (a [`Check`]'s `acc_id` and `ref_price`, five reasons after
/// `halted`, the scope `admin`, five limits, [`Request::OrderEvent`]).
pub const PROTOCOL_VERSION: u16 = 6;

/// Every protocol version this crate speaks, oldest first. A connection speaks one of
/// them, agreed on at [`Hello`] ([`Hello::agreed_version`]); only a [`Decision::Deny`]
/// looks different from one to the next (see `docs/PROTOCOL.md`).
pub const PROTOCOL_VERSIONS: [u16; 6] = [1, 2, 3, 4, 5, 6];

/// The front-end a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Iface {
    /// REST.
    Rest,
    /// gRPC.
    Grpc,
    /// WebSocket.
    Ws,
    /// MCP tool calls.
    Mcp,
    /// The command line (`futucli check`).
    Cli,
}

impl Iface {
    /// Every interface, in wire order.
    pub const ALL: [Iface; 5] = [Iface::Rest, Iface::Grpc, Iface::Ws, Iface::Mcp, Iface::Cli];

    /// The lower-case name used in audit and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Iface::Rest => "rest",
            Iface::Grpc => "grpc",
            Iface::Ws => "ws",
            Iface::Mcp => "mcp",
            Iface::Cli => "cli",
        }
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Iface {
    type Err = crate::key::InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Iface::ALL.into_iter().find(|i| i.as_str() == s).ok_or_else(|| {
            crate::key::InvalidValue(format!(
                "unknown iface {s:?} (expected rest, grpc, ws, mcp or cli)"
            ))
        })
    }
}

/// Simulated or real trading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrdEnv {
    /// Paper trading; needs `trade:simulate`.
    Simulate,
    /// Real money; needs `trade:real`.
    Real,
}

impl TrdEnv {
    /// `simulate` or `real`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrdEnv::Simulate => "simulate",
            TrdEnv::Real => "real",
        }
    }
}

/// The order an order-write endpoint would place. Its value is `qty × price`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Which trading environment the order goes to; picks the scope it needs.
    pub env: TrdEnv,
    /// The trading market.
    pub market: Market,
    /// The security, e.g. `HK.00700`. Checked by the daemon: a malformed symbol is a
    /// `bad_order` decision, not a broken frame.
    pub symbol: String,
    /// Direction.
    pub side: TrdSide,
    /// Quantity; finite and above zero.
    pub qty: f64,
    /// Limit price; finite and above zero. A market order has none, and is refused
    /// (`bad_order`) by a key whose value caps need one.
    pub price: Option<f64>,
}

/// The first message of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The newest version the client speaks (it speaks every older one down to some
    /// version of its own); the daemon answers with the version the connection will speak.
    pub protocol_version: u16,
    /// Who is asking (`rest`, `grpc`, `futucli`, …); goes to the log, never trusted.
    pub client_name: String,
}

impl Hello {
    /// The version a connection opened with this Hello speaks: the client's newest or
    /// this crate's, whichever is older; `None` when this crate does not speak that one
    /// (a client offering version 0), and the Hello is refused.
    pub fn agreed_version(&self) -> Option<u16> {
        let v = self.protocol_version.min(PROTOCOL_VERSION);
        PROTOCOL_VERSIONS.contains(&v).then_some(v)
    }
}

/// May this token call this endpoint (with this order)?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Echoed in the response.
    pub request_id: u64,
    /// The key's plaintext as the caller presented it.
    pub token: Token,
    /// Which front-end asks.
    pub iface: Iface,
    /// A Futu OpenAPI protocol name (`Trd_PlaceOrder`) or id (`2202`).
    pub endpoint: String,
    /// The order, for order-write endpoints.
    pub order: Option<Order>,
    /// Decide without consuming a rate slot or daily value.
    pub dry_run: bool,
    /// Protocol version 6: the broker account the request is for — the order's account,
    /// or the account an account read reads. What the gateway routes the request to, not
    /// part of the order the caller wrote; a key with `allowed_acc_ids` refuses a request
    /// without one (`account`). Not on the wire before version 6 (read as None).
    pub acc_id: Option<u64>,
    /// Protocol version 6: the gateway's reference price for the order's symbol (its last
    /// quote), for the price collar; only with an order, finite and above zero. Market
    /// data the gateway knows, not part of the order. Not on the wire before version 6.
    pub ref_price: Option<f64>,
}

/// Does this token hold this scope? Used to filter WebSocket pushes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckScope {
    /// Echoed in the response.
    pub request_id: u64,
    /// The key's plaintext.
    pub token: Token,
    /// Which front-end asks.
    pub iface: Iface,
    /// The scope the push needs.
    pub scope: Scope,
}

/// A decision a long-lived session — a WebSocket, an MCP session — asks again and again
/// (protocol version 4): may its pushes that need a scope go out, is its key still
/// usable? It is decided like a [`CheckScope`] or a dry run of `KeepAlive`, and audited
/// only when its outcome differs from `previous`, the outcome the session had before: a
/// session that is told the same thing a thousand times leaves one record, not a thousand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCheck {
    /// Echoed in the response.
    pub request_id: u64,
    /// The key's plaintext.
    pub token: Token,
    /// Which front-end asks.
    pub iface: Iface,
    /// What is asked.
    pub subject: SessionSubject,
    /// The outcome the session had for this subject before: the daemon audits the
    /// decision only when it differs.
    pub previous: SessionOutcome,
}

/// What a [`SessionCheck`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionSubject {
    /// Is the session's key still usable? Decided as a dry-run check of the system
    /// endpoint `KeepAlive` (no scope, nothing consumed).
    KeepAlive,
    /// May `pushes` pushes that need `scope` go out? Decided as a [`CheckScope`]; when
    /// refused on a WebSocket, the pushes are counted in `futu_ws_filtered_pushes_total`.
    Pushes {
        /// The scope the pushes need.
        scope: Scope,
        /// How many pushes the decision is for (at least 1).
        pushes: u32,
    },
}

/// What a decision came to, as a session remembers it: allowed, or refused for a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionOutcome {
    /// Allowed.
    Allow,
    /// Refused for this reason.
    Deny(Reason),
}

impl SessionOutcome {
    /// The outcome of `decision`.
    pub fn of(decision: &Decision) -> SessionOutcome {
        match decision.reason() {
            None => SessionOutcome::Allow,
            Some(reason) => SessionOutcome::Deny(reason),
        }
    }
}

/// Every request a client can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A Check, the request of the hot path, is the largest: boxing it would allocate per check.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Opens the conversation; answered by [`Response::HelloOk`].
    Hello(Hello),
    /// Answered by [`Response::Decision`].
    Check(Check),
    /// Answered by [`Response::Decision`].
    CheckScope(CheckScope),
    /// Refund the daily value of an allowed order the broker then rejected. Answered by
    /// [`Response::Released`] or an error (unknown, already released or too old ticket).
    Release {
        /// Echoed in the response.
        request_id: u64,
        /// From the [`Decision::Allow`] of the order.
        ticket: u64,
    },
    /// Admin: make a key. Answered by [`Response::KeyGenerated`].
    GenKey {
        /// Echoed in the response.
        request_id: u64,
        /// What the key may do.
        #[serde(with = "crate::codec::record::key_spec")]
        spec: KeySpec,
    },
    /// Admin: every key record. Answered by [`Response::Keys`].
    ListKeys {
        /// Echoed in the response.
        request_id: u64,
    },
    /// Admin: remove a key. Answered by [`Response::KeyRevoked`].
    RevokeKey {
        /// Echoed in the response.
        request_id: u64,
        /// The key's id.
        id: KeyId,
    },
    /// Admin: change a key's machine binding. Answered by [`Response::KeyBound`].
    BindKey {
        /// Echoed in the response.
        request_id: u64,
        /// The key's id.
        id: KeyId,
        /// The change.
        op: BindOp,
    },
    /// Admin: re-read keys.json. Answered by [`Response::Reloaded`].
    Reload {
        /// Echoed in the response.
        request_id: u64,
    },
    /// Admin: a key's consumption today. Answered by [`Response::Usage`].
    Usage {
        /// Echoed in the response.
        request_id: u64,
        /// The key's id.
        id: KeyId,
    },
    /// Admin: one page of the key records, for listings of any size. Answered by
    /// [`Response::KeysPage`], or an error `listing_expired` (start again).
    ListKeysPage {
        /// Echoed in the response.
        request_id: u64,
        /// 0 to start a listing (keys.json is read once, as it is now); then the
        /// `listing` of the previous page.
        listing: u64,
        /// Records already received: where this page starts.
        offset: u32,
    },
    /// Admin (protocol version 3): give a key a new plaintext, keeping its id, scopes,
    /// limits, binding and counters; the old plaintext keeps working for `overlap_secs`
    /// more (never past the key's `expires_at`). Answered by [`Response::KeyRotated`].
    RotateKey {
        /// Echoed in the response.
        request_id: u64,
        /// The key's id.
        id: KeyId,
        /// How long the old plaintext stays valid, in seconds (0: refused at once).
        overlap_secs: u64,
    },
    /// Admin (protocol version 3): when keys were last used and how long a rotated key's
    /// old plaintext stays valid. Answered by [`Response::KeyActivity`].
    KeyActivity {
        /// Echoed in the response.
        request_id: u64,
        /// The keys asked about (at most [`MAX_ACTIVITY_IDS`]).
        ids: Vec<KeyId>,
    },
    /// Protocol version 4: a session's repeated decision, audited only when it changes.
    /// Answered by [`Response::Decision`].
    SessionCheck(SessionCheck),
    /// Admin (protocol version 5): halt trading — orders and unlocks are refused `halted`
    /// — for one key or every key, until resumed; a halt of what is halted already
    /// replaces its reason. Answered by [`Response::Halts`].
    Halt {
        /// Echoed in the response.
        request_id: u64,
        /// What to halt.
        target: HaltTarget,
        /// Why, in a few words (checked by the daemon: [`crate::key::HaltReason`]).
        reason: String,
    },
    /// Admin (protocol version 5): lift a halt. Answered by [`Response::Halts`], or an
    /// error `invalid_spec` when `target` is not halted.
    Resume {
        /// Echoed in the response.
        request_id: u64,
        /// What to resume: a key halted on its own, or every key.
        target: HaltTarget,
    },
    /// Admin (protocol version 5): the halts in force. Answered by [`Response::Halts`].
    ListHalts {
        /// Echoed in the response.
        request_id: u64,
    },
    /// Admin (protocol version 5): one chunk of a keys.json to load into the key store,
    /// which may be larger than a frame. Answered by [`Response::KeysImported`]: the offset
    /// of the next chunk, or, after the `last` chunk, what was added and replaced.
    ImportKeys {
        /// Echoed in the response.
        request_id: u64,
        /// 0 to start an import; then the `import` of the previous answer.
        import: u64,
        /// Bytes of the file sent before this chunk (0 to start).
        offset: u64,
        /// The next bytes of the file's text (at most [`MAX_KEYS_CHUNK`], cut at a
        /// character boundary).
        chunk: String,
        /// This chunk ends the file: the daemon checks the whole file and loads it.
        last: bool,
        /// With the last chunk: a key whose id the store holds already replaces it, rather
        /// than refusing the import.
        replace: bool,
    },
    /// Admin (protocol version 5): one chunk of the key store written as a keys.json.
    /// Answered by [`Response::KeysExport`].
    ExportKeys {
        /// Echoed in the response.
        request_id: u64,
        /// 0 to start an export (the store is read once, as it is now); then the `export`
        /// of the previous answer.
        export: u64,
        /// Bytes received so far: where this chunk starts.
        offset: u64,
    },
    /// Protocol version 6: what became of an allowed order, by its ticket, as the broker
    /// reports it to the gateway. Answered by [`Response::OrderEventDone`]. Applied once:
    /// the same event again is a duplicate that changes nothing.
    OrderEvent(OrderEvent),
}

/// What became of an allowed order ([`Request::OrderEvent`], protocol version 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Echoed in the response.
    pub request_id: u64,
    /// From the order's [`Decision::Allow`].
    pub ticket: u64,
    /// What happened.
    pub kind: OrderEventKind,
    /// For `PartiallyFilled` and `Filled`: the quantity the order has filled so far, in
    /// all (cumulative, so that an event sent again changes nothing); finite and above
    /// zero. None for the other kinds.
    pub filled_qty: Option<f64>,
    /// For `PartiallyFilled` and `Filled`: the average price of `filled_qty`; finite and
    /// above zero.
    pub fill_price: Option<f64>,
}

/// The events of an order's life after its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEventKind {
    /// The broker took the order; nothing changes.
    Accepted,
    /// Part of the order filled: the fill's value counts in the symbol's position, and the
    /// order stays open for the rest.
    PartiallyFilled,
    /// The order filled (this is its last fill): the fill counts, and the order is no
    /// longer open.
    Filled,
    /// The order was cancelled: no longer open; what filled before stays, and the daily
    /// value it took is not given back.
    Cancelled,
    /// The broker rejected the order: no longer open, and its daily value is given back
    /// as a [`Request::Release`] gives it.
    Rejected,
}

impl OrderEventKind {
    /// Every kind, in wire order.
    pub const ALL: [OrderEventKind; 5] = [
        OrderEventKind::Accepted,
        OrderEventKind::PartiallyFilled,
        OrderEventKind::Filled,
        OrderEventKind::Cancelled,
        OrderEventKind::Rejected,
    ];

    /// The snake_case name, as in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderEventKind::Accepted => "accepted",
            OrderEventKind::PartiallyFilled => "partially_filled",
            OrderEventKind::Filled => "filled",
            OrderEventKind::Cancelled => "cancelled",
            OrderEventKind::Rejected => "rejected",
        }
    }

    /// Whether the event carries a fill (`filled_qty` and `fill_price`).
    pub fn is_fill(self) -> bool {
        matches!(self, OrderEventKind::PartiallyFilled | OrderEventKind::Filled)
    }

    /// Whether the order is finished after it.
    pub fn finishes(self) -> bool {
        matches!(
            self,
            OrderEventKind::Filled | OrderEventKind::Cancelled | OrderEventKind::Rejected
        )
    }
}

impl fmt::Display for OrderEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an [`OrderEvent`] came to ([`Response::OrderEventDone`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEventOutcome {
    /// The event changed the ledger.
    Applied {
        /// The order's key.
        key_id: KeyId,
        /// Daily value given back (a rejection; 0 otherwise, or when the order's UTC day
        /// is over).
        refunded_value: f64,
    },
    /// The same event was applied before, or the order is finished already: nothing
    /// changed (an event may be sent again safely).
    Duplicate {
        /// The order's key.
        key_id: KeyId,
    },
    /// The event was refused and changed nothing.
    Refused {
        /// Why.
        reason: OrderEventRefusal,
        /// One line for a person.
        message: String,
    },
}

/// Why an [`OrderEvent`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEventRefusal {
    /// No open order has this ticket (never handed out, forgotten, or not an order a key
    /// with order tracking placed).
    UnknownTicket,
    /// A fill without its quantity or price, one that is not finite and above zero, a
    /// fill of more than the order has left, or figures on an event that has none.
    BadFigures,
    /// The ledger cannot follow orders (the daemon's store does not support it yet).
    NotSupported,
}

impl OrderEventRefusal {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderEventRefusal::UnknownTicket => "unknown_ticket",
            OrderEventRefusal::BadFigures => "bad_figures",
            OrderEventRefusal::NotSupported => "not_supported",
        }
    }
}

/// The most bytes of keys.json text one [`Request::ImportKeys`] or
/// [`Response::KeysExport`] carries: the message, with its other fields, fits in a frame.
pub const MAX_KEYS_CHUNK: usize = 60 * 1024;

/// Where the chunk of `text` that starts at byte `start` ends in a [`Request::ImportKeys`]
/// or a [`Response::KeysExport`]: at most [`MAX_KEYS_CHUNK`] bytes on, at a character
/// boundary (`start` must be one).
pub fn keys_chunk_end(text: &str, start: usize) -> usize {
    let mut end = start.saturating_add(MAX_KEYS_CHUNK).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The longest keys.json an import may bring (64 MiB).
pub const MAX_IMPORT_LEN: u64 = 64 * 1024 * 1024;

/// What an import did, in [`Response::KeysImported`] once its last chunk was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// Keys of the file the store did not hold.
    pub added: u32,
    /// Keys of the file whose id the store held, replaced (with `replace` only).
    pub replaced: u32,
    /// Keys in the store after the import.
    pub total: u32,
    /// Where the keys are kept (keys.json's path, or the database).
    pub stored_in: String,
}

/// The most key ids one [`Request::KeyActivity`] may ask about (its answer fits a frame).
pub const MAX_ACTIVITY_IDS: usize = 500;

/// One key's activity, in [`Response::KeyActivity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyActivity {
    /// The key.
    pub id: KeyId,
    /// Its last allowed check, to the minute (rounded down); `None`: not used since the
    /// daemon began keeping it.
    pub last_used: Option<Timestamp>,
    /// Until when the plaintext it had before its last rotation is still accepted; `None`:
    /// no overlap in force.
    pub previous_valid_until: Option<Timestamp>,
}

impl Request {
    /// The id the response will carry (0 for [`Request::Hello`]).
    pub fn request_id(&self) -> u64 {
        match self {
            Request::Hello(_) => 0,
            Request::Check(c) => c.request_id,
            Request::CheckScope(c) => c.request_id,
            Request::SessionCheck(c) => c.request_id,
            Request::OrderEvent(e) => e.request_id,
            Request::Release { request_id, .. }
            | Request::GenKey { request_id, .. }
            | Request::ListKeys { request_id }
            | Request::RevokeKey { request_id, .. }
            | Request::BindKey { request_id, .. }
            | Request::Reload { request_id }
            | Request::Usage { request_id, .. }
            | Request::ListKeysPage { request_id, .. }
            | Request::RotateKey { request_id, .. }
            | Request::KeyActivity { request_id, .. }
            | Request::Halt { request_id, .. }
            | Request::Resume { request_id, .. }
            | Request::ListHalts { request_id }
            | Request::ImportKeys { request_id, .. }
            | Request::ExportKeys { request_id, .. } => *request_id,
        }
    }

    /// Whether only an administrator may send it. With [`Request::route`], the one
    /// definition of the admin requests (no wildcard: a new request does not compile until
    /// it is sorted here).
    pub fn is_admin(&self) -> bool {
        match self {
            Request::Hello(_)
            | Request::Check(_)
            | Request::CheckScope(_)
            | Request::Release { .. }
            | Request::SessionCheck(_)
            | Request::OrderEvent(_) => false,
            Request::GenKey { .. }
            | Request::ListKeys { .. }
            | Request::RevokeKey { .. }
            | Request::BindKey { .. }
            | Request::Reload { .. }
            | Request::Usage { .. }
            | Request::ListKeysPage { .. }
            | Request::RotateKey { .. }
            | Request::KeyActivity { .. }
            | Request::Halt { .. }
            | Request::Resume { .. }
            | Request::ListHalts { .. }
            | Request::ImportKeys { .. }
            | Request::ExportKeys { .. } => true,
        }
    }

    /// The request sorted by who may send it.
    pub fn route(self) -> Route {
        let admin = |request_id, op| Route::Admin(Admin { request_id, op });
        match self {
            Request::Hello(h) => Route::Hello(h),
            Request::Check(c) => Route::Check(c),
            Request::CheckScope(c) => Route::CheckScope(c),
            Request::Release { request_id, ticket } => Route::Release { request_id, ticket },
            Request::GenKey { request_id, spec } => admin(request_id, AdminOp::GenKey(spec)),
            Request::ListKeys { request_id } => admin(request_id, AdminOp::ListKeys),
            Request::RevokeKey { request_id, id } => admin(request_id, AdminOp::RevokeKey(id)),
            Request::BindKey { request_id, id, op } => admin(request_id, AdminOp::BindKey(id, op)),
            Request::Reload { request_id } => admin(request_id, AdminOp::Reload),
            Request::Usage { request_id, id } => admin(request_id, AdminOp::Usage(id)),
            Request::ListKeysPage {
                request_id,
                listing,
                offset,
            } => admin(request_id, AdminOp::ListKeysPage { listing, offset }),
            Request::RotateKey {
                request_id,
                id,
                overlap_secs,
            } => admin(request_id, AdminOp::RotateKey { id, overlap_secs }),
            Request::KeyActivity { request_id, ids } => admin(request_id, AdminOp::KeyActivity(ids)),
            Request::SessionCheck(c) => Route::SessionCheck(c),
            Request::Halt {
                request_id,
                target,
                reason,
            } => admin(request_id, AdminOp::Halt { target, reason }),
            Request::Resume { request_id, target } => admin(request_id, AdminOp::Resume(target)),
            Request::ListHalts { request_id } => admin(request_id, AdminOp::ListHalts),
            Request::ImportKeys {
                request_id,
                import,
                offset,
                chunk,
                last,
                replace,
            } => admin(
                request_id,
                AdminOp::ImportKeys {
                    import,
                    offset,
                    chunk,
                    last,
                    replace,
                },
            ),
            Request::ExportKeys {
                request_id,
                export,
                offset,
            } => admin(request_id, AdminOp::ExportKeys { export, offset }),
            Request::OrderEvent(e) => Route::OrderEvent(e),
        }
    }

    /// The message name, for logs (`Check`, `GenKey`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello(_) => "Hello",
            Request::Check(_) => "Check",
            Request::CheckScope(_) => "CheckScope",
            Request::Release { .. } => "Release",
            Request::GenKey { .. } => "GenKey",
            Request::ListKeys { .. } => "ListKeys",
            Request::RevokeKey { .. } => "RevokeKey",
            Request::BindKey { .. } => "BindKey",
            Request::Reload { .. } => "Reload",
            Request::Usage { .. } => "Usage",
            Request::ListKeysPage { .. } => "ListKeysPage",
            Request::RotateKey { .. } => "RotateKey",
            Request::KeyActivity { .. } => "KeyActivity",
            Request::SessionCheck(_) => "SessionCheck",
            Request::Halt { .. } => "Halt",
            Request::Resume { .. } => "Resume",
            Request::ListHalts { .. } => "ListHalts",
            Request::ImportKeys { .. } => "ImportKeys",
            Request::ExportKeys { .. } => "ExportKeys",
            Request::OrderEvent(_) => "OrderEvent",
        }
    }
}

/// A [`Request`] sorted by who may send it ([`Request::route`]).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a Check, moved once, as in `Request`
pub enum Route {
    /// Opens the conversation.
    Hello(Hello),
    /// A check, from any front-end.
    Check(Check),
    /// A scope check, from any front-end.
    CheckScope(CheckScope),
    /// A session's repeated decision, from any front-end.
    SessionCheck(SessionCheck),
    /// A refund, from the front-end that holds the ticket.
    Release {
        /// Echoed in the response.
        request_id: u64,
        /// From the order's Allow.
        ticket: u64,
    },
    /// What became of an allowed order, from the front-end that holds its ticket.
    OrderEvent(OrderEvent),
    /// Only for administrators.
    Admin(Admin),
}

/// An admin request.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Echoed in the response.
    pub request_id: u64,
    /// What it asks for.
    pub op: AdminOp,
}

/// What an admin request asks for (the fields of its [`Request`] variant).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // moved once per admin request, like the Request it came from
pub enum AdminOp {
    /// [`Request::GenKey`].
    GenKey(KeySpec),
    /// [`Request::ListKeys`].
    ListKeys,
    /// [`Request::RevokeKey`].
    RevokeKey(KeyId),
    /// [`Request::BindKey`].
    BindKey(KeyId, BindOp),
    /// [`Request::Reload`].
    Reload,
    /// [`Request::Usage`].
    Usage(KeyId),
    /// [`Request::ListKeysPage`].
    ListKeysPage {
        /// 0 to start, then the listing of the previous page.
        listing: u64,
        /// Records received so far.
        offset: u32,
    },
    /// [`Request::RotateKey`].
    RotateKey {
        /// The key's id.
        id: KeyId,
        /// Seconds the old plaintext stays valid.
        overlap_secs: u64,
    },
    /// [`Request::KeyActivity`].
    KeyActivity(Vec<KeyId>),
    /// [`Request::Halt`].
    Halt {
        /// What to halt.
        target: HaltTarget,
        /// Why, as sent (the daemon checks it).
        reason: String,
    },
    /// [`Request::Resume`].
    Resume(HaltTarget),
    /// [`Request::ListHalts`].
    ListHalts,
    /// [`Request::ImportKeys`].
    ImportKeys {
        /// 0 to start, then the import of the previous answer.
        import: u64,
        /// Bytes sent before this chunk.
        offset: u64,
        /// The next bytes of the file.
        chunk: String,
        /// Whether the file ends with this chunk.
        last: bool,
        /// Whether ids the store holds are replaced.
        replace: bool,
    },
    /// [`Request::ExportKeys`].
    ExportKeys {
        /// 0 to start, then the export of the previous answer.
        export: u64,
        /// Bytes received so far.
        offset: u64,
    },
}

impl AdminOp {
    /// The request's name, for logs, audit and metrics (`GenKey`, …).
    pub fn name(&self) -> &'static str {
        match self {
            AdminOp::GenKey(_) => "GenKey",
            AdminOp::ListKeys => "ListKeys",
            AdminOp::RevokeKey(_) => "RevokeKey",
            AdminOp::BindKey(..) => "BindKey",
            AdminOp::Reload => "Reload",
            AdminOp::Usage(_) => "Usage",
            AdminOp::ListKeysPage { .. } => "ListKeysPage",
            AdminOp::RotateKey { .. } => "RotateKey",
            AdminOp::KeyActivity(_) => "KeyActivity",
            AdminOp::Halt { .. } => "Halt",
            AdminOp::Resume(_) => "Resume",
            AdminOp::ListHalts => "ListHalts",
            AdminOp::ImportKeys { .. } => "ImportKeys",
            AdminOp::ExportKeys { .. } => "ExportKeys",
        }
    }

    /// The keys it is about: one key, every key (a halt or resume of all trading), or
    /// none in particular.
    pub fn target(&self) -> Option<HaltTarget> {
        match self {
            AdminOp::GenKey(spec) => Some(HaltTarget::Key(spec.id.clone())),
            AdminOp::RevokeKey(id)
            | AdminOp::BindKey(id, _)
            | AdminOp::Usage(id)
            | AdminOp::RotateKey { id, .. } => Some(HaltTarget::Key(id.clone())),
            AdminOp::Halt { target, .. } | AdminOp::Resume(target) => Some(target.clone()),
            AdminOp::ListKeys
            | AdminOp::Reload
            | AdminOp::ListKeysPage { .. }
            | AdminOp::KeyActivity(_)
            | AdminOp::ListHalts
            | AdminOp::ImportKeys { .. }
            | AdminOp::ExportKeys { .. } => None,
        }
    }
}

/// Why a request was refused. The snake_case names are stable: the audit log and the
/// metrics use them verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No key has this token's digest.
    UnknownKey,
    /// The key's `expires_at` has passed.
    Expired,
    /// The key's `allowed_machines` is `[]`.
    Frozen,
    /// This host's fingerprint is not in the key's `allowed_machines`.
    Machine,
    /// The key lacks the scope the endpoint needs.
    Scope,
    /// The endpoint is not in the daemon's table.
    UnknownEndpoint,
    /// The order's market is not in `allowed_markets`.
    Market,
    /// The order's symbol is not in `allowed_symbols`.
    Symbol,
    /// The order's side is not in `allowed_trd_sides`.
    Side,
    /// The local time is outside `hours_window`.
    Hours,
    /// qty × price is above `max_order_value`.
    OrderValue,
    /// Today's allowed value plus this order's would pass `max_daily_value`.
    DailyValue,
    /// `max_orders_per_minute` orders were already allowed in the last 60 s.
    Rate,
    /// The order is missing or malformed (no price where a cap needs one, qty ≤ 0, …).
    BadOrder,
    /// An admin request from a peer that is not an administrator.
    Forbidden,
    /// The daemon could not decide; refused to fail closed.
    Internal,
    /// Trading is halted for the key, or for every key (`futucli halt`; protocol version
    /// 5): orders and unlocks are refused until it is resumed. A peer of an older version
    /// is told `scope` instead ([`crate::codec`]).
    Halted,
    /// Protocol version 6: the request names no account, or one not in the key's
    /// `allowed_acc_ids`. Told `scope` before version 6.
    Account,
    /// Protocol version 6: a limit order's price is further from the reference price than
    /// `max_price_deviation_pct`, or a key with a collar got an order without a
    /// reference price. Told `order_value` before version 6.
    PriceCollar,
    /// Protocol version 6: `max_open_orders` orders are open already. Told `rate` before
    /// version 6.
    OpenOrders,
    /// Protocol version 6: the symbol's position plus this order would pass
    /// `max_position_value`. Told `daily_value` before version 6.
    Position,
    /// Protocol version 6: the same order was allowed within `duplicate_window_ms`. Told
    /// `rate` before version 6.
    Duplicate,
}

impl Reason {
    /// Every reason, in wire order.
    pub const ALL: [Reason; 22] = [
        Reason::UnknownKey,
        Reason::Expired,
        Reason::Frozen,
        Reason::Machine,
        Reason::Scope,
        Reason::UnknownEndpoint,
        Reason::Market,
        Reason::Symbol,
        Reason::Side,
        Reason::Hours,
        Reason::OrderValue,
        Reason::DailyValue,
        Reason::Rate,
        Reason::BadOrder,
        Reason::Forbidden,
        Reason::Internal,
        Reason::Halted,
        Reason::Account,
        Reason::PriceCollar,
        Reason::OpenOrders,
        Reason::Position,
        Reason::Duplicate,
    ];

    /// The stable snake_case name, e.g. `daily_value`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownKey => "unknown_key",
            Reason::Expired => "expired",
            Reason::Frozen => "frozen",
            Reason::Machine => "machine",
            Reason::Scope => "scope",
            Reason::UnknownEndpoint => "unknown_endpoint",
            Reason::Market => "market",
            Reason::Symbol => "symbol",
            Reason::Side => "side",
            Reason::Hours => "hours",
            Reason::OrderValue => "order_value",
            Reason::DailyValue => "daily_value",
            Reason::Rate => "rate",
            Reason::BadOrder => "bad_order",
            Reason::Forbidden => "forbidden",
            Reason::Internal => "internal",
            Reason::Halted => "halted",
            Reason::Account => "account",
            Reason::PriceCollar => "price_collar",
            Reason::OpenOrders => "open_orders",
            Reason::Position => "position",
            Reason::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a [`Check`] or [`CheckScope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// Every rule said yes.
    Allow {
        /// The key that matched.
        key_id: KeyId,
        /// The scope the endpoint needed (`None` for connection/system endpoints).
        scope: Option<Scope>,
        /// For an order that consumed daily value: pass it to `Release` if the broker
        /// rejects the order.
        ticket: Option<u64>,
    },
    /// A rule said no.
    Deny {
        /// Which rule.
        reason: Reason,
        /// The key that matched, if any.
        key_id: Option<KeyId>,
        /// One line for a person; never the token.
        detail: String,
        /// How long until asking again can succeed (rate, daily_value, hours); None when
        /// waiting does not help, and always None from a version-1 peer.
        retry_after_ms: Option<u64>,
        /// The figures of the limit that refused; None for other reasons and from a
        /// version-1 peer.
        limit: Option<LimitFigures>,
    },
}

/// The figures behind a limit's refusal, so that a gateway can tell its caller more than
/// a reason: the key's setting and where the key stands against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitFigures {
    /// `rate`: the orders allowed in the last 60 s and the key's cap.
    Rate {
        /// Orders allowed in the last 60 s.
        orders_in_window: u32,
        /// The key's `max_orders_per_minute`.
        max_orders_per_minute: u32,
    },
    /// `daily_value`: today's (UTC) total, this order's value and the key's cap.
    DailyValue {
        /// Value of today's allowed orders, less released ones.
        used: f64,
        /// The refused order's value (qty × price).
        order_value: f64,
        /// The key's `max_daily_value`.
        max_daily_value: f64,
    },
    /// `order_value`: the order's value and the key's cap.
    OrderValue {
        /// The refused order's value (qty × price).
        order_value: f64,
        /// The key's `max_order_value`.
        max_order_value: f64,
    },
    /// `hours`: the daemon host's local time and the key's window.
    Hours {
        /// The local time of day the check was made at, `HH:MM`.
        local_time: String,
        /// The key's `hours_window`.
        hours_window: HoursWindow,
    },
    /// `price_collar` (protocol version 6): the order's price, the reference price, how
    /// far apart they are and the key's collar, in percent of the reference.
    PriceCollar {
        /// The order's limit price.
        price: f64,
        /// The gateway's reference price.
        ref_price: f64,
        /// |price − ref_price| / ref_price × 100.
        deviation_pct: f64,
        /// The key's `max_price_deviation_pct`.
        max_price_deviation_pct: f64,
    },
    /// `open_orders` (protocol version 6): the key's open orders and its cap.
    OpenOrders {
        /// Orders allowed and not yet finished.
        open_orders: u32,
        /// The key's `max_open_orders`.
        max_open_orders: u32,
    },
    /// `position` (protocol version 6): the symbol's position value, what this order would
    /// add, and the key's cap.
    Position {
        /// Filled buys less filled sells, plus the open orders that add to it, by value.
        position_value: f64,
        /// What this order would add (its value).
        order_value: f64,
        /// The key's `max_position_value`.
        max_position_value: f64,
    },
    /// `duplicate` (protocol version 6): how long ago the same order was allowed, and the
    /// key's window.
    Duplicate {
        /// Milliseconds since the same order was allowed.
        since_ms: u64,
        /// The key's `duplicate_window_ms`.
        duplicate_window_ms: u64,
    },
}

impl Decision {
    /// Whether this is an [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The reason of a deny.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { reason, .. } => Some(*reason),
        }
    }

    /// `retry_after_ms` as a Duration: how long until asking again can succeed, for a
    /// deny where waiting helps.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { retry_after_ms, .. } => retry_after_ms.map(std::time::Duration::from_millis),
        }
    }

    /// The figures of the limit that refused, for a deny by a limit.
    pub fn limit(&self) -> Option<&LimitFigures> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { limit, .. } => limit.as_ref(),
        }
    }
}

/// A key's consumption today, for `futucli usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Echoed from the request.
    pub request_id: u64,
    /// The key.
    pub id: KeyId,
    /// The UTC day the daily figures are for (`YYYY-MM-DD`).
    pub day: String,
    /// Value of today's allowed orders, less released ones.
    pub daily_value_used: f64,
    /// The key's `max_daily_value`.
    pub max_daily_value: Option<f64>,
    /// Orders allowed in the last 60 s.
    pub orders_last_minute: u32,
    /// The key's `max_orders_per_minute`.
    pub max_orders_per_minute: Option<u32>,
    /// Protocol version 6: orders allowed and not yet filled, cancelled or rejected (0 for
    /// a key whose ledger does not follow its orders: one without `max_open_orders`,
    /// `max_position_value` or `duplicate_window_ms`).
    pub open_orders: u32,
    /// Protocol version 6: the key's `max_open_orders`.
    pub max_open_orders: Option<u32>,
    /// Protocol version 6: the key's positions, a symbol each, in symbol order: those it
    /// holds or has open orders in.
    pub positions: Vec<PositionUsage>,
    /// Protocol version 6: the key's `max_position_value`.
    pub max_position_value: Option<f64>,
}

/// One symbol's position in [`Usage`] (protocol version 6), as `max_position_value`
/// counts it: in each direction, the value held plus the open orders that would add to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionUsage {
    /// The symbol, e.g. `HK.00700`.
    pub symbol: String,
    /// Filled buys less filled sells (when above zero), plus open buy orders.
    pub long: f64,
    /// Filled sells less filled buys (when above zero), plus open sell orders.
    pub short: f64,
}

/// Why a request got no regular answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The Hello's protocol version is not spoken here; the connection closes.
    Version,
    /// The frame was too large or not a valid message; the connection closes.
    BadFrame,
    /// A request came before Hello (or a second Hello); the connection closes.
    HelloFirst,
    /// No outstanding ticket has this number.
    UnknownTicket,
    /// The ticket was already released.
    AlreadyReleased,
    /// The ticket is older than the release window.
    TicketExpired,
    /// No key has this id.
    UnknownKey,
    /// A key with this id exists.
    DuplicateKey,
    /// The key spec or binding is not valid.
    InvalidSpec,
    /// keys.json could not be read or written.
    Store,
    /// The daemon failed; nothing was changed.
    Internal,
    /// The listing a [`Request::ListKeysPage`] continues is gone (another listing
    /// replaced it, or it was left unused for a minute); start again with `listing` 0.
    ListingExpired,
}

impl ErrorKind {
    /// The snake_case name, as in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Version => "version",
            ErrorKind::BadFrame => "bad_frame",
            ErrorKind::HelloFirst => "hello_first",
            ErrorKind::UnknownTicket => "unknown_ticket",
            ErrorKind::AlreadyReleased => "already_released",
            ErrorKind::TicketExpired => "ticket_expired",
            ErrorKind::UnknownKey => "unknown_key",
            ErrorKind::DuplicateKey => "duplicate_key",
            ErrorKind::InvalidSpec => "invalid_spec",
            ErrorKind::Store => "store",
            ErrorKind::Internal => "internal",
            ErrorKind::ListingExpired => "listing_expired",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every response the daemon sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The Hello was accepted.
    HelloOk {
        /// The version both sides now speak ([`Hello::agreed_version`]).
        protocol_version: u16,
        /// The daemon's version, e.g. `0.1.0`.
        server_version: String,
    },
    /// The answer to a Check or CheckScope (or `forbidden` for an admin request from a
    /// peer that is not an administrator).
    Decision {
        /// From the request.
        request_id: u64,
        /// Allow or deny.
        decision: Decision,
    },
    /// The ticket's value was refunded.
    Released {
        /// From the request.
        request_id: u64,
        /// The key whose daily total went down.
        key_id: KeyId,
        /// How much went back (0 when the order's UTC day is over).
        refunded_value: f64,
    },
    /// A new key; the plaintext is in this message and nowhere else.
    KeyGenerated {
        /// From the request.
        request_id: u64,
        /// Show once, then forget.
        plaintext: Token,
        /// What keys.json now holds for it.
        #[serde(with = "crate::codec::record::key_record")]
        record: KeyRecord,
        /// The keys file it was written to.
        stored_in: String,
    },
    /// Every key record.
    Keys {
        /// From the request.
        request_id: u64,
        /// In keys.json order.
        #[serde(with = "crate::codec::record::key_records")]
        keys: Vec<KeyRecord>,
    },
    /// The key is gone.
    KeyRevoked {
        /// From the request.
        request_id: u64,
        /// Which key.
        id: KeyId,
    },
    /// The key's new binding.
    KeyBound {
        /// From the request.
        request_id: u64,
        /// The record after the change.
        #[serde(with = "crate::codec::record::key_record")]
        record: KeyRecord,
    },
    /// keys.json was read again.
    Reloaded {
        /// From the request.
        request_id: u64,
        /// How many keys are now in service.
        keys_loaded: u32,
    },
    /// A key's consumption.
    Usage(Usage),
    /// The request failed; see `kind`.
    Error {
        /// From the request (0 when it could not be read).
        request_id: u64,
        /// What went wrong.
        kind: ErrorKind,
        /// One line for a person.
        message: String,
    },
    /// One page of a listing: as many records as fit in a frame.
    KeysPage {
        /// From the request.
        request_id: u64,
        /// The listing to continue with.
        listing: u64,
        /// Where this page starts in the listing.
        offset: u32,
        /// How many records the whole listing has; it is complete once
        /// `offset + keys.len() == total`.
        total: u32,
        /// The records, in keys.json order.
        #[serde(with = "crate::codec::record::key_records")]
        keys: Vec<KeyRecord>,
    },
    /// A key's new plaintext (protocol version 3); the plaintext is in this message and
    /// nowhere else.
    KeyRotated {
        /// From the request.
        request_id: u64,
        /// The key.
        id: KeyId,
        /// Show once, then forget.
        plaintext: Token,
        /// Until when the old plaintext is still accepted (`None`: not at all).
        previous_valid_until: Option<Timestamp>,
        /// The keys file it was written to.
        stored_in: String,
    },
    /// The keys asked about that keys.json holds, in the order asked (protocol version 3).
    KeyActivity {
        /// From the request.
        request_id: u64,
        /// One entry a key.
        keys: Vec<KeyActivity>,
    },
    /// The halts in force after a Halt or Resume, or as listed (protocol version 5).
    Halts {
        /// From the request.
        request_id: u64,
        /// In keys.json's order.
        #[serde(with = "crate::codec::record::halts")]
        halts: Vec<Halt>,
    },
    /// A chunk of an import was received (protocol version 5); after the last one, what
    /// the import did.
    KeysImported {
        /// From the request.
        request_id: u64,
        /// The import to continue with.
        import: u64,
        /// Bytes of the file received so far: the offset of the next chunk.
        next_offset: u64,
        /// `Some` once the last chunk was received and the file loaded into the store.
        done: Option<Imported>,
    },
    /// A chunk of the key store written as a keys.json (protocol version 5).
    KeysExport {
        /// From the request.
        request_id: u64,
        /// The export to continue with.
        export: u64,
        /// Where this chunk starts, in bytes.
        offset: u64,
        /// The length of the whole text, in bytes; the export is complete once
        /// `offset + chunk.len() == total`.
        total: u64,
        /// The next bytes of the text (at most [`MAX_KEYS_CHUNK`], cut at a character
        /// boundary).
        chunk: String,
    },
    /// What an [`OrderEvent`] came to (protocol version 6).
    OrderEventDone {
        /// From the request.
        request_id: u64,
        /// Applied, a duplicate, or refused.
        outcome: OrderEventOutcome,
    },
}

impl Response {
    /// The request id this answers (0 for HelloOk).
    pub fn request_id(&self) -> u64 {
        match self {
            Response::HelloOk { .. } => 0,
            Response::Usage(u) => u.request_id,
            Response::Decision { request_id, .. }
            | Response::Released { request_id, .. }
            | Response::KeyGenerated { request_id, .. }
            | Response::Keys { request_id, .. }
            | Response::KeyRevoked { request_id, .. }
            | Response::KeyBound { request_id, .. }
            | Response::Reloaded { request_id, .. }
            | Response::Error { request_id, .. }
            | Response::KeysPage { request_id, .. }
            | Response::KeyRotated { request_id, .. }
            | Response::KeyActivity { request_id, .. }
            | Response::Halts { request_id, .. }
            | Response::KeysImported { request_id, .. }
            | Response::KeysExport { request_id, .. }
            | Response::OrderEventDone { request_id, .. } => *request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chunks_end_at_character_boundaries_within_the_limit() {
        let text = "é".repeat(MAX_KEYS_CHUNK); // two bytes a character
        assert_eq!(keys_chunk_end(&text, 0), MAX_KEYS_CHUNK);
        let odd = format!("a{text}");
        let end = keys_chunk_end(&odd, 0);
        assert_eq!(end, MAX_KEYS_CHUNK - 1, "not inside a character");
        assert!(odd.is_char_boundary(end));
        assert_eq!(keys_chunk_end("short", 0), 5);
        assert_eq!(keys_chunk_end("short", 5), 5);
    }
}
