//! Who may send admin requests: a peer of another uid gets `forbidden` for ListKeys, GenKey
//! and Reload, audited and counted, while its checks are served; the same uid with the
//! `--admin-group` as a supplementary group is an administrator.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use futu_auth_proto::{Reason, Response};
use futu_authd_tests::{
    allowed_key, decision_of, deny_reason, executable_copy, have_program, key_json, run_as, token_for,
    DaemonBuilder,
};
use serde_json::{json, Value};

#[tokio::test]
async fn admin_requests_from_a_stranger_are_forbidden_but_the_admin_group_may_send_them() {
    if !nix::unistd::geteuid().is_root() {
        return futu_authd_tests::skip("needs root to run a client as another uid");
    }
    if !have_program("setpriv") {
        return futu_authd_tests::skip("setpriv (util-linux) is not installed");
    }
    let Some(adm) = nix::unistd::Group::from_name("adm").ok().flatten() else {
        return futu_authd_tests::skip("this host has no group `adm` for --admin-group");
    };
    let adm_gid = adm.gid.as_raw();
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .dir_mode(0o755)
        .arg("--socket-mode")
        .arg("0666")
        .arg("--admin-group")
        .arg("adm")
        .metrics()
        .start();
    let mode = std::fs::metadata(d.socket_path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "--socket-mode 0666 is applied");
    // The probe must be reachable by uid 65534: copy it into the (0755) daemon directory.
    let probe = executable_copy(Path::new(env!("CARGO_BIN_EXE_authd-probe")), d.dir());
    let keys_before = std::fs::read_to_string(d.keys_path()).unwrap();

    let ask = |groups: &[u32], requests: &[Value]| -> Vec<Response> {
        let socket = d.socket_path();
        let texts: Vec<String> = requests.iter().map(Value::to_string).collect();
        let mut args: Vec<&OsStr> = vec![socket.as_os_str()];
        args.extend(texts.iter().map(OsStr::new));
        let out = run_as(65534, 65534, groups, &probe, &args);
        assert!(
            out.status.success(),
            "authd-probe as uid 65534 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("probe output {l:?}: {e}")))
            .collect()
    };

    let spec = json!({ "id": "intruder", "scopes": ["trade:real"], "limits": {},
                       "allowed_machines": null, "expires_at": null, "note": null });
    let answers = ask(
        &[],
        &[
            json!({ "ListKeys": { "request_id": 1 } }),
            json!({ "GenKey": { "request_id": 2, "spec": spec } }),
            json!({ "Reload": { "request_id": 3 } }),
            json!({ "Check": { "request_id": 4, "token": research, "iface": "rest",
                               "endpoint": "Qot_GetBasicQot", "order": null, "dry_run": false } }),
        ],
    );
    assert_eq!(answers.len(), 4);
    for (id, answer) in (1..=3).zip(&answers) {
        assert_eq!(
            deny_reason(&decision_of(id, answer.clone())),
            Reason::Forbidden,
            "admin request {id} from uid 65534"
        );
    }
    assert_eq!(
        allowed_key(&decision_of(4, answers[3].clone())),
        "research",
        "a Check still works"
    );
    assert_eq!(
        std::fs::read_to_string(d.keys_path()).unwrap(),
        keys_before,
        "no key was made"
    );

    let records = d.wait_audit(4);
    for op in ["ListKeys", "GenKey", "Reload"] {
        assert!(
            records.iter().any(|r| r["endpoint"] == op
                && r["outcome"] == "reject"
                && r["reason"] == "forbidden"
                && r["peer_uid"] == 65534),
            "the audit file has the forbidden {op} of uid 65534: {records:#?}"
        );
    }
    assert!(records
        .iter()
        .any(|r| r["kind"] == "check" && r["peer_uid"] == 65534 && r["outcome"] == "allow"));

    // The same uid with `adm` as a supplementary group is an administrator.
    let answers = ask(&[adm_gid], &[json!({ "ListKeys": { "request_id": 9 } })]);
    match &answers[..] {
        [Response::Keys { request_id: 9, keys }] => {
            let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
            assert_eq!(ids, ["research"]);
        }
        other => panic!("ListKeys from a member of --admin-group: {other:?}"),
    }
    let metrics = d.metrics_text();
    let admin = |outcome| {
        futu_authd_tests::metric_value(
            &metrics,
            "futu_auth_admin_requests_total",
            &[("op", "ListKeys"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (admin("reject"), admin("allow")),
        (Some(1.0), Some(1.0)),
        "{metrics}"
    );
}
