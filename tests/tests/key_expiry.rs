//! Keys that need attention: the gauge `futu_auth_key_expires_timestamp_seconds{key_id}`
//! follows the keys in service (revokes, reloads), `futucli list-keys --expiring-within`
//! lists exactly the keys expiring within the window or expired (text and JSON, through
//! the daemon and on the file), `futucli usage` says how long a key has left, and the
//! daemon warns at start of a key expiring within 7 days, not of one expiring in 30.

mod cli;

use cli::*;
use futu_authd_tests::{
    hash_of, key_json, keys_json, metric_value, poll, token_for, write_private, DaemonBuilder,
};
use jiff::Timestamp;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tempfile::TempDir;

const GAUGE: &str = "futu_auth_key_expires_timestamp_seconds";
const DAY: i64 = 86_400;

/// Key `id` (scope qot:read) expiring at `expires_at` (RFC 3339), or never.
fn key(id: &str, expires_at: Option<&str>) -> Value {
    let mut k = key_json(id, &token_for(id), &["qot:read"]);
    if let Some(t) = expires_at {
        k["expires_at"] = json!(t);
    }
    k
}

/// The time `secs` seconds from now, in whole seconds, as keys.json writes it.
fn from_now(secs: i64) -> String {
    Timestamp::from_second(Timestamp::now().as_second() + secs)
        .unwrap()
        .to_string()
}

fn unix(t: &str) -> f64 {
    t.parse::<Timestamp>().unwrap().as_second() as f64
}

#[test]
fn the_expiry_gauge_shows_each_keys_expiry_and_follows_revokes_and_reloads() {
    let (a, b, c) = (
        "2099-05-15T10:00:00Z",
        "2099-06-01T00:00:00Z",
        "2099-07-01T00:00:00Z",
    );
    let d = DaemonBuilder::new(&[key("alpha", Some(a)), key("beta", Some(b)), key("plain", None)])
        .metrics()
        .start();
    let gauge = |text: &str, id: &str| metric_value(text, GAUGE, &[("key_id", id)]);
    let text = d.metrics_text();
    assert_eq!(gauge(&text, "alpha"), Some(unix(a)), "{text}");
    assert_eq!(gauge(&text, "beta"), Some(unix(b)), "{text}");
    assert_eq!(
        gauge(&text, "plain"),
        None,
        "a key without expiry has no sample: {text}"
    );
    assert!(
        !text.contains(&hash_of(&token_for("alpha"))[..16]),
        "never a hash: {text}"
    );

    Futucli::for_daemon(&d).run(&["revoke-key", "beta"]).ok();
    let text = d.metrics_text();
    assert_eq!(gauge(&text, "beta"), None, "a revoked key's sample goes: {text}");
    assert_eq!(gauge(&text, "alpha"), Some(unix(a)), "{text}");

    // keys.json edited by hand: alpha's expiry moved, plain given one; then reloaded.
    d.write_keys(&[key("alpha", Some(c)), key("plain", Some(b))]);
    d.signal(Signal::SIGHUP);
    let text = d.wait_metrics(|t| gauge(t, "alpha") == Some(unix(c)));
    assert_eq!(
        gauge(&text, "alpha"),
        Some(unix(c)),
        "the reload moved it: {text}"
    );
    assert_eq!(gauge(&text, "plain"), Some(unix(b)), "{text}");

    // Its expiry removed: no sample.
    d.write_keys(&[key("alpha", None), key("plain", Some(b))]);
    Futucli::for_daemon(&d).run(&["reload"]).ok();
    let text = d.metrics_text();
    assert_eq!(gauge(&text, "alpha"), None, "an expiry removed by reload: {text}");
    assert_eq!(gauge(&text, "plain"), Some(unix(b)), "{text}");
}

/// Keys around a 7-day window: one expired two days ago, one in 3 days, one an hour inside
/// the window, one an hour outside it, one never.
fn window_keys() -> Vec<Value> {
    vec![
        key("outside", Some(&from_now(7 * DAY + 3_600))),
        key("soon", Some(&from_now(3 * DAY))),
        key("never", None),
        key("inside", Some(&from_now(7 * DAY - 3_600))),
        key("gone", Some(&from_now(-2 * DAY))),
    ]
}

fn assert_expiring_within(cli: &Futucli, through_daemon: bool) {
    // Without the flag, EXPIRES is the bare time, as before.
    let run = cli.run(&["list-keys"]).ok();
    assert!(!run.stdout.contains("(in "), "{}", run.stdout);

    let run = cli.run(&["list-keys", "--expiring-within", "7d"]).ok();
    assert_route(&run, cli, through_daemon);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let ids: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        ids,
        ["gone", "soon", "inside"],
        "soonest first, nothing else: {}",
        run.stdout
    );
    assert!(lines[0].contains("EXPIRES"), "{}", run.stdout);
    assert!(
        lines[1].contains("(expired 2d 0h ago)"),
        "marked expired: {}",
        run.stdout
    );
    assert!(
        lines[2].contains("(in 2d 23h)") || lines[2].contains("(in 3d 0h)"),
        "the time left: {}",
        run.stdout
    );
    assert!(
        lines[3].contains("(in 6d 22h)") || lines[3].contains("(in 6d 23h)"),
        "{}",
        run.stdout
    );
    assert_eq!(full_hash_in(&run.stdout), None);

    let run = cli.run(&["list-keys", "--expiring-within", "7d", "--json"]).ok();
    assert_route(&run, cli, through_daemon);
    let listed: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let listed = listed.as_array().expect("an array");
    let ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gone", "soon", "inside"], "{}", run.stdout);
    assert_eq!(listed[0]["expired"], json!(true));
    assert!(listed[0]["expires_in_seconds"].as_i64().unwrap() <= -2 * DAY);
    assert_eq!(listed[1]["expired"], json!(false));
    let left = listed[1]["expires_in_seconds"].as_i64().unwrap();
    assert!((3 * DAY - 600..=3 * DAY).contains(&left), "{left}");
    assert!(listed.iter().all(|k| k.get("hash").is_none()), "{}", run.stdout);

    // A shorter window: the expired key alone.
    let run = cli.run(&["list-keys", "--expiring-within", "12h", "--json"]).ok();
    let listed: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{}", run.stdout);

    // None in the window.
    cli.run(&["revoke-key", "gone"]).ok();
    let run = cli.run(&["list-keys", "--expiring-within", "30m"]).ok();
    assert_eq!(run.stdout, "no keys expiring within 30m\n");
    let run = cli.run(&["list-keys", "--expiring-within", "30m", "--json"]).ok();
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).unwrap(), json!([]));
    let run = cli.run(&["list-keys", "--expiring-within", "8d"]).ok();
    assert_eq!(
        run.stdout.lines().count(),
        4,
        "soon, inside, outside: {}",
        run.stdout
    );

    let run = cli.run(&["list-keys", "--expiring-within", "7"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("30d, 12h or 90m"), "{}", run.stderr);
}

#[test]
fn list_keys_expiring_within_lists_exactly_the_keys_in_the_window_through_the_daemon() {
    let d = DaemonBuilder::new(&window_keys()).start();
    assert_expiring_within(&Futucli::for_daemon(&d), true);
}

#[test]
fn list_keys_expiring_within_lists_exactly_the_keys_in_the_window_on_the_file() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    std::fs::create_dir(cli.keys_file.parent().unwrap()).unwrap();
    write_private(&cli.keys_file, &keys_json(&window_keys()));
    assert_expiring_within(&cli, false);
}

#[test]
fn usage_says_how_long_a_key_has_left_and_nothing_of_a_key_without_expiry() {
    let expires = from_now(3 * DAY + 4 * 3_600 + 1_800);
    let d = DaemonBuilder::new(&[key("soon", Some(&expires)), key("never", None)]).start();
    let cli = Futucli::for_daemon(&d);
    let run = cli.run(&["usage", "soon"]).ok();
    let line = format!("expires: {expires} (in 3d 4h)");
    assert!(
        run.stdout.lines().any(|l| l == line),
        "{line:?} in {}",
        run.stdout
    );
    let run = cli.run(&["usage", "never"]).ok();
    assert!(!run.stdout.contains("expires"), "{}", run.stdout);
    assert_eq!(
        run.stdout.lines().count(),
        3,
        "usage, last used, halted: {}",
        run.stdout
    );
}

#[test]
fn the_daemon_warns_at_start_of_a_key_expiring_in_3_days_and_not_of_one_in_30() {
    let soon = from_now(3 * DAY + 1_800);
    let d = DaemonBuilder::new(&[
        key("soon", Some(&soon)),
        key("later", Some(&from_now(30 * DAY))),
        key("never", None),
    ])
    .start();
    let line = format!("key_id=soon expires_at={soon} key expires in 3d 0h");
    d.wait_stderr(&line);
    // A reload warns again, after the start's warnings were all written.
    Futucli::for_daemon(&d).run(&["reload"]).ok();
    let text = poll("the warning again after the reload", || {
        let text = d.stderr_text();
        (text.matches(&line).count() >= 2).then_some(text)
    });
    let warned: Vec<&str> = text.lines().filter(|l| l.contains(&line)).collect();
    assert_eq!(warned.len(), 2, "at start and at the reload: {text}");
    assert!(warned.iter().all(|l| l.contains("WARN")), "{text}");
    assert!(!text.contains("key_id=later"), "30 days away: no warning: {text}");
    assert!(!text.contains("key_id=never"), "{text}");
    assert!(
        !text.contains(&hash_of(&token_for("soon"))[..16]),
        "never the hash: {text}"
    );
}
