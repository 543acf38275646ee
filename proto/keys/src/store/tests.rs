use super::*;
use futu_auth_proto::{Fingerprint, Market, Scope, TrdSide};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn h(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// Two keys of every shape keys.json takes: `research`, one scope and nothing else, and
/// `sim-bot`, every limit, a binding, an expiry and a note (README.md's keys.json examples,
/// their elided hashes replaced by real digests).
fn example_file() -> String {
    format!(
        r#"{{
  "version": 1,
  "keys": [
    {{
      "id": "research",
      "hash": "{}",
      "scopes": ["qot:read"],
      "created_at": "2026-04-15T10:00:00Z"
    }},
    {{
      "id": "sim-bot",
      "hash": "{}",
      "scopes": ["qot:read", "acc:read", "trade:simulate"],
      "limits": {{
        "allowed_markets": ["HK"],
        "allowed_symbols": ["HK.00700", "HK.09988"],
        "max_order_value": 100000,
        "max_daily_value": 500000,
        "max_orders_per_minute": 3,
        "hours_window": "09:30-16:00",
        "allowed_trd_sides": ["SELL"]
      }},
      "allowed_machines": ["fp_bot_host_abc123"],
      "created_at": "2026-04-15T10:00:00Z",
      "expires_at": "2026-05-15T10:00:00Z",
      "note": "simulated take-profit sell bot"
    }}
  ]
}}
"#,
        h('a'),
        h('c')
    )
}

fn parse(text: &str) -> Result<KeysFile, StoreError> {
    KeysFile::parse(text, Path::new("keys.json"))
}

fn invalid(text: &str) -> InvalidFile {
    match parse(text) {
        Err(StoreError::Invalid(e)) => *e,
        other => panic!("expected an invalid-file error, got {other:?}"),
    }
}

#[test]
fn a_minimal_key_and_a_key_with_every_field_load_as_written() {
    let f = parse(&example_file()).unwrap();
    assert_eq!(f.keys.len(), 2);
    let research = &f.keys[0];
    assert_eq!(research.id.as_str(), "research");
    assert_eq!(research.scopes, vec![Scope::QotRead]);
    assert!(research.limits.is_unlimited());
    assert_eq!(research.allowed_machines, None);
    assert_eq!(research.expires_at, None);
    let bot = &f.keys[1];
    assert_eq!(bot.limits.allowed_markets, Some(vec![Market::HK]));
    assert_eq!(bot.limits.allowed_trd_sides, Some(vec![TrdSide::SELL]));
    assert_eq!(bot.limits.max_order_value.map(|c| c.get()), Some(100000.0));
    assert_eq!(bot.limits.max_daily_value.map(|c| c.get()), Some(500000.0));
    assert_eq!(bot.limits.max_orders_per_minute, Some(3));
    assert_eq!(bot.limits.hours_window.unwrap().to_string(), "09:30-16:00");
    assert_eq!(
        bot.allowed_machines,
        Some(vec!["fp_bot_host_abc123".parse::<Fingerprint>().unwrap()])
    );
    assert_eq!(bot.note.as_deref(), Some("simulated take-profit sell bot"));
    assert_eq!(bot.expires_at.unwrap().to_string(), "2026-05-15T10:00:00Z");
}

#[test]
fn example_keys_with_elided_hashes_are_refused() {
    let text = example_file().replace(&h('a'), "a1b2...");
    let e = invalid(&text);
    assert_eq!(e.key_id.as_deref(), Some("research"));
    assert_eq!(e.field, "keys[0].hash");
    assert_eq!(e.line, 6);
}

#[test]
fn load_then_save_round_trips_every_field() {
    let f = parse(&example_file()).unwrap();
    let again = parse(&f.to_json()).unwrap();
    assert_eq!(f, again);
    // Unset fields stay unset, as in the minimal example (`research`).
    let research: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
    let keys = research["keys"].as_array().unwrap();
    assert_eq!(
        keys[0].as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
        vec!["created_at", "hash", "id", "scopes"]
    );
    assert_eq!(keys[1]["limits"]["max_order_value"], serde_json::json!(100000.0));
    assert_eq!(
        keys[1]["allowed_machines"],
        serde_json::json!(["fp_bot_host_abc123"])
    );
}

#[test]
fn sha256_prefix_is_accepted_and_written_without_it() {
    let text = example_file().replace(&h('a'), &format!("sha256:{}", h('a')));
    let f = parse(&text).unwrap();
    assert!(f.to_json().contains(&format!("\"{}\"", h('a'))));
    assert!(!f.to_json().contains("sha256:"));
}

#[test]
fn a_typo_in_a_limit_names_the_key_the_field_and_the_line() {
    let text = example_file().replace("\"max_order_value\"", "\"max_order_valeu\"");
    let e = invalid(&text);
    assert_eq!(e.key_id.as_deref(), Some("sim-bot"));
    assert!(e.field.starts_with("keys[1].limits"), "{}", e.field);
    assert!(
        e.message.contains("unknown field `max_order_valeu`"),
        "{}",
        e.message
    );
    assert_eq!(e.line, 17);
    let shown = e.to_string();
    assert!(shown.starts_with("keys.json:17:"), "{shown}");
    assert!(shown.contains("key \"sim-bot\""), "{shown}");
}

#[test]
fn an_unknown_top_level_or_record_field_is_refused() {
    let e = invalid(&example_file().replace("\"note\"", "\"notes\""));
    assert_eq!(e.key_id.as_deref(), Some("sim-bot"));
    assert!(e.message.contains("unknown field `notes`"));
    let e = invalid(&example_file().replacen("\"keys\"", "\"extra\": 1, \"keys\"", 1));
    assert!(e.message.contains("unknown field `extra`"));
    assert_eq!(e.key_id, None);
}

#[test]
fn a_version_other_than_1_is_refused() {
    let e = invalid(&example_file().replace("\"version\": 1", "\"version\": 2"));
    assert_eq!(e.field, "version");
    assert!(
        e.message.contains("unsupported keys.json version 2"),
        "{}",
        e.message
    );
    assert_eq!(e.line, 2);
    assert!(matches!(
        parse(&example_file().replace("\"version\": 1,", "")),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn duplicate_ids_are_refused() {
    let text = example_file().replace("\"id\": \"sim-bot\"", "\"id\": \"research\"");
    let e = invalid(&text);
    assert!(
        e.message.contains("duplicate key id \"research\""),
        "{}",
        e.message
    );
    assert!(e.line >= 24, "points at the second key, line {}", e.line);
}

#[test]
fn duplicate_hashes_are_refused() {
    let text = example_file().replace(&h('c'), &h('a'));
    let e = invalid(&text);
    assert!(e.message.contains("same hash"), "{}", e.message);
}

#[test]
fn malformed_values_name_their_key_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("\"trade:simulate\"", "\"trade:simulat\"", "keys[1].scopes"),
        (
            "\"allowed_markets\": [\"HK\"]",
            "\"allowed_markets\": [\"XX\"]",
            "keys[1].limits.allowed_markets",
        ),
        ("\"HK.09988\"", "\"09988\"", "keys[1].limits.allowed_symbols"),
        ("[\"SELL\"]", "[\"sell\"]", "keys[1].limits.allowed_trd_sides"),
        ("\"09:30-16:00\"", "\"9:30-16\"", "keys[1].limits.hours_window"),
        ("\"2026-05-15T10:00:00Z\"", "\"next month\"", "keys[1].expires_at"),
        (
            "\"fp_bot_host_abc123\"",
            "\"bot host\"",
            "keys[1].allowed_machines",
        ),
        (
            "\"max_daily_value\": 500000",
            "\"max_daily_value\": -1",
            "keys[1].limits.max_daily_value",
        ),
        (
            "\"max_daily_value\": 500000",
            "\"max_daily_value\": 1e999",
            "keys[1].limits.max_daily_value",
        ),
        (
            "\"max_orders_per_minute\": 3",
            "\"max_orders_per_minute\": 2.5",
            "keys[1].limits.max_orders_per_minute",
        ),
        (
            "\"max_orders_per_minute\": 3",
            "\"max_orders_per_minute\": -3",
            "keys[1].limits.max_orders_per_minute",
        ),
    ];
    for (from, to, field) in cases {
        let text = example_file().replace(from, to);
        assert_ne!(text, example_file(), "{from} not found");
        let e = invalid(&text);
        assert_eq!(e.key_id.as_deref(), Some("sim-bot"), "{to}: {e}");
        assert!(
            e.field.starts_with(field),
            "{to}: field {} should start with {field}",
            e.field
        );
        assert!(e.line > 10, "{to}: line {}", e.line);
    }
}

#[test]
fn a_malformed_created_at_in_the_first_key_is_reported_there() {
    let e = invalid(&example_file().replacen("\"2026-04-15T10:00:00Z\"", "\"2026-04-15\"", 1));
    assert_eq!(e.key_id.as_deref(), Some("research"));
    assert_eq!(e.field, "keys[0].created_at");
    assert_eq!(e.line, 8);
}

#[test]
fn broken_json_reports_its_position() {
    let e = invalid("{\"version\": 1, \"keys\": [\n  {\"id\": \"x\",,}\n]}");
    assert_eq!(e.line, 2);
    assert!(matches!(
        parse("{\"version\":1,\"keys\":[]} trailing"),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn null_and_omitted_limits_both_mean_unlimited() {
    let text = example_file().replace("\"max_orders_per_minute\": 3", "\"max_orders_per_minute\": null");
    let f = parse(&text).unwrap();
    assert_eq!(f.keys[1].limits.max_orders_per_minute, None);
    let text = example_file().replace(
        "\"allowed_machines\": [\"fp_bot_host_abc123\"]",
        "\"allowed_machines\": []",
    );
    assert_eq!(parse(&text).unwrap().keys[1].allowed_machines, Some(vec![]));
    let text = example_file().replace(
        "\"allowed_machines\": [\"fp_bot_host_abc123\"]",
        "\"allowed_machines\": null",
    );
    assert_eq!(parse(&text).unwrap().keys[1].allowed_machines, None);
}

#[test]
fn save_is_atomic_with_mode_0600_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let f = parse(&example_file()).unwrap();
    f.save(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(KeysFile::load(&path).unwrap(), f);
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["keys.json".to_string()]);
    // A file made with a looser mode is replaced by one with 0600.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(mode_warning(&path).is_some());
    f.save(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(mode_warning(&path).is_none());
}

#[test]
fn update_creates_a_missing_file_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let spec = |id: &str| KeySpec {
        id: id.parse().unwrap(),
        scopes: vec![Scope::QotRead],
        limits: Default::default(),
        allowed_machines: None,
        expires_at: None,
        note: None,
    };
    let now = Timestamp::from_second(1_776_247_200).unwrap();
    let Updated {
        value: (token, rec),
        file,
        digest: written,
    } = update(&path, |f| f.gen_key(spec("research"), now)).unwrap();
    assert_eq!(
        written,
        text_digest(&fs::read_to_string(&path).unwrap()),
        "the digest of what was written"
    );
    assert_eq!(file.keys.len(), 1);
    assert_eq!(rec.hash, digest(&token));
    assert!(
        !fs::read_to_string(&path).unwrap().contains(token.expose()),
        "plaintext is never stored"
    );
    let err = update(&path, |f| f.gen_key(spec("research"), now)).unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey(ref id) if id == "research"));
    assert_eq!(
        KeysFile::load(&path).unwrap().keys.len(),
        1,
        "a failed change saves nothing"
    );
}

#[test]
fn a_broken_file_is_never_overwritten_by_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    fs::write(&path, "{\"version\": 1, \"keys\": [}").unwrap();
    let err = update(&path, |f| f.revoke(&"x".parse().unwrap())).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"version\": 1, \"keys\": [}"
    );
}

#[test]
fn revoke_and_bind_change_only_their_key() {
    let mut f = parse(&example_file()).unwrap();
    let fp: Fingerprint = "fp_new".parse().unwrap();
    let bot: KeyId = "sim-bot".parse().unwrap();
    let rec = f.bind(&bot, BindOp::Add(vec![fp.clone(), fp.clone()])).unwrap();
    assert_eq!(
        rec.allowed_machines.as_ref().unwrap().len(),
        2,
        "no duplicate fingerprints"
    );
    let rec = f.bind(&bot, BindOp::Replace(vec![fp.clone()])).unwrap();
    assert_eq!(rec.allowed_machines, Some(vec![fp.clone()]));
    assert_eq!(
        f.bind(&bot, BindOp::Freeze).unwrap().allowed_machines,
        Some(vec![])
    );
    assert_eq!(f.bind(&bot, BindOp::Clear).unwrap().allowed_machines, None);
    let research: KeyId = "research".parse().unwrap();
    assert_eq!(
        f.bind(&research, BindOp::Add(vec![fp.clone()]))
            .unwrap()
            .allowed_machines,
        Some(vec![fp])
    );
    assert!(matches!(
        f.revoke(&"nope".parse().unwrap()),
        Err(StoreError::UnknownKey(_))
    ));
    f.revoke(&bot).unwrap();
    assert_eq!(f.keys.len(), 1);
    assert!(matches!(
        f.bind(&bot, BindOp::Clear),
        Err(StoreError::UnknownKey(_))
    ));
}

#[test]
fn concurrent_writers_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let now = Timestamp::from_second(1_776_247_200).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let path = &path;
            s.spawn(move || {
                for i in 0..10 {
                    let spec = KeySpec {
                        id: format!("k{t}-{i}").parse().unwrap(),
                        scopes: vec![Scope::QotRead],
                        limits: Default::default(),
                        allowed_machines: None,
                        expires_at: None,
                        note: None,
                    };
                    update(path, |f| f.gen_key(spec, now)).unwrap();
                }
            });
        }
    });
    assert_eq!(KeysFile::load(&path).unwrap().keys.len(), 80);
}

#[test]
fn a_plaintext_pasted_into_keys_json_is_never_quoted_in_the_error() {
    let token = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
    for (from, to) in [
        ("\"id\": \"sim-bot\"", format!("\"id\": \"{token}\"")),
        ("\"acc:read\"", format!("\"{token}\"")),
        ("\"max_order_value\"", format!("\"{token}\"")),
        ("\"HK.09988\"", format!("\"HK.{token}\"")),
    ] {
        let text = example_file().replace(from, &to);
        assert_ne!(text, example_file());
        let e = invalid(&text);
        assert!(!e.to_string().contains("8a3f2b9c"), "{e}");
    }
}

#[test]
fn a_cap_of_negative_zero_in_keys_json_loads_as_zero_and_is_written_as_0() {
    let text = example_file()
        .replace("\"max_order_value\": 100000", "\"max_order_value\": -0")
        .replace("\"max_daily_value\": 500000", "\"max_daily_value\": -0.0");
    let f = parse(&text).unwrap();
    let limits = &f.keys[1].limits;
    for c in [limits.max_order_value, limits.max_daily_value] {
        let c = c.expect("the cap is set");
        assert_eq!(c.get().to_bits(), 0.0f64.to_bits(), "+0, not -0");
        assert_eq!(c.money(), futu_auth_proto::money::Money::ZERO);
    }
    let json = f.to_json();
    assert!(json.contains("\"max_order_value\": 0.0"), "{json}");
    assert!(json.contains("\"max_daily_value\": 0.0"), "{json}");
    assert!(!json.contains(": -0"), "{json}");
}

#[test]
fn a_cap_with_more_than_8_decimal_places_is_refused_with_its_line_and_column() {
    let text = example_file().replace("\"max_order_value\": 100000", "\"max_order_value\": 0.123456789");
    let e = invalid(&text);
    assert_eq!(e.key_id.as_deref(), Some("sim-bot"));
    assert_eq!(e.field, "keys[1].limits.max_order_value");
    assert_eq!(e.line, 17);
    assert!(e.column > 20, "column {}", e.column);
    assert_eq!(
        e.message,
        "cap 0.123456789 has more than 8 decimal places; amounts are counted to 0.00000001"
    );
    assert!(e.to_string().starts_with("keys.json:17:"), "{e}");
    for (cap, why) in [
        ("1e-9", "more than 8 decimal places"),
        ("5e-324", "more than 8 decimal places"),
        ("1e300", "the largest amount futu-authd counts"),
    ] {
        let e = invalid(&example_file().replace(
            "\"max_daily_value\": 500000",
            &format!("\"max_daily_value\": {cap}"),
        ));
        assert_eq!(e.field, "keys[1].limits.max_daily_value", "{cap}");
        assert!(e.message.contains(why), "{cap}: {}", e.message);
    }
}

#[test]
fn gen_key_stores_each_scope_and_whitelisted_value_once_in_first_seen_order() {
    let mut f = KeysFile::default();
    let hk: futu_auth_proto::Symbol = "HK.00700".parse().unwrap();
    let us: futu_auth_proto::Symbol = "US.AAPL".parse().unwrap();
    let a: Fingerprint = "fp_a".parse().unwrap();
    let b: Fingerprint = "fp_b".parse().unwrap();
    let spec = KeySpec {
        id: "dup".parse().unwrap(),
        scopes: vec![
            Scope::TradeSimulate,
            Scope::QotRead,
            Scope::TradeSimulate,
            Scope::QotRead,
        ],
        limits: futu_auth_proto::Limits {
            allowed_markets: Some(vec![Market::US, Market::HK, Market::US]),
            allowed_symbols: Some(vec![us.clone(), hk.clone(), us.clone(), hk.clone()]),
            allowed_trd_sides: Some(vec![TrdSide::SELL, TrdSide::SELL, TrdSide::BUY]),
            ..Default::default()
        },
        allowed_machines: Some(vec![b.clone(), a.clone(), b.clone()]),
        expires_at: None,
        note: None,
    };
    let (_, rec) = f
        .gen_key(spec, Timestamp::from_second(1_776_247_200).unwrap())
        .unwrap();
    assert_eq!(rec.scopes, vec![Scope::TradeSimulate, Scope::QotRead]);
    assert_eq!(rec.limits.allowed_markets, Some(vec![Market::US, Market::HK]));
    assert_eq!(rec.limits.allowed_symbols, Some(vec![us, hk]));
    assert_eq!(
        rec.limits.allowed_trd_sides,
        Some(vec![TrdSide::SELL, TrdSide::BUY])
    );
    assert_eq!(rec.allowed_machines, Some(vec![b, a]));
    assert_eq!(f.keys[0], rec, "what is stored is what is returned");
}

// Rotation.

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The example file with a `rotations` array of these entries (JSON text each).
fn with_rotations(entries: &[String]) -> String {
    let text = example_file();
    let end = text.rfind(']').unwrap();
    format!(
        "{}],\n  \"rotations\": [\n    {}\n  ]\n}}\n",
        &text[..end],
        entries.join(",\n    ")
    )
}

fn rotation(id: &str, previous: &str, until: &str) -> String {
    format!(r#"{{"id": "{id}", "previous_hash": "{previous}", "until": "{until}"}}"#)
}

#[test]
fn rotate_gives_a_new_plaintext_and_keeps_the_old_digest_until_the_overlap_ends() {
    let mut f = parse(&example_file()).unwrap();
    let before = f.keys[1].clone();
    let bot: KeyId = "sim-bot".parse().unwrap();
    let now = ts("2026-04-20T10:00:00.5Z");
    let (token, until) = f.rotate(&bot, Duration::from_secs(3600), now).unwrap();
    assert_eq!(until, Some(ts("2026-04-20T11:00:00Z")), "whole seconds");
    let after = &f.keys[1];
    assert_eq!(after.hash, digest(&token));
    assert_ne!(after.hash, before.hash);
    let mut same = after.clone();
    same.hash = before.hash;
    assert_eq!(same, before, "everything but the hash stays");
    assert_eq!(
        f.rotations,
        vec![Rotation {
            id: bot,
            previous_hash: before.hash,
            until: ts("2026-04-20T11:00:00Z"),
        }]
    );
    let text = f.to_json();
    assert!(!text.contains(token.expose()), "no plaintext in keys.json");
    assert!(
        text.contains(&format!("\"previous_hash\": \"{}\"", h('c'))),
        "{text}"
    );
    assert_eq!(parse(&text).unwrap(), f, "a file with rotations round-trips");
}

#[test]
fn a_file_without_rotations_is_written_without_the_field() {
    let f = parse(&example_file()).unwrap();
    assert!(f.rotations.is_empty());
    assert!(!f.to_json().contains("rotations"));
}

#[test]
fn overlap_zero_records_no_rotation_and_ends_an_earlier_one() {
    let mut f = parse(&example_file()).unwrap();
    let research: KeyId = "research".parse().unwrap();
    let now = ts("2026-04-20T10:00:00Z");
    let (_, until) = f.rotate(&research, Duration::from_secs(86_400), now).unwrap();
    assert!(until.is_some());
    let (token, until) = f.rotate(&research, Duration::ZERO, now).unwrap();
    assert_eq!(until, None);
    assert!(f.rotations.is_empty(), "{:?}", f.rotations);
    assert_eq!(f.keys[0].hash, digest(&token));
}

#[test]
fn the_overlap_never_passes_the_keys_expiry() {
    let mut f = parse(&example_file()).unwrap();
    let bot: KeyId = "sim-bot".parse().unwrap();
    // sim-bot expires at 2026-05-15T10:00:00Z.
    let (_, until) = f
        .rotate(&bot, Duration::from_secs(86_400), ts("2026-05-15T00:00:00Z"))
        .unwrap();
    assert_eq!(until, Some(ts("2026-05-15T10:00:00Z")));
    assert_eq!(f.rotations[0].until, ts("2026-05-15T10:00:00Z"));
    // An expired key's old plaintext gets no overlap at all.
    let (_, until) = f
        .rotate(&bot, Duration::from_secs(86_400), ts("2026-06-01T00:00:00Z"))
        .unwrap();
    assert_eq!(until, None);
    assert!(f.rotations.is_empty());
}

#[test]
fn rotating_again_gives_the_overlap_to_the_plaintext_just_replaced_only() {
    let mut f = parse(&example_file()).unwrap();
    let research: KeyId = "research".parse().unwrap();
    let now = ts("2026-04-20T10:00:00Z");
    let (first, _) = f.rotate(&research, Duration::from_secs(3600), now).unwrap();
    let (second, _) = f
        .rotate(&research, Duration::from_secs(7200), ts("2026-04-20T10:30:00Z"))
        .unwrap();
    assert_eq!(f.rotations.len(), 1);
    assert_eq!(f.rotations[0].previous_hash, digest(&first));
    assert_eq!(f.rotations[0].until, ts("2026-04-20T12:30:00Z"));
    assert_eq!(f.keys[0].hash, digest(&second));
    parse(&f.to_json()).unwrap();
}

#[test]
fn revoking_a_key_removes_its_rotation() {
    let mut f = parse(&example_file()).unwrap();
    let now = ts("2026-04-20T10:00:00Z");
    for id in ["research", "sim-bot"] {
        f.rotate(&id.parse().unwrap(), Duration::from_secs(3600), now)
            .unwrap();
    }
    f.revoke(&"research".parse().unwrap()).unwrap();
    assert_eq!(f.rotations.len(), 1);
    assert_eq!(f.rotations[0].id.as_str(), "sim-bot");
    parse(&f.to_json()).unwrap();
}

#[test]
fn ended_rotations_are_dropped_on_the_next_change() {
    let mut f = parse(&example_file()).unwrap();
    let research: KeyId = "research".parse().unwrap();
    let bot: KeyId = "sim-bot".parse().unwrap();
    f.rotate(&research, Duration::from_secs(60), ts("2026-04-20T10:00:00Z"))
        .unwrap();
    f.rotate(&bot, Duration::from_secs(60), ts("2026-04-20T11:00:00Z"))
        .unwrap();
    assert_eq!(f.rotations.len(), 1, "research's overlap ended before");
    assert_eq!(f.rotations[0].id, bot);

    // Through update (the clock is today's): an overlap of 2020 is gone after any change.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let old = rotation("research", &h('b'), "2020-01-01T00:00:00Z");
    fs::write(&path, with_rotations(&[old])).unwrap();
    assert_eq!(KeysFile::load(&path).unwrap().rotations.len(), 1, "loads as is");
    update(&path, |f| f.bind(&bot, BindOp::Clear)).unwrap();
    assert!(KeysFile::load(&path).unwrap().rotations.is_empty());
    assert!(!fs::read_to_string(&path).unwrap().contains("rotations"));
}

#[test]
fn rotate_refuses_an_unknown_key_and_an_overlap_over_90_days() {
    let mut f = parse(&example_file()).unwrap();
    let now = ts("2026-04-20T10:00:00Z");
    assert!(matches!(
        f.rotate(&"nope".parse().unwrap(), Duration::from_secs(60), now),
        Err(StoreError::UnknownKey(_))
    ));
    let e = f
        .rotate(
            &"research".parse().unwrap(),
            MAX_OVERLAP + Duration::from_secs(1),
            now,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::OverlapTooLong(7_776_001)), "{e:?}");
    assert!(e.to_string().contains("90 days"), "{e}");
    assert_eq!(f, parse(&example_file()).unwrap(), "nothing changed");
    let (_, until) = f.rotate(&"research".parse().unwrap(), MAX_OVERLAP, now).unwrap();
    assert_eq!(until, Some(ts("2026-07-19T10:00:00Z")));
}

#[test]
fn a_rotation_for_an_unknown_key_names_the_entry_and_its_line() {
    let text = with_rotations(&[rotation("ghost", &h('b'), "2026-12-01T08:00:00Z")]);
    let e = invalid(&text);
    assert_eq!(e.field, "rotations[0].id");
    assert_eq!(e.key_id.as_deref(), Some("ghost"));
    assert!(e.message.contains("no key has id \"ghost\""), "{}", e.message);
    let line = text.lines().position(|l| l.contains("ghost")).unwrap() + 1;
    assert_eq!(e.line, line);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("keys.json:{line}:")) && shown.contains("field rotations[0].id"),
        "{shown}"
    );
}

#[test]
fn a_previous_hash_used_twice_or_in_service_is_refused() {
    let e = invalid(&with_rotations(&[
        rotation("research", &h('b'), "2026-12-01T08:00:00Z"),
        rotation("sim-bot", &h('b'), "2026-12-01T08:00:00Z"),
    ]));
    assert_eq!(e.field, "rotations[1].previous_hash");
    assert_eq!(e.key_id.as_deref(), Some("sim-bot"));
    assert!(
        e.message.contains("same previous_hash as rotations[0]"),
        "{}",
        e.message
    );
    assert!(e.line > 0 && e.column > 0);

    let e = invalid(&with_rotations(&[rotation(
        "research",
        &h('c'),
        "2026-12-01T08:00:00Z",
    )]));
    assert_eq!(e.field, "rotations[0].previous_hash");
    assert!(
        e.message.contains("hash of keys[1] (\"sim-bot\")"),
        "{}",
        e.message
    );
}

#[test]
fn a_key_has_at_most_one_rotation() {
    let e = invalid(&with_rotations(&[
        rotation("research", &h('b'), "2026-12-01T08:00:00Z"),
        rotation("research", &h('d'), "2026-12-01T08:00:00Z"),
    ]));
    assert_eq!(e.field, "rotations[1].id");
    assert!(e.message.contains("two rotations"), "{}", e.message);
}

#[test]
fn a_malformed_rotation_entry_names_its_field() {
    let e = invalid(&with_rotations(&[
        r#"{"id": "research", "previous_hash": "abc", "until": "2026-12-01T08:00:00Z"}"#.into(),
    ]));
    assert_eq!(e.field, "rotations[0].previous_hash");
    assert_eq!(e.key_id.as_deref(), Some("research"));
    assert!(e.message.contains("malformed hash"), "{}", e.message);

    let e = invalid(&with_rotations(&[format!(
        r#"{{"id": "research", "previous_hash": "{}", "until": "2026-12-01T08:00:00Z", "note": "x"}}"#,
        h('b')
    )]));
    assert!(e.field.starts_with("rotations[0]"), "{}", e.field);
    assert!(e.message.contains("unknown field `note`"), "{}", e.message);

    let e = invalid(&with_rotations(&[format!(
        r#"{{"id": "research", "previous_hash": "{}", "until": "soon"}}"#,
        h('b')
    )]));
    assert_eq!(e.field, "rotations[0].until");

    let e = invalid(&with_rotations(&[format!(
        r#"{{"id": "research", "previous_hash": "{}"}}"#,
        h('b')
    )]));
    assert!(e.message.contains("missing field `until`"), "{}", e.message);
}

#[test]
fn a_valid_rotation_loads() {
    let f = parse(&with_rotations(&[rotation(
        "sim-bot",
        &format!("sha256:{}", h('b')),
        "2026-12-01T08:00:00Z",
    )]))
    .unwrap();
    assert_eq!(f.rotations.len(), 1);
    assert_eq!(f.rotations[0].previous_hash.to_hex(), h('b'));
}

// Halts.

/// The example file with a `halts` array of these entries (JSON text each).
fn with_halts(entries: &[String]) -> String {
    let text = example_file();
    let end = text.rfind(']').unwrap();
    format!(
        "{}],\n  \"halts\": [\n    {}\n  ]\n}}\n",
        &text[..end],
        entries.join(",\n    ")
    )
}

/// A halt entry of `target` (`"key_id": "…"` or `"all": true`) with `reason`.
fn halt_entry(target: &str, reason: &str) -> String {
    format!(
        r#"{{{target}, "reason": "{reason}", "halted_by": {{"uid": 1000, "user": "alice"}}, "halted_at": "2026-12-06T10:00:00Z"}}"#
    )
}

fn alice() -> HaltedBy {
    HaltedBy::new(1000, Some("alice".into()))
}

fn key(id: &str) -> HaltTarget {
    HaltTarget::Key(id.parse().unwrap())
}

#[test]
fn halts_of_one_key_and_of_every_key_load_and_round_trip() {
    let text = with_halts(&[
        halt_entry(r#""all": true"#, "market turmoil"),
        halt_entry(r#""key_id": "sim-bot""#, "fat finger"),
    ]);
    let f = parse(&text).unwrap();
    assert_eq!(f.halts.len(), 2);
    assert_eq!(f.halts[0].target, HaltTarget::All);
    assert_eq!(f.halts[1].target, key("sim-bot"));
    assert_eq!(f.halts[1].reason.as_str(), "fat finger");
    assert_eq!(f.halts[1].halted_by, alice());
    assert_eq!(f.halts[1].halted_at, ts("2026-12-06T10:00:00Z"));
    assert_eq!(parse(&f.to_json()).unwrap(), f);
    let json: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(json["halts"][0]["all"], true);
    assert_eq!(json["halts"][1]["key_id"], "sim-bot");
    assert!(json["halts"][1].get("all").is_none());
    assert_eq!(f.halts_of(&"sim-bot".parse().unwrap()).count(), 2);
    assert_eq!(f.halts_of(&"research".parse().unwrap()).count(), 1);
}

#[test]
fn a_file_without_halts_is_written_without_the_field() {
    let f = parse(&example_file()).unwrap();
    assert!(f.halts.is_empty());
    assert!(!f.to_json().contains("halts"));
}

#[test]
fn a_halt_of_a_key_not_in_the_file_names_the_entry_and_its_line() {
    let text = with_halts(&[halt_entry(r#""key_id": "ghost""#, "fat finger")]);
    let e = invalid(&text);
    assert_eq!(e.field, "halts[0].key_id");
    assert_eq!(e.key_id.as_deref(), Some("ghost"));
    assert!(e.message.contains("no key has id \"ghost\""), "{}", e.message);
    let line = text.lines().position(|l| l.contains("ghost")).unwrap() + 1;
    let column = text.lines().nth(line - 1).unwrap().find("\"ghost\"").unwrap() + 1;
    assert_eq!((e.line, e.column), (line, column));
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "keys.json:{line}:{column}: key \"ghost\": field halts[0].key_id: "
        )),
        "{shown}"
    );
}

#[test]
fn a_key_or_every_key_halted_twice_is_refused() {
    let e = invalid(&with_halts(&[
        halt_entry(r#""key_id": "sim-bot""#, "one"),
        halt_entry(r#""key_id": "research""#, "two"),
        halt_entry(r#""key_id": "sim-bot""#, "three"),
    ]));
    assert_eq!(e.field, "halts[2].key_id");
    assert_eq!(e.key_id.as_deref(), Some("sim-bot"));
    assert!(
        e.message.contains("two halts (halts[0] and halts[2])"),
        "{}",
        e.message
    );
    assert!(e.line > 0 && e.column > 0);

    let e = invalid(&with_halts(&[
        halt_entry(r#""all": true"#, "one"),
        halt_entry(r#""all": true"#, "two"),
    ]));
    assert_eq!(e.field, "halts[1].all");
    assert_eq!(e.key_id.as_deref(), Some("*"));
    assert!(e.message.contains("every key is halted twice"), "{}", e.message);
    assert!(e.line > 0 && e.column > 0);
}

#[test]
fn a_malformed_halt_entry_names_its_field_and_line() {
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (entry, field, says) in [
        (
            halt_entry(r#""key_id": "sim-bot""#, ""),
            "halts[0].reason",
            "needs a reason",
        ),
        (
            halt_entry(r#""key_id": "sim-bot""#, &"x".repeat(201)),
            "halts[0].reason",
            "at most 200 characters",
        ),
        (
            halt_entry(r#""key_id": "sim-bot""#, "tab\\there"),
            "halts[0].reason",
            "one line",
        ),
        (
            halt_entry(
                r#""key_id": "sim-bot""#,
                "oops fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f",
            ),
            "halts[0].reason",
            "must not hold a key's plaintext",
        ),
        (
            halt_entry(r#""key_id": "sim-bot""#, "r").replace("2026-12-06T10:00:00Z", "yesterday"),
            "halts[0].halted_at",
            "",
        ),
        (
            halt_entry(r#""key_id": "sim-bot""#, "r").replace("2026-12-06T10:00:00Z", "2026-12-06 10:00"),
            "halts[0].halted_at",
            "",
        ),
        (
            halt_entry(r#""key_id": "sim-bot", "until": "tomorrow""#, "r"),
            "halts[0]",
            "unknown field `until`",
        ),
        (
            halt_entry(r#""key_id": "sim-bot""#, "r").replace(r#""user": "alice""#, r#""name": "alice""#),
            "halts[0].halted_by",
            "unknown field `name`",
        ),
        (
            halt_entry(r#""key_id": "sim-bot""#, "r")
                .replace(r#", "halted_by": {"uid": 1000, "user": "alice"}"#, ""),
            "halts[0]",
            "missing field `halted_by`",
        ),
        (halt_entry(r#""all": false"#, "r"), "halts[0]", "halts nothing"),
        (
            halt_entry(r#""all": true, "key_id": "sim-bot""#, "r"),
            "halts[0]",
            "not both",
        ),
        (halt_entry(r#""uid": 1"#, "r"), "halts[0]", "unknown field `uid`"),
    ] {
        let text = with_halts(std::slice::from_ref(&entry));
        let e = invalid(&text);
        assert!(e.field.starts_with(field), "{entry}: field {}", e.field);
        assert!(e.message.contains(says), "{entry}: {}", e.message);
        assert_eq!(e.line, line_of(&text, "\"reason\""), "{entry}: {e}");
        assert!(e.column > 0, "{entry}: {e}");
        assert!(!e.to_string().contains("8a3f2b9c"), "{e}");
    }
}

#[test]
fn halt_replaces_an_earlier_halt_of_the_same_target_in_place() {
    let mut f = parse(&example_file()).unwrap();
    let now = ts("2026-12-06T10:00:00.75Z");
    let made = f
        .halt(key("sim-bot"), "fat finger".parse().unwrap(), alice(), now)
        .unwrap();
    assert_eq!(made.halted_at, ts("2026-12-06T10:00:00Z"), "whole seconds");
    f.halt(HaltTarget::All, "turmoil".parse().unwrap(), alice(), now)
        .unwrap();
    let root = HaltedBy::new(0, Some("root".into()));
    let later = ts("2026-12-06T11:00:00Z");
    f.halt(
        key("sim-bot"),
        "still wrong".parse().unwrap(),
        root.clone(),
        later,
    )
    .unwrap();
    assert_eq!(f.halts.len(), 2);
    assert_eq!(f.halts[0].target, key("sim-bot"));
    assert_eq!(f.halts[0].reason.as_str(), "still wrong");
    assert_eq!(f.halts[0].halted_by, root);
    assert_eq!(f.halts[0].halted_at, later);
    assert!(matches!(
        f.halt(key("ghost"), "r".parse().unwrap(), alice(), now),
        Err(StoreError::UnknownKey(id)) if id == "ghost"
    ));
    assert_eq!(parse(&f.to_json()).unwrap(), f);
}

#[test]
fn resume_lifts_a_halt_and_says_what_is_halted_when_there_is_none_to_lift() {
    let mut f = parse(&example_file()).unwrap();
    let now = ts("2026-12-06T10:00:00Z");
    let not_halted = |f: &mut KeysFile, target: HaltTarget| match f.resume(&target) {
        Err(e @ StoreError::NotHalted(_)) => e.to_string(),
        other => panic!("{target:?}: {other:?}"),
    };
    assert_eq!(
        not_halted(&mut f, key("sim-bot")),
        "key \"sim-bot\" is not halted; nothing to resume"
    );
    assert_eq!(
        not_halted(&mut f, HaltTarget::All),
        "trading is not halted for every key; nothing to resume"
    );
    f.halt(key("sim-bot"), "fat finger".parse().unwrap(), alice(), now)
        .unwrap();
    assert!(
        not_halted(&mut f, HaltTarget::All).contains("only these keys are halted, each on its own: sim-bot")
    );
    f.halt(HaltTarget::All, "turmoil".parse().unwrap(), alice(), now)
        .unwrap();
    assert!(not_halted(&mut f, key("research")).contains("trading is halted for every key: resume every key"));
    assert_eq!(f.resume(&key("sim-bot")).unwrap().reason.as_str(), "fat finger");
    assert_eq!(f.resume(&HaltTarget::All).unwrap().reason.as_str(), "turmoil");
    assert!(f.halts.is_empty());
    assert!(matches!(f.resume(&key("ghost")), Err(StoreError::UnknownKey(_))));
}

#[test]
fn revoking_a_key_drops_its_halt_and_keeps_the_others() {
    let mut f = parse(&example_file()).unwrap();
    let now = ts("2026-12-06T10:00:00Z");
    f.halt(key("sim-bot"), "a".parse().unwrap(), alice(), now)
        .unwrap();
    f.halt(key("research"), "b".parse().unwrap(), alice(), now)
        .unwrap();
    f.halt(HaltTarget::All, "c".parse().unwrap(), alice(), now)
        .unwrap();
    f.revoke(&"sim-bot".parse().unwrap()).unwrap();
    let targets: Vec<_> = f.halts.iter().map(|h| h.target.clone()).collect();
    assert_eq!(targets, [key("research"), HaltTarget::All]);
    assert_eq!(parse(&f.to_json()).unwrap(), f, "what is saved loads");
}

#[test]
fn halts_survive_an_update_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, example_file()).unwrap();
    let now = ts("2026-12-06T10:00:00Z");
    update(&path, |f| {
        f.halt(HaltTarget::All, "turmoil".parse().unwrap(), alice(), now)
    })
    .unwrap();
    update(&path, |f| f.bind(&"research".parse().unwrap(), BindOp::Freeze)).unwrap();
    let f = KeysFile::load(&path).unwrap();
    assert_eq!(f.halts.len(), 1);
    assert_eq!(f.halts[0].reason.as_str(), "turmoil");
}

/// `example_file()` with a rotation of `sim-bot` running until 2099.
fn example_with_rotation() -> String {
    example_file().replacen(
        "\n  ]\n}",
        &format!(
            "\n  ],\n  \"rotations\": [{}]\n}}",
            rotation("sim-bot", &h('d'), "2099-01-01T00:00:00Z")
        ),
        1,
    )
}

#[test]
fn parts_round_trip_every_field_and_the_rotations() {
    let file = parse(&example_with_rotation()).unwrap();
    assert_eq!(file.rotations.len(), 1);
    let parts = file.to_parts();
    assert_eq!(parts.records.len(), 2);
    assert_eq!(parts.records[1].id.as_str(), "sim-bot");
    assert!(!parts.records[1].text.contains('\n'), "one line a record");
    assert!(!parts.rest.contains("\"keys\""), "{}", parts.rest);
    assert!(parts.rest.contains("\"rotations\""), "{}", parts.rest);
    let back = KeysFile::from_parts(
        parts.records.iter().map(|r| r.text.as_str()),
        &parts.rest,
        Path::new("db"),
    )
    .unwrap();
    assert_eq!(back, file);
    assert_eq!(back.to_json(), file.to_json());
    // No keys at all, and nothing but the version.
    let empty = KeysFile::default().to_parts();
    assert_eq!(empty.rest, r#"{"version":1}"#);
    assert_eq!(
        KeysFile::from_parts(std::iter::empty(), &empty.rest, Path::new("db")).unwrap(),
        KeysFile::default()
    );
}

#[test]
fn parts_are_read_as_strictly_as_keys_json() {
    let file = parse(&example_file()).unwrap();
    let parts = file.to_parts();
    let records = || parts.records.iter().map(|r| r.text.as_str());
    // A top-level field this version does not know (one a newer futu-authd wrote).
    match KeysFile::from_parts(records(), r#"{"version":1,"future":[]}"#, Path::new("db")) {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.path, Path::new("db"));
            assert!(e.message.contains("unknown field `future`"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A record with a misspelt limit names its key and field.
    let bad = parts.records[1]
        .text
        .replace("max_order_value", "max_order_valeu");
    match KeysFile::from_parts(
        [parts.records[0].text.as_str(), &bad],
        &parts.rest,
        Path::new("db"),
    ) {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.key_id.as_deref(), Some("sim-bot"));
            assert_eq!(e.field, "keys[1].limits.max_order_valeu");
            assert_eq!(e.line, 3, "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A rest that is not an object.
    assert!(KeysFile::from_parts(records(), "[1]", Path::new("db")).is_err());
    assert!(
        KeysFile::from_parts(records(), "{}", Path::new("db")).is_err(),
        "no version"
    );
}

#[test]
fn an_import_adds_the_files_keys_after_the_stores_and_brings_their_rotations() {
    let file = parse(&example_with_rotation()).unwrap();
    let mut store = KeysFile::default();
    store
        .gen_key(
            KeySpec {
                id: "ops".parse().unwrap(),
                scopes: vec![Scope::QotRead],
                limits: Default::default(),
                allowed_machines: None,
                expires_at: None,
                note: None,
            },
            Timestamp::now(),
        )
        .unwrap();
    let merged = store.import(file.clone(), false).unwrap();
    assert_eq!(
        merged,
        Merged {
            added: 2,
            replaced: 0
        }
    );
    let ids: Vec<&str> = store.keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["ops", "research", "sim-bot"]);
    assert_eq!(store.keys[1..], file.keys[..]);
    assert_eq!(store.rotations, file.rotations);
}

#[test]
fn an_import_refuses_ids_the_store_holds_unless_it_replaces_them() {
    let file = parse(&example_with_rotation()).unwrap();
    let mut store = parse(&example_file()).unwrap();
    store.keys[1].note = Some("the store's own".into());
    let before = store.clone();
    match store.clone().import(file.clone(), false) {
        Err(e @ StoreError::AlreadyPresent(_)) => {
            let text = e.to_string();
            assert!(text.contains("\"research\", \"sim-bot\""), "{text}");
            assert!(text.contains("--replace"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let merged = store.import(file.clone(), true).unwrap();
    assert_eq!(
        merged,
        Merged {
            added: 0,
            replaced: 2
        }
    );
    assert_eq!(store.keys, file.keys, "replaced in place, in the store's order");
    assert_eq!(store.rotations, file.rotations);
    assert_ne!(store, before);
    // Replacing with a file without the rotation ends the store's.
    let mut without = file.clone();
    without.rotations.clear();
    store.import(without, true).unwrap();
    assert!(store.rotations.is_empty());
}

#[test]
fn an_import_that_would_not_load_is_refused() {
    let mut store = parse(&example_file()).unwrap();
    // Another id with the hash of the store's `research`.
    let mut file = KeysFile::default();
    let mut twin = store.keys[0].clone();
    twin.id = "twin".parse().unwrap();
    file.keys.push(twin);
    match store.import(file, false) {
        Err(StoreError::ImportConflict(e)) => assert!(e.message.contains("same hash"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_import_brings_the_files_halts_and_never_lifts_the_stores_halt_of_every_key() {
    let now = ts("2026-12-06T10:00:00Z");
    let reason = |r: &str| r.parse::<HaltReason>().unwrap();
    let mut file = parse(&example_file()).unwrap();
    file.halt(key("sim-bot"), reason("from the file"), alice(), now)
        .unwrap();
    let mut store = parse(&example_file()).unwrap();
    store
        .halt(key("research"), reason("the store's"), alice(), now)
        .unwrap();
    store
        .halt(HaltTarget::All, reason("turmoil"), alice(), now)
        .unwrap();
    store.import(file.clone(), true).unwrap();
    let halts: Vec<(HaltTarget, &str)> = store
        .halts
        .iter()
        .map(|h| (h.target.clone(), h.reason.as_str()))
        .collect();
    // `research` is imported without a halt: the file's record, with the file's halts;
    // the halt of every key stays, as the file has none.
    assert_eq!(
        halts,
        [(HaltTarget::All, "turmoil"), (key("sim-bot"), "from the file")]
    );
    // The file's halt of every key takes the place of the store's.
    file.halt(HaltTarget::All, reason("the file's turmoil"), alice(), now)
        .unwrap();
    store.import(file, true).unwrap();
    let all: Vec<&str> = store
        .halts
        .iter()
        .filter(|h| h.target == HaltTarget::All)
        .map(|h| h.reason.as_str())
        .collect();
    assert_eq!(all, ["the file's turmoil"]);
}
