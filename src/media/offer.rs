//! The answer to a `webrtc.offer`: builds one session's sans-IO `rtc` peer connection from the
//! client's SDP offer and creates the SDP answer. No socket and no clock: the media thread
//! ([`engine`](super::engine)) calls it with the time, and so does the offer fuzz target
//! (`fuzz/fuzz_targets/sdp_offer.rs`, docs/BENCHMARKS.md "Fuzzing").

use super::engine::{host_candidate, opus_codec, random_token};
use super::srtp_keys::KeyCapture;
use super::MediaError;
use crate::sfu::{audio_mlines, opus_payload_type};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the answer is built with, besides the offer.
#[derive(Debug, Clone, Copy)]
pub struct OfferSettings<'a> {
    /// The session's connection id (names the downlink tracks `radiogate-{conn}`).
    pub conn: u64,
    /// Local ICE username fragment (unique among the engine's peer connections).
    pub ufrag: &'a str,
    /// Local ICE password.
    pub pwd: &'a str,
    /// SRTP protection profiles offered in DTLS (empty: `rtc`'s default, AES-GCM first).
    pub srtp_profiles: &'a [SrtpProtectionProfile],
    /// Answer as an ICE-lite agent (RFC 8445 §2.5: `a=ice-lite`, host candidates only, no
    /// connectivity checks of its own). A full agent sends a keepalive check to every connected
    /// phone every 2 s and handles the answer: half the STUN traffic an idle phone costs
    /// (docs/BENCHMARKS.md "Session 10"). A vanished phone is noticed either way: no checks from
    /// it for 5 s makes it disconnected, 30 s failed (the peer connection is then removed).
    pub ice_lite: bool,
    /// Host candidates put in the answer (no trickle needed).
    pub candidates: &'a [SocketAddr],
    /// One SSRC per downlink slot the session may have; at most one slot per audio m-line
    /// of the offer is negotiated.
    pub slot_ssrcs: &'a [u32],
    /// The DTLS certificate ([`dtls_certificate`]): one for every peer connection of the
    /// engine, so a connect does not pay for a key pair and a self-signed certificate.
    pub certificate: &'a RTCCertificate,
}

/// A DTLS certificate for the engine's peer connections: ECDSA P-256 with SHA-256, a random
/// 16-character common name, valid until 4096 (what `rtc` generates for each peer connection
/// without one, made once). Peers check it by the SHA-256 fingerprint in the SDP answer
/// (RFC 8122), which is the same for every session; the private key stays in the process.
///
/// # Errors
/// [`MediaError::Rtc`] when the key or the certificate cannot be made.
pub fn dtls_certificate() -> Result<RTCCertificate, MediaError> {
    let provider = rtc::crypto::default_provider().map_err(rerr)?;
    let params = CertificateParams::new(vec![random_token(16)]).map_err(rerr)?;
    RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        params,
    )
    .map_err(rerr)
}

/// The `rtc` media engine of every peer connection the gateway makes: Opus only, offered at
/// payload type [`OPUS_PAYLOAD_TYPE`].
///
/// # Errors
/// [`MediaError::Rtc`] when `rtc` refuses the codec.
pub fn opus_media_engine() -> Result<MediaEngine, MediaError> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )
        .map_err(rerr)?;
    Ok(media)
}

/// The Opus payload type the gateway offers (an answer may use the offer's own).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// A send track carrying one Opus stream with SSRC `ssrc`, in media stream `stream` (the
/// track's id and label are `id`).
pub fn opus_track(stream: String, id: String, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        stream,
        id.clone(),
        id,
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    )
}

/// A negotiated peer connection.
pub struct Negotiated {
    /// The peer connection, remote (offer) and local (answer) descriptions set.
    pub pc: RTCPeerConnection,
    /// One sender per negotiated downlink slot, in slot order (`slot_ssrcs[i]` is slot i's).
    pub senders: Vec<RTCRtpSenderId>,
    /// The SDP answer, with the host candidates.
    pub sdp: String,
    /// The Opus RTP payload type of the answer.
    pub payload_type: u8,
    /// The peer connection's crypto provider, which learns its local SRTP master key at the
    /// DTLS handshake ([`KeyCapture`]).
    pub keys: Arc<KeyCapture>,
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiated")
            .field("slots", &self.senders.len())
            .field("payload_type", &self.payload_type)
            .finish_non_exhaustive()
    }
}

fn rerr(e: impl std::fmt::Display) -> MediaError {
    MediaError::Rtc(e.to_string())
}

/// Builds the peer connection for `offer` (SDP text from the client) at `now` and creates
/// the answer: Opus only (payload type 111 offered, the offer's own used), one send track
/// per slot (`min(audio m-lines, slot_ssrcs.len())`), the RTCP report interceptors, a
/// [`KeyCapture`] as the crypto provider.
///
/// # Errors
/// [`MediaError::BadOffer`] for an offer without an audio m-line, one `rtc` cannot parse or
/// apply, or one whose answer has no Opus; [`MediaError::Rtc`] when `rtc` refuses a later
/// step (tracks, candidates, the answer).
pub fn negotiate(
    offer: &str,
    s: &OfferSettings<'_>,
    now: Instant,
) -> Result<Negotiated, MediaError> {
    let wanted = audio_mlines(offer);
    if wanted == 0 {
        return Err(MediaError::BadOffer("no audio m-line".into()));
    }
    let slots = wanted.min(s.slot_ssrcs.len());
    let media = opus_media_engine()?;
    let keys = Arc::new(KeyCapture::new(
        rtc::crypto::default_provider().map_err(rerr)?,
    ));
    let mut setting = SettingEngineBuilder::new()
        .with_lite(s.ice_lite)
        .with_ice_credentials(s.ufrag.to_owned(), s.pwd.to_owned())
        .with_crypto_provider(keys.clone());
    if !s.srtp_profiles.is_empty() {
        setting = setting.with_srtp_protection_profiles(s.srtp_profiles.to_vec());
    }
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_certificates(vec![s.certificate.clone()])
                .build(),
        )
        .with_media_engine(media)
        .with_setting_engine(setting.build())
        .with_interceptor_registry(configure_rtcp_reports(rtc::interceptor::Registry::new()))
        .build(now)
        .map_err(rerr)?;
    let desc = RTCSessionDescription::offer(offer.to_string())
        .map_err(|e| MediaError::BadOffer(e.to_string()))?;
    pc.set_remote_description(now, desc)
        .map_err(|e| MediaError::BadOffer(e.to_string()))?;
    let mut senders = Vec::with_capacity(slots);
    for (i, ssrc) in s.slot_ssrcs[..slots].iter().enumerate() {
        let track = opus_track(format!("radiogate-{}", s.conn), format!("slot-{i}"), *ssrc);
        senders.push(pc.add_track(track).map_err(rerr)?);
    }
    for c in s.candidates {
        pc.add_local_candidate(host_candidate(*c)?).map_err(rerr)?;
    }
    let answer = pc.create_answer(None).map_err(rerr)?;
    pc.set_local_description(now, answer).map_err(rerr)?;
    let sdp = pc
        .local_description()
        .ok_or_else(|| MediaError::Rtc("no local description".into()))?
        .sdp;
    let payload_type = opus_payload_type(&sdp)
        .ok_or_else(|| MediaError::BadOffer("no Opus in the negotiated answer".into()))?;
    Ok(Negotiated {
        pc,
        senders,
        sdp,
        payload_type,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = include_str!("../../fuzz/seeds/sdp_offer/chrome-audio.sdp");
    const THREE: &str = include_str!("../../fuzz/seeds/sdp_offer/three-slots.sdp");

    fn cert() -> &'static RTCCertificate {
        static CERT: std::sync::OnceLock<RTCCertificate> = std::sync::OnceLock::new();
        CERT.get_or_init(|| dtls_certificate().unwrap())
    }

    fn settings<'a>(candidates: &'a [SocketAddr], ssrcs: &'a [u32]) -> OfferSettings<'a> {
        OfferSettings {
            certificate: cert(),
            conn: 7,
            ufrag: "ufragufragufragu",
            pwd: "pwdpwdpwdpwdpwdpwdpwdpwd",
            srtp_profiles: &[],
            ice_lite: true,
            candidates,
            slot_ssrcs: ssrcs,
        }
    }

    #[test]
    fn answers_an_audio_offer_with_opus_and_the_host_candidate() {
        let cands = [SocketAddr::from(([192, 0, 2, 1], 40_000))];
        let n = negotiate(OFFER, &settings(&cands, &[11, 22]), Instant::now()).unwrap();
        assert_eq!(n.senders.len(), 1, "one audio m-line, one slot");
        assert_eq!(n.payload_type, 111);
        assert!(n.sdp.contains("a=rtpmap:111 opus/48000/2"), "{}", n.sdp);
        assert!(n.sdp.contains("192.0.2.1 40000 typ host"), "{}", n.sdp);
        assert!(n.sdp.contains("a=ice-ufrag:ufragufragufragu"), "{}", n.sdp);
        // The gateway is an ICE-lite agent: it sends no connectivity checks of its own.
        assert!(n.sdp.contains("a=ice-lite"), "{}", n.sdp);
        let full = OfferSettings {
            ice_lite: false,
            ..settings(&cands, &[11, 22])
        };
        let n = negotiate(OFFER, &full, Instant::now()).unwrap();
        assert!(!n.sdp.contains("a=ice-lite"), "{}", n.sdp);
    }

    #[test]
    fn slots_are_bounded_by_mlines_and_ssrcs() {
        let n = negotiate(THREE, &settings(&[], &[11, 22]), Instant::now()).unwrap();
        assert_eq!(n.senders.len(), 2);
        let n = negotiate(THREE, &settings(&[], &[11, 22, 33, 44]), Instant::now()).unwrap();
        assert_eq!(n.senders.len(), 3);
    }

    #[test]
    fn refuses_offers_without_audio_or_opus() {
        let none = include_str!("../../fuzz/seeds/sdp_offer/no-audio.sdp");
        let pcmu = include_str!("../../fuzz/seeds/sdp_offer/pcmu-only.sdp");
        let e = negotiate(none, &settings(&[], &[1]), Instant::now()).unwrap_err();
        assert!(matches!(e, MediaError::BadOffer(_)), "{e}");
        for offer in [pcmu, "m=audio", "garbage\r\nm=audio 9 x 111\r\n"] {
            assert!(negotiate(offer, &settings(&[], &[1]), Instant::now()).is_err());
        }
    }
}
