//! The SDP offer path of `webrtc.offer`: the media engine's answer
//! (`media::negotiate`: `rtc`'s SDP parse, remote description, one track per slot, the host
//! candidate, the answer), fed one offer, on `rtc`'s sans-IO peer connection (no socket).
//!
//! Checks beyond "no panic": an accepted offer gets an answer with Opus at the payload type
//! reported, and no more slots than the offer has audio m-lines or the session has SSRCs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiogate::media::{dtls_certificate, negotiate, OfferSettings};
use radiogate::sfu::audio_mlines;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// The engine makes one DTLS certificate for all its peer connections; so does the target.
static CERT: OnceLock<rtc::peer_connection::certificate::RTCCertificate> = OnceLock::new();

const SLOT_SSRCS: [u32; 2] = [0x1111_1111, 0x2222_2222];

fuzz_target!(|data: &[u8]| {
    // The offer arrives as a JSON string: UTF-8.
    let Ok(offer) = std::str::from_utf8(data) else {
        return;
    };
    let candidates = [SocketAddr::from(([127, 0, 0, 1], 40_000))];
    let settings = OfferSettings {
        conn: 1,
        ufrag: "fuzzfuzzfuzzfuzz",
        pwd: "fuzzfuzzfuzzfuzzfuzzfuzz",
        srtp_profiles: &[],
        ice_lite: true,
        candidates: &candidates,
        slot_ssrcs: &SLOT_SSRCS,
        certificate: CERT.get_or_init(|| dtls_certificate().expect("certificate")),
    };
    let Ok(n) = negotiate(offer, &settings, Instant::now()) else {
        return;
    };
    assert!(n.senders.len() <= SLOT_SSRCS.len());
    assert!(n.senders.len() <= audio_mlines(offer));
    let rtpmap = format!("a=rtpmap:{} opus/48000", n.payload_type);
    assert!(
        n.sdp.to_ascii_lowercase().contains(&rtpmap),
        "answer without {rtpmap}"
    );
});
