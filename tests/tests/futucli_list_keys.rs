//! `futucli list-keys` through the daemon and on the file: a table with a column for each
//! of a key's fields and a row for each key (a frozen key says so), and `--json`, both
//! without the hash.

mod cli;

use cli::*;
use futu_authd_tests::{
    hash_of, key_json, keys_json, this_fingerprint, token_for, with, write_private, DaemonBuilder,
};
use serde_json::{json, Value};
use tempfile::TempDir;

fn listed_keys() -> Vec<Value> {
    let mut sim_bot = with(
        key_json(
            "sim-bot",
            &token_for("sim-bot"),
            &["qot:read", "acc:read", "trade:simulate"],
        ),
        "limits",
        json!({
            "allowed_markets": ["HK", "US"],
            "allowed_trd_sides": ["SELL"],
            "max_order_value": 100000,
            "max_daily_value": 500000,
            "max_orders_per_minute": 5,
            "hours_window": "09:30-16:00",
        }),
    );
    sim_bot["allowed_machines"] = json!([this_fingerprint()]);
    sim_bot["expires_at"] = json!("2099-05-15T10:00:00Z");
    sim_bot["note"] = json!("simulated take-profit sell bot");
    vec![
        key_json("research", &token_for("research"), &["qot:read"]),
        sim_bot,
        with(
            key_json("iced", &token_for("iced"), &["acc:read"]),
            "allowed_machines",
            json!([]),
        ),
    ]
}

fn assert_list_keys_output(cli: &Futucli, through_daemon: bool) {
    let run = cli.run(&["list-keys"]).ok();
    assert_route(&run, cli, through_daemon);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header = lines[0].to_uppercase();
    for column in ["ID", "SCOPES", "LIMITS", "MACHINES", "EXPIRES", "NOTE"] {
        assert!(
            header.contains(column),
            "the table has a {column} column: {header:?}"
        );
    }
    let row = |id: &str| -> &str {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("a row for {id}: {}", run.stdout))
    };
    let sim = row("sim-bot");
    for shown in [
        "qot:read,acc:read,trade:simulate",
        "HK,US",
        "SELL",
        "100000",
        "500000",
        "5/min",
        "09:30-16:00",
        this_fingerprint().as_str(),
        "2099-05-15",
        "simulated take-profit sell bot",
    ] {
        assert!(sim.contains(shown), "sim-bot's row shows {shown:?}: {sim:?}");
    }
    assert!(row("iced").contains("frozen"), "a frozen key says so");
    assert!(row("research").contains("qot:read"));
    assert_eq!(lines.len(), 4, "a header and three rows: {}", run.stdout);
    assert_eq!(
        full_hash_in(&run.stdout),
        None,
        "never the full hash: {}",
        run.stdout
    );
    for label in ["research", "sim-bot", "iced"] {
        assert!(!run.stdout.contains(&hash_of(&token_for(label))));
    }

    let run = cli.run(&["list-keys", "--json"]).ok();
    assert_route(&run, cli, through_daemon);
    let listed: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("list-keys --json is JSON ({e}): {}", run.stdout));
    let listed = listed.as_array().expect("a JSON array of keys");
    assert_eq!(listed.len(), 3);
    assert_eq!(
        full_hash_in(&run.stdout),
        None,
        "never the full hash: {}",
        run.stdout
    );
    let sim = listed
        .iter()
        .find(|k| k["id"] == "sim-bot")
        .expect("sim-bot is listed");
    assert_eq!(sim["scopes"], json!(["qot:read", "acc:read", "trade:simulate"]));
    assert_eq!(sim["limits"]["max_orders_per_minute"], 5);
    assert_eq!(sim["limits"]["hours_window"], "09:30-16:00");
    assert_eq!(sim["allowed_machines"], json!([this_fingerprint()]));
    assert_eq!(sim["note"], "simulated take-profit sell bot");
    let iced = listed.iter().find(|k| k["id"] == "iced").expect("iced is listed");
    assert_eq!(iced["allowed_machines"], json!([]));
}

#[test]
fn list_keys_shows_a_table_and_json_without_the_hash_through_the_daemon() {
    let d = DaemonBuilder::new(&listed_keys()).start();
    assert_list_keys_output(&Futucli::for_daemon(&d), true);
}

#[test]
fn list_keys_shows_a_table_and_json_without_the_hash_on_the_file() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    std::fs::create_dir(cli.keys_file.parent().unwrap()).unwrap();
    write_private(&cli.keys_file, &keys_json(&listed_keys()));
    assert_list_keys_output(&cli, false);
}
