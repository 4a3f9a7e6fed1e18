//! Continuous outgoing RTP streams across talker changes: SSRC, sequence number and timestamp
//! rewriting (RFC 3550 sections 5.1 and 8).
//!
//! Each listener hears a channel on one downlink slot with one fixed SSRC. Talk spurts from
//! different talkers (or the same talker after a new floor grant) arrive with unrelated
//! sequence numbers and timestamps; [`SlotStream`] maps each spurt onto the slot's stream so
//! the listener sees one stream with no SSRC change, no sequence gap at a switch, and a
//! timestamp that advances with wall-clock time (48 kHz Opus clock) across the silence.

use rtc::rtp::header::Header;
use std::time::Instant;

/// Opus RTP clock rate, Hz (RFC 7587 section 4.1).
pub const OPUS_CLOCK_HZ: u64 = 48_000;
/// One 20 ms Opus frame in RTP timestamp units (samples at 48 kHz).
pub const FRAME_SAMPLES: u32 = 960;

/// Identity of a talk spurt: the floor grant it belongs to and the talker's SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpurtKey {
    /// Grant number from the hub (increments on every floor granted).
    pub grant: u64,
    /// The incoming packet's SSRC.
    pub ssrc: u32,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u16,
    ts: u32,
    at: Instant,
}

/// One downlink slot's outgoing stream state.
#[derive(Debug, Clone)]
pub struct SlotStream {
    ssrc: u32,
    payload_type: u8,
    current: Option<SpurtKey>,
    seq_offset: u16,
    ts_offset: u32,
    last: Option<Last>,
    initial_seq: u16,
    initial_ts: u32,
}

impl SlotStream {
    /// A stream sending with `ssrc` and the listener's negotiated Opus `payload_type`;
    /// `initial_seq` and `initial_ts` start the stream (RFC 3550 recommends random values).
    pub fn new(ssrc: u32, payload_type: u8, initial_seq: u16, initial_ts: u32) -> Self {
        Self {
            ssrc,
            payload_type,
            current: None,
            seq_offset: 0,
            ts_offset: 0,
            last: None,
            initial_seq,
            initial_ts,
        }
    }

    /// The slot's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Rewrites `hdr` (received at `now`, part of spurt `key`) onto this stream: SSRC and
    /// payload type replaced, sequence number and timestamp shifted, header extensions removed
    /// (they are negotiated per leg), marker set on the first packet of a spurt.
    pub fn rewrite(&mut self, key: SpurtKey, hdr: &mut Header, now: Instant) {
        if self.current != Some(key) {
            let (seq, ts) = match self.last {
                Some(l) => {
                    let elapsed = now.saturating_duration_since(l.at);
                    let samples = (elapsed.as_micros() as u64 * OPUS_CLOCK_HZ / 1_000_000)
                        .min(u32::MAX as u64) as u32;
                    (
                        l.seq.wrapping_add(1),
                        l.ts.wrapping_add(samples.max(FRAME_SAMPLES)),
                    )
                }
                None => (self.initial_seq, self.initial_ts),
            };
            self.seq_offset = seq.wrapping_sub(hdr.sequence_number);
            self.ts_offset = ts.wrapping_sub(hdr.timestamp);
            self.current = Some(key);
            hdr.marker = true;
        }
        let seq = hdr.sequence_number.wrapping_add(self.seq_offset);
        let ts = hdr.timestamp.wrapping_add(self.ts_offset);
        let newer = self
            .last
            .is_none_or(|l| seq != l.seq && seq.wrapping_sub(l.seq) < 0x8000);
        if newer {
            self.last = Some(Last { seq, ts, at: now });
        }
        hdr.sequence_number = seq;
        hdr.timestamp = ts;
        hdr.ssrc = self.ssrc;
        hdr.payload_type = self.payload_type;
        hdr.extension = false;
        hdr.extensions.clear();
        hdr.extensions_padding = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hdr(ssrc: u32, seq: u16, ts: u32) -> Header {
        Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        }
    }

    #[test]
    fn switch_between_talkers_keeps_ssrc_and_sequence_contiguous() {
        let t0 = Instant::now();
        let mut s = SlotStream::new(42, 109, 1000, 5000);
        let a = SpurtKey { grant: 1, ssrc: 7 };
        let mut out = Vec::new();
        for i in 0..10u16 {
            // Sequence numbers wrap mid-spurt.
            let mut h = hdr(7, 65530u16.wrapping_add(i), 900 + 960 * i as u32);
            s.rewrite(a, &mut h, t0 + Duration::from_millis(20 * i as u64));
            out.push(h);
        }
        // 1 s of silence, then talker B with unrelated numbering.
        let b = SpurtKey { grant: 2, ssrc: 99 };
        for i in 0..5u16 {
            let mut h = hdr(99, 10 + i, 123_456 + 960 * i as u32);
            s.rewrite(b, &mut h, t0 + Duration::from_millis(1200 + 20 * i as u64));
            out.push(h);
        }
        assert!(out.iter().all(|h| h.ssrc == 42 && h.payload_type == 109));
        for w in out.windows(2) {
            assert_eq!(w[1].sequence_number, w[0].sequence_number.wrapping_add(1));
        }
        assert_eq!(out[0].sequence_number, 1000);
        assert!(out[0].marker && out[10].marker && !out[1].marker);
        // Timestamp across the gap advanced by the wall-clock gap (1200 - 180 ms) at 48 kHz.
        let gap = out[10].timestamp.wrapping_sub(out[9].timestamp);
        assert_eq!(gap, 48 * 1020);
        assert_eq!(out[11].timestamp.wrapping_sub(out[10].timestamp), 960);
    }

    #[test]
    fn same_talker_new_grant_has_no_gap_even_if_input_skipped() {
        let t0 = Instant::now();
        let mut s = SlotStream::new(1, 111, 0, 0);
        let mut h = hdr(7, 100, 0);
        s.rewrite(SpurtKey { grant: 1, ssrc: 7 }, &mut h, t0);
        // The talker kept sending 50 packets that were not forwarded (no floor).
        let mut h2 = hdr(7, 151, 960 * 51);
        s.rewrite(
            SpurtKey { grant: 2, ssrc: 7 },
            &mut h2,
            t0 + Duration::from_millis(1020),
        );
        assert_eq!(h2.sequence_number, h.sequence_number.wrapping_add(1));
    }

    #[test]
    fn reordered_packet_does_not_move_the_stream_backwards() {
        let t0 = Instant::now();
        let mut s = SlotStream::new(1, 111, 10, 0);
        let k = SpurtKey { grant: 1, ssrc: 7 };
        for seq in [1u16, 3, 2] {
            let mut h = hdr(7, seq, seq as u32 * 960);
            s.rewrite(k, &mut h, t0);
        }
        let mut h = hdr(8, 50, 0);
        s.rewrite(SpurtKey { grant: 2, ssrc: 8 }, &mut h, t0);
        assert_eq!(h.sequence_number, 13); // after the highest (12), not after the late 11
    }
}
