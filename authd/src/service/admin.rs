//! Admin requests: making, listing, binding, rotating and revoking keys, halting and
//! resuming trading, reloading keys.json and reporting usage — for administrators only
//! (SO_PEERCRED, [`crate::peer::AdminPolicy`]), each audited before it is answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_keys::store::StoreError;
use futu_auth_proto::codec::{self, Wire};
use futu_auth_proto::{
    Admin, AdminOp, Decision, ErrorKind, Halt, KeyId, KeyRecord, KeySpec, Reason, Response, Usage,
};
use futu_auth_rules::money::Money;
use jiff::Timestamp;

use super::kept::{no_random, Kept};
use super::keyring::KeyRingError;
use super::{transfer, Authd};
use crate::audit::{AuditKey, AuditRecord, Kind, Outcome};
use crate::peer::Peer;

/// Room for a page's records in a frame, after the page's own fields.
const PAGE_BUDGET: usize = futu_auth_proto::MAX_FRAME_LEN - 64;

/// keys.json as read for the listings being paged through
/// ([`futu_auth_proto::Request::ListKeysPage`]), so a listing of any size reads the store
/// once and its pages agree with each other.
pub(super) type Listings = Kept<Arc<Vec<KeyRecord>>>;

impl Authd {
    /// Answers an admin request from `peer`, or refuses it `forbidden`.
    pub(super) async fn admin(self: &Arc<Self>, admin: Admin, peer: Peer, received: Instant) -> Response {
        let Admin { request_id, op } = admin;
        let name = op.name();
        let target = op.target().map(AuditKey::from);
        if !self.admin.is_admin(&peer) {
            self.metrics.admin(name, Outcome::Reject);
            let detail = format!("{name} needs an administrator; uid {} is not one", peer.uid);
            let rec = forbidden_record(name, target, request_id, &detail, peer, received.elapsed());
            self.write_audit(rec).await;
            return Response::Decision {
                request_id,
                decision: Decision::Deny {
                    reason: Reason::Forbidden,
                    key_id: None,
                    detail,
                    retry_after_ms: None,
                    limit: None,
                },
            };
        }
        // A halt made (false) or lifted (true): the audit record's detail says which.
        let mut halt: Option<(bool, Halt)> = None;
        let resp = match op {
            AdminOp::GenKey(spec) => self.gen_key(request_id, spec).await,
            // keys.json itself, as futucli shows it when the daemon is down.
            AdminOp::ListKeys => match self.keys.read_file().await {
                Ok(file) => Response::Keys {
                    request_id,
                    keys: file.keys,
                },
                Err(e) => keyring_error(request_id, e),
            },
            AdminOp::RevokeKey(id) => {
                let revoked = id.clone();
                match self.keys.update(move |f| f.revoke(&revoked)).await {
                    Ok(_) => Response::KeyRevoked { request_id, id },
                    Err(e) => keyring_error(request_id, e),
                }
            }
            AdminOp::BindKey(id, op) => match self.keys.update(move |f| f.bind(&id, op)).await {
                Ok(record) => Response::KeyBound { request_id, record },
                Err(e) => keyring_error(request_id, e),
            },
            AdminOp::Reload => match self.reload("admin request").await {
                Ok(n) => Response::Reloaded {
                    request_id,
                    keys_loaded: n as u32,
                },
                Err(e) => error(request_id, ErrorKind::Store, e.to_string()),
            },
            AdminOp::Usage(id) => self.usage(request_id, &id).await,
            AdminOp::ListKeysPage { listing, offset } => self.list_page(request_id, listing, offset).await,
            AdminOp::RotateKey { id, overlap_secs } => self.rotate_key(request_id, id, overlap_secs).await,
            AdminOp::KeyActivity(ids) => self.key_activity(request_id, ids).await,
            AdminOp::Halt { target, reason } => {
                let (resp, made) = self.halt(request_id, target, reason, peer).await;
                halt = made.map(|h| (false, h));
                resp
            }
            AdminOp::Resume(target) => {
                let (resp, lifted) = self.resume(request_id, target, peer).await;
                halt = lifted.map(|h| (true, h));
                resp
            }
            AdminOp::ListHalts => self.list_halts(request_id),
            AdminOp::ImportKeys {
                import,
                offset,
                chunk,
                last,
                replace,
            } => {
                let part = transfer::Part {
                    import,
                    offset,
                    chunk,
                    last,
                    replace,
                };
                self.import_keys(request_id, part).await
            }
            AdminOp::ExportKeys { export, offset } => self.export_keys(request_id, export, offset).await,
        };
        let mut rec = admin_record(name, target, request_id, &resp, peer, received.elapsed());
        if let Some((lifted, h)) = halt {
            rec.detail = Some(halt_detail(lifted, &h));
        }
        self.metrics.admin(name, rec.outcome);
        self.write_audit(rec).await;
        resp
    }

    async fn gen_key(&self, request_id: u64, spec: KeySpec) -> Response {
        if spec.scopes.is_empty() {
            return error(
                request_id,
                ErrorKind::InvalidSpec,
                "a key needs at least one scope".into(),
            );
        }
        let now = Timestamp::now();
        if spec.expires_at.is_some_and(|t| t <= now) {
            return error(
                request_id,
                ErrorKind::InvalidSpec,
                "expires_at is in the past".into(),
            );
        }
        let stored_in = self.keys.stored_in();
        match self.keys.update(move |f| f.gen_key(spec, now)).await {
            Ok((plaintext, record)) => Response::KeyGenerated {
                request_id,
                plaintext,
                record,
                stored_in,
            },
            Err(e) => keyring_error(request_id, e),
        }
    }

    /// One page of a listing; `listing` 0 starts one by reading keys.json.
    async fn list_page(&self, request_id: u64, listing: u64, offset: u32) -> Response {
        let (listing, keys) =
            if listing == 0 {
                let keys = match self.keys.read_file().await {
                    Ok(file) => Arc::new(file.keys),
                    Err(e) => return keyring_error(request_id, e),
                };
                match self.listings.start(Arc::clone(&keys)) {
                    Ok(id) => (id, keys),
                    Err(e) => return no_random(request_id, e),
                }
            } else {
                match self.listings.with(listing, |keys| Arc::clone(keys)) {
                    Some(keys) => (listing, keys),
                    None => return error(
                        request_id,
                        ErrorKind::ListingExpired,
                        "this listing is gone (unused for a minute, or replaced by newer ones); start again"
                            .into(),
                    ),
                }
            };
        let start = (offset as usize).min(keys.len());
        let mut size = 0;
        let mut page = Vec::new();
        for record in &keys[start..] {
            // A record's size in a frame, every field written (its keys.json form omits some).
            let len = codec::encode_message(&Wire(record)).map_or(usize::MAX, |b| b.len());
            if size + len > PAGE_BUDGET {
                if page.is_empty() {
                    return error(
                        request_id,
                        ErrorKind::Internal,
                        format!(
                            "key {:?} has a record too large for a frame; read it with futucli export-keys",
                            record.id.as_str(),
                        ),
                    );
                }
                break;
            }
            size += len;
            page.push(record.clone());
        }
        if start + page.len() == keys.len() {
            self.listings.finish(listing);
        }
        Response::KeysPage {
            request_id,
            listing,
            offset: start as u32,
            total: keys.len() as u32,
            keys: page,
        }
    }

    async fn usage(&self, request_id: u64, id: &KeyId) -> Response {
        let (max_daily_value, max_orders_per_minute, max_open_orders, max_position_value) = {
            let snapshot = self.keys.snapshot();
            let Some(key) = snapshot.by_id(id.as_str()) else {
                return error(
                    request_id,
                    ErrorKind::UnknownKey,
                    format!("no key with id {:?}", id.as_str()),
                );
            };
            (
                key.max_daily_value,
                key.max_orders_per_minute,
                key.max_open_orders(),
                key.max_position_value(),
            )
        };
        let now = self.clock.load().now();
        let (orders, used) = match self.ledger.usage(&now, id).await {
            Ok(f) => f,
            Err(e) => return error(request_id, ErrorKind::Internal, e.to_string()),
        };
        let book = match self.ledger.order_book(id).await {
            Ok(b) => b,
            Err(e) => return error(request_id, ErrorKind::Internal, e.to_string()),
        };
        Response::Usage(Usage {
            request_id,
            id: id.clone(),
            day: now.utc.strftime("%Y-%m-%d").to_string(),
            daily_value_used: used.as_f64(),
            max_daily_value: max_daily_value.map(Money::as_f64),
            orders_last_minute: orders,
            max_orders_per_minute,
            open_orders: book.open_orders,
            max_open_orders,
            positions: book.positions,
            max_position_value: max_position_value.map(Money::as_f64),
        })
    }

    /// Writes an admin request's record to the audit file (before its answer is sent)
    /// and queues journald's copy.
    pub(super) async fn write_audit(&self, rec: AuditRecord) {
        let mut bytes = Vec::new();
        rec.write_json(&mut bytes);
        if let Err(e) = self.commit.begin().await.write_records(&bytes) {
            tracing::error!(
                "the audit record of {} {} was not written: {e}",
                rec.endpoint,
                rec.request_id
            );
        }
        self.journald(rec).await;
    }
}

/// The audit record of admin request `name` (about key `target`) refused to `peer`, who
/// is not an administrator.
pub(super) fn forbidden_record(
    name: &str,
    target: Option<AuditKey>,
    request_id: u64,
    detail: &str,
    peer: Peer,
    latency: Duration,
) -> AuditRecord {
    let mut rec =
        AuditRecord::new(Kind::Admin, name, Outcome::Reject, request_id, peer).reason(Reason::Forbidden);
    rec.key_id = target;
    rec.detail = Some(detail.to_owned());
    rec.latency_us = latency.as_micros() as u64;
    rec
}

/// The audit record of admin request `name` (about key `target`), answered `resp`: done,
/// or the error's kind and message.
pub(super) fn admin_record(
    name: &str,
    target: Option<AuditKey>,
    request_id: u64,
    resp: &Response,
    peer: Peer,
    latency: Duration,
) -> AuditRecord {
    // Every answer but an error is the request done; a new kind of answer is sorted here
    // before it compiles.
    let outcome = match resp {
        Response::Error { .. } => Outcome::Error,
        Response::HelloOk { .. }
        | Response::Decision { .. }
        | Response::Released { .. }
        | Response::KeyGenerated { .. }
        | Response::Keys { .. }
        | Response::KeyRevoked { .. }
        | Response::KeyBound { .. }
        | Response::Reloaded { .. }
        | Response::Usage(_)
        | Response::KeysPage { .. }
        | Response::KeyRotated { .. }
        | Response::OrderEventDone { .. }
        | Response::KeyActivity { .. }
        | Response::Halts { .. }
        | Response::KeysImported { .. }
        | Response::KeysExport { .. } => Outcome::Allow,
    };
    let mut rec = AuditRecord::new(Kind::Admin, name, outcome, request_id, peer);
    rec.key_id = target;
    if let Response::Error { kind, message, .. } = resp {
        rec.error = Some(*kind);
        rec.detail = Some(message.clone());
    }
    rec.latency_us = latency.as_micros() as u64;
    rec
}

/// The detail of a Halt's or Resume's audit record: the halt made, or `lifted: ` and the
/// halt lifted (`trading halted for key bot by uid 1000 (alice) at …: fat finger`).
pub(super) fn halt_detail(lifted: bool, halt: &Halt) -> String {
    if lifted {
        format!("lifted: {halt}")
    } else {
        halt.to_string()
    }
}

pub(super) fn error(request_id: u64, kind: ErrorKind, message: String) -> Response {
    Response::Error {
        request_id,
        kind,
        message,
    }
}

/// The error answer of a key ring change that failed.
pub(super) fn keyring_error(request_id: u64, e: KeyRingError) -> Response {
    let kind = match &e {
        KeyRingError::Keys(StoreError::DuplicateKey(_) | StoreError::AlreadyPresent(_)) => {
            ErrorKind::DuplicateKey
        }
        KeyRingError::Keys(
            StoreError::OverlapTooLong(_) | StoreError::ImportConflict(_) | StoreError::NotHalted(_),
        ) => ErrorKind::InvalidSpec,
        KeyRingError::Keys(StoreError::UnknownKey(_)) => ErrorKind::UnknownKey,
        KeyRingError::Keys(StoreError::Io { .. } | StoreError::Invalid(_)) | KeyRingError::Database(_) => {
            ErrorKind::Store
        }
        KeyRingError::Keys(StoreError::Random(_)) | KeyRingError::Task(_) => ErrorKind::Internal,
    };
    error(request_id, kind, e.to_string())
}
