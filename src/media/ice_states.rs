//! Peer connection counts for `/metrics`, written by the media thread, read by scrapes
//! without a lock: by ICE connection state (W3C WebRTC `RTCIceConnectionState`,
//! `radiogate_webrtc_peers{ice_state}`, issue 13), and connected peers by what protects their
//! copies ([`SrtpPaths`], `radiogate_webrtc_peers_srtp{by}`).

use rtc::peer_connection::state::RTCIceConnectionState;
use std::sync::atomic::{AtomicI64, Ordering};

/// The states counted, in the order they are exposed, with their W3C names.
pub const STATES: [(RTCIceConnectionState, &str); 7] = [
    (RTCIceConnectionState::New, "new"),
    (RTCIceConnectionState::Checking, "checking"),
    (RTCIceConnectionState::Connected, "connected"),
    (RTCIceConnectionState::Completed, "completed"),
    (RTCIceConnectionState::Disconnected, "disconnected"),
    (RTCIceConnectionState::Failed, "failed"),
    (RTCIceConnectionState::Closed, "closed"),
];

/// Live peer connections per ICE state.
#[derive(Debug, Default)]
pub struct IceStates {
    counts: [AtomicI64; STATES.len()],
}

fn index(s: RTCIceConnectionState) -> Option<usize> {
    STATES.iter().position(|(st, _)| *st == s)
}

impl IceStates {
    /// A peer connection entered `s` (created: `New`).
    pub fn enter(&self, s: RTCIceConnectionState) {
        if let Some(i) = index(s) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A peer connection left `s` (changed state, or was removed).
    pub fn leave(&self, s: RTCIceConnectionState) {
        if let Some(i) = index(s) {
            self.counts[i].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `(state name, peer connections in it)` for every state, zeros included.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        STATES
            .iter()
            .zip(&self.counts)
            .map(|((_, name), c)| (*name, c.load(Ordering::Relaxed).max(0) as u64))
            .collect()
    }
}

/// Connected peer connections by what SRTP-protects their copies: the engine itself (the key
/// was learned, [`srtp_keys`](super::srtp_keys)) or webrtc-rs's write path (it was not).
#[derive(Debug, Default)]
pub struct SrtpPaths {
    engine: AtomicI64,
    webrtc: AtomicI64,
}

impl SrtpPaths {
    /// A peer connected (`+1`) or a connected one went (`-1`); `engine` says which path.
    pub fn add(&self, engine: bool, delta: i64) {
        let c = if engine { &self.engine } else { &self.webrtc };
        c.fetch_add(delta, Ordering::Relaxed);
    }

    /// `[("engine", n), ("webrtc", n)]`.
    pub fn snapshot(&self) -> [(&'static str, u64); 2] {
        let n = |c: &AtomicI64| c.load(Ordering::Relaxed).max(0) as u64;
        [("engine", n(&self.engine)), ("webrtc", n(&self.webrtc))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_counted_in_one_state_at_a_time() {
        let s = IceStates::default();
        s.enter(RTCIceConnectionState::New);
        s.leave(RTCIceConnectionState::New);
        s.enter(RTCIceConnectionState::Checking);
        s.enter(RTCIceConnectionState::New);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 7);
        assert!(snap.contains(&("checking", 1)) && snap.contains(&("new", 1)));
        assert_eq!(snap.iter().map(|(_, n)| n).sum::<u64>(), 2);
        s.leave(RTCIceConnectionState::Checking);
        s.leave(RTCIceConnectionState::New);
        s.leave(RTCIceConnectionState::Unspecified); // not counted, never negative
        assert!(s.snapshot().iter().all(|(_, n)| *n == 0));
    }
}
