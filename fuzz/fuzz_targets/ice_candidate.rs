//! The ICE candidate path of `webrtc.candidate`: the candidate line, as the session hands it to
//! the media engine (`RTCIceCandidateInit` from the params), added to a peer connection that
//! has answered an offer (`rtc`'s candidate parse, the ICE agent's pairing and checks; no
//! socket).
//!
//! The first byte sets `sdpMid` / `sdpMLineIndex` (absent or "0" / 0); the rest is the
//! `candidate` string. Each input gets a fresh peer connection (`media::negotiate` of a fixed
//! browser-like offer), so a crash reproduces from its input alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiogate::media::{negotiate, OfferSettings, RTCIceCandidateInit};
use rtc::sansio::Protocol;
use std::net::SocketAddr;
use std::time::Instant;

const OFFER: &str = include_str!("../seeds/sdp_offer/chrome-audio.sdp");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(candidate) = std::str::from_utf8(rest) else {
        return;
    };
    let candidates = [SocketAddr::from(([127, 0, 0, 1], 40_000))];
    let settings = OfferSettings {
        conn: 1,
        ufrag: "fuzzfuzzfuzzfuzz",
        pwd: "fuzzfuzzfuzzfuzzfuzzfuzz",
        srtp_profiles: &[],
        candidates: &candidates,
        slot_ssrcs: &[0x1111_1111],
    };
    let mut n = negotiate(OFFER, &settings, Instant::now()).expect("the fixed offer");
    let init = RTCIceCandidateInit {
        candidate: candidate.to_owned(),
        sdp_mid: (mode & 1 == 1).then(|| "0".to_owned()),
        sdp_mline_index: (mode & 2 == 2).then_some(0),
        ..Default::default()
    };
    let _ = n.pc.add_remote_candidate(init);
    // What the engine does next (`service`): drain what the peer connection queued (STUN
    // checks to the candidate, events), then run its timers once.
    while n.pc.poll_write().is_some() {}
    while n.pc.poll_event().is_some() {}
    while n.pc.poll_read().is_some() {}
    let _ = n.pc.handle_timeout(Instant::now());
    while n.pc.poll_write().is_some() {}
});
