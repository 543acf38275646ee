//! [`CheckContext`] in the layer: the account a read route names in its query, and the
//! one place the layer's checks carrying a context are sent.

use futu_auth_proto::{Decision, Iface, Order, Token};
use http::Uri;

use super::refusal::{BadRequest, Refusal};
use crate::{AuthClient, CheckContext, ClientError};

/// The query parameter of a read route that names the account (`GET /api/funds?acc_id=…`),
/// read by the layer on [`Endpoint::read`](super::Endpoint::read) routes.
pub const ACC_ID_PARAM: &str = "acc_id";

impl CheckContext {
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
    client.check_in(token, iface, endpoint, order, ctx).await
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
