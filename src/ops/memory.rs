//! Giving memory back after sessions leave (issue 15 point 8).
//!
//! glibc keeps what sessions freed in its malloc arenas for reuse, so without help the
//! gateway's resident memory after 1,000 sessions left stayed about 25 MB above its start
//! (docs/BENCHMARKS.md, "Memory after sessions leave"). [`run`] looks at the number of live
//! sessions every [`CHECK_EVERY`] and, when it fell since the last look ([`TrimPolicy`]), asks
//! the allocator to return its free pages to the kernel
//! ([`radiogate_hal::memory::release_free_heap`]).

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often [`run`] looks at the session count: the longest a plateau left by departed
/// sessions stays resident.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// When to release free heap memory: after the number of sessions fell.
///
/// Pure: fed the session count at each check. Only departures free memory worth returning;
/// a steady or growing count means the freed memory is being reused, so nothing is done then
/// (a trim would only make the next allocations fault pages in again).
#[derive(Debug, Default, Clone)]
pub struct TrimPolicy {
    /// The highest count seen since the last trim (or the start).
    high: usize,
}

impl TrimPolicy {
    /// Feeds the number of live sessions at a check; returns whether to release free heap
    /// memory now: true when the count is below the highest count seen since the last trim.
    pub fn should_trim(&mut self, sessions: usize) -> bool {
        let fell = sessions < self.high;
        // After a trim the count now is the new reference; otherwise the running maximum.
        self.high = if fell {
            sessions
        } else {
            self.high.max(sessions)
        };
        fell
    }
}

/// Checks the number of live sessions (`sessions`, the session tasks' tracker) every
/// [`CHECK_EVERY`] until `shutdown`, releasing free heap memory when it fell (see
/// [`TrimPolicy`]). Each release is logged at debug level with its duration.
pub async fn run(sessions: TaskTracker, shutdown: CancellationToken) {
    let mut policy = TrimPolicy::default();
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let live = sessions.len();
        if policy.should_trim(live) {
            let t0 = Instant::now();
            let released = radiogate_hal::memory::release_free_heap();
            tracing::debug!(
                sessions = live,
                released,
                micros = t0.elapsed().as_micros() as u64,
                "free heap memory returned to the kernel"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_the_count_fell() {
        let mut p = TrimPolicy::default();
        assert!(!p.should_trim(0), "nothing to return at start");
        assert!(!p.should_trim(10), "growing");
        assert!(!p.should_trim(1000), "growing");
        assert!(!p.should_trim(1000), "steady");
        assert!(p.should_trim(400), "sessions left");
        assert!(!p.should_trim(400), "trimmed already at this count");
        assert!(p.should_trim(0), "the rest left");
        assert!(!p.should_trim(0), "idle: no repeated trims");
    }

    #[test]
    fn a_fall_after_a_rise_counts_from_the_new_high() {
        let mut p = TrimPolicy::default();
        assert!(!p.should_trim(5));
        assert!(p.should_trim(2));
        assert!(!p.should_trim(8), "growing again");
        assert!(p.should_trim(7), "one of the new ones left");
    }
}
