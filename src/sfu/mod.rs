//! The audio SFU: one WebRTC peer connection per signaling session (webrtc-rs 0.21), RTP
//! fan-out gated by the floor (the hub decides who hears whom), and per-listener stream
//! rewriting so each joined channel is one continuous stream.
//!
//! Slot model (pre-allocated transceivers, no renegotiation on join): the client offers
//! `slots` audio m-lines. The first is `sendrecv` (the client's microphone goes up on it and
//! slot 0 comes down); the others are `recvonly`. The server answers with one outgoing track
//! per m-line, each with its own SSRC, and tells the client in the `webrtc.offer` result which
//! SSRC belongs to which slot. Joining a channel assigns it a free slot (returned by
//! `channel.join`), so channels can be joined and left at any time without a new offer.
//! `slots` equals `channels.max_channels_per_user`; an ADMIN joined to more channels than that
//! gets `slot: null` for the extra ones (no audio for them).

mod peer;
pub mod rewrite;
pub mod routes;
pub mod stats;

pub use peer::{MediaPeer, OnClosed, PeerSetup};

use crate::config::SfuConfig;
use parking_lot::Mutex;
use std::net::{IpAddr, UdpSocket};

/// Capacity of a listener's downlink queue, packets (about 2.5 s of one 20 ms stream). When it
/// is full the packet is dropped for that listener only.
pub const DOWNLINK_QUEUE: usize = 128;

/// One RTP packet queued for one listener.
#[derive(Debug, Clone)]
pub struct Downlink {
    /// Listener's slot the packet goes out on.
    pub slot: usize,
    /// Floor grant number the packet belongs to (a talk spurt; see [`rewrite::SpurtKey`]).
    pub grant: u64,
    /// The packet as received from the talker.
    pub packet: rtc::rtp::Packet,
    /// When the uplink packet was taken from the talker's track (for [`stats::FORWARD_LATENCY`]).
    pub received_at: std::time::Instant,
}

/// Errors from the SFU.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The offer was refused or negotiation failed in webrtc-rs.
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// The offer does not contain usable audio.
    #[error("offer: {0}")]
    BadOffer(String),
    /// No UDP port is free in the configured range.
    #[error("no free UDP port in {0}..={1}")]
    NoPort(u16, u16),
}

/// Shared SFU settings and the UDP port allocator.
pub struct Sfu {
    cfg: SfuConfig,
    next_port: Mutex<u16>,
}

impl Sfu {
    /// SFU with the `[sfu]` configuration.
    pub fn new(cfg: SfuConfig) -> Self {
        let start = cfg.udp_port_min;
        Self {
            cfg,
            next_port: Mutex::new(start),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SfuConfig {
        &self.cfg
    }

    /// The address a new peer connection binds: the configured IP and either port 0
    /// (ephemeral) or the next free port of the configured range (round robin).
    ///
    /// # Errors
    /// [`SfuError::NoPort`] when every port of the range is in use.
    pub fn allocate_addr(&self) -> Result<String, SfuError> {
        let ip: IpAddr = self.cfg.udp_bind_ip;
        let (lo, hi) = (self.cfg.udp_port_min, self.cfg.udp_port_max);
        if lo == 0 {
            return Ok(format!("{}", std::net::SocketAddr::new(ip, 0)));
        }
        let mut next = self.next_port.lock();
        let span = (hi - lo) as u32 + 1;
        for _ in 0..span {
            let port = *next;
            *next = if port >= hi { lo } else { port + 1 };
            if UdpSocket::bind((ip, port)).is_ok() {
                return Ok(format!("{}", std::net::SocketAddr::new(ip, port)));
            }
        }
        Err(SfuError::NoPort(lo, hi))
    }
}

/// The Opus payload type the answer negotiated (`a=rtpmap:PT opus/48000/2`), if any.
pub fn opus_payload_type(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=rtpmap:")?;
        let (pt, codec) = rest.split_once(' ')?;
        codec
            .to_ascii_lowercase()
            .starts_with("opus/48000")
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// Number of audio m-lines in an SDP.
pub fn audio_mlines(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=audio")).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_opus_pt_and_counts_mlines() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\nm=audio 9 x 111\r\n";
        assert_eq!(opus_payload_type(sdp), Some(111));
        assert_eq!(audio_mlines(sdp), 2);
        assert_eq!(opus_payload_type("m=video 9 x 96\r\n"), None);
    }

    #[test]
    fn port_range_allocation_skips_busy_ports() {
        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let sfu = Sfu::new(SfuConfig {
            udp_bind_ip: "127.0.0.1".parse().unwrap(),
            udp_port_min: port,
            udp_port_max: port,
            advertise_ips: vec![],
        });
        assert!(matches!(sfu.allocate_addr(), Err(SfuError::NoPort(..))));
        drop(busy);
        assert_eq!(sfu.allocate_addr().unwrap(), format!("127.0.0.1:{port}"));
    }
}
