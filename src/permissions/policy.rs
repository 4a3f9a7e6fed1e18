//! The PURE permission sync policy: link state, reconnect backoff, when to refresh and which
//! users to resync. No I/O and no clock: `now` (monotonic) and `wall_ms` (milliseconds since
//! the Unix epoch, for the status) are passed in, and so is the jitter sample.
//!
//! Rules (spec note 001, issue 5): reconnect after 1, 2, 4, 8, 16, 30 s, then every 30 s, each
//! with up to ±10 % jitter; every (re)connect resubscribes and resyncs every user the gateway
//! knows (connected or in the SQLite copy); while connected, the connected users are re-read
//! every refresh interval (heartbeat). A change of link state is reported once (the driver
//! logs it), not on every retry.

use radiogate_hal::reconnect::Backoff;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Largest jitter, as a fraction of the delay (±10 %).
pub const JITTER_FRACTION: f64 = 0.1;

/// The reconnect delay before attempt `attempt` (1-based; 0 is treated as 1): the radio
/// devices' reconnect [`Backoff`] (1 s doubling up to 30 s: 1, 2, 4, 8, 16, 30 s, then 30 s),
/// with `jitter` in `-1.0..=1.0` scaling ±[`JITTER_FRACTION`] of the delay.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = Backoff::default().delay(attempt.max(1));
    let j = jitter.clamp(-1.0, 1.0) * JITTER_FRACTION;
    Duration::from_secs_f64(base.as_secs_f64() * (1.0 + j))
}

/// State of the link to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// No Redis configured: SQLite is the only source.
    Standalone,
    /// Redis configured, first connection not yet made or failed.
    Connecting,
    /// Subscribed and synced (or syncing).
    Connected,
    /// Redis unreachable or dropped: serving from the SQLite copy, reconnecting.
    Degraded,
}

/// Which users a resync re-reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncScope {
    /// Users with a connected session (heartbeat refresh).
    Connected,
    /// Connected users and every user in the SQLite copy (after a (re)connect: anything may
    /// have changed while the link was down or the gateway was off).
    Known,
}

/// A change of link state, to be logged once.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Connected (first time, or again after an outage of `outage`).
    Connected {
        /// How long the link was degraded, if it was.
        outage: Option<Duration>,
    },
    /// The link is down (or the first connection failed): serving from the SQLite copy.
    Degraded {
        /// Why (the error).
        reason: String,
    },
}

/// The sync status shown in `/healthz` and the admin status (times in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Link state.
    pub state: LinkState,
    /// When the link became degraded (ms since the epoch), while it is.
    pub degraded_since_ms: Option<u64>,
    /// When the current connection was made (ms since the epoch), while connected.
    pub connected_since_ms: Option<u64>,
    /// End of the last full resync (ms since the epoch).
    pub last_full_sync_ms: Option<u64>,
    /// Users re-read by the last full resync.
    pub last_full_sync_users: usize,
    /// How long the last full resync took, milliseconds.
    pub last_full_sync_duration_ms: u64,
    /// End of the last heartbeat refresh (ms since the epoch).
    pub last_refresh_ms: Option<u64>,
    /// Failed connection attempts since the link was last up.
    pub reconnect_attempts: u32,
    /// The last link error, while degraded.
    pub last_error: Option<String>,
    /// Membership updates applied (pub/sub) since start.
    pub updates_applied: u64,
    /// Membership updates skipped (malformed, other event) since start.
    pub updates_skipped: u64,
    /// Users whose permissions changed through a refresh or resync since start.
    pub users_changed_by_refresh: u64,
}

/// The policy state machine.
#[derive(Debug, Clone)]
pub struct SyncPolicy {
    status: SyncStatus,
    refresh: Duration,
    next_refresh: Option<Instant>,
    degraded_at: Option<Instant>,
    resync: ResyncScope,
}

impl SyncPolicy {
    /// A policy for a gateway with (`redis` true) or without a control-plane Redis, refreshing
    /// every `refresh`.
    pub fn new(redis: bool, refresh: Duration) -> Self {
        Self {
            status: SyncStatus {
                state: if redis {
                    LinkState::Connecting
                } else {
                    LinkState::Standalone
                },
                degraded_since_ms: None,
                connected_since_ms: None,
                last_full_sync_ms: None,
                last_full_sync_users: 0,
                last_full_sync_duration_ms: 0,
                last_refresh_ms: None,
                reconnect_attempts: 0,
                last_error: None,
                updates_applied: 0,
                updates_skipped: 0,
                users_changed_by_refresh: 0,
            },
            refresh,
            next_refresh: None,
            degraded_at: None,
            resync: ResyncScope::Known,
        }
    }

    /// The current status.
    pub fn status(&self) -> &SyncStatus {
        &self.status
    }

    /// The link state.
    pub fn state(&self) -> LinkState {
        self.status.state
    }

    /// The link is up (connected and subscribed). Every connect calls for a full resync.
    pub fn on_connected(&mut self, now: Instant, wall_ms: u64) -> Option<Transition> {
        let prev = self.status.state;
        self.status.state = LinkState::Connected;
        self.status.connected_since_ms = Some(wall_ms);
        self.status.degraded_since_ms = None;
        self.status.reconnect_attempts = 0;
        self.status.last_error = None;
        self.resync = ResyncScope::Known;
        let outage = self
            .degraded_at
            .take()
            .map(|t| now.saturating_duration_since(t));
        (prev != LinkState::Connected).then_some(Transition::Connected { outage })
    }

    /// A connection attempt failed or the link dropped. Returns the delay before the next
    /// attempt and the transition to log (only when the state changed).
    pub fn on_link_lost(
        &mut self,
        now: Instant,
        wall_ms: u64,
        reason: &str,
        jitter: f64,
    ) -> (Duration, Option<Transition>) {
        let prev = self.status.state;
        self.status.reconnect_attempts = self.status.reconnect_attempts.saturating_add(1);
        self.status.last_error = Some(reason.to_string());
        self.status.connected_since_ms = None;
        self.next_refresh = None;
        let changed = prev != LinkState::Degraded && prev != LinkState::Standalone;
        if changed {
            self.status.state = LinkState::Degraded;
            self.status.degraded_since_ms = Some(wall_ms);
            self.degraded_at = Some(now);
        }
        let delay = backoff(self.status.reconnect_attempts, jitter);
        let t = changed.then(|| Transition::Degraded {
            reason: reason.to_string(),
        });
        (delay, t)
    }

    /// A read on the connected link failed or timed out outside the driver (a connect-time
    /// read): while connected, the state becomes degraded at once (the driver then drops the
    /// link and reconnects with backoff, [`Self::on_link_lost`]). Returns the transition to log
    /// (only when the state changed). Issue 15: a hung Redis must not cost every connect the
    /// response timeout until the heartbeat notices.
    pub fn on_read_failed(
        &mut self,
        now: Instant,
        wall_ms: u64,
        reason: &str,
    ) -> Option<Transition> {
        if self.status.state != LinkState::Connected {
            return None;
        }
        self.status.state = LinkState::Degraded;
        self.status.degraded_since_ms = Some(wall_ms);
        self.status.connected_since_ms = None;
        self.status.last_error = Some(reason.to_string());
        self.degraded_at = Some(now);
        self.next_refresh = None;
        Some(Transition::Degraded {
            reason: reason.to_string(),
        })
    }

    /// Which users the next resync re-reads.
    pub fn resync_scope(&self) -> ResyncScope {
        self.resync
    }

    /// A resync of `users` users ended at `now`, having taken `took`.
    pub fn on_resync_done(
        &mut self,
        now: Instant,
        wall_ms: u64,
        scope: ResyncScope,
        users: usize,
        took: Duration,
    ) {
        if scope == ResyncScope::Known {
            self.status.last_full_sync_ms = Some(wall_ms);
            self.status.last_full_sync_users = users;
            self.status.last_full_sync_duration_ms = took.as_millis() as u64;
        }
        self.status.last_refresh_ms = Some(wall_ms);
        self.resync = ResyncScope::Connected;
        self.next_refresh = Some(now + self.refresh);
    }

    /// When the next heartbeat refresh is due (none before the first resync, nor while the
    /// link is down). Standalone, a refresh is due every interval from the first call.
    pub fn next_refresh(&mut self, now: Instant) -> Option<Instant> {
        match self.status.state {
            LinkState::Standalone => Some(*self.next_refresh.get_or_insert(now + self.refresh)),
            LinkState::Connected => self.next_refresh,
            LinkState::Connecting | LinkState::Degraded => None,
        }
    }

    /// Whether a heartbeat refresh is due at `now`.
    pub fn refresh_due(&mut self, now: Instant) -> bool {
        self.next_refresh(now).is_some_and(|t| t <= now)
    }

    /// Counts a membership update applied (`true`) or skipped (`false`).
    pub fn count_update(&mut self, applied: bool) {
        if applied {
            self.status.updates_applied += 1;
        } else {
            self.status.updates_skipped += 1;
        }
    }

    /// Counts users whose permissions a refresh or resync changed.
    pub fn count_refresh_changes(&mut self, users: usize) {
        self.status.users_changed_by_refresh += users as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn backoff_sequence_then_thirty_seconds() {
        let seq: Vec<u64> = (1..=9).map(|a| backoff(a, 0.0).as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(backoff(0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_is_bounded_to_ten_percent() {
        for a in 1..10 {
            let base = backoff(a, 0.0);
            for j in [-5.0, -1.0, -0.3, 0.0, 0.7, 1.0, 9.0] {
                let d = secs(backoff(a, j));
                assert!(d >= secs(base) * 0.9 - 1e-9 && d <= secs(base) * 1.1 + 1e-9);
            }
        }
        assert!((secs(backoff(6, 1.0)) - 33.0).abs() < 1e-9);
        assert!((secs(backoff(1, -1.0)) - 0.9).abs() < 1e-9);
    }

    #[test]
    fn outage_is_reported_once_and_backs_off() {
        let t0 = Instant::now();
        let mut p = SyncPolicy::new(true, Duration::from_secs(30));
        assert_eq!(p.state(), LinkState::Connecting);
        assert_eq!(p.next_refresh(t0), None);
        // first connection
        let t = p.on_connected(t0, 1000);
        assert_eq!(t, Some(Transition::Connected { outage: None }));
        assert_eq!(p.resync_scope(), ResyncScope::Known);
        p.on_resync_done(t0, 1001, ResyncScope::Known, 3, Duration::from_millis(5));
        assert_eq!(p.status().last_full_sync_ms, Some(1001));
        assert_eq!(p.status().last_full_sync_users, 3);
        assert_eq!(p.resync_scope(), ResyncScope::Connected);
        assert_eq!(p.next_refresh(t0), Some(t0 + Duration::from_secs(30)));
        assert!(!p.refresh_due(t0 + Duration::from_secs(29)));
        assert!(p.refresh_due(t0 + Duration::from_secs(30)));
        // link drops: one transition, then silent retries with growing delays
        let t1 = t0 + Duration::from_secs(40);
        let (d, tr) = p.on_link_lost(t1, 41_000, "connection reset", 0.0);
        assert_eq!(d, Duration::from_secs(1));
        assert!(matches!(tr, Some(Transition::Degraded { .. })));
        assert_eq!(p.state(), LinkState::Degraded);
        assert_eq!(p.status().degraded_since_ms, Some(41_000));
        assert_eq!(p.next_refresh(t1), None);
        let mut delays = vec![];
        for k in 0..7u64 {
            let (d, tr) = p.on_link_lost(t1, 42_000 + k, "refused", 0.0);
            assert_eq!(tr, None, "retry {k} must not log a new transition");
            delays.push(d.as_secs());
        }
        assert_eq!(delays, vec![2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            p.status().degraded_since_ms,
            Some(41_000),
            "since the first failure"
        );
        assert_eq!(p.status().last_error.as_deref(), Some("refused"));
        // reconnect: full resync of every known user, outage duration reported
        let t2 = t1 + Duration::from_secs(100);
        let tr = p.on_connected(t2, 141_000);
        assert_eq!(
            tr,
            Some(Transition::Connected {
                outage: Some(Duration::from_secs(100))
            })
        );
        assert_eq!(p.resync_scope(), ResyncScope::Known);
        assert_eq!(p.status().degraded_since_ms, None);
        assert_eq!(p.status().reconnect_attempts, 0);
        assert_eq!(p.on_link_lost(t2, 0, "x", 0.0).0, Duration::from_secs(1));
    }

    #[test]
    fn a_failed_connect_time_read_degrades_at_once_and_the_drop_does_not_log_again() {
        let t0 = Instant::now();
        let mut p = SyncPolicy::new(true, Duration::from_secs(30));
        assert_eq!(
            p.on_read_failed(t0, 1, "timed out"),
            None,
            "not connected yet"
        );
        assert_eq!(p.state(), LinkState::Connecting);
        p.on_connected(t0, 1000);
        p.on_resync_done(t0, 1001, ResyncScope::Known, 0, Duration::ZERO);
        let t1 = t0 + Duration::from_secs(5);
        let tr = p.on_read_failed(t1, 6_000, "connect-time read timed out");
        assert!(matches!(tr, Some(Transition::Degraded { .. })), "{tr:?}");
        assert_eq!(p.state(), LinkState::Degraded);
        assert_eq!(p.status().degraded_since_ms, Some(6_000));
        assert_eq!(p.next_refresh(t1), None);
        assert_eq!(p.on_read_failed(t1, 6_001, "again"), None, "reported once");
        // the driver then drops the link: first reconnect after 1 s, no second transition
        let (d, tr) = p.on_link_lost(t1, 6_002, "dropped", 0.0);
        assert_eq!((d, tr), (Duration::from_secs(1), None));
        assert_eq!(p.status().degraded_since_ms, Some(6_000));
        let tr = p.on_connected(t1 + Duration::from_secs(3), 9_000);
        assert_eq!(
            tr,
            Some(Transition::Connected {
                outage: Some(Duration::from_secs(3))
            })
        );
    }

    #[test]
    fn first_connection_failure_is_degraded() {
        let t0 = Instant::now();
        let mut p = SyncPolicy::new(true, Duration::from_secs(30));
        let (d, tr) = p.on_link_lost(t0, 5, "refused", 1.0);
        assert!((secs(d) - 1.1).abs() < 1e-9);
        assert!(matches!(tr, Some(Transition::Degraded { .. })));
        assert_eq!(p.status().degraded_since_ms, Some(5));
    }

    #[test]
    fn standalone_refreshes_every_interval() {
        let t0 = Instant::now();
        let mut p = SyncPolicy::new(false, Duration::from_secs(10));
        assert_eq!(p.state(), LinkState::Standalone);
        assert_eq!(p.next_refresh(t0), Some(t0 + Duration::from_secs(10)));
        assert!(p.refresh_due(t0 + Duration::from_secs(10)));
        p.on_resync_done(
            t0 + Duration::from_secs(10),
            1,
            ResyncScope::Connected,
            0,
            Duration::ZERO,
        );
        assert_eq!(
            p.next_refresh(t0 + Duration::from_secs(10)),
            Some(t0 + Duration::from_secs(20))
        );
        assert_eq!(p.status().last_full_sync_ms, None);
        assert_eq!(p.status().last_refresh_ms, Some(1));
    }

    #[test]
    fn counters() {
        let mut p = SyncPolicy::new(true, Duration::from_secs(1));
        p.count_update(true);
        p.count_update(false);
        p.count_update(false);
        p.count_refresh_changes(4);
        let s = p.status();
        assert_eq!(
            (
                s.updates_applied,
                s.updates_skipped,
                s.users_changed_by_refresh
            ),
            (1, 2, 4)
        );
    }
}
