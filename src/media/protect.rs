//! PURE: one listener's downlink protection and its sender statistics, owned by the media
//! thread, no socket and no clock (times are passed in).
//!
//! - [`Protector`]: the SRTP context of a peer connection's local direction, built from the
//!   master key learned at the DTLS handshake ([`srtp_keys`](super::srtp_keys)). A forwarded
//!   copy is marshalled once into a reusable buffer and protected (RFC 3711 / RFC 7714): one
//!   allocation (the protected datagram) per copy, no trip through `rtc`'s pipeline.
//!   Only RTP goes through it: RTCP (SRTCP) keeps using `rtc`'s own context, so each SRTP/SRTCP
//!   index is used by exactly one context (a key and index are never used twice).
//! - [`SenderStats`]: what an RTCP sender report (RFC 3550 §6.4.1) says of a slot's stream:
//!   packets and payload octets sent, and the RTP timestamp at a wall-clock time, extrapolated
//!   from the last packet's (48 kHz). `rtc`'s sender-report interceptor does not see copies
//!   that bypass it, so the engine sends these itself through `rtc` every
//!   [`SENDER_REPORT_INTERVAL_MS`].

use super::srtp_keys::MasterKey;
use crate::sfu::rewrite::OPUS_CLOCK_HZ;
use bytes::BytesMut;
use rtc::crypto::RTCCrypto;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp::Header;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::shared::time::SystemInstant;
use rtc::srtp::context::Context;
use std::time::Instant;

/// How often a slot that sent since its last report sends an RTCP sender report, ms (RFC 3550
/// §6.2: 5 s minimum interval for a small session).
pub const SENDER_REPORT_INTERVAL_MS: u64 = 5_000;

/// Largest plaintext RTP packet protected, bytes (header and payload).
const MAX_PLAIN: usize = 1500;

/// Why a copy could not be protected.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    /// The SRTP context refused the master key (length) or the packet (rollover exhausted).
    #[error("srtp: {0}")]
    Srtp(String),
    /// Header and payload exceed [`MAX_PLAIN`] bytes.
    #[error("RTP packet of {0} bytes is too large")]
    TooLarge(usize),
}

/// A peer connection's local SRTP context and a reusable marshalling buffer.
pub struct Protector {
    ctx: Context,
    plain: Vec<u8>,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector").finish_non_exhaustive()
    }
}

impl Protector {
    /// A context for `key` (no replay protection: it only protects).
    ///
    /// # Errors
    /// [`ProtectError::Srtp`] when the context refuses the key or salt (their lengths do not
    /// match the profile).
    pub fn new(key: &MasterKey, crypto: &dyn RTCCrypto) -> Result<Self, ProtectError> {
        let ctx = Context::new(&key.key, &key.salt, key.profile, None, None, crypto)
            .map_err(|e| ProtectError::Srtp(e.to_string()))?;
        Ok(Self {
            ctx,
            plain: vec![0; MAX_PLAIN],
        })
    }

    /// `hdr` and `payload` marshalled and protected: the SRTP datagram to send.
    ///
    /// # Errors
    /// [`ProtectError::TooLarge`] over 1500 bytes; [`ProtectError::Srtp`] when the context
    /// refuses the packet (2^48 packets on one SSRC).
    pub fn protect(&mut self, hdr: &Header, payload: &[u8]) -> Result<BytesMut, ProtectError> {
        let hlen = hdr.marshal_size();
        let len = hlen + payload.len();
        if len > MAX_PLAIN {
            return Err(ProtectError::TooLarge(len));
        }
        hdr.marshal_to(&mut self.plain[..hlen])
            .map_err(|e| ProtectError::Srtp(e.to_string()))?;
        self.plain[hlen..len].copy_from_slice(payload);
        self.ctx
            .encrypt_rtp_with_header(&self.plain[..len], hdr)
            .map_err(|e| ProtectError::Srtp(e.to_string()))
    }
}

/// One slot stream's send counters and timing (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    packets: u32,
    octets: u32,
    /// RTP timestamp of the newest packet and when it was sent.
    last: Option<(u32, Instant)>,
    /// When the last report was made.
    reported: Option<Instant>,
    /// Packets sent since that report.
    fresh: bool,
}

impl SenderStats {
    /// Counts one packet with RTP timestamp `ts` and `payload` bytes, sent at `now`.
    pub fn sent(&mut self, ts: u32, payload: usize, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
        if self.last.is_none_or(|(t, _)| t != ts) {
            self.last = Some((ts, now));
        }
        self.fresh = true;
    }

    /// The sender report for `ssrc` due at `now` (`wall`: the wall clock at `now`), or `None`
    /// when nothing was sent since the last one or the last is under
    /// [`SENDER_REPORT_INTERVAL_MS`] old. Marks it made.
    pub fn due(&mut self, ssrc: u32, now: Instant, wall: SystemInstant) -> Option<SenderReport> {
        let (ts, at) = self.last?;
        let recent = self.reported.is_some_and(|r| {
            now.saturating_duration_since(r).as_millis() < u128::from(SENDER_REPORT_INTERVAL_MS)
        });
        if !self.fresh || recent {
            return None;
        }
        self.reported = Some(now);
        self.fresh = false;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        Some(SenderReport {
            ssrc,
            ntp_time: wall.ntp(now),
            rtp_time: ts.wrapping_add((elapsed * OPUS_CLOCK_HZ as f64) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::protection_profile::ProtectionProfile;
    use std::time::Duration;

    fn key(profile: ProtectionProfile) -> MasterKey {
        MasterKey {
            key: vec![5; 16],
            salt: vec![6; profile.salt_len()],
            profile,
        }
    }

    #[test]
    fn a_protected_copy_opens_with_the_same_key() {
        let crypto = rtc::crypto::default_provider().unwrap();
        for profile in [
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ] {
            let k = key(profile);
            let mut p = Protector::new(&k, crypto.crypto()).unwrap();
            let mut rx =
                Context::new(&k.key, &k.salt, profile, None, None, crypto.crypto()).unwrap();
            for seq in [10u16, 11, 12] {
                let hdr = Header {
                    version: 2,
                    marker: seq == 10,
                    payload_type: 111,
                    sequence_number: seq,
                    timestamp: 960 * u32::from(seq),
                    ssrc: 42,
                    ..Default::default()
                };
                let payload = [seq as u8; 80];
                let srtp = p.protect(&hdr, &payload).unwrap();
                assert_ne!(&srtp[12..92], &payload[..], "payload must be encrypted");
                let plain = rx.decrypt_rtp(&srtp).unwrap();
                let mut b = &plain[..];
                use rtc::shared::marshal::Unmarshal;
                let pkt = rtc::rtp::Packet::unmarshal(&mut b).unwrap();
                assert_eq!(pkt.header.sequence_number, seq);
                assert_eq!(pkt.header.marker, seq == 10);
                assert_eq!(&pkt.payload[..], &payload[..]);
            }
        }
    }

    #[test]
    fn an_oversized_packet_is_refused() {
        let crypto = rtc::crypto::default_provider().unwrap();
        let mut p =
            Protector::new(&key(ProtectionProfile::AeadAes128Gcm), crypto.crypto()).unwrap();
        let e = p.protect(&Header::default(), &[0; 1500]).unwrap_err();
        assert!(matches!(e, ProtectError::TooLarge(1512)), "{e}");
    }

    #[test]
    fn a_sender_report_every_interval_while_sending() {
        let t0 = Instant::now();
        let wall = SystemInstant::now(t0);
        let mut s = SenderStats::default();
        assert!(s.due(1, t0, wall).is_none(), "nothing sent yet");
        for i in 0..50u32 {
            s.sent(
                1000 + 960 * i,
                100,
                t0 + Duration::from_millis(20 * u64::from(i)),
            );
        }
        let at = t0 + Duration::from_millis(1000);
        let sr = s.due(1, at, wall).unwrap();
        assert_eq!((sr.ssrc, sr.packet_count, sr.octet_count), (1, 50, 5000));
        // The last packet (ts 1000 + 960*49) went at 980 ms: 20 ms later is 960 samples on.
        assert_eq!(sr.rtp_time, 1000 + 960 * 50);
        assert_eq!(sr.ntp_time, wall.ntp(at));
        s.sent(1000 + 960 * 50, 100, at);
        assert!(s.due(1, at + Duration::from_millis(4_999), wall).is_none());
        let sr = s.due(1, at + Duration::from_millis(5_000), wall).unwrap();
        assert_eq!(sr.packet_count, 51);
        assert!(
            s.due(1, at + Duration::from_millis(20_000), wall).is_none(),
            "nothing sent since"
        );
    }
}
