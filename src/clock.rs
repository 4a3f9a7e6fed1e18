//! Wall-clock time since the Unix epoch: the one place the gateway reads it (token times, audit
//! and status timestamps). Durations and deadlines use the monotonic [`std::time::Instant`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now (0 if the system clock is before 1970): token `iat`/`exp`
/// and their checks.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch for `t` (0 before the epoch).
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch, now: audit and status timestamps.
pub fn unix_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn epoch_ms_counts_from_1970_and_clamps_before_it() {
        assert_eq!(epoch_ms(UNIX_EPOCH + Duration::from_millis(1_234)), 1_234);
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        // 2020-09-13: the clock this runs on is past it, in both units.
        assert!(unix_secs() > 1_600_000_000);
        assert!(unix_ms() / 1000 >= unix_secs() - 1);
    }
}
