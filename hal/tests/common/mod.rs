//! Helpers for the real-peer tests: free ports and the peers (rigctld, PulseAudio; shared with
//! the gateway tests by path), child processes killed on drop, bounded waits.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

mod peers;
mod ports;
mod wait;
#[allow(unused_imports)] // not every test binary starts a peer
pub use peers::{spawn_pulse, spawn_rigctld};
#[allow(unused_imports)] // not every test binary starts a peer
pub use ports::free_port;
pub use wait::wait_for;

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
