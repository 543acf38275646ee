//! [`CheckContext`]: what a gateway knows of a request beyond its key, endpoint and order —
//! the broker account it names and the gateway's reference price for the order's symbol —
//! for futu-authd's pre-trade risk limits (protocol version 6); and the one place a check
//! carrying them is sent.

use futu_auth_proto::{Check, Decision, Iface, Order, Request, Response, Token};
use http::Uri;

use super::refusal::{BadRequest, Refusal};
use crate::{AuthClient, ClientError};

/// The query parameter of a read route that names the account (`GET /api/funds?acc_id=…`),
/// read by the layer on [`Endpoint::read`](super::Endpoint::read) routes.
pub const ACC_ID_PARAM: &str = "acc_id";

/// What a check carries beyond its key, endpoint and order (protocol version 6):
///
/// * `acc_id` — the broker account an order or an account read is for (Futu OpenD's
///   `TrdHeader.accID`). A key with `allowed_acc_ids` is refused `account` (403) for an
///   order or account read that names none, or another.
/// * `ref_price` — the gateway's reference price for the order's symbol, its last quote.
///   A key with `max_price_deviation_pct` is refused `price_collar` (403) for a limit
///   price further from it, or when there is none. Only with an order: a read carrying one
///   is `bad_order`.
///
/// Both `None` ([`CheckContext::default`]) is the check of protocol version 5, which an
/// older daemon takes too; a daemon older than version 6 cannot be sent either (the
/// request is refused before it is sent: 503 `unavailable`, fail closed).
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

    /// The account named by the query parameter `acc_id` of `uri` (none without one), or a
    /// `bad_request` refusal (400) when it is not a whole number, or is given twice.
    pub fn from_query(uri: &Uri) -> Result<CheckContext, Refusal> {
        let mut acc_id = None;
        for pair in uri.query().unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name != ACC_ID_PARAM {
                continue;
            }
            if acc_id.is_some() {
                return Err(Refusal::bad_request(
                    BadRequest::Malformed,
                    format!("the query names `{ACC_ID_PARAM}` twice"),
                ));
            }
            let parsed = value.parse::<u64>().map_err(|_| {
                Refusal::bad_request(
                    BadRequest::Malformed,
                    format!(
                        "`{ACC_ID_PARAM}` must be an account number (a whole number), not {:?}",
                        value.chars().take(24).collect::<String>()
                    ),
                )
            })?;
            acc_id = Some(parsed);
        }
        Ok(CheckContext::account(acc_id))
    }
}

/// `client.check(…)`, carrying `ctx` when it is not empty.
pub(crate) async fn check_with(
    client: &AuthClient,
    token: &Token,
    iface: Iface,
    endpoint: &str,
    order: Option<Order>,
    ctx: CheckContext,
) -> Result<Decision, ClientError> {
    if ctx.is_empty() {
        return client.check(token, iface, endpoint, order).await;
    }
    let resp = client
        .call(|request_id| {
            Request::Check(Check {
                request_id,
                token: token.clone(),
                iface,
                endpoint: endpoint.to_owned(),
                order,
                dry_run: false,
                acc_id: ctx.acc_id,
                ref_price: ctx.ref_price,
            })
        })
        .await?;
    match resp {
        Response::Decision { decision, .. } => Ok(decision),
        other => Err(crate::client::unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_query() {
        let ctx = |uri: &str| CheckContext::from_query(&uri.parse().unwrap());
        assert_eq!(ctx("/api/funds").unwrap(), CheckContext::default());
        assert_eq!(ctx("/api/funds?x=1&acc_id=281756").unwrap().acc_id, Some(281_756));
        assert!(ctx("/api/funds?acc_id=abc").is_err());
        assert!(ctx("/api/funds?acc_id=1&acc_id=2").is_err());
        assert!(ctx("/api/funds?acc_id=").is_err());
    }
}
