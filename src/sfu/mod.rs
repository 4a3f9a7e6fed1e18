//! The audio SFU's shared parts: the route table the hub shell publishes and every uplink
//! reads lock-free ([`routes`]), per-listener stream rewriting so each joined channel is one
//! continuous stream ([`rewrite`]), and the forwarding latency histogram ([`stats`]). The peer
//! connections themselves live in the media engine (`crate::media`); radio ports receive
//! their copies as [`Downlink`]s on a queue.
//!
//! Slot model (pre-allocated transceivers, no renegotiation on join): the client offers
//! `slots` audio m-lines. The first is `sendrecv` (the client's microphone goes up on it and
//! slot 0 comes down); the others are `recvonly`. The server answers with one outgoing track
//! per m-line, each with its own SSRC, and tells the client in the `webrtc.offer` result which
//! SSRC belongs to which slot. Joining a channel assigns it a free slot (returned by
//! `channel.join`), so channels can be joined and left at any time without a new offer.
//! `slots` equals `channels.max_channels_per_user`; an ADMIN joined to more channels than that
//! gets `slot: null` for the extra ones (no audio for them).

pub mod rewrite;
pub mod routes;
pub mod stats;

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
}
