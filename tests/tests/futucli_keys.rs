//! futucli's key commands as the README's Quickstart types them (steps 2, 3 and 6):
//! gen-key, list-keys, bind-key and revoke-key, THROUGH THE DAEMON (each change is checked
//! over the socket at once, without a SIGHUP) and ON THE FILE (keys.json checked after each
//! command, then served by a daemon started on it); gen-key's other flags; bind-key's
//! combinations and contradictions.

mod cli;

use std::collections::BTreeSet;
use std::path::Path;

use cli::*;
use futu_auth_client::{Iface, Reason};
use futu_auth_proto::{Market, Request, TrdSide};
use futu_authd_tests::{allowed_key, deny_reason, hash_of, order, this_fingerprint, Daemon, DaemonBuilder};
use jiff::{Span, Timestamp};
use serde_json::json;
use tempfile::TempDir;

/// The README's sim-bot command line (Quickstart step 3), as written.
fn sim_bot_args() -> Vec<&'static str> {
    vec![
        "gen-key",
        "--id",
        "sim-bot",
        "--scopes",
        "qot:read,acc:read,trade:simulate",
        "--allowed-markets",
        "HK,US",
        "--allowed-trd-sides",
        "SELL",
        "--max-order-value",
        "100000",
        "--max-daily-value",
        "500000",
        "--max-orders-per-minute",
        "5",
        "--hours-window",
        "09:30-16:00",
        "--expires",
        "30d",
    ]
}

/// Runs every key command line of the README's Quickstart, in an order in which each
/// applies, and checks keys.json after each; with `daemon`, also that each change is in
/// effect at once (a Check over the socket, no SIGHUP). Returns the two plaintexts printed.
async fn run_the_quickstart_commands(cli: &Futucli, daemon: Option<&Daemon>) -> (String, String) {
    let through_daemon = daemon.is_some();
    let mut client = match daemon {
        Some(d) => Some(d.client().await),
        None => None,
    };

    // Step 2: gen-key --id research --scopes qot:read
    let before = now_seconds();
    let run = cli
        .run(&["gen-key", "--id", "research", "--scopes", "qot:read"])
        .ok();
    let after = Timestamp::now();
    assert_route(&run, cli, through_daemon);
    let research = generated_token(&run, "research", &cli.keys_file);
    let keys = cli.keys();
    let rec = record(&keys, "research");
    assert_only_documented_fields(rec);
    assert_eq!(rec["hash"], hash_of(&research), "hash = SHA-256 of the plaintext");
    assert_eq!(rec["scopes"], json!(["qot:read"]));
    assert_eq!(limit_fields(rec), BTreeSet::new(), "no limits: {rec:#}");
    assert_unset(rec, "allowed_machines");
    assert_unset(rec, "expires_at");
    assert_unset(rec, "note");
    assert_between("created_at", timestamp(&rec["created_at"]), before, after);
    if let Some(c) = client.as_mut() {
        assert_eq!(
            allowed_key(&quote_decision(c, &research).await),
            "research",
            "the new key works at once"
        );
    }

    // Step 3: the sim-bot trading key with limits
    let before = now_seconds();
    let run = cli.run(&sim_bot_args()).ok();
    let after = Timestamp::now();
    assert_route(&run, cli, through_daemon);
    let sim_bot = generated_token(&run, "sim-bot", &cli.keys_file);
    assert_ne!(sim_bot, research);
    let keys = cli.keys();
    assert_eq!(ids(&keys), BTreeSet::from(["research".into(), "sim-bot".into()]));
    let rec = record(&keys, "sim-bot");
    assert_only_documented_fields(rec);
    assert_eq!(rec["hash"], hash_of(&sim_bot));
    assert_eq!(rec["scopes"], json!(["qot:read", "acc:read", "trade:simulate"]));
    let expected: BTreeSet<String> = [
        "allowed_markets",
        "allowed_trd_sides",
        "max_order_value",
        "max_daily_value",
        "max_orders_per_minute",
        "hours_window",
    ]
    .map(String::from)
    .into();
    assert_eq!(limit_fields(rec), expected, "exactly the limits given: {rec:#}");
    let l = &rec["limits"];
    assert_eq!(l["allowed_markets"], json!(["HK", "US"]));
    assert_eq!(l["allowed_trd_sides"], json!(["SELL"]));
    assert_eq!(l["max_order_value"].as_f64(), Some(100_000.0));
    assert_eq!(l["max_daily_value"].as_f64(), Some(500_000.0));
    assert_eq!(l["max_orders_per_minute"], 5);
    assert_eq!(l["hours_window"], "09:30-16:00");
    assert_unset(rec, "allowed_machines");
    assert_unset(rec, "note");
    assert_between("created_at", timestamp(&rec["created_at"]), before, after);
    let days30 = Span::new().hours(30 * 24);
    assert_between(
        "expires_at (30d)",
        timestamp(&rec["expires_at"]),
        before.checked_add(days30).unwrap(),
        after.checked_add(days30).unwrap(),
    );
    let sim_hash = rec["hash"].clone();
    let research_rec = record(&keys, "research").clone();
    if let Some(c) = client.as_mut() {
        assert_eq!(allowed_key(&quote_decision(c, &sim_bot).await), "sim-bot");
        // Its limits are live too: a BUY is refused, without consuming anything.
        let mut buy = c.check_request(
            Iface::Rest,
            &sim_bot,
            "Trd_PlaceOrder",
            Some(order(Market::HK, "HK.00700", TrdSide::BUY, 100.0, Some(388.2))),
        );
        buy.dry_run = true;
        let id = buy.request_id;
        let d = futu_authd_tests::decision_of(id, c.request(Request::Check(buy)).await);
        assert_eq!(
            deny_reason(&d),
            Reason::Side,
            "--allowed-trd-sides SELL is in force"
        );
    }

    // Step 6: list-keys
    let run = cli.run(&["list-keys"]).ok();
    assert_route(&run, cli, through_daemon);
    for id in ["research", "sim-bot"] {
        assert!(run.stdout.contains(id), "list-keys shows {id}: {run:#?}");
    }
    assert_eq!(full_hash_in(&run.stdout), None, "list-keys never shows a hash");
    assert_eq!(cli.keys(), keys, "list-keys changes nothing");

    // bind-key sim-bot --this-machine
    let run = cli.run(&["bind-key", "sim-bot", "--this-machine"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    let rec = record(&keys, "sim-bot");
    assert_eq!(rec["allowed_machines"], json!([this_fingerprint()]));
    assert_eq!(rec["hash"], sim_hash, "binding does not change the plaintext");
    assert_eq!(record(&keys, "research"), &research_rec, "research is untouched");
    if let Some(c) = client.as_mut() {
        assert_eq!(
            allowed_key(&quote_decision(c, &sim_bot).await),
            "sim-bot",
            "bound to this host"
        );
    }

    // bind-key sim-bot --replace --machines fp_abc123,fp_def456
    let run = cli
        .run(&[
            "bind-key",
            "sim-bot",
            "--replace",
            "--machines",
            "fp_abc123,fp_def456",
        ])
        .ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    let rec = record(&keys, "sim-bot");
    assert_eq!(rec["allowed_machines"], json!(["fp_abc123", "fp_def456"]));
    assert_eq!(rec["hash"], sim_hash);
    if let Some(c) = client.as_mut() {
        assert_eq!(
            deny_reason(&quote_decision(c, &sim_bot).await),
            Reason::Machine,
            "bound elsewhere"
        );
    }

    // bind-key sim-bot --freeze
    let run = cli.run(&["bind-key", "sim-bot", "--freeze"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    assert_eq!(record(&keys, "sim-bot")["allowed_machines"], json!([]));
    if let Some(c) = client.as_mut() {
        assert_eq!(deny_reason(&quote_decision(c, &sim_bot).await), Reason::Frozen);
    }

    // bind-key sim-bot --clear
    let run = cli.run(&["bind-key", "sim-bot", "--clear"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    let rec = record(&keys, "sim-bot");
    assert_unset(rec, "allowed_machines");
    assert_eq!(rec["hash"], sim_hash);
    if let Some(c) = client.as_mut() {
        assert_eq!(allowed_key(&quote_decision(c, &sim_bot).await), "sim-bot");
    }

    // revoke-key sim-bot
    let run = cli.run(&["revoke-key", "sim-bot"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    assert_eq!(ids(&keys), BTreeSet::from(["research".into()]));
    assert_eq!(record(&keys, "research"), &research_rec);
    if let Some(c) = client.as_mut() {
        assert_eq!(
            deny_reason(&quote_decision(c, &sim_bot).await),
            Reason::UnknownKey,
            "revoked at once"
        );
        assert_eq!(allowed_key(&quote_decision(c, &research).await), "research");
    }

    let text = cli.keys_text();
    for token in [&research, &sim_bot] {
        assert!(
            !text.contains(token.as_str()) && !text.contains(&token[3..]),
            "keys.json never holds a plaintext"
        );
    }
    (research, sim_bot)
}

/// No file in `dir` (recursively) holds either plaintext.
fn assert_no_plaintext_in(dir: &Path, tokens: &[&str]) {
    for entry in std::fs::read_dir(dir).expect("read the test directory") {
        let path = entry.expect("a directory entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            assert_no_plaintext_in(&path, tokens);
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for t in tokens {
                assert!(
                    !text.contains(t) && !text.contains(&t[3..]),
                    "{} holds a plaintext",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn the_quickstart_commands_through_the_daemon_take_effect_at_once() {
    let mut d = DaemonBuilder::new(&[]).env("TZ", tz_near_midday()).start();
    let cli = Futucli::for_daemon(&d);
    // No SIGHUP is ever sent: every Check in there sees the change at once.
    let (research, sim_bot) = run_the_quickstart_commands(&cli, Some(&d)).await;
    d.stop();
    assert_no_plaintext_in(d.dir(), &[&research, &sim_bot]);
}

#[tokio::test]
async fn the_quickstart_commands_without_a_daemon_edit_the_file_and_say_so() {
    let dir = TempDir::new().unwrap();
    // FUTU_AUTH_SOCKET / FUTU_KEYS_FILE / FUTU_AUTHD_MACHINE_ID_FILE instead of flags.
    let cli = Futucli::without_daemon(dir.path()).by_env();
    let (research, sim_bot) = run_the_quickstart_commands(&cli, None).await;
    assert_no_plaintext_in(dir.path(), &[&research, &sim_bot]);

    // A daemon started on that file serves what futucli wrote.
    let d = DaemonBuilder::with_keys_text(cli.keys_text()).start();
    let mut c = d.client().await;
    assert_eq!(allowed_key(&quote_decision(&mut c, &research).await), "research");
    assert_eq!(
        deny_reason(&quote_decision(&mut c, &sim_bot).await),
        Reason::UnknownKey
    );
}

#[test]
fn gen_key_note_symbols_and_machine_flags_land_in_keys_json() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    let run = cli
        .run(&[
            "gen-key",
            "--id",
            "tp-bot",
            "--scopes",
            "trade:simulate",
            "--allowed-symbols",
            "HK.00700,US.AAPL",
            "--note",
            "simulated take-profit sell bot",
            "--bind-this-machine",
            "--expires",
            "2099-05-15T10:00:00Z",
        ])
        .ok();
    let token = generated_token(&run, "tp-bot", &cli.keys_file);
    let run = cli
        .run(&[
            "gen-key",
            "--id",
            "far",
            "--scopes",
            "qot:read",
            "--bind-machines",
            "fp_a,fp_b",
            "--expires",
            "12h",
        ])
        .ok();
    generated_token(&run, "far", &cli.keys_file);
    let keys = cli.keys();
    let rec = record(&keys, "tp-bot");
    assert_eq!(rec["hash"], hash_of(&token));
    assert_eq!(
        rec["limits"],
        json!({ "allowed_symbols": ["HK.00700", "US.AAPL"] })
    );
    assert_eq!(rec["note"], "simulated take-profit sell bot");
    assert_eq!(rec["allowed_machines"], json!([this_fingerprint()]));
    assert_eq!(
        timestamp(&rec["expires_at"]),
        "2099-05-15T10:00:00Z".parse::<Timestamp>().unwrap()
    );
    let rec = record(&keys, "far");
    assert_eq!(rec["allowed_machines"], json!(["fp_a", "fp_b"]));
    let twelve_hours = Span::new().hours(12);
    let created = timestamp(&rec["created_at"]);
    assert_between(
        "expires_at (12h)",
        timestamp(&rec["expires_at"]),
        created.checked_add(twelve_hours).unwrap(),
        created.checked_add(twelve_hours).unwrap(),
    );
}

#[test]
fn bind_key_adds_this_machine_and_listed_ones_together_but_refuses_contradictions() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    cli.run(&["gen-key", "--id", "bot", "--scopes", "qot:read"]).ok();
    cli.run(&["bind-key", "bot", "--this-machine", "--machines", "fp_other"])
        .ok();
    let keys = cli.keys();
    assert_eq!(
        record(&keys, "bot")["allowed_machines"],
        serde_json::json!([this_fingerprint(), "fp_other"])
    );
    cli.run(&["bind-key", "bot", "--replace", "--this-machine"]).ok();
    assert_eq!(
        record(&cli.keys(), "bot")["allowed_machines"],
        serde_json::json!([this_fingerprint()])
    );
    for contradiction in [
        &["bind-key", "bot", "--freeze", "--clear"][..],
        &["bind-key", "bot", "--freeze", "--machines", "fp_x"][..],
        &["bind-key", "bot", "--clear", "--this-machine"][..],
        &["bind-key", "bot"][..],
    ] {
        let run = cli.run(contradiction);
        assert_eq!(run.code, Some(2), "{contradiction:?}: {run:#?}");
    }
    assert_eq!(
        record(&cli.keys(), "bot")["allowed_machines"],
        serde_json::json!([this_fingerprint()])
    );
}
