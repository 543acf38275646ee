//! systemd notifications (sd-notify): READY=1 once the socket listens and the keys are
//! loaded, STATUS= with the number of keys, RELOADING=1 with MONOTONIC_USEC around a
//! reload, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 at shutdown. Without
//! NOTIFY_SOCKET every call does nothing.
//!
//! A message is sent without blocking: a service manager that reads none (its socket's
//! queue full) costs a dropped message and a warning, never a stalled thread — the calls
//! come from the async runtime, e.g. at every key change another host made.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let mut msg = String::new();
    for s in states {
        let _ = writeln!(msg, "{s}");
    }
    let sent = UnixDatagram::unbound().and_then(|sock| {
        sock.set_nonblocking(true)?;
        sock.connect(&path)?;
        sock.send(msg.as_bytes())
    });
    static FULL_SAID: AtomicBool = AtomicBool::new(false);
    match sent {
        Ok(_) => FULL_SAID.store(false, Ordering::Relaxed),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            if !FULL_SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "sd_notify: the service manager's socket is full; dropped {:?} (said once until a message goes through)",
                    msg.trim_end()
                );
            }
        }
        Err(e) => tracing::warn!("sd_notify failed: {e}"),
    }
}

/// The daemon is ready: the socket listens and `keys` keys are in service.
pub fn ready(keys: usize) {
    let status = format!("serving {keys} keys");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// The keys in service changed outside a reload (an admin change, or a change another host
/// made to a shared key store): STATUS= only.
pub fn keys_changed(keys: usize) {
    let status = format!("serving {keys} keys");
    send(&[NotifyState::Status(&status)]);
}

/// A reload begins: RELOADING=1 and MONOTONIC_USEC in one message.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!("sd_notify: cannot read the monotonic clock: {e}"),
    }
}

/// A reload ended (well or not): READY=1 with the keys in service.
pub fn reloaded(keys: usize) {
    ready(keys);
}

/// Shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Sends WATCHDOG=1 at half the interval systemd asked for, until `stop`.
pub async fn watchdog(stop: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}
