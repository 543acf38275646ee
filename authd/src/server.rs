//! The daemon: the listener, start-up, the accept loop and shutdown, as [`Daemon`] — which
//! runs in any process; `main.rs` adds the signals and systemd's notifications.
//!
//! Start-up loads keys.json (refusing to start on a bad file), replays the ledger log and
//! opens the audit trail and the metrics endpoint, reads the last-used file, on a listener
//! bound first — the socket systemd handed over, or `--socket`. Shutdown stops accepting,
//! answers what is in flight, flushes the audit trail and the ledger and writes the
//! last-used file.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futu_auth_keys::machine::fingerprint_from_file;
use futu_auth_keys::store::{self, KeysFile, StoreError};
use futu_auth_rules::Ledger;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{self, Audit, AuditFile};
use crate::clock::Clock;
use crate::commit::Committer;
use crate::config::{Config, MetricsListen};
use crate::connection;
use crate::last_used::{self, LastUsed};
use crate::ledger::local::journal::{LedgerLog, Moment};
use crate::ledger::local::LocalLedger;
use crate::ledger::pg::{PgLedger, PgOpenError};
use crate::ledger::{AuditMark, Audited};
use crate::ledger::{HealthReport, LedgerStore};
use crate::metrics::{self, Metrics};
use crate::peer::{AdminGroupError, AdminPolicy, Peer};
use crate::service::{Authd, KeyRing};

/// Why the daemon could not start. Each says what failed and where, in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// keys.json could not be read or is not valid: the daemon refuses to start.
    #[error(transparent)]
    Keys(#[from] StoreError),
    /// `--admin-group` cannot be used.
    #[error(transparent)]
    AdminGroup(#[from] AdminGroupError),
    /// The PostgreSQL ledger (`--ledger-url`) cannot be used.
    #[error(transparent)]
    PgLedger(#[from] PgOpenError),
    /// The ledger journal in `--state-dir` could not be opened or replayed (the error
    /// names the file).
    #[error(transparent)]
    Journal(io::Error),
    /// journald's writer thread could not start.
    #[error(transparent)]
    Journald(io::Error),
    /// A half-written last record could not be cut off the audit file.
    #[error("audit log {}: {source}", path.display())]
    AuditTail {
        /// The audit file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The audit file could not be opened (the error names it).
    #[error(transparent)]
    AuditFile(io::Error),
    /// The metrics address could not be bound (the error names it).
    #[error(transparent)]
    Metrics(io::Error),
    /// The socket systemd handed over could not be taken.
    #[error("socket activation: {0}")]
    Activation(#[source] io::Error),
    /// `--socket` could not be bound (the error names it).
    #[error(transparent)]
    Bind(io::Error),
}

/// How long shutdown waits for connections to finish what they read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the listening socket came from.
pub enum Listener {
    /// Bound by this process at this path (removed again at exit).
    Bound(UnixListener, PathBuf),
    /// Handed over by systemd (socket activation); systemd owns the file.
    Activated(UnixListener),
}

impl Listener {
    fn inner(&self) -> &UnixListener {
        match self {
            Listener::Bound(l, _) | Listener::Activated(l) => l,
        }
    }
}

/// Binds `path` with `mode`. A socket file nobody answers on (left by a crash) is
/// replaced; one where another daemon answers is an error, as is a file that is not a
/// socket. The socket is bound under a temporary name, given its mode, then renamed into
/// place, so it is never reachable with looser permissions.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(at(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket; remove it or choose another --socket",
            )))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(at(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another futu-authd is answering on this socket",
                )))
            }
            Err(_) => {
                tracing::warn!("removing stale socket {} (nothing answers on it)", path.display());
                std::fs::remove_file(path).map_err(at)?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(at)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(at)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(e));
    }
    Ok(listener)
}

/// The socket systemd handed over (LISTEN_FDS/LISTEN_PID), if any.
fn activated() -> io::Result<Option<UnixListener>> {
    let mut fds = sd_notify::listen_fds()?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        tracing::warn!("systemd passed {} sockets; using the first", fds.len() + 1);
    }
    let std_listener = crate::activation::take_unix_listener(fd)?;
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener).map(Some)
}

/// The listener the config asks for: the socket systemd handed over, or `--socket` bound
/// with `--socket-mode`.
pub fn listen(config: &Config) -> Result<Listener, StartError> {
    match activated().map_err(StartError::Activation)? {
        Some(l) => {
            tracing::info!("listening on the socket passed by systemd");
            Ok(Listener::Activated(l))
        }
        None => {
            let l = bind(&config.socket, config.socket_mode).map_err(StartError::Bind)?;
            tracing::info!(
                "listening on {} (mode {:04o})",
                config.socket.display(),
                config.socket_mode
            );
            Ok(Listener::Bound(l, config.socket.clone()))
        }
    }
}

/// futu-authd, running in this process: [`Daemon::start`] does everything start-up does
/// (keys, ledger, audit trail, metrics); [`Daemon::serve`] serves on a listener until a
/// shutdown future resolves, then drains and flushes. `main.rs` adds the signals and
/// systemd's notifications; tests and benchmarks can run it as it is.
pub struct Daemon {
    authd: Arc<Authd>,
    audit_writer: crate::audit::Writer,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limits: connection::Limits,
    max_connections: usize,
    uid_share: usize,
}

impl Daemon {
    /// Loads keys.json (a bad file is an error), replays the ledger, opens the audit trail
    /// and the metrics endpoint.
    pub async fn start(config: &Config) -> Result<Daemon, StartError> {
        let text = store::read_text(&config.keys_file)?;
        let file = KeysFile::parse(&text, &config.keys_file)?;
        let loaded_digest = store::text_digest(&text);
        drop(text);
        if let Some(w) = store::mode_warning(&config.keys_file) {
            tracing::warn!("{w}");
        }
        tracing::info!(
            "keys_loaded={} keys file loaded (Bearer auth enabled)",
            file.keys.len()
        );
        tracing::info!("keys file: {}", config.keys_file.display());

        let host = match fingerprint_from_file(&config.machine_id_file) {
            Ok(fp) => {
                tracing::info!("machine fingerprint {fp}");
                Some(fp)
            }
            Err(e) => {
                tracing::warn!(
                    "no machine fingerprint ({}: {e}); keys bound to machines will be refused",
                    config.machine_id_file.display()
                );
                None
            }
        };
        let admin = AdminPolicy::new(config.admin_group.as_deref())?;

        let clock = Clock::system();
        tracing::info!("hours windows are checked in time zone {}", clock.zone_name());
        let metrics = Arc::new(Metrics::new());
        let ledger = open_ledger(config, &clock, &metrics).await?;

        let journald = config.journald_enabled();
        let (audit, audit_writer) = Audit::start(journald).map_err(StartError::Journald)?;
        let audit_file = match &config.audit_log {
            Some(p) => {
                match audit::tidy_tail(p) {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        "audit log {}: cut a half-written last record ({n} bytes)",
                        p.display()
                    ),
                    Err(source) => {
                        return Err(StartError::AuditTail {
                            path: p.clone(),
                            source,
                        })
                    }
                }
                let file = AuditFile::open(p).map_err(StartError::AuditFile)?;
                tracing::info!(
                    "audit JSONL logger enabled (target=futu_audit → file {})",
                    p.display()
                );
                Some(file)
            }
            None => None,
        };

        let commit = Committer::new(audit_file, Arc::clone(&metrics));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        if let MetricsListen::At(addr) = config.metrics_listen {
            let listener = metrics::bind(addr).await.map_err(StartError::Metrics)?;
            tracing::info!("metrics on http://{addr}/metrics");
            tracker.spawn(metrics::serve(listener, Arc::clone(&metrics), shutdown.clone()));
        }
        let keys = Arc::new(KeyRing::new(
            config.keys_file.clone(),
            file,
            Some(loaded_digest),
            host,
            Arc::clone(&metrics),
        ));
        let last_used = Arc::new(LastUsed::open(
            &config.state_dir,
            &keys.snapshot(),
            Arc::clone(&metrics),
        ));
        let authd = Arc::new(Authd::new(
            keys, ledger, commit, audit, metrics, last_used, clock, admin,
        ));
        // The text and records of keys.json are freed; let the system have them back.
        crate::heap::give_back_freed_memory();
        tracker.spawn(sync_every_second(Arc::clone(&authd), shutdown.clone()));
        tracker.spawn(save_last_used_every_minute(Arc::clone(&authd), shutdown.clone()));
        Ok(Daemon {
            authd,
            audit_writer,
            shutdown,
            tracker,
            limits: connection::Limits {
                max_in_flight: config.max_in_flight,
                hello_timeout: config.hello_timeout,
                frame_timeout: config.frame_timeout,
            },
            max_connections: config.max_connections,
            uid_share: config.uid_share(),
        })
    }

    /// The daemon's state: keys, ledger, metrics (for reloads and for tests).
    pub fn authd(&self) -> &Arc<Authd> {
        &self.authd
    }

    /// Serves connections on `listener` until `stop` resolves; then stops accepting,
    /// answers what is in flight (for at most 10 s), flushes the audit trail and the
    /// ledger.
    pub async fn serve(self, listener: Listener, stop: impl std::future::Future<Output = ()>) {
        let Daemon {
            authd,
            audit_writer,
            shutdown,
            tracker,
            limits,
            max_connections,
            uid_share,
        } = self;
        authd.metrics.set_ready(true);
        tracing::info!("futu-authd {} ready", env!("CARGO_PKG_VERSION"));
        let slots = Arc::new(Semaphore::new(max_connections));
        let per_uid: Arc<std::sync::Mutex<HashMap<u32, usize>>> = Arc::default();
        tokio::pin!(stop);
        loop {
            let (permit, accepted) = tokio::select! {
                _ = &mut stop => break,
                next = accept(listener.inner(), &slots) => next,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = match stream.peer_cred() {
                Ok(c) => Peer {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid().map(|p| p as u32).unwrap_or(0),
                },
                Err(e) => {
                    tracing::warn!("dropping a connection whose credentials cannot be read: {e}");
                    continue;
                }
            };
            // One uid holds at most its share, so another uid's gateway always finds room.
            let admitted = {
                let mut counts = per_uid.lock().unwrap_or_else(|p| p.into_inner());
                let n = counts.entry(peer.uid).or_insert(0);
                let room = *n < uid_share;
                *n += usize::from(room);
                room
            };
            if !admitted {
                authd.metrics.connection_closed(connection::Closed::UidShare);
                tracing::warn!(
                    "closing a new connection of pid {} uid {}: that uid already holds {uid_share} connections (--max-connections-per-uid)",
                    peer.pid,
                    peer.uid
                );
                continue;
            }
            let authd = Arc::clone(&authd);
            let stop = shutdown.clone();
            let per_uid = Arc::clone(&per_uid);
            authd.metrics.connection(1);
            tracker.spawn(async move {
                let closed = connection::serve(Arc::clone(&authd), stream, peer, limits, stop).await;
                authd.metrics.connection_closed(closed);
                authd.metrics.connection(-1);
                let mut counts = per_uid.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = counts.get_mut(&peer.uid) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&peer.uid);
                    }
                }
                drop(permit);
            });
        }

        tracing::info!("shutting down: no new connections; answering what is in flight");
        authd.metrics.set_ready(false);
        if let Listener::Bound(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
        drop(listener);
        shutdown.cancel();
        tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
        authd.audit.close(audit_writer).await;
        if let Err(e) = authd.ledger.sync() {
            tracing::error!("ledger sync at shutdown failed: {e}");
        }
        if let Err(e) = authd.commit.sync_audit().await {
            tracing::error!("audit log sync at shutdown failed: {e}");
        }
        authd.save_last_used().await;
        tracing::info!("futu-authd stopped");
    }
}

/// The ledger on PostgreSQL with `--ledger-url` (nothing is kept in `--state-dir` then);
/// otherwise the journal in `--state-dir`, replayed: its newest commit counts only if its
/// audit records reached the audit file.
async fn open_ledger(
    config: &Config,
    clock: &Clock,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn LedgerStore>, StartError> {
    if let Some(url) = &config.ledger_url {
        let metrics = Arc::clone(metrics);
        let report: HealthReport = Arc::new(move |event| metrics.ledger_health(event));
        let pg = PgLedger::open(url, config.ledger_timeout, report).await?;
        return Ok(Arc::new(pg));
    }
    let ledger = Ledger::new();
    let moment = Moment {
        unix_ns: jiff::Timestamp::now().as_nanosecond() as i64,
        mono_ns: clock.mono_ns(),
    };
    let audit_path = config.audit_log.clone();
    let audited = |mark: &AuditMark| match &audit_path {
        Some(path) => audit::settle(path, mark),
        None => Audited::Unknown,
    };
    let (log, replay) =
        LedgerLog::open(&config.state_dir, &ledger, moment, &audited).map_err(StartError::Journal)?;
    if replay.unaudited > 0 {
        tracing::warn!(
            "ledger: the last commit ({} entries) was not counted: the daemon stopped before its audit records were written, so nobody was answered",
            replay.unaudited
        );
    }
    if let Some(why) = &replay.corrupt_tail {
        tracing::error!(
            "ledger log {}: {why}; the {} entries before it were used",
            log.path().display(),
            replay.entries
        );
    }
    tracing::info!(
        "ledger: {} entries replayed from {}",
        replay.entries,
        log.path().display()
    );
    let clock = clock.clone();
    Ok(Arc::new(LocalLedger::new(ledger, log, move || Moment {
        unix_ns: jiff::Timestamp::now().as_nanosecond() as i64,
        mono_ns: clock.mono_ns(),
    })))
}

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &UnixListener,
    slots: &Arc<Semaphore>,
) -> (
    OwnedSemaphorePermit,
    io::Result<(UnixStream, tokio::net::unix::SocketAddr)>,
) {
    let permit = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    (permit, listener.accept().await)
}

/// SIGHUP: reopens the audit file (for logrotate), then reloads keys.json.
pub async fn hangup(authd: &Authd) {
    tracing::info!("SIGHUP: reopening the audit log and reloading keys file");
    // The audit file first: once READY=1 follows the reload, records go to the new file.
    if let Err(e) = authd.commit.reopen_audit().await {
        tracing::error!("reopening the audit log failed: {e}");
    }
    let _ = authd.reload("SIGHUP").await;
}

/// Writes the last-used file once a minute when something changed (and drops keys no
/// longer in service from it): a crash loses at most the last minute of last-used times.
async fn save_last_used_every_minute(authd: Arc<Authd>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(last_used::WRITE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is at once
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        authd.save_last_used().await;
    }
}

/// Writes reach the kernel before answers are sent; this puts them on disk once a second,
/// so a power loss costs at most about a second of the ledger and the audit trail.
async fn sync_every_second(authd: Arc<Authd>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ledger = Arc::clone(&authd.ledger);
        let synced = tokio::task::spawn_blocking(move || ledger.sync()).await;
        if let Ok(Err(e)) = synced {
            tracing::warn!("ledger journal sync failed: {e}");
        }
        if let Err(e) = authd.commit.sync_audit().await {
            tracing::warn!("audit log sync failed: {e}");
        }
    }
}
