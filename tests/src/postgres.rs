//! A throwaway PostgreSQL cluster for the tests of the PostgreSQL ledger and for the load
//! benchmark (which includes this file): `initdb` and `pg_ctl` from Debian's
//! `postgresql-15` (`/usr/lib/postgresql/<version>/bin`), in a temporary directory, owned
//! by and run as `nobody` when the caller is root (PostgreSQL refuses to run as root),
//! listening on a Unix socket in that directory only (`listen_addresses = ''`). Stopped
//! (`pg_ctl stop -m immediate`) and removed on drop.
//!
//! Uses std, `tempfile` and `nix` only, so that the benchmark can include it.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The directory with `initdb`, `pg_ctl` and `psql`: `$FUTU_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` that has them. `None` when PostgreSQL is not installed.
pub fn bin_dir() -> Option<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "psql", "postgres"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    if let Some(d) = std::env::var_os("FUTU_PG_BIN").map(PathBuf::from) {
        return has_all(&d).then_some(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_all(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// Why a cluster cannot be had here, for a test's `skip`: `None` when it can.
pub fn unavailable() -> Option<String> {
    if bin_dir().is_none() {
        return Some(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): `make deps` installs postgresql-15"
                .into(),
        );
    }
    if nix::unistd::geteuid().is_root() && nobody().is_none() {
        return Some("running as root and there is no user `nobody` to run PostgreSQL as".into());
    }
    if nix::unistd::geteuid().is_root() && !on_path("setpriv") {
        return Some("running as root and setpriv (util-linux) is missing".into());
    }
    None
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

fn nobody() -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name("nobody").ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    /// The uid and gid it runs as, when this process is root.
    owner: Option<(u32, u32)>,
    /// Extra environment of the server (e.g. libfaketime's, to fake the database's clock).
    env: Vec<(OsString, OsString)>,
}

impl Postgres {
    /// A cluster for tests: `fsync = off` (a test needs no disk flushes; commits are still
    /// acknowledged only after they are written), plus `settings` lines.
    pub fn start_for_tests(settings: &[&str]) -> Result<Postgres, String> {
        Postgres::start_for_tests_with_env(settings, Vec::new())
    }

    /// [`Postgres::start_for_tests`] with `env` added to the server's environment (e.g.
    /// `FakeClock::env`, to fake the database's clock).
    pub fn start_for_tests_with_env(
        settings: &[&str],
        env: Vec<(OsString, OsString)>,
    ) -> Result<Postgres, String> {
        let mut all = vec!["fsync = off", "full_page_writes = off"];
        all.extend_from_slice(settings);
        Postgres::start_with_env(&all, env)
    }

    /// Makes a cluster with `initdb`, adds `settings` (postgresql.conf lines) to the
    /// Unix-socket-only configuration, and starts it.
    pub fn start(settings: &[&str]) -> Result<Postgres, String> {
        Postgres::start_with_env(settings, Vec::new())
    }

    /// [`Postgres::start`] with `env` added to the server's environment (not initdb's).
    fn start_with_env(settings: &[&str], env: Vec<(OsString, OsString)>) -> Result<Postgres, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let bin = bin_dir().expect("checked by unavailable()");
        // In /tmp, not $TMPDIR: `nobody` must be able to reach it, and a Unix socket's
        // path must stay short (107 bytes).
        let dir = tempfile::Builder::new()
            .prefix("futu-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temporary directory: {e}"))?;
        let owner = if nix::unistd::geteuid().is_root() {
            nobody()
        } else {
            None
        };
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(
                dir.path(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", dir.path().display()))?;
        let pg = Postgres { dir, bin, owner, env };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let mut conf = format!(
            "\n# futu-authd test cluster\nlisten_addresses = ''\nunix_socket_directories = '{}'\nmax_connections = 60\n",
            pg.socket_dir().display()
        );
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf_path).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        pg.start_again()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of its Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The URL futu-authd's `--ledger-url` takes: database `postgres`, user `postgres`, over
    /// the Unix socket.
    pub fn url(&self) -> String {
        format!(
            "postgresql:///postgres?host={}&user=postgres",
            self.socket_dir().display()
        )
    }

    /// Runs one of the cluster's programs as its owner (`pg_ctl`, which starts the server,
    /// with the server's extra environment); an error with its output when it fails.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
        let path = self.bin.join(program);
        // The server's extra environment goes through env(1), after setpriv: a preloaded
        // library (libfaketime) must start in a process of the cluster's owner, not in
        // root's setpriv, or the owner cannot open what it made.
        let mut argv: Vec<OsString> = Vec::new();
        if program == "pg_ctl" && !self.env.is_empty() {
            argv.push("env".into());
            argv.extend(self.env.iter().map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                kv
            }));
        }
        argv.push(path.clone().into_os_string());
        let mut cmd = match self.owner {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", path.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{program} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.log_path();
        let mut all: Vec<&std::ffi::OsStr> =
            vec!["-D".as_ref(), data.as_os_str(), "-l".as_ref(), log.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        self.run("pg_ctl", &all).map(drop)
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl(&["-w", "-t", "30", "start"])
            .map_err(|e| format!("{e}\n{}", self.log_tail()))
    }

    /// Stops the server the way an operator would (`pg_ctl stop -m fast`: sessions are
    /// ended, what was committed is kept).
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["-w", "-t", "30", "-m", "fast", "stop"])
    }

    /// Runs `sql` with psql (as this process's user, over the socket) and returns its
    /// unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql -c {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The postmaster's pid, while it runs (from `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The end of the server's log, for messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-t", "10", "-m", "immediate", "stop"]);
    }
}
