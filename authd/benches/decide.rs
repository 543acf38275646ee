//! `decide()` for an order with every limit set, and for a quote read.
//! Run with `make bench` (or `cargo bench -p futu-authd --bench decide`).
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futu_auth_keys::machine::fingerprint_of;
use futu_auth_keys::store::KeysFile;
use futu_auth_keys::token::digest;
use futu_auth_proto::key::Cap;
use futu_auth_proto::{Check, Iface, KeyRecord, Limits, Market, Order, Scope, Token, TrdEnv, TrdSide};
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
    };
    let mut mono = 0u64;
    c.bench_function("decide/order_every_limit", |b| {
        b.iter(|| {
            // 1 ms apart, so the 60 s window holds at most 60 000 orders.
            mono += 1_000_000;
            let now = Now { mono_ns: mono, ..now };
            black_box(decide(&snap, &ledger, &now, black_box(&order)))
        })
    });
    let read = Check {
        endpoint: "Qot_GetBasicQot".into(),
        order: None,
        ..order.clone()
    };
    c.bench_function("decide/quote_read", |b| {
        b.iter(|| black_box(decide(&snap, &ledger, &now, black_box(&read))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
