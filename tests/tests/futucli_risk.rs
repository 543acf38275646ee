//! futucli and the pre-trade risk limits: gen-key's flags write each limit into keys.json
//! as keys.json's own fields (through the daemon and on the file), refuse what keys.json
//! would refuse with one line naming the flag, list-keys shows them, and `check --acc-id
//! --ref-price` asks the daemon with the account and the reference price, so that each
//! control refuses with its own reason.

mod cli;

use cli::*;
use futu_authd_tests::DaemonBuilder;
use serde_json::{json, Value};
use tempfile::TempDir;

/// gen-key of `id` with every risk flag.
fn gen_risky(id: &str) -> Vec<&str> {
    vec![
        "gen-key",
        "--id",
        id,
        "--scopes",
        "qot:read,acc:read,trade:simulate",
        "--allowed-acc-ids",
        "281756,281757",
        "--max-price-deviation-pct",
        "5",
        "--max-open-orders",
        "10",
        "--max-position-value",
        "200000",
        "--duplicate-window",
        "2s",
    ]
}

fn assert_risk_limits(rec: &Value) {
    let l = &rec["limits"];
    assert_eq!(l["allowed_acc_ids"], json!([281756, 281757]), "{rec:#}");
    assert_eq!(l["max_price_deviation_pct"], json!(5.0), "{rec:#}");
    assert_eq!(l["max_open_orders"], json!(10), "{rec:#}");
    assert_eq!(l["max_position_value"], json!(200000.0), "{rec:#}");
    assert_eq!(l["duplicate_window_ms"], json!(2000), "{rec:#}");
}

#[test]
fn gen_key_writes_every_risk_limit_on_the_file_and_through_the_daemon() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    cli.run(&gen_risky("on-file")).ok();
    assert_risk_limits(record(&cli.keys(), "on-file"));

    let d = DaemonBuilder::new(&[]).start();
    let cli = Futucli::for_daemon(&d);
    cli.run(&gen_risky("via-daemon")).ok();
    let rec = record(&cli.keys(), "via-daemon").clone();
    assert_risk_limits(&rec);
    // A window in milliseconds too.
    let mut args = gen_risky("ms-window");
    *args.last_mut().unwrap() = "250ms";
    cli.run(&args).ok();
    assert_eq!(
        record(&cli.keys(), "ms-window")["limits"]["duplicate_window_ms"],
        json!(250)
    );
    let listed = cli.run(&["list-keys"]).ok();
    let line = listed
        .stdout
        .lines()
        .find(|l| l.contains("via-daemon"))
        .unwrap_or_else(|| panic!("{listed:#?}"));
    for shown in [
        "accounts=281756,281757",
        "collar ±5%",
        "≤10 open",
        "≤200000/position",
        "no repeat in 2000ms",
    ] {
        assert!(line.contains(shown), "{shown:?} in {line:?}");
    }
    let json = cli.run(&["list-keys", "--json"]).ok();
    assert!(
        json.stdout.contains("\"max_open_orders\": 10") || json.stdout.contains("\"max_open_orders\":10"),
        "{json:#?}"
    );
}

#[test]
fn gen_key_refuses_bad_risk_flags_with_one_line_naming_the_flag() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    let cases: [(&str, &str, &str); 7] = [
        ("--allowed-acc-ids", "281756,x", "not a list of account ids"),
        ("--allowed-acc-ids", "1,1", "listed twice"),
        ("--max-price-deviation-pct", "0", "max_price_deviation_pct"),
        ("--max-price-deviation-pct", "NaN", "max_price_deviation_pct"),
        ("--max-position-value", "-5", "-5"),
        ("--duplicate-window", "2x", "not a window"),
        ("--duplicate-window", "2h", "duplicate_window_ms"),
    ];
    for (flag, value, says) in cases {
        let run = cli.run(&[
            "gen-key",
            "--id",
            "bad",
            "--scopes",
            "trade:simulate",
            flag,
            value,
        ]);
        let line = problem_line(&run, 2);
        assert!(line.contains(flag), "{flag} {value}: {line}");
        assert!(line.contains(says), "{flag} {value}: {says:?} in {line}");
    }
    assert!(
        !dir.path().join("keys").join("keys.json").exists(),
        "nothing was written"
    );
}

#[test]
fn check_sends_the_account_and_the_reference_price() {
    let d = DaemonBuilder::new(&[]).start();
    let cli = Futucli::for_daemon(&d);
    let run = cli
        .run(&[
            "gen-key",
            "--id",
            "collared",
            "--scopes",
            "acc:read,trade:simulate",
            "--allowed-acc-ids",
            "281756",
            "--max-price-deviation-pct",
            "5",
        ])
        .ok();
    let token = generated_token(&run, "collared", &d.keys_path());
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--token",
            &token,
            "--endpoint",
            "Trd_PlaceOrder",
            "--market",
            "HK",
            "--symbol",
            "HK.00700",
            "--side",
            "BUY",
            "--qty",
            "100",
            "--price",
            "100",
            "--dry-run",
            "--json",
        ];
        args.extend_from_slice(extra);
        let run = cli.run(&args);
        let v: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:#?}"));
        (run.code, v)
    };
    // Within the collar, on a listed account: allowed.
    let (code, v) = check(&["--acc-id", "281756", "--ref-price", "98"]);
    assert_eq!((code, &v["outcome"]), (Some(0), &json!("allow")), "{v}");
    // No account, another account, no reference price, outside the collar.
    for (extra, reason) in [
        (&["--ref-price", "98"][..], "account"),
        (&["--acc-id", "1", "--ref-price", "98"][..], "account"),
        (&["--acc-id", "281756"][..], "price_collar"),
        (&["--acc-id", "281756", "--ref-price", "90"][..], "price_collar"),
    ] {
        let (code, v) = check(extra);
        assert_eq!(code, Some(1), "{extra:?}: {v}");
        assert_eq!(v["reason"], json!(reason), "{extra:?}: {v}");
    }
    // An account read names its account too.
    let run = cli.run(&[
        "check",
        "--token",
        &token,
        "--endpoint",
        "Trd_GetFunds",
        "--acc-id",
        "281757",
        "--json",
    ]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("\"account\""), "{run:#?}");
    cli.run(&[
        "check",
        "--token",
        &token,
        "--endpoint",
        "Trd_GetFunds",
        "--acc-id",
        "281756",
    ])
    .ok();
}
