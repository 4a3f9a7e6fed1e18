//! systemd integration (`Type=notify`, `WatchdogSec=`): `READY=1` once the listener serves,
//! `WATCHDOG=1` from a task that proves the runtime and the hub are responsive, `STOPPING=1`
//! at shutdown. Every call is a no-op outside systemd (no `NOTIFY_SOCKET`).

use crate::switchboard::Switchboard;
use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Tells systemd the gateway serves on `addr` (`READY=1` and a status line).
pub fn ready(addr: SocketAddr) {
    let status = format!("serving on {addr}");
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
        tracing::warn!(error = %e, "systemd readiness notification failed");
    }
}

/// Tells systemd the gateway is shutting down (`STOPPING=1`).
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Pings the systemd watchdog at half its interval while the gateway is alive: each ping
/// needs the tokio runtime to run this task and the hub lock to be obtainable within a
/// second, so a wedged runtime or a deadlocked hub stops the pings and systemd restarts the
/// service (`Restart=on-failure`, after `ExecStopPost=` unkeyed the radios). Returns at once
/// when the watchdog is not enabled.
pub async fn watchdog(hub: Arc<Switchboard>, shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let hub = Arc::clone(&hub);
        let alive =
            tokio::task::spawn_blocking(move || hub.try_lock_for(Duration::from_secs(1)).is_some())
                .await
                .unwrap_or(false);
        if alive {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("hub lock not obtainable for 1 s: skipping the watchdog ping");
        }
    }
}
