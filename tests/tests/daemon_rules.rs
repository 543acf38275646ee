//! Every rule of the daemon, each denying with its own reason code: an unknown, expired,
//! frozen or elsewhere-bound key, a scope, an unknown endpoint, a market, a symbol, a side,
//! the hours window, the order value, the daily value, the rate, a bad order; a deny names
//! the key, explains itself and, for a limit, gives its figures and when waiting helps;
//! allows name the key (and an order's ticket); each is audited and counted in /metrics.

mod daemon;

use daemon::*;
use futu_auth_proto::{Decision, Market, Reason, Scope, TrdSide};
use futu_authd_tests::{
    away_from_utc_midnight, key_json, order, this_fingerprint, token_for, with, DaemonBuilder,
};
use serde_json::json;

/// `HH:MM` of `minutes` after midnight, wrapping around the day.
fn hh_mm(minutes: i64) -> String {
    let m = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

struct DenyCase {
    reason: Reason,
    key: Option<&'static str>,
    token: String,
    endpoint: &'static str,
    order: Option<futu_auth_proto::Order>,
}

fn deny_case(
    reason: Reason,
    key: &'static str,
    endpoint: &'static str,
    order: Option<futu_auth_proto::Order>,
) -> DenyCase {
    DenyCase {
        reason,
        key: (key != "nobody").then_some(key),
        token: token_for(key),
        endpoint,
        order,
    }
}

#[tokio::test]
async fn each_rule_denies_with_its_own_reason_code_and_allows_name_the_key() {
    away_from_utc_midnight(5);
    let t = |l: &str| token_for(l);
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let minute = i64::from(now.hour()) * 60 + i64::from(now.minute());
    // Two to three hours ahead never holds now, whatever the time of day (it may cross
    // midnight, which the daemon handles); an hour either side always does.
    let closed = format!("{}-{}", hh_mm(minute + 120), hh_mm(minute + 180));
    let open = format!("{}-{}", hh_mm(minute - 60), hh_mm(minute + 60));
    let keys = vec![
        key_json("research", &t("research"), &["qot:read"]),
        sim_bot(&t("sim-bot")),
        with(
            key_json("old", &t("old"), &["qot:read"]),
            "expires_at",
            json!("2020-01-01T00:00:00Z"),
        ),
        with(
            key_json("frozen", &t("frozen"), &["qot:read"]),
            "allowed_machines",
            json!([]),
        ),
        with(
            key_json("elsewhere", &t("elsewhere"), &["qot:read"]),
            "allowed_machines",
            json!([futu_auth_keys::machine::fingerprint_of("another-host-machine-id").as_str()]),
        ),
        with(
            key_json("here", &t("here"), &["qot:read"]),
            "allowed_machines",
            json!([this_fingerprint()]),
        ),
        with(
            key_json("closed", &t("closed"), &["qot:read"]),
            "limits",
            json!({ "hours_window": closed }),
        ),
        with(
            key_json("open", &t("open"), &["qot:read"]),
            "limits",
            json!({ "hours_window": open }),
        ),
        trader("daily", &t("daily"), json!({ "max_daily_value": 1000 })),
        trader("rate", &t("rate"), json!({ "max_orders_per_minute": 1 })),
    ];
    let d = DaemonBuilder::new(&keys).env("TZ", "UTC").metrics().start();
    let mut c = d.client().await;

    // Allows carry the key id (and, for an order that consumed value, a ticket).
    for id in ["research", "here", "open"] {
        let got = c.check(&t(id), "Qot_GetBasicQot", None).await;
        assert_eq!(
            got,
            Decision::Allow {
                key_id: id.parse().unwrap(),
                scope: Some(Scope::QotRead),
                ticket: None
            }
        );
    }
    match c
        .check(&t("sim-bot"), "Trd_PlaceOrder", sell_700(100.0, 320.5))
        .await
    {
        Decision::Allow {
            key_id,
            scope,
            ticket,
        } => {
            assert_eq!(key_id.as_str(), "sim-bot");
            assert_eq!(scope, Some(Scope::TradeSimulate));
            assert!(ticket.is_some(), "an allowed order has a ticket");
        }
        other => panic!("a whitelisted order under the caps is allowed, got {other:?}"),
    }
    assert!(c
        .check(&t("daily"), "Trd_PlaceOrder", sell_700(6.0, 100.0))
        .await
        .is_allow());
    assert!(c
        .check(&t("rate"), "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
    let allows = 6;

    let quote = "Qot_GetBasicQot";
    let place = "Trd_PlaceOrder";
    let cases = [
        deny_case(Reason::UnknownKey, "nobody", quote, None),
        deny_case(Reason::Expired, "old", quote, None),
        deny_case(Reason::Frozen, "frozen", quote, None),
        deny_case(Reason::Machine, "elsewhere", quote, None),
        deny_case(Reason::Scope, "research", "Trd_GetFunds", None),
        deny_case(Reason::UnknownEndpoint, "research", "Qot_NoSuchProtocol", None),
        deny_case(
            Reason::Market,
            "sim-bot",
            place,
            Some(order(Market::US, "US.AAPL", TrdSide::SELL, 1.0, Some(100.0))),
        ),
        deny_case(
            Reason::Symbol,
            "sim-bot",
            place,
            Some(order(Market::HK, "HK.00005", TrdSide::SELL, 1.0, Some(60.0))),
        ),
        deny_case(
            Reason::Side,
            "sim-bot",
            place,
            Some(order(Market::HK, "HK.00700", TrdSide::BUY, 1.0, Some(320.0))),
        ),
        deny_case(Reason::Hours, "closed", quote, None),
        deny_case(Reason::OrderValue, "sim-bot", place, sell_700(1000.0, 320.5)),
        deny_case(Reason::DailyValue, "daily", place, sell_700(6.0, 100.0)),
        deny_case(Reason::Rate, "rate", place, sell_700(1.0, 1.0)),
        deny_case(Reason::BadOrder, "sim-bot", place, None),
        deny_case(Reason::BadOrder, "sim-bot", place, sell_700(0.0, 320.5)),
    ];
    for DenyCase {
        reason,
        key,
        token,
        endpoint,
        order,
    } in &cases
    {
        match c.check(token, endpoint, order.clone()).await {
            Decision::Deny {
                reason: got,
                key_id,
                detail,
                retry_after_ms,
                limit,
            } => {
                assert_eq!(got, *reason, "{endpoint} with key {key:?}: {detail}");
                assert_eq!(
                    key_id.as_ref().map(|k| k.as_str()),
                    *key,
                    "the deny names the key"
                );
                assert!(!detail.is_empty(), "a deny explains itself");
                // Protocol version 2: a limit's figures, and when waiting helps.
                let by_limit = matches!(
                    reason,
                    Reason::Rate | Reason::DailyValue | Reason::OrderValue | Reason::Hours
                );
                assert_eq!(limit.is_some(), by_limit, "{reason}: {limit:?}");
                let waiting_helps = matches!(reason, Reason::Rate | Reason::DailyValue | Reason::Hours);
                assert_eq!(
                    retry_after_ms.is_some(),
                    waiting_helps,
                    "{reason}: {retry_after_ms:?}"
                );
            }
            allow => panic!("expected {reason} for key {key:?} on {endpoint}, got {allow:?}"),
        }
    }

    let metrics = d.metrics_text();
    let records = d.wait_audit(allows + cases.len());
    assert_eq!(records.len(), allows + cases.len(), "one audit record per check");
    for DenyCase {
        reason,
        key,
        endpoint,
        ..
    } in &cases
    {
        let key_label = key.unwrap_or("<none>");
        let n = futu_authd_tests::metric_value(
            &metrics,
            "futu_auth_limit_rejects_total",
            &[
                ("iface", "rest"),
                ("key_id", key_label),
                ("reason", reason.as_str()),
            ],
        );
        assert!(
            n >= Some(1.0),
            "futu_auth_limit_rejects_total counts {reason} for {key_label}:\n{metrics}"
        );
        assert!(
            records.iter().any(|r| r["outcome"] == "reject"
                && r["reason"] == reason.as_str()
                && r["endpoint"] == *endpoint
                && r["key_id"].as_str() == *key),
            "the audit file has the {reason} reject of {key:?}"
        );
    }
    for id in ["research", "here", "open", "sim-bot", "daily", "rate"] {
        assert!(
            records
                .iter()
                .any(|r| r["outcome"] == "allow" && r["key_id"] == id),
            "the audit file has the allow of {id}"
        );
    }
}
