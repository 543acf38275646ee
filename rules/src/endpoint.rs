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
//! | `Admin_*` (the gateway's own management endpoints, by name only) | admin | `admin` |

use std::collections::HashMap;
use std::sync::LazyLock;

use futu_auth_proto::{Scope, TrdEnv};

use EndpointClass::{Account, Admin, OrderWrite, Quote, System, Unlock};

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
    /// The gateway's management endpoints (`Admin_*`, [`GATEWAY_ENDPOINTS`]): `admin`.
    Admin,
}

impl EndpointClass {
    /// The scope a request needs, given the env of its order (for order writes).
    pub fn required_scope(self, env: Option<TrdEnv>) -> Option<Scope> {
        match self {
            EndpointClass::System => None,
            EndpointClass::Quote => Some(Scope::QotRead),
            EndpointClass::Account => Some(Scope::AccRead),
            EndpointClass::Unlock => Some(Scope::TradeUnlock),
            EndpointClass::Admin => Some(Scope::Admin),
            EndpointClass::OrderWrite => match env {
                Some(TrdEnv::Real) => Some(Scope::TradeReal),
                Some(TrdEnv::Simulate) | None => Some(Scope::TradeSimulate),
            },
        }
    }
}

/// Every protocol the daemon knows: (id, name, class), sorted by id. Each one's class is
/// written here, never inferred from its id: a protocol added without one does not compile.
pub const PROTOCOLS: &[(u16, &str, EndpointClass)] = &[
    (1001, "InitConnect", System),
    (1002, "GetGlobalState", System),
    (1003, "Notify", System),
    (1004, "KeepAlive", System),
    (1005, "GetUserInfo", System),
    (1006, "Verification", System),
    (1007, "GetDelayStatistics", System),
    (1008, "TestCmd", System),
    (1009, "InitQuantMode", System),
    (2001, "Trd_GetAccList", Account),
    (2005, "Trd_UnlockTrade", Unlock),
    (2008, "Trd_SubAccPush", Account),
    (2101, "Trd_GetFunds", Account),
    (2102, "Trd_GetPositionList", Account),
    (2111, "Trd_GetMaxTrdQtys", Account),
    (2201, "Trd_GetOrderList", Account),
    (2202, "Trd_PlaceOrder", OrderWrite),
    (2205, "Trd_ModifyOrder", OrderWrite),
    (2208, "Trd_UpdateOrder", Account),
    (2211, "Trd_GetOrderFillList", Account),
    (2218, "Trd_UpdateOrderFill", Account),
    (2221, "Trd_GetHistoryOrderList", Account),
    (2222, "Trd_GetHistoryOrderFillList", Account),
    (2223, "Trd_GetMarginRatio", Account),
    (2225, "Trd_GetOrderFee", Account),
    (2226, "Trd_FlowSummary", Account),
    (2227, "Trd_PlaceComboOrder", OrderWrite),
    (2237, "Trd_ReconfirmOrder", OrderWrite),
    (3001, "Qot_Sub", Quote),
    (3002, "Qot_RegQotPush", Quote),
    (3003, "Qot_GetSubInfo", Quote),
    (3004, "Qot_GetBasicQot", Quote),
    (3005, "Qot_UpdateBasicQot", Quote),
    (3006, "Qot_GetKL", Quote),
    (3007, "Qot_UpdateKL", Quote),
    (3008, "Qot_GetRT", Quote),
    (3009, "Qot_UpdateRT", Quote),
    (3010, "Qot_GetTicker", Quote),
    (3011, "Qot_UpdateTicker", Quote),
    (3012, "Qot_GetOrderBook", Quote),
    (3013, "Qot_UpdateOrderBook", Quote),
    (3014, "Qot_GetBroker", Quote),
    (3015, "Qot_UpdateBroker", Quote),
    (3019, "Qot_UpdatePriceReminder", Quote),
    (3103, "Qot_RequestHistoryKL", Quote),
    (3104, "Qot_RequestHistoryKLQuota", Quote),
    (3105, "Qot_RequestRehab", Quote),
    (3200, "Qot_GetTradeDate", Quote),
    (3201, "Qot_GetSuspend", Quote),
    (3202, "Qot_GetStaticInfo", Quote),
    (3203, "Qot_GetSecuritySnapshot", Quote),
    (3204, "Qot_GetPlateSet", Quote),
    (3205, "Qot_GetPlateSecurity", Quote),
    (3206, "Qot_GetReference", Quote),
    (3207, "Qot_GetOwnerPlate", Quote),
    (3208, "Qot_GetHoldingChangeList", Quote),
    (3209, "Qot_GetOptionChain", Quote),
    (3210, "Qot_GetWarrant", Quote),
    (3211, "Qot_GetCapitalFlow", Quote),
    (3212, "Qot_GetCapitalDistribution", Quote),
    (3213, "Qot_GetUserSecurity", Quote),
    (3214, "Qot_ModifyUserSecurity", Quote),
    (3215, "Qot_StockFilter", Quote),
    (3216, "Qot_GetCodeChange", Quote),
    (3217, "Qot_GetIpoList", Quote),
    (3218, "Qot_GetFutureInfo", Quote),
    (3219, "Qot_RequestTradeDate", Quote),
    (3220, "Qot_SetPriceReminder", Quote),
    (3221, "Qot_GetPriceReminder", Quote),
    (3222, "Qot_GetUserSecurityGroup", Quote),
    (3223, "Qot_GetMarketState", Quote),
    (3224, "Qot_GetOptionExpirationDate", Quote),
];

/// The gateway's own endpoints, which are no Futu protocol and have no id: its
/// management endpoints, which need the scope `admin`. Known by name only.
pub const GATEWAY_ENDPOINTS: &[(&str, EndpointClass)] = &[
    ("Admin_Status", Admin),
    ("Admin_Reload", Admin),
    ("Admin_Usage", Admin),
    ("Admin_Halt", Admin),
];

/// The class of an endpoint given by protocol name (`Trd_PlaceOrder`, exact spelling) or
/// id (`2202`); `None` for anything not in [`PROTOCOLS`].
pub fn classify(endpoint: &str) -> Option<EndpointClass> {
    static BY_NAME: LazyLock<HashMap<&'static str, EndpointClass>> = LazyLock::new(|| {
        PROTOCOLS
            .iter()
            .map(|(_, name, class)| (*name, *class))
            .chain(GATEWAY_ENDPOINTS.iter().copied())
            .collect()
    });
    if endpoint.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        // Only the canonical spelling: "02202" is not 2202.
        let id: u16 = endpoint.parse().ok()?;
        let canonical = endpoint.len() == 4 && !endpoint.starts_with('0');
        let at = PROTOCOLS.binary_search_by_key(&id, |(i, _, _)| *i).ok()?;
        canonical.then_some(PROTOCOLS[at].2)
    } else {
        BY_NAME.get(endpoint).copied()
    }
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
        for (id, name, class) in PROTOCOLS {
            assert_eq!(classify(name), classify(&id.to_string()), "{name}");
            assert_eq!(classify(name), Some(*class), "{name}");
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
    fn each_class_is_the_one_its_ids_range_documents() {
        for (id, name, class) in PROTOCOLS {
            let documented = match id {
                1000..=1999 => System,
                3000..=3999 => Quote,
                2005 => Unlock,
                2202 | 2205 | 2227 | 2237 => OrderWrite,
                2000..=2999 => Account,
                _ => panic!("{id} {name} is in no documented range"),
            };
            assert_eq!(*class, documented, "{id} {name}");
        }
    }

    #[test]
    fn the_gateway_management_endpoints_need_admin_and_have_no_id() {
        for (name, class) in GATEWAY_ENDPOINTS {
            assert_eq!(classify(name), Some(*class), "{name}");
            assert_eq!(class.required_scope(None), Some(Scope::Admin));
            assert!(PROTOCOLS.iter().all(|(_, n, _)| n != name));
        }
        assert_eq!(classify("admin_status"), None);
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
