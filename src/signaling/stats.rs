//! Server-side floor control latency: from a `floor.request` or `floor.priority_request`
//! frame handed to its session (WebSocket frame already read and decoded) to the reply
//! (granted or denied) queued for the session's writer, which includes the floor decision
//! and queuing `floor.taken` to every other member of the channel. The socket write is not
//! included. Read by `/healthz`, `/metrics` and the floor latency benchmark (target: p99
//! under 1 ms with 500 sessions, issue 2).

use crate::sfu::stats::LatencyHistogram;

/// Floor request handling latency since start (10 µs buckets up to 10 ms).
pub static FLOOR_REQUEST_LATENCY: LatencyHistogram = LatencyHistogram::new();

/// Whether `method` is timed in [`FLOOR_REQUEST_LATENCY`].
pub fn is_floor_request(method: &str) -> bool {
    matches!(method, "floor.request" | "floor.priority_request")
}
