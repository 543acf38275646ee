//! [`AuthClient`]: one multiplexed connection to futu-authd shared by every caller.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_proto::{
    keys_chunk_end, BindOp, Check, CheckScope, Decision, ErrorKind, Halt, HaltTarget, Iface, Imported,
    KeyActivity, KeyId, KeyRecord, KeySpec, Order, OrderEvent, OrderEventKind, OrderEventOutcome, Reason,
    Request, Response, Scope, SessionCheck, SessionOutcome, SessionSubject, Token, Usage, MAX_ACTIVITY_IDS,
};
use jiff::Timestamp;

use crate::conn::{self, Conn, Counters};
use crate::error::ClientError;
use crate::sessions::{SessionBook, SessionSlot, SessionsFull, DEFAULT_MAX_SESSIONS_PER_KEY};

/// The default per-call deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(50);

/// The longest wait between reconnection attempts while the daemon is away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

const FIRST_BACKOFF: Duration = Duration::from_millis(10);

struct State {
    conn: Option<Arc<Conn>>,
    /// When the next connection attempt may be made, after failures.
    retry_at: Option<Instant>,
    backoff: Duration,
}

struct Inner {
    path: PathBuf,
    client_name: String,
    deadline: Duration,
    /// Request ids, the connection's own (late releases) included.
    next_id: Arc<AtomicU64>,
    state: tokio::sync::Mutex<State>,
    /// What the connections count, over the client's life.
    counters: Arc<Counters>,
    /// The long-lived sessions each key holds through this client.
    sessions: Arc<SessionBook>,
}

/// What a gateway knows of a request beyond its key, endpoint and order (protocol version
/// 6), for [`AuthClient::check_in`]:
///
/// * `acc_id` — the broker account an order or an account read is for (Futu OpenD's
///   `TrdHeader.accID`). A key with `allowed_acc_ids` is refused `account` for an order or
///   account read that names none, or another.
/// * `ref_price` — the gateway's reference price for the order's symbol, its last quote.
///   A key with `max_price_deviation_pct` is refused `price_collar` for a limit price
///   further from it, or when there is none. Only with an order: a read carrying one is
///   `bad_order`.
///
/// Both `None` ([`CheckContext::default`]) is the check of protocol version 5, which an
/// older daemon takes too; a daemon older than version 6 cannot be sent either (the call
/// fails before anything is sent: fail closed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckContext {
    /// The broker account the request is for.
    pub acc_id: Option<u64>,
    /// The gateway's reference price for the order's symbol (its last quote).
    pub ref_price: Option<f64>,
}

impl CheckContext {
    /// A request for account `acc_id` (`None`: the request names none).
    pub fn account(acc_id: Option<u64>) -> CheckContext {
        CheckContext {
            acc_id,
            ref_price: None,
        }
    }

    /// With the gateway's reference price for the order's symbol (`None`: it has none).
    pub fn ref_price(self, ref_price: Option<f64>) -> CheckContext {
        CheckContext { ref_price, ..self }
    }

    /// Whether it carries nothing (a check of protocol version 5).
    pub fn is_empty(&self) -> bool {
        self.acc_id.is_none() && self.ref_price.is_none()
    }
}

/// A client of futu-authd for gateway processes.
///
/// Cheap to clone; every clone shares one connection, on which many concurrent callers'
/// requests are pipelined and matched to their answers by request id. Each call has a
/// deadline (50 ms unless set with [`Builder::deadline`]). When the daemon restarts, the
/// next call reconnects, with a backoff between failed attempts (10 ms doubling to 1 s).
///
/// **Fail closed:** every `Err` — the daemon not reachable, a timeout, a broken
/// connection, a protocol error — must be treated by the caller as a deny.
#[derive(Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient")
            .field("path", &self.inner.path)
            .field("deadline", &self.inner.deadline)
            .finish()
    }
}

/// Settings for an [`AuthClient`].
#[derive(Debug, Clone)]
pub struct Builder {
    path: PathBuf,
    client_name: String,
    deadline: Duration,
    max_sessions_per_key: usize,
}

impl Builder {
    /// The name sent in Hello (for the daemon's logs); default `futu-auth-client`.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// The deadline of each call, connection included.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The most long-lived sessions (WebSocket connections, MCP sessions) one key may
    /// hold at once through this client and its clones, every front-end together;
    /// default [`DEFAULT_MAX_SESSIONS_PER_KEY`]. The HTTP layer refuses the next one
    /// (429, reason `sessions`).
    pub fn max_sessions_per_key(mut self, max: usize) -> Self {
        self.max_sessions_per_key = max;
        self
    }

    /// A client that connects on its first call.
    pub fn build(self) -> AuthClient {
        AuthClient {
            inner: Arc::new(Inner {
                path: self.path,
                client_name: self.client_name,
                deadline: self.deadline,
                next_id: Arc::new(AtomicU64::new(1)),
                state: tokio::sync::Mutex::new(State {
                    conn: None,
                    retry_at: None,
                    backoff: FIRST_BACKOFF,
                }),
                counters: Arc::default(),
                sessions: Arc::new(SessionBook::new(self.max_sessions_per_key)),
            }),
        }
    }

    /// Connects now (Hello included), within the deadline.
    pub async fn connect(self) -> Result<AuthClient, ClientError> {
        let client = self.build();
        let deadline = client.inner.deadline;
        tokio::time::timeout(deadline, client.connection())
            .await
            .map_err(|_| ClientError::Timeout(deadline))??;
        Ok(client)
    }
}

impl AuthClient {
    /// Settings for a client of the daemon at `socket_path`.
    pub fn builder(socket_path: impl AsRef<Path>) -> Builder {
        Builder {
            path: socket_path.as_ref().to_owned(),
            client_name: "futu-auth-client".into(),
            deadline: DEFAULT_DEADLINE,
            max_sessions_per_key: DEFAULT_MAX_SESSIONS_PER_KEY,
        }
    }

    /// Connects to the daemon at `socket_path` with the default settings.
    pub async fn connect(socket_path: impl AsRef<Path>) -> Result<AuthClient, ClientError> {
        AuthClient::builder(socket_path).connect().await
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    /// How many orders were allowed after their caller gave up (the deadline passed, or
    /// the caller went away) and were therefore released, over the client's life.
    pub fn late_releases(&self) -> u64 {
        self.inner.counters.late_releases.load(Ordering::Relaxed)
    }

    /// Long-lived sessions open through this client now, every key together.
    pub fn sessions_open(&self) -> usize {
        self.inner.sessions.total()
    }

    /// Long-lived sessions `key_id` holds through this client now.
    pub fn sessions_of(&self, key_id: &KeyId) -> usize {
        self.inner.sessions.of(key_id)
    }

    /// A place for one more session of `key_id`, unless it holds the most it may.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // sessions are the HTTP layer's
    pub(crate) fn open_session_slot(
        &self,
        key_id: &KeyId,
        token: &Token,
    ) -> Result<SessionSlot, SessionsFull> {
        self.inner.sessions.open(key_id, token)
    }

    /// The key of `token` when it is known to hold the most sessions it may (see
    /// [`SessionBook::full_for`]).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn sessions_full_for(&self, token: &Token) -> Option<(KeyId, SessionsFull)> {
        self.inner.sessions.full_for(token)
    }

    /// May `token` call `endpoint` (with `order`, for order writes)? Consumes the key's
    /// rate slot and daily value when an order is allowed.
    pub async fn check(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
    ) -> Result<Decision, ClientError> {
        self.check_with(token, iface, endpoint, order, false).await
    }

    /// Like [`AuthClient::check`], but decides without consuming anything.
    pub async fn check_dry_run(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
    ) -> Result<Decision, ClientError> {
        self.check_with(token, iface, endpoint, order, true).await
    }

    /// Like [`AuthClient::check`], with what the gateway knows beyond the order (protocol
    /// version 6): the broker account the request names and the reference price of the
    /// order's symbol, for keys with `allowed_acc_ids` or a price collar.
    pub async fn check_in(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
        context: CheckContext,
    ) -> Result<Decision, ClientError> {
        self.check_full(token, iface, endpoint, order, context, false)
            .await
    }

    /// Like [`AuthClient::check_in`], but decides without consuming anything.
    pub async fn check_dry_run_in(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
        context: CheckContext,
    ) -> Result<Decision, ClientError> {
        self.check_full(token, iface, endpoint, order, context, true)
            .await
    }

    async fn check_with(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
        dry_run: bool,
    ) -> Result<Decision, ClientError> {
        self.check_full(token, iface, endpoint, order, CheckContext::default(), dry_run)
            .await
    }

    async fn check_full(
        &self,
        token: &Token,
        iface: Iface,
        endpoint: &str,
        order: Option<Order>,
        context: CheckContext,
        dry_run: bool,
    ) -> Result<Decision, ClientError> {
        let resp = self
            .call(|request_id| {
                Request::Check(Check {
                    request_id,
                    token: token.clone(),
                    iface,
                    endpoint: endpoint.to_owned(),
                    order,
                    dry_run,
                    acc_id: context.acc_id,
                    ref_price: context.ref_price,
                })
            })
            .await?;
        decision(resp)
    }

    /// Does `token` hold `scope`? For filtering WebSocket pushes.
    pub async fn check_scope(
        &self,
        token: &Token,
        iface: Iface,
        scope: Scope,
    ) -> Result<Decision, ClientError> {
        let resp = self
            .call(|request_id| {
                Request::CheckScope(CheckScope {
                    request_id,
                    token: token.clone(),
                    iface,
                    scope,
                })
            })
            .await?;
        decision(resp)
    }

    /// A decision a long-lived session asks again and again — may its pushes that need a
    /// scope go out ([`SessionSubject::Pushes`]), is its key still usable
    /// ([`SessionSubject::KeepAlive`]) — audited by the daemon only when its outcome
    /// differs from `previous`, the one the session had before. A daemon older than
    /// protocol version 4 is asked the equivalent `CheckScope` or dry-run check, which it
    /// audits every time.
    pub async fn session_check(
        &self,
        token: &Token,
        iface: Iface,
        subject: SessionSubject,
        previous: SessionOutcome,
    ) -> Result<Decision, ClientError> {
        let asked = self
            .call(|request_id| {
                Request::SessionCheck(SessionCheck {
                    request_id,
                    token: token.clone(),
                    iface,
                    subject,
                    previous,
                })
            })
            .await;
        match (asked, subject) {
            (Err(ClientError::TooOld { .. }), SessionSubject::Pushes { scope, .. }) => {
                self.check_scope(token, iface, scope).await
            }
            (Err(ClientError::TooOld { .. }), SessionSubject::KeepAlive) => {
                self.check_dry_run(token, iface, KEEP_ALIVE, None).await
            }
            (asked, _) => decision(asked?),
        }
    }

    /// Gives back the daily value of an allowed order the broker then rejected; `ticket`
    /// is from the order's Allow. Returns the value refunded.
    pub async fn release(&self, ticket: u64) -> Result<f64, ClientError> {
        match self
            .call(|request_id| Request::Release { request_id, ticket })
            .await?
        {
            Response::Released { refunded_value, .. } => Ok(refunded_value),
            other => Err(unexpected(other)),
        }
    }

    /// Reports what became of an allowed order (protocol version 6): `ticket` is from the
    /// order's Allow; `filled_qty` (the quantity filled so far, in all) and `fill_price`
    /// (their average price) go with `PartiallyFilled` and `Filled` only. Applied once: the
    /// same event again is answered `Duplicate`.
    pub async fn order_event(
        &self,
        ticket: u64,
        kind: OrderEventKind,
        filled_qty: Option<f64>,
        fill_price: Option<f64>,
    ) -> Result<OrderEventOutcome, ClientError> {
        match self
            .call(|request_id| {
                Request::OrderEvent(OrderEvent {
                    request_id,
                    ticket,
                    kind,
                    filled_qty,
                    fill_price,
                })
            })
            .await?
        {
            Response::OrderEventDone { outcome, .. } => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: makes a key; returns its plaintext (show it once), its record and the keys
    /// file it was stored in.
    pub async fn gen_key(&self, spec: KeySpec) -> Result<(Token, KeyRecord, String), ClientError> {
        match self
            .call(|request_id| Request::GenKey { request_id, spec })
            .await?
        {
            Response::KeyGenerated {
                plaintext,
                record,
                stored_in,
                ..
            } => Ok((plaintext, record, stored_in)),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: every key record in keys.json, in its order, however many there are: read
    /// a page (a frame's worth) at a time. A listing that expires under way (another
    /// listing replaced it) is started again, up to three times.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, ClientError> {
        let mut tries = 0;
        'listing: loop {
            let mut keys = Vec::new();
            let mut listing = 0;
            loop {
                let offset = u32::try_from(keys.len()).unwrap_or(u32::MAX);
                let page = self
                    .call(|request_id| Request::ListKeysPage {
                        request_id,
                        listing,
                        offset,
                    })
                    .await;
                match page {
                    Ok(Response::KeysPage {
                        listing: l,
                        offset: at,
                        total,
                        keys: page,
                        ..
                    }) if at == offset => {
                        let empty = page.is_empty();
                        keys.extend(page);
                        if keys.len() >= total as usize {
                            return Ok(keys);
                        }
                        if empty {
                            return Err(ClientError::Protocol(format!(
                                "an empty page at {offset} of a listing of {total} keys"
                            )));
                        }
                        listing = l;
                    }
                    Ok(other) => return Err(unexpected(other)),
                    Err(ClientError::Refused {
                        kind: ErrorKind::ListingExpired,
                        ..
                    }) if tries < 3 => {
                        tries += 1;
                        continue 'listing;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Admin: removes a key.
    pub async fn revoke_key(&self, id: &KeyId) -> Result<(), ClientError> {
        let id = id.clone();
        match self
            .call(|request_id| Request::RevokeKey { request_id, id })
            .await?
        {
            Response::KeyRevoked { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: changes a key's machine binding; returns the record after the change.
    pub async fn bind_key(&self, id: &KeyId, op: BindOp) -> Result<KeyRecord, ClientError> {
        let id = id.clone();
        match self
            .call(|request_id| Request::BindKey { request_id, id, op })
            .await?
        {
            Response::KeyBound { record, .. } => Ok(record),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: asks the daemon to re-read keys.json; returns the keys now in service.
    pub async fn reload(&self) -> Result<u32, ClientError> {
        match self.call(|request_id| Request::Reload { request_id }).await? {
            Response::Reloaded { keys_loaded, .. } => Ok(keys_loaded),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: gives key `id` a new plaintext, keeping its id, scopes, limits, binding and
    /// counters; the old plaintext is still accepted for `overlap` (whole seconds; never
    /// past the key's expiry; zero: refused at once).
    ///
    /// Needs a daemon of protocol version 3: with an older one this returns
    /// [`ClientError::TooOld`] without sending anything (that daemon could not read the
    /// request).
    pub async fn rotate_key(&self, id: &KeyId, overlap: Duration) -> Result<Rotated, ClientError> {
        let id = id.clone();
        let overlap_secs = overlap.as_secs();
        let resp = self
            .call(|request_id| Request::RotateKey {
                request_id,
                id,
                overlap_secs,
            })
            .await?;
        match resp {
            Response::KeyRotated {
                id,
                plaintext,
                previous_valid_until,
                stored_in,
                ..
            } => Ok(Rotated {
                id,
                plaintext,
                previous_valid_until,
                stored_in,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: a key's consumption today.
    pub async fn usage(&self, id: &KeyId) -> Result<Usage, ClientError> {
        let id = id.clone();
        match self.call(|request_id| Request::Usage { request_id, id }).await? {
            Response::Usage(u) => Ok(u),
            other => Err(unexpected(other)),
        }
    }

    /// Admin (protocol version 3): when each of `ids` (at most
    /// [`MAX_ACTIVITY_IDS`](futu_auth_proto::MAX_ACTIVITY_IDS)) was last allowed a check,
    /// for those the daemon has in service, in the order asked. A daemon that speaks an
    /// older version is not asked: [`ClientError::TooOld`].
    pub async fn key_activity(&self, ids: &[KeyId]) -> Result<Vec<KeyActivity>, ClientError> {
        if ids.len() > MAX_ACTIVITY_IDS {
            return Err(ClientError::Protocol(format!(
                "KeyActivity asks about at most {MAX_ACTIVITY_IDS} keys at a time, not {}",
                ids.len()
            )));
        }
        let ids = ids.to_vec();
        match self
            .call(|request_id| Request::KeyActivity { request_id, ids })
            .await?
        {
            Response::KeyActivity { keys, .. } => Ok(keys),
            other => Err(unexpected(other)),
        }
    }

    /// Admin (protocol version 5): halts trading — orders and unlocks refused `halted` —
    /// for `target`, one key or every key, for `reason` (one line of at most 200
    /// characters); a halt of what is halted already replaces its reason. Returns the halts
    /// in force after it. A daemon that speaks an older version is not asked:
    /// [`ClientError::TooOld`].
    pub async fn halt(&self, target: &HaltTarget, reason: &str) -> Result<Vec<Halt>, ClientError> {
        let target = target.clone();
        let reason = reason.to_owned();
        let resp = self
            .call(|request_id| Request::Halt {
                request_id,
                target,
                reason,
            })
            .await?;
        halts(resp)
    }

    /// Admin (protocol version 5): lifts the halt of `target`; returns the halts still in
    /// force. What is not halted is [`ClientError::Refused`] (`invalid_spec`), saying what
    /// is halted instead. A daemon of an older version: [`ClientError::TooOld`].
    pub async fn resume(&self, target: &HaltTarget) -> Result<Vec<Halt>, ClientError> {
        let target = target.clone();
        halts(
            self.call(|request_id| Request::Resume { request_id, target })
                .await?,
        )
    }

    /// Admin (protocol version 5): the halts of trading in force. A daemon of an older
    /// version: [`ClientError::TooOld`].
    pub async fn halts(&self) -> Result<Vec<Halt>, ClientError> {
        halts(self.call(|request_id| Request::ListHalts { request_id }).await?)
    }

    /// Admin (protocol version 5): loads the keys.json `text` into the daemon's key store,
    /// a chunk at a time; the daemon checks the whole file as `--check-config` does before
    /// it changes anything. An id the store holds already refuses the import
    /// ([`ErrorKind::DuplicateKey`]) unless `replace`. A daemon that speaks an older
    /// version is not asked: [`ClientError::TooOld`].
    pub async fn import_keys(&self, text: &str, replace: bool) -> Result<Imported, ClientError> {
        let mut import = 0;
        let mut start = 0;
        loop {
            let end = keys_chunk_end(text, start);
            let last = end == text.len();
            let chunk = text[start..end].to_owned();
            let offset = start as u64;
            let resp = self
                .call(|request_id| Request::ImportKeys {
                    request_id,
                    import,
                    offset,
                    chunk,
                    last,
                    replace,
                })
                .await?;
            match resp {
                Response::KeysImported { done: Some(done), .. } if last => return Ok(done),
                Response::KeysImported {
                    import: i,
                    next_offset,
                    done: None,
                    ..
                } if !last && next_offset == end as u64 => {
                    import = i;
                    start = end;
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Admin (protocol version 5): the daemon's key store written as a keys.json, read
    /// once and received a chunk at a time. A daemon that speaks an older version is not
    /// asked: [`ClientError::TooOld`].
    pub async fn export_keys(&self) -> Result<String, ClientError> {
        let mut text = String::new();
        let mut export = 0;
        loop {
            let offset = text.len() as u64;
            let resp = self
                .call(|request_id| Request::ExportKeys {
                    request_id,
                    export,
                    offset,
                })
                .await?;
            match resp {
                Response::KeysExport {
                    export: e,
                    offset: at,
                    total,
                    chunk,
                    ..
                } if at == offset => {
                    if chunk.is_empty() && offset < total {
                        return Err(ClientError::Protocol(format!(
                            "an empty chunk at {offset} of an export of {total} bytes"
                        )));
                    }
                    text.push_str(&chunk);
                    if text.len() as u64 >= total {
                        return Ok(text);
                    }
                    export = e;
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Sends one request built with a fresh request id and waits for its answer, within
    /// the deadline. Error responses become [`ClientError::Refused`], a `forbidden` deny of
    /// an admin request [`ClientError::Forbidden`]. A request the connection's protocol
    /// version does not have is not sent: [`ClientError::TooOld`].
    pub async fn call(&self, make: impl FnOnce(u64) -> Request) -> Result<Response, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let req = make(id);
        let admin = req.is_admin();
        let needs = first_version_with(&req);
        let deadline = self.inner.deadline;
        let resp = tokio::time::timeout(deadline, async {
            let conn = self.connection().await?;
            if conn.version < needs {
                return Err(ClientError::TooOld {
                    request: req.name(),
                    needs,
                    speaks: conn.version,
                });
            }
            conn.ask(id, &req).await
        })
        .await
        .map_err(|_| ClientError::Timeout(deadline))??;
        match resp {
            Response::Error { kind, message, .. } => Err(ClientError::Refused { kind, message }),
            Response::Decision {
                decision:
                    Decision::Deny {
                        reason: Reason::Forbidden,
                        detail,
                        ..
                    },
                ..
            } if admin => Err(ClientError::Forbidden(detail)),
            other => Ok(other),
        }
    }

    /// The live connection, made (with Hello) if there is none and the backoff allows.
    async fn connection(&self) -> Result<Arc<Conn>, ClientError> {
        let mut state = self.inner.state.lock().await;
        if let Some(c) = state.conn.as_ref().filter(|c| c.is_alive()) {
            return Ok(Arc::clone(c));
        }
        state.conn = None;
        if let Some(at) = state.retry_at {
            if Instant::now() < at {
                return Err(ClientError::Unavailable {
                    path: self.inner.path.clone(),
                    retry_in: at - Instant::now(),
                });
            }
        }
        let opened = conn::open(
            &self.inner.path,
            &self.inner.client_name,
            Arc::clone(&self.inner.next_id),
            Arc::clone(&self.inner.counters),
        )
        .await;
        match opened {
            Ok(conn) => {
                let conn = Arc::new(conn);
                state.conn = Some(Arc::clone(&conn));
                state.retry_at = None;
                state.backoff = FIRST_BACKOFF;
                Ok(conn)
            }
            Err(e) => {
                state.retry_at = Some(Instant::now() + state.backoff);
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }
}

/// The first protocol version that has `req` (no wildcard: a new request does not compile
/// until it is placed here). A daemon of an older version could not read it.
fn first_version_with(req: &Request) -> u16 {
    match req {
        Request::Hello(_)
        | Request::Check(_)
        | Request::CheckScope(_)
        | Request::Release { .. }
        | Request::GenKey { .. }
        | Request::ListKeys { .. }
        | Request::RevokeKey { .. }
        | Request::BindKey { .. }
        | Request::Reload { .. }
        | Request::Usage { .. }
        | Request::ListKeysPage { .. } => 1,
        Request::RotateKey { .. } | Request::KeyActivity { .. } => 3,
        Request::SessionCheck(_) => 4,
        Request::Halt { .. }
        | Request::Resume { .. }
        | Request::ListHalts { .. }
        | Request::ImportKeys { .. }
        | Request::ExportKeys { .. } => 5,
        Request::OrderEvent(_) => 6,
    }
}

/// The system endpoint a session's key is proved usable with: 1xxx needs no scope, and a
/// dry run consumes nothing.
pub(crate) const KEEP_ALIVE: &str = "KeepAlive";

/// A rotated key's new plaintext, from [`AuthClient::rotate_key`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rotated {
    /// The key.
    pub id: KeyId,
    /// The new plaintext: show it once, then forget it (its `Debug` is redacted).
    pub plaintext: Token,
    /// Until when the old plaintext is still accepted; `None`: it is refused already.
    pub previous_valid_until: Option<Timestamp>,
    /// The keys file the daemon wrote.
    pub stored_in: String,
}

fn halts(resp: Response) -> Result<Vec<Halt>, ClientError> {
    match resp {
        Response::Halts { halts, .. } => Ok(halts),
        other => Err(unexpected(other)),
    }
}

fn decision(resp: Response) -> Result<Decision, ClientError> {
    match resp {
        Response::Decision { decision, .. } => Ok(decision),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn unexpected(resp: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response {resp:?}"))
}
