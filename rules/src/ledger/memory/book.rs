//! A key's open orders and positions as `Usage` shows them (protocol version 6).

use futu_auth_proto::{KeyId, PositionUsage};

use super::Ledger;

/// A key's open orders and its positions, a symbol each (those it holds or has open orders
/// in), in symbol order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderBook {
    /// Orders followed and not yet filled, cancelled or rejected.
    pub open_orders: u32,
    /// The positions as `max_position_value` counts them.
    pub positions: Vec<PositionUsage>,
}

impl Ledger {
    /// The open orders and positions of `key_id` (empty for a key whose orders are not
    /// followed).
    pub fn order_book(&self, key_id: &KeyId) -> OrderBook {
        self.with_key(key_id, |slot| {
            let mut positions: Vec<PositionUsage> = slot
                .counters
                .positions
                .iter()
                .map(|(symbol, p)| PositionUsage {
                    symbol: symbol.to_string(),
                    long: p.exposure(true).as_f64(),
                    short: p.exposure(false).as_f64(),
                })
                .filter(|p| p.long != 0.0 || p.short != 0.0)
                .collect();
            positions.sort_by(|a, b| a.symbol.cmp(&b.symbol));
            OrderBook {
                open_orders: slot.counters.open.len() as u32,
                positions,
            }
        })
    }
}
