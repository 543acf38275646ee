//! A throwaway PostgreSQL cluster for the tests of the PostgreSQL ledger and for the load
//! benchmark (which includes this file): `initdb` and `pg_ctl` from Debian's
//! `postgresql-15` (`/usr/lib/postgresql/<version>/bin`), in a temporary directory, owned
//! by and run as `nobody` when the caller is root (PostgreSQL refuses to run as root),
//! listening on a Unix socket in that directory only (`listen_addresses = ''`). Stopped
//! (`pg_ctl stop -m immediate`) and removed on drop.
//!
//! [`Replicated`] is a primary with a synchronous standby made from it (`pg_basebackup
//! -R`), each a cluster of its own, for failover: [`Postgres::kill_9`] crashes the primary,
//! [`Postgres::promote`] makes the standby the primary.
//!
//! Uses std, `tempfile` and `nix` only, so that the benchmark can include it.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

/// The directory with `initdb`, `pg_ctl`, `psql` and `pg_basebackup`: `$FUTU_PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin` that has them. `None` when PostgreSQL is not
/// installed.
pub fn bin_dir() -> Option<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "psql", "postgres", "pg_basebackup"]
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

/// The port of a cluster `initdb` makes here, PostgreSQL's own default. On a Unix socket a
/// port only names the socket file (`.s.PGSQL.<port>` in the socket directory).
const PORT: u16 = 5432;

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    /// The port its socket is named after.
    port: u16,
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
        let pg = Postgres::in_new_dir(env, PORT)?;
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
        let mut conf = vec![
            "listen_addresses = ''".to_owned(),
            format!("unix_socket_directories = '{}'", pg.socket_dir().display()),
            "max_connections = 60".to_owned(),
        ];
        conf.extend(settings.iter().map(|s| (*s).to_owned()));
        pg.configure("futu-authd test cluster", &conf)?;
        pg.start_again()?;
        Ok(pg)
    }

    /// A cluster yet to be made, in a fresh temporary directory its owner can write.
    fn in_new_dir(env: Vec<(OsString, OsString)>, port: u16) -> Result<Postgres, String> {
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
        Ok(Postgres {
            dir,
            bin,
            port,
            owner,
            env,
        })
    }

    /// Adds `lines` to postgresql.conf, under a comment saying what they are for (a later
    /// line wins over an earlier one).
    fn configure(&self, why: &str, lines: &[String]) -> Result<(), String> {
        let conf_path = self.data_dir().join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf_path).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        text.push_str(&format!("\n# {why}\n"));
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&conf_path, text).map_err(|e| format!("{}: {e}", conf_path.display()))
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

    /// The port its socket is named after (`.s.PGSQL.<port>` in [`Postgres::socket_dir`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL futu-authd's `--ledger-url` takes: database `postgres`, user `postgres`, over
    /// the Unix socket.
    pub fn url(&self) -> String {
        format!(
            "postgresql:///postgres?host={}&port={}&user=postgres",
            self.socket_dir().display(),
            self.port
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
            .arg("-p")
            .arg(self.port.to_string())
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

    /// Crashes the server, every process of it at once as a crash of its machine would
    /// (though what it wrote to files stays written): the postmaster is stopped (SIGSTOP:
    /// it starts nothing more), then it and every process it started get SIGKILL; returns
    /// once they are all gone, with the moment the SIGKILLs went out. Nothing more is sent
    /// to a standby or answered. The stale `postmaster.pid` is removed (nothing signals
    /// that pid later), and so is the shared memory segment it names (`ipcrm`).
    pub fn kill_9(&self) -> Result<Instant, String> {
        let pid = self
            .postmaster_pid()
            .ok_or("the server is not running (no postmaster.pid)")?;
        let shared_memory = self.shared_memory_id();
        let postmaster = Process::of(pid).ok_or(format!("the postmaster {pid} is not running"))?;
        signal(pid, Signal::SIGSTOP)?;
        // `kill` returns before a process running on another core has stopped: it could
        // still start a child the list below would miss.
        let until = Instant::now() + Duration::from_secs(10);
        while ProcStat::read(pid).is_some_and(|s| s.state != 'T') {
            if Instant::now() > until {
                return Err(format!(
                    "the postmaster {pid} did not stop on SIGSTOP within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut doomed = vec![postmaster];
        doomed.extend(Process::children_of(pid));
        let killed_at = Instant::now();
        for p in &doomed {
            // One that ended by itself meanwhile is gone already.
            let _ = signal(p.pid, Signal::SIGKILL);
        }
        let until = Instant::now() + Duration::from_secs(10);
        while let Some(p) = doomed.iter().find(|p| p.is_alive()) {
            if Instant::now() > until {
                return Err(format!(
                    "process {} of the server survived SIGKILL for 10 s",
                    p.pid
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
        if let Some(id) = shared_memory {
            let _ = Command::new("ipcrm")
                .args(["-m", &id])
                .stderr(Stdio::null())
                .status();
        }
        Ok(killed_at)
    }

    /// The id of the System V shared memory segment of the running server (the last
    /// figure of `postmaster.pid`'s seventh line), which outlives a killed server.
    fn shared_memory_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let id = text.lines().nth(6)?.split_whitespace().nth(1)?;
        id.parse::<u32>().ok().map(|n| n.to_string())
    }

    /// Promotes a standby (`pg_ctl promote`, as a failover manager or an operator does) and
    /// returns once it takes writes, polling for it every few milliseconds (`pg_ctl`'s own
    /// wait looks ten times a second).
    pub fn promote(&self) -> Result<(), String> {
        self.pg_ctl(&["-W", "promote"])
            .map_err(|e| format!("{e}\n{}", self.log_tail()))?;
        let until = Instant::now() + Duration::from_secs(30);
        while !self.takes_writes() {
            if Instant::now() > until {
                return Err(format!(
                    "the promoted standby took no writes within 30 s\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Whether the server takes writes now: what a client with
    /// `target_session_attrs=read-write` asks it (`SHOW transaction_read_only`).
    pub fn takes_writes(&self) -> bool {
        self.psql("SHOW transaction_read_only").is_ok_and(|v| v == "off")
    }

    /// A hot standby of `primary`, made by `pg_basebackup -R` (it streams from the primary
    /// from then on; the primary's configuration comes along), on a socket directory of its
    /// own and `port`, named `name` (its `cluster_name`, which its WAL receiver gives the
    /// primary as `application_name`); started.
    fn standby_of(primary: &Postgres, name: &str, port: u16) -> Result<Postgres, String> {
        let pg = Postgres::in_new_dir(Vec::new(), port)?;
        let data = pg.data_dir();
        let primary_port = primary.port.to_string();
        pg.run(
            "pg_basebackup",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-h".as_ref(),
                primary.socket_dir().as_os_str(),
                "-p".as_ref(),
                primary_port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-R".as_ref(),
                "-X".as_ref(),
                "stream".as_ref(),
                "-c".as_ref(),
                "fast".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        pg.configure(
            &format!("a standby of {}", primary.socket_dir().display()),
            &[
                format!("unix_socket_directories = '{}'", pg.socket_dir().display()),
                format!("port = {port}"),
                format!("cluster_name = '{name}'"),
                "hot_standby = on".to_owned(),
            ],
        )?;
        pg.start_again()?;
        Ok(pg)
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

/// A process of a server, known by its pid and its start time (a pid may be reused).
struct Process {
    pid: u32,
    started: Option<u64>,
}

impl Process {
    /// The running process `pid`.
    fn of(pid: u32) -> Option<Process> {
        let stat = ProcStat::read(pid)?;
        Some(Process {
            pid,
            started: stat.started,
        })
    }

    /// The processes whose parent is `pid`.
    fn children_of(pid: u32) -> Vec<Process> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|child| {
                let stat = ProcStat::read(child)?;
                (stat.parent == pid).then_some(Process {
                    pid: child,
                    started: stat.started,
                })
            })
            .collect()
    }

    /// Whether it still runs (a zombie does not: it holds no socket and no file).
    fn is_alive(&self) -> bool {
        ProcStat::read(self.pid).is_some_and(|s| s.started == self.started && !matches!(s.state, 'Z' | 'X'))
    }
}

/// What `/proc/<pid>/stat` says of a process.
struct ProcStat {
    state: char,
    parent: u32,
    started: Option<u64>,
}

impl ProcStat {
    fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After "pid (comm) ": state, ppid, … the start time is the 22nd field.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            parent: fields.get(1)?.parse().ok()?,
            started: fields.get(19).and_then(|f| f.parse().ok()),
        })
    }
}

fn signal(pid: u32, sig: Signal) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("pid {pid}"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig).map_err(|e| format!("{sig} to {pid}: {e}"))
}

/// The name of [`Replicated`]'s standby: its `cluster_name`, and the name the primary's
/// `synchronous_standby_names` gives.
pub const STANDBY_NAME: &str = "futu_standby";

/// A primary and a synchronous standby of it, each a throwaway cluster on its own socket
/// directory and port (the primary on 5432, the standby on 5433): a commit on the
/// primary is acknowledged only once the standby has it (`synchronous_commit = on`,
/// `synchronous_standby_names` naming the standby), so what a client was told is
/// committed survives a crash of the primary.
///
/// As with [`Postgres::start_for_tests`], `fsync = off`: a test kills processes, not the
/// machine, and the operating system keeps what they wrote.
#[derive(Debug)]
pub struct Replicated {
    /// The primary: it takes the writes, and waits for the standby before it acknowledges a commit.
    pub primary: Postgres,
    /// The standby: it streams the primary's WAL (serving reads meanwhile) until promoted.
    pub standby: Postgres,
}

impl Replicated {
    /// Makes the primary (with `settings`), the standby from a base backup of it, names the
    /// standby in the primary's `synchronous_standby_names`, and waits until the standby
    /// streams and is synchronous.
    pub fn start_for_tests(settings: &[&str]) -> Result<Replicated, String> {
        let mut all = vec![
            "wal_level = replica",
            "max_wal_senders = 4",
            "synchronous_commit = on",
        ];
        all.extend_from_slice(settings);
        let primary = Postgres::start_for_tests(&all)?;
        let standby = Postgres::standby_of(&primary, STANDBY_NAME, PORT + 1)?;
        // Set on the primary alone, after the base backup: the standby, once promoted, has
        // no standby of its own to wait for.
        primary.psql(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"
        ))?;
        primary.psql("SELECT pg_reload_conf()")?;
        let pair = Replicated { primary, standby };
        pair.wait_synchronous()?;
        Ok(pair)
    }

    /// The URL for futu-authd's `--ledger-url` naming both servers, the standby first, with
    /// `target_session_attrs=read-write`: a connection goes to whichever takes writes.
    pub fn url(&self) -> String {
        format!(
            "postgresql:///postgres?host={},{}&port={},{}&user=postgres&target_session_attrs=read-write",
            self.standby.socket_dir().display(),
            self.primary.socket_dir().display(),
            self.standby.port,
            self.primary.port
        )
    }

    /// The standby's `sync_state` as the primary sees it in `pg_stat_replication` while it
    /// streams (`sync`: commits wait for it); empty when it does not stream.
    pub fn sync_state(&self) -> Result<String, String> {
        self.primary.psql(&format!(
            "SELECT sync_state FROM pg_stat_replication \
             WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming'"
        ))
    }

    /// Waits (up to 30 s) until the standby streams and is synchronous.
    pub fn wait_synchronous(&self) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.sync_state()?;
            if state == "sync" {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "the standby is not synchronous after 30 s (sync_state {state:?})\n{}",
                    self.standby.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-t", "10", "-m", "immediate", "stop"]);
    }
}
