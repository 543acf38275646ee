//! What a peer of an older protocol version is told for a decision its version cannot
//! carry: every message as the newest version writes it, except a Decision with a reason,
//! figures or a scope that version does not have (an index it does not know makes the
//! frame malformed, and it would close its connection).
//!
//! - Version 5 added one reason, `halted` (16): a peer of version 4 or older is told
//!   `scope`, which it already does the right thing with — a 403, a push held back, a
//!   session kept open — and the detail still says that trading is halted, by whom and why.
//! - Version 6 added five reasons, each told to an older peer as the nearest it has, with
//!   the same detail and no figures (its figures are of a kind it cannot read):
//!   `account` → `scope` (the key may not use that account, as it may not use a scope),
//!   `price_collar` → `order_value` (a limit on this order's own figures),
//!   `open_orders` → `rate` (too many orders now; fewer later),
//!   `position` → `daily_value` (a cap on a running total of value),
//!   `duplicate` → `rate` (the same order too soon). Each is a refusal in the older
//!   reason's class as well, so an older gateway answers it with the status it gives that
//!   reason. An Allow for an endpoint that needs the scope `admin` is told with no scope.

use std::borrow::Cow;

use super::CodecError;
use crate::key::Scope;
use crate::message::{Decision, LimitFigures, Reason, Response};

/// The first protocol version that has [`Reason::Halted`].
const HALTED_SINCE: u16 = 5;

/// The first protocol version with the pre-trade risk reasons, figures and scope.
const RISK_SINCE: u16 = 6;

/// The reason a peer of protocol `version` is told for `reason`: the reason itself, or,
/// when its version does not have it, the nearest one it has (module documentation). What
/// a session of that peer remembers is this reason, not the daemon's.
pub fn reason_told_in(reason: Reason, version: u16) -> Reason {
    match reason {
        Reason::Halted if version < HALTED_SINCE => Reason::Scope,
        Reason::Account if version < RISK_SINCE => Reason::Scope,
        Reason::PriceCollar if version < RISK_SINCE => Reason::OrderValue,
        Reason::OpenOrders if version < RISK_SINCE => Reason::Rate,
        Reason::Position if version < RISK_SINCE => Reason::DailyValue,
        Reason::Duplicate if version < RISK_SINCE => Reason::Rate,
        other => other,
    }
}

/// Whether a peer of `version` can read `figures`.
fn figures_in(figures: &LimitFigures, version: u16) -> bool {
    match figures {
        LimitFigures::Rate { .. }
        | LimitFigures::DailyValue { .. }
        | LimitFigures::OrderValue { .. }
        | LimitFigures::Hours { .. } => true,
        LimitFigures::PriceCollar { .. }
        | LimitFigures::OpenOrders { .. }
        | LimitFigures::Position { .. }
        | LimitFigures::Duplicate { .. } => version >= RISK_SINCE,
    }
}

/// Whether a peer of `version` can read `scope`.
fn scope_in(scope: Scope, version: u16) -> bool {
    scope != Scope::Admin || version >= RISK_SINCE
}

/// `resp` as a peer of `version` may receive it: as it is, or (a Decision with a reason,
/// figures or scope that version does not have) as it is told instead.
pub(super) fn told_in(resp: &Response, version: u16) -> Cow<'_, Response> {
    match resp {
        Response::Decision {
            request_id,
            decision:
                Decision::Deny {
                    reason,
                    key_id,
                    detail,
                    retry_after_ms,
                    limit,
                },
        } if reason_told_in(*reason, version) != *reason
            || limit.as_ref().is_some_and(|f| !figures_in(f, version)) =>
        {
            let told = reason_told_in(*reason, version);
            Cow::Owned(Response::Decision {
                request_id: *request_id,
                decision: Decision::Deny {
                    reason: told,
                    key_id: key_id.clone(),
                    detail: detail.clone(),
                    retry_after_ms: *retry_after_ms,
                    limit: limit.clone().filter(|f| figures_in(f, version)),
                },
            })
        }
        Response::Decision {
            request_id,
            decision:
                Decision::Allow {
                    key_id,
                    scope: Some(scope),
                    ticket,
                },
        } if !scope_in(*scope, version) => Cow::Owned(Response::Decision {
            request_id: *request_id,
            decision: Decision::Allow {
                key_id: key_id.clone(),
                scope: None,
                ticket: *ticket,
            },
        }),
        other => Cow::Borrowed(other),
    }
}

/// `resp`, read from a peer of `version`, unless it holds a reason, figures or a scope
/// that version does not have: a peer of version 4 never writes `halted`, so such a body
/// is malformed.
pub(super) fn read_in(resp: Response, version: u16) -> Result<Response, CodecError> {
    let malformed = |what: String| {
        Err(CodecError::Malformed(format!(
            "{what} in a message of protocol version {version}, which does not have it"
        )))
    };
    match &resp {
        Response::Decision {
            decision: Decision::Deny { reason, limit, .. },
            ..
        } => {
            if reason_told_in(*reason, version) != *reason {
                return malformed(format!("reason {reason}"));
            }
            if limit.as_ref().is_some_and(|f| !figures_in(f, version)) {
                return malformed("figures of a version-6 limit".into());
            }
        }
        Response::Decision {
            decision: Decision::Allow { scope: Some(s), .. },
            ..
        } if !scope_in(*s, version) => return malformed(format!("scope {s}")),
        _ => {}
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_told_as_itself_from_its_version_on_and_otherwise_as_the_nearest() {
        let since = |r: Reason| match r {
            Reason::Halted => 5,
            Reason::Account
            | Reason::PriceCollar
            | Reason::OpenOrders
            | Reason::Position
            | Reason::Duplicate => 6,
            _ => 1,
        };
        for reason in Reason::ALL {
            for version in 1..=6 {
                let told = reason_told_in(reason, version);
                if version >= since(reason) {
                    assert_eq!(told, reason, "{reason} in version {version}");
                } else {
                    assert!(since(told) <= version, "{reason} told {told} in {version}");
                    assert_ne!(told, reason);
                }
            }
        }
        assert_eq!(reason_told_in(Reason::Halted, 4), Reason::Scope);
        assert_eq!(reason_told_in(Reason::Account, 5), Reason::Scope);
        assert_eq!(reason_told_in(Reason::PriceCollar, 5), Reason::OrderValue);
        assert_eq!(reason_told_in(Reason::OpenOrders, 5), Reason::Rate);
        assert_eq!(reason_told_in(Reason::Position, 5), Reason::DailyValue);
        assert_eq!(reason_told_in(Reason::Duplicate, 5), Reason::Rate);
    }

    #[test]
    fn a_version_6_deny_is_told_to_an_older_peer_without_its_figures() {
        let resp = Response::Decision {
            request_id: 3,
            decision: Decision::Deny {
                reason: Reason::OpenOrders,
                key_id: None,
                detail: "10 orders open; max_open_orders is 10".into(),
                retry_after_ms: None,
                limit: Some(LimitFigures::OpenOrders {
                    open_orders: 10,
                    max_open_orders: 10,
                }),
            },
        };
        let told = told_in(&resp, 5).into_owned();
        let Response::Decision { decision, .. } = &told else {
            panic!()
        };
        assert_eq!(decision.reason(), Some(Reason::Rate));
        assert_eq!(decision.limit(), None);
        assert!(read_in(told.clone(), 5).is_ok());
        assert!(read_in(resp.clone(), 5).is_err());
        assert_eq!(told_in(&resp, 6).into_owned(), resp);
    }
}
