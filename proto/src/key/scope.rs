//! Scopes: the permissions a key holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// A permission a key holds. Spelled `qot:read`, … in keys.json, the audit log and the
/// metrics (README.md, "keys.json"), a variant index on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Quote read and subscribe.
    #[serde(rename = "qot:read")]
    QotRead,
    /// Account read-only.
    #[serde(rename = "acc:read")]
    AccRead,
    /// Simulated trading writes.
    #[serde(rename = "trade:simulate")]
    TradeSimulate,
    /// Real trading writes.
    #[serde(rename = "trade:real")]
    TradeReal,
    /// Unlocking trade (the MCP `futu_unlock_trade` tool).
    #[serde(rename = "trade:unlock")]
    TradeUnlock,
    /// The gateway's management endpoints (protocol version 6; `Admin_*` in the endpoint
    /// table). A peer of an older version is never sent it.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in wire order.
    pub const ALL: [Scope; 6] = [
        Scope::QotRead,
        Scope::AccRead,
        Scope::TradeSimulate,
        Scope::TradeReal,
        Scope::TradeUnlock,
        Scope::Admin,
    ];

    /// As keys.json, the audit log and the metrics spell it, e.g. `trade:simulate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::QotRead => "qot:read",
            Scope::AccRead => "acc:read",
            Scope::TradeSimulate => "trade:simulate",
            Scope::TradeReal => "trade:real",
            Scope::TradeUnlock => "trade:unlock",
            Scope::Admin => "admin",
        }
    }

    /// The part before the colon (`qot`, `acc`, `trade`; `admin` has none), used as the `required_scope`
    /// label of `futu_ws_filtered_pushes_total`.
    pub fn family(self) -> &'static str {
        match self {
            Scope::QotRead => "qot",
            Scope::AccRead => "acc",
            Scope::TradeSimulate | Scope::TradeReal | Scope::TradeUnlock => "trade",
            Scope::Admin => "admin",
        }
    }

    /// A bit of its own, for scope sets kept as a `u8`.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s).ok_or_else(|| {
            invalid(format!(
                "unknown scope {s:?} (expected qot:read, acc:read, trade:simulate, trade:real, trade:unlock or admin)"
            ))
        })
    }
}
