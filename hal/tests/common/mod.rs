//! Helpers for the real-peer tests: free ports and the peers (rigctld, PulseAudio; shared with
//! the gateway tests by path), child processes killed on drop, bounded waits.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod peers;
mod ports;
#[allow(unused_imports)] // not every test binary starts a peer
pub use peers::{spawn_pulse, spawn_rigctld};
#[allow(unused_imports)] // not every test binary starts a peer
pub use ports::free_port;

/// A child process killed (by its own pid) when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Fails the test (never silently skips) when a required peer program is missing.
pub fn require(prog: &str, package: &str) {
    assert!(
        have(prog),
        "{prog} is not installed: run tests/setup-debian.sh (Debian package {package})"
    );
}

/// Polls `cond` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
