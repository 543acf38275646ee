//! Order events: what became of an allowed order, applied by the ledger store and audited
//! in one commit before the answer, as a release is.

use std::time::{Duration, Instant};

use futu_auth_proto::{ErrorKind, OrderEvent, OrderEventOutcome, OrderEventRefusal, Response};
use futu_auth_rules::ledger::EventApplied;

use super::Authd;
use crate::audit::{AuditEvent, AuditKey, AuditRecord, Kind, Outcome};
use crate::metrics::EventOutcome;
use crate::peer::Peer;

/// What an event came to, as its record and its answer tell it.
pub(super) type EventResult = Result<EventApplied, (OrderEventRefusal, String)>;

impl Authd {
    /// Applies an order event: the ledger change and its audit record in one commit. A
    /// ticket is the ledger's number encrypted under its key, as for Release: a ticket
    /// not handed out by this ledger names no order and is refused `unknown_ticket`.
    pub(super) async fn order_event(&self, e: OrderEvent, peer: Peer, received: Instant) -> Response {
        let now = self.clock.load().now();
        let mut commit = self.commit.begin().await;
        let done = self.ledger.order_event(&now, &e, commit.mark(1)).await;
        if let Err(err) = &done {
            self.commit.ledger_written(Some(err));
        }
        let (mut result, mut failed) = match &done {
            Ok(d) => (d.result.clone(), None),
            Err(err) => (
                Err((OrderEventRefusal::NotSupported, String::new())),
                Some(format!("the event was not applied: {err}")),
            ),
        };
        let mut bytes = Vec::new();
        order_event_record(&e, &result, failed.as_deref(), peer, received.elapsed()).write_json(&mut bytes);
        if let Err(err) = commit.write_records(&bytes) {
            if let Ok(d) = &done {
                if d.result.is_ok() {
                    self.ledger.cancel_event(d).await;
                    result = Err((OrderEventRefusal::NotSupported, String::new()));
                    failed = Some(format!(
                        "the event was not applied: the audit trail could not be written: {err}"
                    ));
                }
            }
        }
        self.ledger.maintain();
        drop(commit);
        let rec = order_event_record(&e, &result, failed.as_deref(), peer, received.elapsed());
        self.metrics.order_event(
            e.kind,
            match (&failed, &result) {
                (Some(_), _) => EventOutcome::Internal,
                (None, Ok(EventApplied::Applied { .. })) => EventOutcome::Applied,
                (None, Ok(EventApplied::Duplicate { .. })) => EventOutcome::Duplicate,
                (None, Err((reason, _))) => EventOutcome::Refused(*reason),
            },
        );
        let resp = match (failed, result) {
            (Some(message), _) => Response::Error {
                request_id: e.request_id,
                kind: ErrorKind::Internal,
                message,
            },
            (None, Ok(EventApplied::Applied { key_id, released })) => Response::OrderEventDone {
                request_id: e.request_id,
                outcome: OrderEventOutcome::Applied {
                    key_id,
                    refunded_value: released.map_or(0.0, |r| r.refunded.as_f64()),
                },
            },
            (None, Ok(EventApplied::Duplicate { key_id })) => Response::OrderEventDone {
                request_id: e.request_id,
                outcome: OrderEventOutcome::Duplicate { key_id },
            },
            (None, Err((reason, message))) => Response::OrderEventDone {
                request_id: e.request_id,
                outcome: OrderEventOutcome::Refused { reason, message },
            },
        };
        self.journald(rec).await;
        resp
    }
}

/// The audit record of an order event: the order's key and what the event did, or why it
/// was refused (`failed`: the daemon failed, an error `internal`).
pub(super) fn order_event_record(
    e: &OrderEvent,
    result: &EventResult,
    failed: Option<&str>,
    peer: Peer,
    latency: Duration,
) -> AuditRecord {
    let what = match (e.filled_qty, e.fill_price) {
        (Some(q), Some(p)) => format!("{} {q} at {p}", e.kind),
        _ => e.kind.to_string(),
    };
    let outcome = match (failed, result) {
        (None, Ok(_)) => Outcome::Allow,
        _ => Outcome::Error,
    };
    let mut rec = AuditRecord::new(Kind::OrderEvent, "OrderEvent", outcome, e.request_id, peer);
    rec.ticket = Some(e.ticket);
    rec.event = Some(AuditEvent::of(e));
    rec.latency_us = latency.as_micros() as u64;
    if failed.is_some() {
        rec.error = Some(ErrorKind::Internal);
        rec.detail = Some(what);
        return rec;
    }
    match result {
        Ok(EventApplied::Applied { key_id, released }) => {
            rec.key_id = Some(AuditKey::Key(key_id.clone()));
            rec.detail = Some(match released {
                Some(r) => format!("{what}: applied, refunded {}", r.refunded.as_f64()),
                None => format!("{what}: applied"),
            });
        }
        Ok(EventApplied::Duplicate { key_id }) => {
            rec.key_id = Some(AuditKey::Key(key_id.clone()));
            rec.detail = Some(format!("{what}: duplicate"));
        }
        Err((reason, _)) => {
            if *reason == OrderEventRefusal::UnknownTicket {
                rec.error = Some(ErrorKind::UnknownTicket);
            }
            rec.detail = Some(format!("{what}: refused {}", reason.as_str()));
        }
    }
    rec
}
