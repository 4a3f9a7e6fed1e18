//! The SFU's forwarding latency histogram: from an uplink RTP packet leaving webrtc-rs's
//! receive path (SRTP already decrypted) to its rewritten copy being handed to the listener's
//! sender (before SRTP encryption and the UDP send). Lock-free; read by `/healthz` and the
//! fan-out benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket width, microseconds.
pub const BUCKET_US: u64 = 10;
const BUCKETS: usize = 1000; // 0..10 ms in 10 µs steps, plus one overflow bucket

/// A fixed-bucket latency histogram (10 µs buckets up to 10 ms, then one overflow bucket).
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS + 1],
}

/// Percentiles read from a [`LatencyHistogram`], microseconds (upper bucket edges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs (10001 means "over 10 ms").
    pub p99_us: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS + 1],
        }
    }

    /// Records one sample.
    pub fn record(&self, d: Duration) {
        let i = ((d.as_micros() as u64) / BUCKET_US).min(BUCKETS as u64) as usize;
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Count, p50 and p99 so far.
    pub fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let pct = |p: f64| {
            let target = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= target {
                    return if i == BUCKETS {
                        BUCKETS as u64 * BUCKET_US + 1
                    } else {
                        (i as u64 + 1) * BUCKET_US
                    };
                }
            }
            0
        };
        LatencySummary {
            count,
            p50_us: if count == 0 { 0 } else { pct(0.50) },
            p99_us: if count == 0 { 0 } else { pct(0.99) },
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Forwarding latency of this process's SFU.
pub static FORWARD_LATENCY: LatencyHistogram = LatencyHistogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_upper_edges() {
        let h = LatencyHistogram::new();
        assert_eq!(h.summary().count, 0);
        for us in 0..99 {
            h.record(Duration::from_micros(100 + us % 5));
        }
        h.record(Duration::from_millis(50));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, 110);
        assert_eq!(s.p99_us, 110);
        h.record(Duration::from_millis(50));
        assert_eq!(h.summary().p99_us, 10_001, "overflow bucket");
    }
}
