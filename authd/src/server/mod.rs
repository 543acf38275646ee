//! The daemon: start-up, the accept loop and shutdown, as [`Daemon`] — which runs in any
//! process; `main.rs` adds the signals and systemd's notifications.
//!
//! Start-up (`startup.rs`) opens the key store (keys.json, refusing to start on a bad
//! file; or the database shared by several hosts, followed from then on), replays the
//! ledger and opens the audit trail and the metrics endpoint, reads the last-used file,
//! on a listener bound first (`listener.rs`) — the socket systemd handed over, or
//! `--socket`. Each connection holds a `ConnectionSlot` (`slots.rs`) while it is served.
//! Shutdown stops accepting, answers what is in flight, flushes the audit trail and the
//! ledger and writes the last-used file. `housekeeping.rs` is what runs on a timer
//! meanwhile.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{Audit, Writer};
use crate::clock::Clock;
use crate::commit::Committer;
use crate::config::{Config, MetricsListen};
use crate::connection::{self, Closed};
use crate::last_used::LastUsed;
use crate::metrics::{self, Metrics};
use crate::peer::{AdminPolicy, Peer};
use crate::service::{Authd, KeyRing};

mod housekeeping;
mod listener;
mod slots;
mod startup;

pub use listener::{bind, listen, Listener};
pub use startup::StartError;

use slots::{ConnectionSlot, Shares};

/// How long shutdown waits for connections to finish what they read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// futu-authd, running in this process: [`Daemon::start`] does everything start-up does
/// (keys, ledger, audit trail, metrics); [`Daemon::serve`] serves on a listener until a
/// shutdown future resolves, then drains and flushes. `main.rs` adds the signals and
/// systemd's notifications; tests and benchmarks can run it as it is.
pub struct Daemon {
    /// The state every connection shares.
    authd: Arc<Authd>,
    /// journald's writer thread, stopped last at shutdown (after every record is queued).
    audit_writer: Writer,
    /// Cancelled at shutdown: connections stop reading, timers stop.
    shutdown: CancellationToken,
    /// Every task the daemon spawned (connections, timers, the metrics endpoint), waited
    /// for at shutdown.
    tracker: TaskTracker,
    /// How long a peer may take, and how much it may pipeline.
    limits: connection::Limits,
    /// Connections served at once (`--max-connections`); more wait in the backlog.
    max_connections: usize,
    /// Connections one uid may hold (`--max-connections-per-uid`).
    uid_share: usize,
}

impl Daemon {
    /// Loads keys.json (a bad file is an error), replays the ledger, opens the audit trail
    /// and the metrics endpoint, and starts the timers.
    pub async fn start(config: &Config) -> Result<Daemon, StartError> {
        let metrics = Arc::new(Metrics::new());
        let host = startup::machine_fingerprint(config);
        let (store, loaded, freshness) = startup::open_key_store(config, host.as_ref(), &metrics).await?;
        let admin = AdminPolicy::new(config.admin_group.as_deref())?;
        let clock = Clock::system();
        tracing::info!("hours windows are checked in time zone {}", clock.zone_name());
        let ledger = startup::open_ledger(config, &clock, &metrics).await?;
        let (audit, audit_writer) = Audit::start(config.journald_enabled()).map_err(StartError::Journald)?;
        let commit = Committer::new(startup::open_audit_file(config)?, Arc::clone(&metrics));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        if let MetricsListen::At(addr) = config.metrics_listen {
            let listener = metrics::bind(addr).await.map_err(StartError::Metrics)?;
            tracing::info!("metrics on http://{addr}/metrics");
            tracker.spawn(metrics::serve(listener, Arc::clone(&metrics), shutdown.clone()));
        }
        let keys = Arc::new(KeyRing::new(store, loaded, freshness, host, Arc::clone(&metrics)));
        // With a shared key store, last uses are kept in its database, not in a file.
        let last_used = Arc::new(if keys.shared().is_some() {
            LastUsed::in_memory(Arc::clone(&metrics))
        } else {
            LastUsed::open(&config.state_dir, &keys.snapshot(), Arc::clone(&metrics))
        });
        let authd = Arc::new(Authd::new(
            keys, ledger, commit, audit, metrics, last_used, clock, admin,
        ));
        // The text and records of keys.json are freed; let the system have them back.
        crate::heap::give_back_freed_memory();
        tracker.spawn(housekeeping::sync_every_second(
            Arc::clone(&authd),
            shutdown.clone(),
        ));
        tracker.spawn(housekeeping::save_last_used_every_minute(
            Arc::clone(&authd),
            shutdown.clone(),
        ));
        tracker.spawn(housekeeping::warn_of_expiring_keys_daily(
            Arc::clone(&authd),
            shutdown.clone(),
        ));
        tracker.spawn(Arc::clone(&authd.keys).follow(shutdown.clone()));
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
        self.authd.metrics.set_ready(true);
        tracing::info!("futu-authd {} ready", env!("CARGO_PKG_VERSION"));
        self.accept_until(&listener, stop).await;
        self.shut_down(listener).await;
    }

    /// Accepts connections until `stop` resolves, each served by a task of its own while
    /// it holds a [`ConnectionSlot`].
    async fn accept_until(&self, listener: &Listener, stop: impl std::future::Future<Output = ()>) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let shares = Shares::new(self.uid_share);
        tokio::pin!(stop);
        loop {
            let (permit, accepted) = tokio::select! {
                _ = &mut stop => return,
                next = accept(listener.inner(), &slots) => next,
            };
            let Some((stream, peer)) = with_peer(accepted).await else {
                continue;
            };
            if let Some(slot) = self.admit(&shares, peer, permit) {
                self.spawn_connection(stream, peer, slot);
            }
        }
    }

    /// A slot for a new connection of `peer`, or `None` (counted and logged) when its uid
    /// holds its share already: one uid never takes every connection from the others.
    fn admit(&self, shares: &Shares, peer: Peer, permit: OwnedSemaphorePermit) -> Option<ConnectionSlot> {
        let slot = shares.admit(peer.uid, permit, &self.authd.metrics);
        if slot.is_none() {
            self.authd.metrics.connection_closed(Closed::UidShare);
            tracing::warn!(
                "closing a new connection of pid {} uid {}: that uid already holds {} connections (--max-connections-per-uid)",
                peer.pid,
                peer.uid,
                shares.share()
            );
        }
        slot
    }

    /// Serves `stream` on a task of its own, which gives `slot` back when it ends.
    fn spawn_connection(&self, stream: UnixStream, peer: Peer, slot: ConnectionSlot) {
        let authd = Arc::clone(&self.authd);
        let (limits, stop) = (self.limits, self.shutdown.clone());
        self.tracker.spawn(async move {
            let closed = connection::serve(Arc::clone(&authd), stream, peer, limits, stop).await;
            authd.metrics.connection_closed(closed);
            drop(slot);
        });
    }

    /// Stops accepting, answers what is in flight (for at most [`DRAIN_TIMEOUT`]), then
    /// flushes journald's copy, the ledger, the audit file and the last-used file.
    async fn shut_down(self, listener: Listener) {
        let Daemon {
            authd,
            audit_writer,
            shutdown,
            tracker,
            ..
        } = self;
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

/// An accepted connection and its peer's credentials; `None` (logged) when the accept
/// failed (after a short pause, so a persistent failure does not spin) or the credentials
/// cannot be read.
async fn with_peer(
    accepted: io::Result<(UnixStream, tokio::net::unix::SocketAddr)>,
) -> Option<(UnixStream, Peer)> {
    let stream = match accepted {
        Ok((s, _)) => s,
        Err(e) => {
            tracing::warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
    };
    match stream.peer_cred() {
        Ok(c) => Some((
            stream,
            Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid().map(|p| p as u32).unwrap_or(0),
            },
        )),
        Err(e) => {
            tracing::warn!("dropping a connection whose credentials cannot be read: {e}");
            None
        }
    }
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
