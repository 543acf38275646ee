//! End-to-end tests of money caps and order numbers as futucli and a real futu-authd see
//! them: a cap means exactly what it says (`-0` is 0, more than 8 decimal places is
//! refused) whether it comes from futucli's flags through the daemon or from keys.json
//! written by hand, and a negative quantity reaches the daemon to be refused there.

use std::path::Path;
use std::process::Command;

use futu_authd_tests::{daemon_binary, key_json, keys_json, token_for, with, Daemon, DaemonBuilder, Run};
use serde_json::{json, Value};

/// Runs futucli against `d`'s socket, keys file and machine id.
fn futucli(d: &Daemon, args: &[&str]) -> Run {
    d.futucli().args(args).output().expect("run futucli").into()
}

/// `futu-authd --check-config` on `keys_file`.
fn check_config(keys_file: &Path) -> Run {
    Command::new(daemon_binary())
        .arg("--check-config")
        .arg("--keys-file")
        .arg(keys_file)
        .output()
        .expect("run futu-authd --check-config")
        .into()
}

/// `futucli check` of a simulated sell of `qty` HK.00700 at `price`.
fn sell(d: &Daemon, token: &str, qty: &str, price: &str) -> Run {
    futucli(
        d,
        &[
            "check",
            "--token",
            token,
            "--endpoint",
            "Trd_PlaceOrder",
            "--market",
            "HK",
            "--symbol",
            "HK.00700",
            "--side",
            "SELL",
            "--qty",
            qty,
            "--price",
            price,
        ],
    )
}

/// The plaintext from gen-key's output (`plaintext: fc_… ← save this…`).
fn generated_token(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("plaintext: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("gen-key printed a plaintext: {run:#?}"))
        .to_owned()
}

/// The limits of key `id` in `d`'s keys.json.
fn limits_in_keys_json(d: &Daemon, id: &str) -> Value {
    let text = std::fs::read_to_string(d.keys_path()).expect("read keys.json");
    let keys: Value = serde_json::from_str(&text).expect("keys.json is JSON");
    keys["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no key {id} in {text}"))["limits"]
        .clone()
}

/// Asserts that key `id` (plaintext `token`) has a daily cap of 0 with nothing used, and
/// that an order worth 2000 is refused for `reason`.
fn assert_zero_caps_hold(d: &Daemon, id: &str, token: &str, reason: &str) {
    let run = futucli(d, &["usage", id]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("daily value 0 of 0;"), "{run:#?}");

    let run = sell(d, token, "1", "2000");
    assert_eq!(run.code, Some(1), "an order of 2000 is refused: {run:#?}");
    assert!(run.stdout.contains(&format!("reject: {reason}")), "{run:#?}");
}

#[test]
fn negative_zero_caps_from_futucli_through_the_daemon_are_zero() {
    let d = DaemonBuilder::new(&[]).start();
    let run = futucli(
        &d,
        &[
            "gen-key",
            "--id",
            "nz",
            "--scopes",
            "trade:simulate",
            "--max-order-value=-0.0",
            "--max-daily-value=-0",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let token = generated_token(&run);

    let limits = limits_in_keys_json(&d, "nz");
    for cap in ["max_order_value", "max_daily_value"] {
        assert_eq!(limits[cap].as_f64(), Some(0.0), "{limits}");
        assert!(
            limits[cap].as_f64().unwrap().is_sign_positive(),
            "{cap} is written as 0, not -0: {limits}"
        );
    }
    let run = check_config(&d.keys_path());
    assert_eq!(run.code, Some(0), "{run:#?}");

    assert_zero_caps_hold(&d, "nz", &token, "order_value");
}

#[test]
fn negative_zero_caps_written_by_hand_in_keys_json_are_zero() {
    let order_token = token_for("nz");
    let daily_token = token_for("nz-daily");
    let text = keys_json(&[
        with(
            key_json("nz", &order_token, &["trade:simulate"]),
            "limits",
            json!({ "max_daily_value": 1_000_000 }),
        ),
        with(
            key_json("nz-daily", &daily_token, &["trade:simulate"]),
            "limits",
            json!({ "max_daily_value": 1 }),
        ),
    ])
    // JSON values cannot hold -0; write it as text, as a person would.
    .replacen(
        "\"max_daily_value\": 1000000",
        "\"max_order_value\": -0, \"max_daily_value\": -0.0",
        1,
    )
    .replacen("\"max_daily_value\": 1\n", "\"max_daily_value\": -0\n", 1);
    assert_eq!(text.matches(": -0").count(), 3, "{text}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, &text).unwrap();
    let run = check_config(&path);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stdout, format!("{}: ok, 2 keys\n", path.display()));

    let d = DaemonBuilder::with_keys_text(text).start();
    assert_zero_caps_hold(&d, "nz", &order_token, "order_value");
    assert_zero_caps_hold(&d, "nz-daily", &daily_token, "daily_value");
}

#[test]
fn a_cap_with_more_than_8_decimal_places_is_refused_by_futucli_and_by_check_config() {
    let d = DaemonBuilder::new(&[]).start();
    let run = futucli(
        &d,
        &[
            "gen-key",
            "--id",
            "fine",
            "--scopes",
            "trade:simulate",
            "--max-order-value",
            "0.123456789",
        ],
    );
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("--max-order-value")
            && run
                .stderr
                .contains("more than 8 decimal places; amounts are counted to 0.00000001"),
        "the error names the flag and the rule: {run:#?}"
    );
    let run = futucli(
        &d,
        &[
            "gen-key",
            "--id",
            "neg",
            "--scopes",
            "trade:simulate",
            "--max-daily-value",
            "-1",
        ],
    );
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("--max-daily-value") && run.stderr.contains("cap -1 is negative"),
        "{run:#?}"
    );
    assert!(
        !std::fs::read_to_string(d.keys_path()).unwrap().contains("fine"),
        "nothing was made"
    );

    let text = keys_json(&[with(
        key_json("fine", &token_for("fine"), &["trade:simulate"]),
        "limits",
        json!({ "max_order_value": 1 }),
    )])
    .replace("\"max_order_value\": 1", "\"max_order_value\": 0.123456789");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, &text).unwrap();
    let run = check_config(&path);
    assert_eq!(run.code, Some(1), "{run:#?}");
    let line = run.stderr.trim_end();
    assert!(
        line.contains(&format!("{}:", path.display()))
            && line.contains("key \"fine\"")
            && line.contains("field keys[0].limits.max_order_value")
            && line.ends_with(
                "cap 0.123456789 has more than 8 decimal places; amounts are counted to 0.00000001"
            ),
        "one line with the file, line, column, key and field: {line:?}"
    );
}

#[test]
fn a_negative_quantity_reaches_the_daemon_and_is_bad_order() {
    let token = token_for("trader");
    let d = DaemonBuilder::new(&[key_json("trader", &token, &["trade:simulate"])]).start();
    let run = sell(&d, &token, "-1", "5");
    assert_eq!(run.code, Some(1), "the daemon answered with a reject: {run:#?}");
    assert!(run.stdout.contains("bad_order"), "{run:#?}");
    assert!(run.stdout.contains("qty -1"), "{run:#?}");

    let run = sell(&d, &token, "1", "-5");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout.contains("bad_order") && run.stdout.contains("price -5"),
        "{run:#?}"
    );
}
