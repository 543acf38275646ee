//! The processes the benchmark starts (the echo server, futu-authd, redis-server): each is
//! held by a [`ChildGuard`] that kills it when dropped, also while a panic unwinds, and is
//! listed in a registry that a SIGINT/SIGTERM of the benchmark empties before exiting.

use std::io::{self, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Pids of the children alive now, for the signal handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Temporary directories made so far, for the signal handler (which exits without
/// running their destructors).
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes a temporary directory `prefix…` that is removed when dropped, and by
/// [`kill_all_children`].
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    DIRS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(dir.path().to_owned());
    Ok(dir)
}

/// Kills every child still registered (SIGKILL) and removes the temporary directories;
/// for the benchmark's own signal handler.
pub fn kill_all_children() {
    for pid in registry().drain(..) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    for dir in DIRS.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Adds a process that is not our child (PostgreSQL's postmaster, which `pg_ctl`
/// daemonizes) to those [`kill_all_children`] kills.
pub fn watch_pid(pid: u32) {
    registry().push(pid);
}

/// Takes a process added by [`watch_pid`] off the list (it was stopped).
pub fn forget_pid(pid: u32) {
    registry().retain(|p| *p != pid);
}

/// A child process that is killed (SIGKILL) and reaped when this is dropped, unless it
/// was stopped and reaped before.
pub struct ChildGuard {
    /// What it is, for messages.
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Takes charge of `child`.
    pub fn new(name: impl Into<String>, child: Child) -> ChildGuard {
        registry().push(child.id());
        ChildGuard {
            name: name.into(),
            child: Some(child),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether it has exited (then reaped: further calls return the same status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM and waits up to `grace` for the exit, then SIGKILLs. Returns the
    /// exit status and whether it exited within the grace period.
    pub fn terminate(mut self, grace: Duration) -> io::Result<(ExitStatus, bool)> {
        let mut child = self.child.take().expect("a guard holds its child until dropped");
        unregister(child.id());
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let until = Instant::now() + grace;
        loop {
            let exited = child
                .try_wait()
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.name)))?;
            if let Some(status) = exited {
                return Ok((status, true));
            }
            if Instant::now() >= until {
                let _ = child.kill();
                return Ok((child.wait()?, false));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn unregister(pid: u32) {
    registry().retain(|p| *p != pid);
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unregister(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The systemd notify socket a child reports READY=1 / RELOADING=1 to: a datagram
/// socket bound in the benchmark's temporary directory, passed as NOTIFY_SOCKET.
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds `path`.
    pub fn bind(path: &Path) -> io::Result<NotifySocket> {
        let sock = UnixDatagram::bind(path)?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(NotifySocket {
            sock,
            path: path.to_owned(),
        })
    }

    /// Its path, for NOTIFY_SOCKET.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for a datagram holding the line `wanted` (e.g. `READY=1`) until `deadline`,
    /// calling `alive` between reads (an `Err` from it ends the wait). Returns when the
    /// datagram was received and every datagram seen, in order.
    pub fn wait_for(
        &self,
        wanted: &str,
        deadline: Instant,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<(Instant, Vec<String>), String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let hit = text.lines().any(|l| l == wanted);
                    seen.push(text);
                    if hit {
                        return Ok((at, seen));
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("notify socket {}: {e}", self.path.display())),
            }
            alive()?;
            if Instant::now() >= deadline {
                return Err(format!("no {wanted} on the notify socket in time (saw {seen:?})"));
            }
        }
    }

    /// Drops datagrams already queued.
    pub fn drain(&self) {
        let _ = self.sock.set_nonblocking(true);
        let mut buf = [0u8; 4096];
        while self.sock.recv(&mut buf).is_ok() {}
        let _ = self.sock.set_nonblocking(false);
    }
}

/// The last `max` bytes of a log file, for error messages.
pub fn tail(path: &Path, max: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim_end().to_owned()
}

/// VmRSS and VmHWM of `pid`, in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Waits until `path` accepts a Unix stream connection, or `deadline`.
pub fn wait_connectable(
    path: &Path,
    deadline: Instant,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    loop {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(format!("{} does not accept connections", path.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CPU time (user + system, every thread) `pid` has used so far, from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture the benchmark runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}
