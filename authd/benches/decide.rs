//! `decide()` for an order with every limit set (the pre-trade risk limits of protocol
//! version 6 too), and for a quote read.
//! Run with `make bench` (or `cargo bench -p futu-authd --bench decide`).
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futu_auth_keys::machine::fingerprint_of;
use futu_auth_keys::store::KeysFile;
use futu_auth_keys::token::digest;
use futu_auth_proto::key::{AccIds, Cap, DeviationPct, DuplicateWindow};
use futu_auth_proto::{
    Check, Decision, Iface, KeyRecord, Limits, Market, Order, OrderEventKind, Scope, Token, TrdEnv, TrdSide,
};
use futu_auth_rules::{decide, Ledger, Now, Snapshot};
use jiff::tz::TimeZone;

const TOKEN: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";

fn snapshot() -> Snapshot {
    let host = fingerprint_of("bench-host");
    let key = KeyRecord {
        id: "sim-bot".parse().unwrap(),
        hash: digest(&Token::new(TOKEN)),
        scopes: vec![Scope::QotRead, Scope::AccRead, Scope::TradeSimulate],
        limits: Limits {
            allowed_markets: Some(vec![Market::HK, Market::US]),
            allowed_symbols: Some(vec!["HK.00700".parse().unwrap(), "HK.09988".parse().unwrap()]),
            allowed_trd_sides: Some(vec![TrdSide::SELL]),
            max_order_value: Some(Cap::try_from(1e9).unwrap()),
            max_daily_value: Some(Cap::try_from(1e15).unwrap()),
            max_orders_per_minute: Some(u32::MAX),
            hours_window: Some("00:00-23:59".parse().unwrap()),
            allowed_acc_ids: Some(AccIds::try_from(vec![281756, 281757]).unwrap()),
            max_price_deviation_pct: Some(DeviationPct::try_from(5.0).unwrap()),
            max_open_orders: Some(10),
            max_position_value: Some(Cap::try_from(1e12).unwrap()),
            // Orders 1 ms apart: each is a millisecond after the same one, never within.
            duplicate_window_ms: Some(DuplicateWindow::try_from(1).unwrap()),
        },
        allowed_machines: Some(vec![host.clone()]),
        created_at: "2026-04-15T10:00:00Z".parse().unwrap(),
        expires_at: Some("2099-01-01T00:00:00Z".parse().unwrap()),
        note: None,
    };
    let file = KeysFile {
        keys: vec![key],
        ..KeysFile::default()
    };
    Snapshot::compile(&file.keys, &file.rotations, &file.halts, Some(host))
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let ledger = Ledger::new();
    let now = Now::new("2026-04-20T10:00:00Z".parse().unwrap(), &TimeZone::UTC, 0);
    let order = Check {
        request_id: 1,
        token: Token::new(TOKEN),
        iface: Iface::Rest,
        endpoint: "Trd_PlaceOrder".into(),
        order: Some(Order {
            env: TrdEnv::Simulate,
            market: Market::HK,
            symbol: "HK.00700".into(),
            side: TrdSide::SELL,
            qty: 500.0,
            price: Some(388.2),
        }),
        dry_run: false,
        acc_id: Some(281757),
        ref_price: Some(390.0),
    };
    let mut mono = 0u64;
    c.bench_function("decide/order_every_limit", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                // 1 ms apart, so the 60 s window holds at most 60 000 orders.
                mono += 1_000_000;
                let now = Now { mono_ns: mono, ..now };
                let started = std::time::Instant::now();
                let v = black_box(decide(&snap, &ledger, &now, black_box(&order)));
                spent += started.elapsed();
                // Untimed: the order is filled, so open orders stay under their cap and
                // the next order is allowed too.
                let Decision::Allow { ticket: Some(t), .. } = v.decision else {
                    panic!("the order was refused: {:?}", v.decision)
                };
                ledger
                    .order_event(t, OrderEventKind::Cancelled, None, None, mono, now.day())
                    .unwrap();
            }
            spent
        })
    });
    let read = Check {
        endpoint: "Qot_GetBasicQot".into(),
        order: None,
        acc_id: None,
        ref_price: None,
        ..order.clone()
    };
    c.bench_function("decide/quote_read", |b| {
        b.iter(|| black_box(decide(&snap, &ledger, &now, black_box(&read))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
