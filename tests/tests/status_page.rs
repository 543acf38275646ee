//! The status page (`GET /` on the metrics listener) as an operator sees it: rendered by a
//! real browser, headless Chromium (Debian's `chromium`, installed by `make deps`), after
//! traffic — the keys refused and their reasons, decisions by front-end, the halted keys,
//! the audit file's health, a key expiring within 7 days — with a screenshot kept in `target/test-artifacts/`; and the
//! page never shows a token, a key's hash or any prefix of one.

mod daemon;

use std::path::Path;
use std::process::{Command, Stdio};

use daemon::*;
use futu_auth_proto::{Iface, Reason};
use futu_authd_tests::{
    deny_reason, hash_of, have_program, key_json, target_dir, token_for, with, DaemonBuilder,
};
use serde_json::json;

/// Chromium under Debian's name, or Google's.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|p| have_program(p))
}

/// What headless Chromium made of `url` after running the page (`--dump-dom`), and a
/// screenshot of it at `png`.
fn render(browser: &str, url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let common = |cmd: &mut Command| {
        cmd.arg("--headless")
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--window-size=1200,1800")
            .stdin(Stdio::null());
    };
    let mut dump = Command::new(browser);
    common(&mut dump);
    let out = dump.arg("--dump-dom").arg(url).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut shot = Command::new(browser);
    common(&mut shot);
    let out = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The text of the element with `id`, tags stripped (enough for the page's tables).
fn section(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the page:\n{dom}"));
    let end = dom[start..].find("</table>").map_or(dom.len(), |e| start + e);
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn the_status_page_renders_in_chromium_with_the_keys_refused_and_their_reasons() {
    let Some(browser) = chromium() else {
        return futu_authd_tests::skip("chromium is not installed (make deps installs it)");
    };
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let in_3_days = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(72);
    let in_30_days = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(720);
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        trader("sim-bot", &bot, json!({ "max_orders_per_minute": 2 })),
        with(
            key_json("soon", &token_for("soon"), &["qot:read"]),
            "expires_at",
            json!(in_3_days.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ),
        with(
            key_json("later", &token_for("later"), &["qot:read"]),
            "expires_at",
            json!(in_30_days.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ),
    ])
    .metrics()
    .start();
    let mut c = d.client().await;
    for _ in 0..3 {
        assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    }
    // research: 4 refused `scope` over gRPC (an account read it may not make).
    for _ in 0..4 {
        let r = c.check_via(Iface::Grpc, &research, "Trd_GetFunds", None).await;
        assert_eq!(deny_reason(&r), Reason::Scope);
    }
    // sim-bot: 2 orders allowed, then 5 refused `rate` over REST.
    for i in 0..7 {
        let r = c
            .check_via(Iface::Rest, &bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
            .await;
        if i < 2 {
            assert!(r.is_allow(), "{r:?}");
        } else {
            assert_eq!(deny_reason(&r), Reason::Rate);
        }
    }
    let halt = d
        .futucli()
        .args(["halt", "--key", "sim-bot", "--reason", "desk closed"])
        .output()
        .expect("futucli halt");
    assert!(halt.status.success(), "{}", String::from_utf8_lossy(&halt.stderr));

    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let png = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let url = format!("http://{}/", d.metrics_addr());
    let dom = render(browser, &url, &png);

    assert!(dom.contains("futu-authd"), "{dom}");
    let refused = section(&dom, "refused");
    assert!(refused.contains("sim-bot 5 rate 5"), "refused: {refused}");
    assert!(refused.contains("research 4 scope 4"), "refused: {refused}");
    // sim-bot was refused most, so it comes first.
    assert!(
        refused.find("sim-bot") < refused.find("research"),
        "refused: {refused}"
    );
    let decisions = section(&dom, "decisions");
    // Columns: front-end, allow, reject.
    assert!(decisions.contains("grpc 0 4"), "decisions: {decisions}");
    assert!(decisions.contains("rest 5 5"), "decisions: {decisions}");
    let halted = section(&dom, "halted");
    assert!(halted.contains("sim-bot"), "halted: {halted}");
    let health = section(&dom, "health");
    assert!(health.contains("keys in service 4"), "health: {health}");
    let expiring = section(&dom, "expiring");
    assert!(expiring.contains("soon"), "expiring: {expiring}");
    assert!(
        expiring.contains("2d 23h") || expiring.contains("3d 0h"),
        "expiring: {expiring}"
    );
    assert!(!expiring.contains("later"), "expiring: {expiring}");
    assert!(health.contains("audit file writable"), "health: {health}");
    let png_len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        png_len > 1000,
        "a screenshot at {} ({png_len} bytes)",
        png.display()
    );
    eprintln!("status page screenshot: {}", png.display());
}

#[tokio::test]
async fn the_status_page_shows_no_token_no_hash_and_no_prefix_of_one() {
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        trader("sim-bot", &bot, json!({ "max_orders_per_minute": 1 })),
    ])
    .metrics()
    .start();
    let mut c = d.client().await;
    for _ in 0..3 {
        let _ = c
            .check_via(Iface::Rest, &bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
            .await;
        let _ = c.check(&research, "Trd_GetFunds", None).await;
        // A token nobody holds, pasted as one would by mistake.
        let _ = c.check(&format!("{research}x"), "Qot_GetBasicQot", None).await;
    }
    let (status, page) = d.http_get("/");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("sim-bot"),
        "the page names the keys refused:\n{page}"
    );
    for secret in [&research, &bot] {
        assert!(!page.contains(secret.as_str()), "a token in the page");
        // The token's body without its `fc_` prefix, and its hex digest, in any part of at
        // least 8 characters.
        let body = secret.trim_start_matches("fc_");
        let hash = hash_of(secret);
        for s in [body, hash.as_str()] {
            for w in s.as_bytes().windows(8) {
                let w = std::str::from_utf8(w).expect("ascii");
                assert!(!page.contains(w), "`{w}` (part of a token or hash) in the page");
            }
        }
    }
    if let Some(browser) = chromium() {
        let png = target_dir()
            .join("test-artifacts")
            .join("status-page-no-secrets.png");
        let _ = std::fs::create_dir_all(png.parent().expect("a parent"));
        let dom = render(browser, &format!("http://{}/", d.metrics_addr()), &png);
        for secret in [&research, &bot] {
            assert!(!dom.contains(secret.as_str()), "a token in the rendered page");
            assert!(!dom.contains(&hash_of(secret)), "a hash in the rendered page");
        }
    }
}
