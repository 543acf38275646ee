//! What the daemon does on a timer while it serves: the ledger journal and the audit file
//! put on disk every second, the last-used file written every minute (the last uses sent
//! to a shared key store every few seconds), keys expiring soon warned of each UTC day.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::last_used;
use crate::service::Authd;

/// Writes the last-used file once a minute when something changed (and drops keys no
/// longer in service from it): a crash loses at most the last minute of last-used times.
/// With a shared key store, the uses go to its database every few seconds instead, so
/// every host shows the newest soon.
pub(super) async fn save_last_used_every_minute(authd: Arc<Authd>, stop: CancellationToken) {
    let every = if authd.keys.shared().is_some() {
        last_used::SHARED_WRITE_EVERY
    } else {
        last_used::WRITE_EVERY
    };
    let mut tick = tokio::time::interval(every);
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

/// How often the daily warning of keys expiring soon looks whether a new UTC day began.
const EXPIRY_LOOK_EVERY: Duration = Duration::from_secs(60);

/// Warns of keys expiring within 7 days at start (the first tick is at once), then once
/// each UTC day (within a minute of midnight); a reload warns of them too.
pub(super) async fn warn_of_expiring_keys_daily(authd: Arc<Authd>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EXPIRY_LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        authd.keys.warn_of_expiring_keys_daily();
    }
}

/// Writes reach the kernel before answers are sent; this puts them on disk once a second,
/// so a power loss costs at most about a second of the ledger and the audit trail.
pub(super) async fn sync_every_second(authd: Arc<Authd>, stop: CancellationToken) {
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
