//! keys.json's lock as futucli and the daemon take it: eight gen-key processes at once, on
//! the file and through the daemon, lose no key; the daemon running as its own user (as
//! under systemd, keys.json and its directory owned by that user) can still change keys
//! after root edited the file while it was down.

mod cli;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use cli::*;
use futu_authd_tests::{
    allowed_key, daemon_binary, executable_copy, hash_of, key_json, keys_json, token_for, write_private,
    DaemonBuilder,
};
use tempfile::TempDir;

// ---- concurrent gen-key ---------------------------------------------------------------

/// Eight gen-key processes at once, with distinct ids; returns (id, plaintext) of each.
fn eight_concurrent_gen_keys(cli: &Futucli) -> Vec<(String, String)> {
    let ids: Vec<String> = (0..8).map(|i| format!("bot-{i}")).collect();
    let children: Vec<(String, Child)> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                cli.spawn(&["gen-key", "--id", id, "--scopes", "qot:read"]),
            )
        })
        .collect();
    children
        .into_iter()
        .map(|(id, child)| {
            let start = Instant::now();
            let out = child.wait_with_output().expect("wait for futucli");
            let run = Run::from_output(out, start.elapsed()).ok();
            let token = generated_token(&run, &id, &cli.keys_file);
            (id, token)
        })
        .collect()
}

fn assert_all_kept(cli: &Futucli, made: &[(String, String)], also: &str) {
    let keys = cli.keys();
    let mut want: BTreeSet<String> = made.iter().map(|(id, _)| id.clone()).collect();
    want.insert(also.into());
    assert_eq!(ids(&keys), want, "no key is lost");
    for (id, token) in made {
        assert_eq!(record(&keys, id)["hash"], hash_of(token), "{id}'s hash");
    }
}

#[test]
fn eight_concurrent_gen_keys_on_the_file_lose_no_key() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    cli.run(&["gen-key", "--id", "veteran", "--scopes", "acc:read"])
        .ok();
    let made = eight_concurrent_gen_keys(&cli);
    assert_all_kept(&cli, &made, "veteran");
}

#[tokio::test]
async fn eight_concurrent_gen_keys_through_the_daemon_lose_no_key() {
    let veteran = token_for("veteran");
    let d = DaemonBuilder::new(&[key_json("veteran", &veteran, &["acc:read"])]).start();
    let cli = Futucli::for_daemon(&d);
    let made = eight_concurrent_gen_keys(&cli);
    assert_all_kept(&cli, &made, "veteran");
    let mut c = d.client().await;
    for (id, token) in &made {
        assert_eq!(&allowed_key(&quote_decision(&mut c, token).await), id);
    }
    assert_eq!(
        allowed_key(&c.check(&veteran, "Trd_GetFunds", None).await),
        "veteran"
    );
}

// ---- the daemon's own user and the keys file's lock ----------------------------------------

/// futu-authd running as uid/gid 65534 (as `futu-authd` runs under systemd: keys.json and
/// its directory belong to that user), killed on drop.
struct DaemonAsNobody(Child);

impl Drop for DaemonAsNobody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The installed layout in miniature, in `root` (0755): `etc/` (0750) with `keys.json`
/// (0600), `state/` and `run/`, all owned by uid 65534; returns futucli pointed at it.
fn layout_owned_by_nobody(root: &Path) -> Futucli {
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["etc", "state", "run"] {
        let d = root.join(sub);
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(root.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let cli = Futucli {
        socket: root.join("run").join("auth.sock"),
        keys_file: root.join("etc").join("keys.json"),
        ..Futucli::without_daemon(root)
    };
    write_private(&cli.keys_file, &keys_json(&[]));
    std::os::unix::fs::chown(&cli.keys_file, Some(65534), Some(65534)).unwrap();
    cli
}

fn start_daemon_as_nobody(root: &Path, cli: &Futucli) -> DaemonAsNobody {
    let daemon = executable_copy(&daemon_binary(), root);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(daemon)
        .arg("--socket")
        .arg(&cli.socket)
        .arg("--keys-file")
        .arg(&cli.keys_file)
        .arg("--state-dir")
        .arg(root.join("state"))
        .arg("--machine-id-file")
        .arg(&cli.machine_id_file)
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("FUTU_") || name == "NOTIFY_SOCKET" || name.starts_with("LISTEN_") {
            cmd.env_remove(&k);
        }
    }
    let mut guard = DaemonAsNobody(cmd.spawn().expect("spawn futu-authd as uid 65534"));
    futu_authd_tests::poll("futu-authd (uid 65534) to listen", || {
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!("futu-authd as uid 65534 exited with {status}");
        }
        UnixStream::connect(&cli.socket).ok()
    });
    guard
}

#[test]
fn after_a_root_edit_on_the_file_the_daemons_user_can_still_change_keys() {
    if !can_run_as_nobody("after_a_root_edit_on_the_file_the_daemons_user_can_still_change_keys") {
        return;
    }
    let root = TempDir::new().unwrap();
    let cli = layout_owned_by_nobody(root.path());

    // The daemon is down: root (an administrator) edits the file, as README step 2 allows.
    let run = cli
        .run(&["gen-key", "--id", "offline", "--scopes", "qot:read"])
        .ok();
    assert_route(&run, &cli, false);
    let keys_owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&cli.keys_file).unwrap());
    assert_eq!(keys_owner, 65534, "keys.json keeps its owner");

    // The daemon starts as its own user; the next admin change goes through it.
    let _daemon = start_daemon_as_nobody(root.path(), &cli);
    let run = cli.run(&["gen-key", "--id", "online", "--scopes", "qot:read"]);
    assert_eq!(
        run.code,
        Some(0),
        "gen-key through the daemon after an offline edit: {run:#?} (lock file: {:?})",
        std::fs::metadata(futu_auth_keys::store::lock_path(&cli.keys_file)).map(|m| (
            std::os::unix::fs::MetadataExt::uid(&m),
            m.permissions().mode() & 0o777
        ))
    );
    assert_eq!(
        ids(&serde_json::from_str(&cli.keys_text()).unwrap()),
        BTreeSet::from(["offline".into(), "online".into()])
    );
}

#[test]
fn the_daemons_user_can_change_keys_when_no_one_else_touched_the_file() {
    // The control for the test above: same layout, no offline edit first.
    if !can_run_as_nobody("the_daemons_user_can_change_keys_when_no_one_else_touched_the_file") {
        return;
    }
    let root = TempDir::new().unwrap();
    let cli = layout_owned_by_nobody(root.path());
    let _daemon = start_daemon_as_nobody(root.path(), &cli);
    let run = cli
        .run(&["gen-key", "--id", "online", "--scopes", "qot:read"])
        .ok();
    assert_route(&run, &cli, true);
    let run = cli.run(&["revoke-key", "online"]).ok();
    assert_route(&run, &cli, true);
}
