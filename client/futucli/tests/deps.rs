//! futucli decides `futucli replay` by the daemon's rules (futu-auth-rules), and links
//! nothing of the daemon's server: no futu-authd, no HTTP server, no PostgreSQL client, no
//! metrics registry, no journald writer. `cargo tree` of its normal dependencies says so.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that belong to the daemon's process, never to the command line.
const DAEMON_ONLY: [&str; 5] = [
    "futu-authd",
    "tokio-postgres",
    "hyper",
    "prometheus-client",
    "tracing-journald",
];

/// The names of the crates `cargo tree -p package -e normal` lists, `depth` levels down
/// (`None`: all of them).
fn normal_dependencies(package: &str, depth: Option<u32>) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut tree = Command::new(cargo);
    tree.args(["tree", "-p", package, "-e", "normal", "--prefix", "none"]);
    if let Some(depth) = depth {
        tree.arg("--depth").arg(depth.to_string());
    }
    let out = tree
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn futucli_links_the_rules_and_none_of_the_daemons_server() {
    let deps = normal_dependencies("futucli", None);
    assert!(deps.contains("futu-auth-rules"), "{deps:?}");
    let found: Vec<&str> = DAEMON_ONLY
        .into_iter()
        .filter(|name| deps.contains(*name))
        .collect();
    assert!(
        found.is_empty(),
        "futucli links {found:?}: they belong to futu-authd's process (see docs/ARCHITECTURE.md, \"What may depend on what\")"
    );
}

/// The rules need neither keys.json's store nor a runtime of their own (the protocol crate
/// brings tokio-util's codec traits, which its framing implements; the rules use none).
#[test]
fn the_rules_depend_on_no_store_runtime_or_system_interface() {
    let all = normal_dependencies("futu-auth-rules", None);
    let direct = normal_dependencies("futu-auth-rules", Some(1));
    let found: Vec<&str> = DAEMON_ONLY
        .into_iter()
        .chain(["futu-auth-keys", "nix"])
        .filter(|name| all.contains(*name))
        .chain(
            ["tokio", "tokio-util"]
                .into_iter()
                .filter(|name| direct.contains(*name)),
        )
        .collect();
    assert!(found.is_empty(), "futu-auth-rules links {found:?}");
}
