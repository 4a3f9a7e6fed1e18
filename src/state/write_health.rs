//! Failed writes to the state database (a full or failing SD card): counted, logged at most
//! once per [`LOG_INTERVAL`] per store, shown in `/healthz` (issue 15: "a full card is not an
//! outage").
//!
//! [`WriteHealth`] is the PURE part (time passed in): counters, since when a store's writes
//! fail, and whether a failure or a recovery should be logged now. [`WriteMonitor`] is the
//! shell each store holds: it reads the clocks and logs. A store whose write fails keeps what
//! it could not write in memory and retries every [`RETRY_INTERVAL`] (each store says how, see
//! docs/CONTROL_PLANE.md "When the state database cannot be written").

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most one "writes failing" log line per store per interval (issue 15: "logged once per
/// minute, not per write").
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How often a store retries writes that failed.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// The `/healthz` view of one store's writes (times in ms since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteStatus {
    /// Whether the last write attempt failed (records are kept in memory until one succeeds).
    pub failing: bool,
    /// Write attempts that failed since start.
    pub failed_writes: u64,
    /// Records kept in memory, not yet written.
    pub pending: u64,
    /// Records discarded because the in-memory backlog was full, since start.
    pub dropped: u64,
    /// Since when writes fail, while they do.
    pub failing_since_ms: Option<u64>,
    /// The last write error, while writes fail.
    pub last_error: Option<String>,
}

/// What the shell should log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Writes fail: `failures` attempts failed since the last such report (or since they began).
    Failing {
        /// Failed attempts this report covers.
        failures: u64,
    },
    /// Writes succeed again after failing for `outage`.
    Resumed {
        /// How long writes failed.
        outage: Duration,
    },
}

/// The pure write-failure state of one store.
#[derive(Debug, Clone, Default)]
pub struct WriteHealth {
    status: WriteStatus,
    failing_at: Option<Instant>,
    last_report: Option<Instant>,
    unreported: u64,
}

impl WriteHealth {
    /// A write attempt failed at `now` (`wall_ms`: the same instant since the Unix epoch) with
    /// `error`; `pending` records are now kept in memory. Returns a report the first time and
    /// then at most once per [`LOG_INTERVAL`].
    pub fn on_failure(
        &mut self,
        now: Instant,
        wall_ms: u64,
        error: &str,
        pending: u64,
    ) -> Option<Report> {
        let s = &mut self.status;
        s.failed_writes += 1;
        s.pending = pending;
        s.last_error = Some(error.to_string());
        if !s.failing {
            s.failing = true;
            s.failing_since_ms = Some(wall_ms);
            self.failing_at = Some(now);
        }
        self.unreported += 1;
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL);
        due.then(|| {
            self.last_report = Some(now);
            Report::Failing {
                failures: std::mem::take(&mut self.unreported),
            }
        })
    }

    /// A write succeeded at `now`; `pending` records are still kept. Returns a report when
    /// writes had been failing.
    pub fn on_success(&mut self, now: Instant, pending: u64) -> Option<Report> {
        let s = &mut self.status;
        s.pending = pending;
        if !s.failing {
            return None;
        }
        s.failing = false;
        s.failing_since_ms = None;
        s.last_error = None;
        self.unreported = 0;
        self.last_report = None;
        let outage = self
            .failing_at
            .take()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        Some(Report::Resumed { outage })
    }

    /// `n` records were discarded (backlog full).
    pub fn on_dropped(&mut self, n: u64) {
        self.status.dropped += n;
    }

    /// `n` records are now kept in memory (more arrived while waiting for the next retry).
    pub fn set_pending(&mut self, n: u64) {
        self.status.pending = n;
    }

    /// The current status.
    pub fn status(&self) -> &WriteStatus {
        &self.status
    }
}

/// The shell a store holds: a [`WriteHealth`] behind a lock, the clocks and the log. Cheap to
/// clone (one shared state).
#[derive(Clone)]
pub struct WriteMonitor {
    store: &'static str,
    health: Arc<(Mutex<WriteHealth>, Condvar)>,
    retrying: Arc<AtomicBool>,
}

impl WriteMonitor {
    /// A monitor for the store named `store` (`"audit"`, `"permissions"`, `"bans"`: the key in
    /// `/healthz` `stateWrites` and in the log lines).
    pub fn new(store: &'static str) -> Self {
        Self {
            store,
            health: Arc::new((Mutex::new(WriteHealth::default()), Condvar::new())),
            retrying: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The store's name.
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// Counts a failed write attempt (`pending` records kept in memory) and logs at most once
    /// per [`LOG_INTERVAL`].
    pub fn failed(&self, error: &dyn std::fmt::Display, pending: usize) {
        let error = error.to_string();
        let report = self.health.0.lock().on_failure(
            Instant::now(),
            crate::clock::unix_ms(),
            &error,
            pending as u64,
        );
        if let Some(Report::Failing { failures }) = report {
            tracing::warn!(store = self.store, error = %error, failures, pending,
                "state database writes failing; kept in memory and retried every {} s \
                 (logged at most once a minute)", RETRY_INTERVAL.as_secs());
        }
    }

    /// Records a successful write (`pending` records still kept); logs once when writes resume.
    pub fn succeeded(&self, pending: usize) {
        let report = self
            .health
            .0
            .lock()
            .on_success(Instant::now(), pending as u64);
        self.health.1.notify_all();
        if let Some(Report::Resumed { outage }) = report {
            tracing::info!(
                store = self.store,
                outage_ms = outage.as_millis() as u64,
                pending,
                "state database writes resumed"
            );
        }
    }

    /// Updates how many records are kept in memory.
    pub fn set_pending(&self, n: usize) {
        self.health.0.lock().set_pending(n as u64);
    }

    /// Counts `n` records discarded because the in-memory backlog was full.
    pub fn dropped(&self, n: usize) {
        self.health.0.lock().on_dropped(n as u64);
    }

    /// The current status.
    pub fn status(&self) -> WriteStatus {
        self.health.0.lock().status().clone()
    }

    /// Whether the last write attempt failed.
    pub fn failing(&self) -> bool {
        self.health.0.lock().status().failing
    }

    /// Waits (blocking, at most `limit`) until writes no longer fail; returns whether they do
    /// not. For shutdown paths and tests.
    pub fn wait_resumed(&self, limit: Duration) -> bool {
        let (lock, cv) = &*self.health;
        let mut h = lock.lock();
        let _ = cv.wait_while_for(&mut h, |h| h.status().failing, limit);
        !h.status().failing
    }

    /// Retries writing what a store kept in memory: every [`RETRY_INTERVAL`] (see
    /// [`WriteMonitor::spawn_retry`]) locks `kept`, calls `write` unless it is empty (`len` 0),
    /// and reports the outcome here (`failed` with what is still kept, or `succeeded`); stops
    /// once everything is written.
    pub fn retry_kept<T, R, E>(
        &self,
        kept: Arc<Mutex<T>>,
        len: fn(&T) -> usize,
        mut write: impl FnMut(&mut T) -> Result<R, E> + Send + 'static,
    ) where
        T: Send + 'static,
        E: std::fmt::Display,
    {
        let health = self.clone();
        self.spawn_retry(move || {
            let mut k = kept.lock();
            if len(&k) == 0 {
                return true;
            }
            match write(&mut k) {
                Ok(_) => {
                    health.succeeded(0);
                    true
                }
                Err(e) => {
                    health.failed(&e, len(&k));
                    false
                }
            }
        });
    }

    /// Starts a thread named `radiogate-retry-{store}` that calls `flush` every
    /// [`RETRY_INTERVAL`] until it returns `true` (nothing left to write), unless one is
    /// already running. `flush` reports to this monitor itself.
    pub fn spawn_retry(&self, mut flush: impl FnMut() -> bool + Send + 'static) {
        if self.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let retrying = Arc::clone(&self.retrying);
        let spawned = std::thread::Builder::new()
            .name(format!("radiogate-retry-{}", self.store))
            .spawn(move || loop {
                std::thread::sleep(RETRY_INTERVAL);
                retrying.store(false, Ordering::SeqCst);
                if flush() {
                    return;
                }
                if retrying.swap(true, Ordering::SeqCst) {
                    // Another thread took over between the flush and here.
                    return;
                }
            });
        if let Err(e) = spawned {
            self.retrying.store(false, Ordering::SeqCst);
            tracing::error!(store = self.store, error = %e, "cannot start the write retry thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_every_time_and_reported_once_a_minute() {
        let t0 = Instant::now();
        let mut h = WriteHealth::default();
        assert_eq!(
            h.on_failure(t0, 1_000, "disk full", 1),
            Some(Report::Failing { failures: 1 })
        );
        for i in 1..100u64 {
            let now = t0 + Duration::from_millis(500 * i);
            assert_eq!(h.on_failure(now, 1_000, "disk full", 1 + i), None, "{i}");
        }
        let s = h.status().clone();
        assert!(s.failing);
        assert_eq!((s.failed_writes, s.pending), (100, 100));
        assert_eq!(s.failing_since_ms, Some(1_000));
        assert_eq!(s.last_error.as_deref(), Some("disk full"));
        assert_eq!(
            h.on_failure(t0 + LOG_INTERVAL, 2_000, "disk full", 101),
            Some(Report::Failing { failures: 100 }),
            "the 99 unreported failures at 0.5..49.5 s and this one"
        );
    }

    #[test]
    fn success_after_failures_reports_the_outage_once_and_clears() {
        let t0 = Instant::now();
        let mut h = WriteHealth::default();
        assert_eq!(h.on_success(t0, 0), None);
        h.on_failure(t0, 5, "e", 3);
        h.on_dropped(2);
        assert_eq!(
            h.on_success(t0 + Duration::from_secs(7), 0),
            Some(Report::Resumed {
                outage: Duration::from_secs(7)
            })
        );
        assert_eq!(h.on_success(t0 + Duration::from_secs(8), 0), None);
        let s = h.status();
        assert!(!s.failing && s.failing_since_ms.is_none() && s.last_error.is_none());
        assert_eq!((s.failed_writes, s.pending, s.dropped), (1, 0, 2));
        // A new failure episode is reported at once.
        assert!(h
            .on_failure(t0 + Duration::from_secs(9), 9, "e", 1)
            .is_some());
    }
}
