//! The tests' one bounded poll. Shared by the hal crate's tests and the gateway's
//! (`tests/common/mod.rs` includes this file by path; async gateway tests call it through
//! `common::wait_until`, which keeps the runtime's workers free while it sleeps).

use std::time::{Duration, Instant};

/// How often [`wait_for`] polls.
pub const POLL: Duration = Duration::from_millis(5);

/// Polls `cond` every [`POLL`] until it returns `Some` or `timeout` passes (it is tried once
/// more at the end).
pub fn wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
