//! Which scope each endpoint needs: the daemon's table over Futu OpenAPI protocol names and
//! ids. An endpoint that is not in the table is refused (`unknown_endpoint`): a new
//! protocol gets a scope by being added here, never by default.
//!
//! | ids | class | needs |
//! |---|---|---|
//! | 1xxx (InitConnect, KeepAlive, …) | connection / system | no scope |
//! | 3xxx (Qot_*) | quotes | `qot:read` |
//! | 2005 Trd_UnlockTrade | unlock | `trade:unlock` |
//! | 2202 Trd_PlaceOrder, 2205 Trd_ModifyOrder, 2227 Trd_PlaceComboOrder, 2237 Trd_ReconfirmOrder | order write | `trade:simulate` or `trade:real`, by the order's env |
//! | other 2xxx (Trd_Get*, …) | account | `acc:read` |

use std::collections::HashMap;
use std::sync::LazyLock;

use futu_auth_proto::{Scope, TrdEnv};

/// What an endpoint is, for the scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointClass {
    /// 1xxx: connection and system; any valid key may call it.
    System,
    /// 3xxx: quotes; `qot:read`.
    Quote,
    /// 2xxx reads; `acc:read`.
    Account,
    /// 2005: `trade:unlock`.
    Unlock,
    /// Order writes: need an order, and `trade:simulate` or `trade:real` by its env.
    OrderWrite,
}

impl EndpointClass {
    /// The scope a request needs, given the env of its order (for order writes).
    pub fn required_scope(self, env: Option<TrdEnv>) -> Option<Scope> {
        match self {
            EndpointClass::System => None,
            EndpointClass::Quote => Some(Scope::QotRead),
            EndpointClass::Account => Some(Scope::AccRead),
            EndpointClass::Unlock => Some(Scope::TradeUnlock),
            EndpointClass::OrderWrite => match env {
                Some(TrdEnv::Real) => Some(Scope::TradeReal),
                Some(TrdEnv::Simulate) | None => Some(Scope::TradeSimulate),
            },
        }
    }
}

/// Every protocol the daemon knows: (id, name).
pub const PROTOCOLS: &[(u16, &str)] = &[
    (1001, "InitConnect"),
    (1002, "GetGlobalState"),
    (1003, "Notify"),
    (1004, "KeepAlive"),
    (1005, "GetUserInfo"),
    (1006, "Verification"),
    (1007, "GetDelayStatistics"),
    (1008, "TestCmd"),
    (1009, "InitQuantMode"),
    (2001, "Trd_GetAccList"),
    (2005, "Trd_UnlockTrade"),
    (2008, "Trd_SubAccPush"),
    (2101, "Trd_GetFunds"),
    (2102, "Trd_GetPositionList"),
    (2111, "Trd_GetMaxTrdQtys"),
    (2201, "Trd_GetOrderList"),
    (2202, "Trd_PlaceOrder"),
    (2205, "Trd_ModifyOrder"),
    (2208, "Trd_UpdateOrder"),
    (2211, "Trd_GetOrderFillList"),
    (2218, "Trd_UpdateOrderFill"),
    (2221, "Trd_GetHistoryOrderList"),
    (2222, "Trd_GetHistoryOrderFillList"),
    (2223, "Trd_GetMarginRatio"),
    (2225, "Trd_GetOrderFee"),
    (2226, "Trd_FlowSummary"),
    (2227, "Trd_PlaceComboOrder"),
    (2237, "Trd_ReconfirmOrder"),
    (3001, "Qot_Sub"),
    (3002, "Qot_RegQotPush"),
    (3003, "Qot_GetSubInfo"),
    (3004, "Qot_GetBasicQot"),
    (3005, "Qot_UpdateBasicQot"),
    (3006, "Qot_GetKL"),
    (3007, "Qot_UpdateKL"),
    (3008, "Qot_GetRT"),
    (3009, "Qot_UpdateRT"),
    (3010, "Qot_GetTicker"),
    (3011, "Qot_UpdateTicker"),
    (3012, "Qot_GetOrderBook"),
    (3013, "Qot_UpdateOrderBook"),
    (3014, "Qot_GetBroker"),
    (3015, "Qot_UpdateBroker"),
    (3019, "Qot_UpdatePriceReminder"),
    (3103, "Qot_RequestHistoryKL"),
    (3104, "Qot_RequestHistoryKLQuota"),
    (3105, "Qot_RequestRehab"),
    (3200, "Qot_GetTradeDate"),
    (3201, "Qot_GetSuspend"),
    (3202, "Qot_GetStaticInfo"),
    (3203, "Qot_GetSecuritySnapshot"),
    (3204, "Qot_GetPlateSet"),
    (3205, "Qot_GetPlateSecurity"),
    (3206, "Qot_GetReference"),
    (3207, "Qot_GetOwnerPlate"),
    (3208, "Qot_GetHoldingChangeList"),
    (3209, "Qot_GetOptionChain"),
    (3210, "Qot_GetWarrant"),
    (3211, "Qot_GetCapitalFlow"),
    (3212, "Qot_GetCapitalDistribution"),
    (3213, "Qot_GetUserSecurity"),
    (3214, "Qot_ModifyUserSecurity"),
    (3215, "Qot_StockFilter"),
    (3216, "Qot_GetCodeChange"),
    (3217, "Qot_GetIpoList"),
    (3218, "Qot_GetFutureInfo"),
    (3219, "Qot_RequestTradeDate"),
    (3220, "Qot_SetPriceReminder"),
    (3221, "Qot_GetPriceReminder"),
    (3222, "Qot_GetUserSecurityGroup"),
    (3223, "Qot_GetMarketState"),
    (3224, "Qot_GetOptionExpirationDate"),
];

fn class_of_id(id: u16) -> EndpointClass {
    match id {
        1000..=1999 => EndpointClass::System,
        3000..=3999 => EndpointClass::Quote,
        2005 => EndpointClass::Unlock,
        2202 | 2205 | 2227 | 2237 => EndpointClass::OrderWrite,
        _ => EndpointClass::Account,
    }
}

/// The class of an endpoint given by protocol name (`Trd_PlaceOrder`, exact spelling) or
/// id (`2202`); `None` for anything not in [`PROTOCOLS`].
pub fn classify(endpoint: &str) -> Option<EndpointClass> {
    static BY_NAME: LazyLock<HashMap<&'static str, u16>> =
        LazyLock::new(|| PROTOCOLS.iter().map(|(id, name)| (*name, *id)).collect());
    let id = if endpoint.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        // Only the canonical spelling: "02202" is not 2202.
        let id: u16 = endpoint.parse().ok()?;
        let canonical = endpoint.len() == 4 && !endpoint.starts_with('0');
        (canonical && PROTOCOLS.binary_search_by_key(&id, |(i, _)| *i).is_ok()).then_some(id)?
    } else {
        *BY_NAME.get(endpoint)?
    };
    Some(class_of_id(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_by_id_for_binary_search() {
        assert!(PROTOCOLS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn names_and_ids_agree() {
        for (id, name) in PROTOCOLS {
            assert_eq!(classify(name), classify(&id.to_string()), "{name}");
            assert!(classify(name).is_some());
        }
    }

    #[test]
    fn the_table_follows_the_documented_classes() {
        assert_eq!(classify("InitConnect"), Some(EndpointClass::System));
        assert_eq!(classify("1004"), Some(EndpointClass::System));
        assert_eq!(classify("Qot_GetBasicQot"), Some(EndpointClass::Quote));
        assert_eq!(classify("3203"), Some(EndpointClass::Quote));
        assert_eq!(classify("Trd_UnlockTrade"), Some(EndpointClass::Unlock));
        assert_eq!(classify("2202"), Some(EndpointClass::OrderWrite));
        assert_eq!(classify("Trd_ModifyOrder"), Some(EndpointClass::OrderWrite));
        assert_eq!(classify("2237"), Some(EndpointClass::OrderWrite));
        assert_eq!(classify("Trd_GetFunds"), Some(EndpointClass::Account));
        assert_eq!(classify("2201"), Some(EndpointClass::Account));
    }

    #[test]
    fn anything_else_is_unknown() {
        for e in [
            "",
            "trd_placeorder",
            "Trd_PlaceOrder ",
            "4001",
            "2999",
            "02202",
            "+2202",
            "/api/order",
            "99999999999",
        ] {
            assert_eq!(classify(e), None, "{e:?}");
        }
    }

    #[test]
    fn order_writes_need_the_scope_of_their_env() {
        let c = EndpointClass::OrderWrite;
        assert_eq!(c.required_scope(Some(TrdEnv::Real)), Some(Scope::TradeReal));
        assert_eq!(
            c.required_scope(Some(TrdEnv::Simulate)),
            Some(Scope::TradeSimulate)
        );
        assert_eq!(EndpointClass::System.required_scope(None), None);
    }
}
