//! The ICE candidate path of `webrtc.candidate`: the candidate line, as the session hands it to
//! the media engine (`RTCIceCandidateInit` from the params), added to a peer connection that
//! has answered an offer (`rtc`'s candidate parse, the ICE agent's pairing and checks; no
//! socket).
//!
//! The first byte sets `sdpMid` / `sdpMLineIndex` (absent or "0" / 0); the rest is the
//! `candidate` string. As in a session, one peer connection (`media::negotiate` of a fixed
//! browser-like offer) takes up to `MAX_REMOTE_CANDIDATES` (20) candidates, then a fresh one
//! is made: a crash found this way is reproduced by the run's last inputs (libFuzzer keeps
//! them in the crash report), or alone when it does not depend on earlier candidates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiogate::media::{
    dtls_certificate, negotiate, Negotiated, OfferSettings, RTCIceCandidateInit,
};
use rtc::sansio::Protocol;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

const OFFER: &str = include_str!("../seeds/sdp_offer/chrome-audio.sdp");

/// Candidates one session may add to its peer connection.
const PER_PEER: usize = radiogate::signaling::session::MAX_REMOTE_CANDIDATES;

static CERT: OnceLock<rtc::peer_connection::certificate::RTCCertificate> = OnceLock::new();

thread_local! {
    /// The current peer connection and the candidates it has taken.
    static PEER: RefCell<Option<(Negotiated, usize)>> = const { RefCell::new(None) };
}

fn fresh() -> Negotiated {
    let candidates = [SocketAddr::from(([127, 0, 0, 1], 40_000))];
    let settings = OfferSettings {
        conn: 1,
        ufrag: "fuzzfuzzfuzzfuzz",
        pwd: "fuzzfuzzfuzzfuzzfuzzfuzz",
        srtp_profiles: &[],
        ice_lite: true,
        candidates: &candidates,
        slot_ssrcs: &[0x1111_1111],
        certificate: CERT.get_or_init(|| dtls_certificate().expect("certificate")),
    };
    negotiate(OFFER, &settings, Instant::now()).expect("the fixed offer")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(candidate) = std::str::from_utf8(rest) else {
        return;
    };
    let init = RTCIceCandidateInit {
        candidate: candidate.to_owned(),
        sdp_mid: (mode & 1 == 1).then(|| "0".to_owned()),
        sdp_mline_index: (mode & 2 == 2).then_some(0),
        ..Default::default()
    };
    PEER.with(|p| {
        let mut p = p.borrow_mut();
        if p.as_ref().is_none_or(|(_, used)| *used >= PER_PEER) {
            *p = Some((fresh(), 0));
        }
        let Some((n, used)) = p.as_mut() else { return };
        *used += 1;
        let _ = n.pc.add_remote_candidate(init);
        // What the engine does next (`service`): drain what the peer connection queued (STUN
        // checks to the candidate, events), then run its timers once.
        while n.pc.poll_write().is_some() {}
        while n.pc.poll_event().is_some() {}
        while n.pc.poll_read().is_some() {}
        let _ = n.pc.handle_timeout(Instant::now());
        while n.pc.poll_write().is_some() {}
    });
});
