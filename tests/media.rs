//! The SFU end to end: real WebRTC clients (webrtc-rs) exchanging Opus-encoded speech through
//! the gateway process, gated by floor control.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{connect, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

const SLOTS: usize = 3;

async fn member(gw: &Gateway, user: &str, channels: &[&str]) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, Role::General, "ev1", channels))
        .await
        .expect("connect");
    ws.notification("channel.list").await;
    let rtc = RtcClient::connect(&mut ws, SLOTS).await;
    for ch in channels {
        ws.call("channel.join", json!({"channelId": ch}))
            .await
            .expect("join");
    }
    (ws, rtc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_holder_speech_reaches_members_and_nobody_else() {
    let gw = Gateway::start("");
    let (mut a_ws, mut a) = member(&gw, "alice", &["c1"]).await;
    let (_b_ws, b) = member(&gw, "bob", &["c1"]).await;
    let (_c_ws, c) = member(&gw, "carol", &["c1"]).await;
    let (d_ws, d) = member(&gw, "dave", &["c2"]).await;

    let frames = encode_opus(&speech_pcm());
    assert!(frames.len() >= 150, "at least 3 s of speech");

    // Without the floor, alice's audio reaches nobody.
    a.talk(&frames[..25]).await;
    let r = a_ws.call("session.ping", json!({})).await; // a round trip after the talk
    assert!(r.is_ok());
    assert_eq!(b.received() + c.received() + d.received(), 0);

    // With the floor granted, bob and carol get at least 95% of it; dave (other channel) none.
    let g = a_ws
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    assert_eq!(g["granted"], true);
    a.talk(&frames).await;
    let n = frames.len();
    let got_b = b.wait_received(n, Duration::from_secs(3)).await;
    let got_c = c.wait_received(n, Duration::from_secs(3)).await;
    assert!(got_b * 100 >= n * 95, "bob got {got_b}/{n}");
    assert!(got_c * 100 >= n * 95, "carol got {got_c}/{n}");
    assert_eq!(d.received(), 0, "another channel hears nothing");
    assert_eq!(a.received(), 0, "the talker does not hear itself");

    // /metrics (issue 13): four peer connections with ICE connected (or completed), c1 with
    // three members and a talker, and at least what bob heard counted as c1's packets.
    let (_, m) = gw.http_get("/metrics").await;
    let sample = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in\n{m}"))
    };
    let up = sample("radiogate_webrtc_peers{ice_state=\"connected\"}")
        + sample("radiogate_webrtc_peers{ice_state=\"completed\"}");
    assert_eq!(up, 4.0, "{m}");
    assert_eq!(sample("radiogate_webrtc_peers{ice_state=\"failed\"}"), 0.0);
    // Every peer's copies are SRTP-protected by the engine itself (its DTLS-SRTP key was
    // learned), none through webrtc-rs's write path: what bob heard above went that way.
    assert_eq!(
        sample("radiogate_webrtc_peers_srtp{by=\"engine\"}"),
        4.0,
        "{m}"
    );
    assert_eq!(sample("radiogate_webrtc_peers_srtp{by=\"webrtc\"}"), 0.0);
    assert_eq!(
        sample("radiogate_channel_members{channel=\"c1\",event=\"ev1\"}"),
        3.0
    );
    assert_eq!(
        sample("radiogate_channel_talkers{channel=\"c1\",event=\"ev1\"}"),
        1.0
    );
    assert_eq!(
        sample("radiogate_channel_talkers{channel=\"c2\",event=\"ev1\"}"),
        0.0
    );
    let c1 = sample("radiogate_channel_rtp_packets_total{channel=\"c1\"}");
    assert!(
        c1 >= got_b as f64 && c1 <= n as f64,
        "c1 packets {c1}, bob got {got_b} of {n}"
    );

    // The decoded audio matches the source: energy envelopes correlate.
    let mut pk = b.packets();
    let base = pk[0].seq;
    pk.sort_by_key(|p| p.seq.wrapping_sub(base));
    let by_payload: HashMap<Vec<u8>, usize> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (f.clone(), i))
        .collect();
    let received_frames: Vec<Vec<u8>> = pk.iter().map(|p| p.payload.clone()).collect();
    assert!(
        received_frames.iter().all(|f| by_payload.contains_key(f)),
        "every payload is one the talker sent"
    );
    // Compare each received frame's decoded energy with the energy of the frame it carries
    // in the decoded source (aligned by payload, so a lost packet does not shift the rest).
    let decoded = envelope(&decode_opus(&received_frames));
    let source_all = envelope(&decode_opus(&frames));
    let source: Vec<f64> = received_frames
        .iter()
        .map(|f| source_all[by_payload[f]])
        .collect();
    let r = correlation(&decoded, &source);
    assert!(r > 0.9, "envelope correlation {r}");
    // One SSRC, the slot's, for the whole stream.
    assert!(pk.iter().all(|p| p.ssrc == b.slot_ssrcs[0]));

    // A closed peer connection leaves the ICE-state gauges.
    d_ws.close();
    let mut gone = false;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..50 {
        poll.tick().await;
        let (_, m) = gw.http_get("/metrics").await;
        let up: f64 = m
            .lines()
            .filter(|l| {
                l.starts_with("radiogate_webrtc_peers{ice_state=\"connected\"}")
                    || l.starts_with("radiogate_webrtc_peers{ice_state=\"completed\"}")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        if up == 3.0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "dave's peer connection is no longer counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talker_change_keeps_listener_stream_continuous() {
    let gw = Gateway::start("");
    let (mut a_ws, mut a) = member(&gw, "alice", &["c1"]).await;
    let (mut b_ws, mut b) = member(&gw, "bob", &["c1"]).await;
    let (_l_ws, l) = member(&gw, "lena", &["c1"]).await;
    let frames = encode_opus(&speech_pcm());

    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("a granted");
    a.talk(&frames[..50]).await;
    l.wait_received(50, Duration::from_secs(3)).await;
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    b_ws.notification("floor.idle").await;
    // Alice keeps sending (her track is always on) while bob talks: none of it is forwarded.
    b_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("b granted");
    let (_, _) = tokio::join!(b.talk(&frames[50..100]), a.talk(&frames[100..120]));
    let got = l.wait_received(100, Duration::from_secs(3)).await;
    assert!(got >= 95, "listener got {got}/100");
    let pk = l.packets();
    assert!(
        pk.iter().all(|p| p.ssrc == l.slot_ssrcs[0]),
        "no SSRC change"
    );
    // Loopback loses nothing: the sequence runs without a gap across the talker change.
    let first_b = pk
        .iter()
        .position(|p| frames[50..100].contains(&p.payload))
        .expect("bob's audio arrived");
    assert_eq!(
        pk[first_b].seq,
        pk[first_b - 1].seq.wrapping_add(1),
        "no sequence gap at the switch"
    );
    assert!(pk[first_b].ts.wrapping_sub(pk[first_b - 1].ts) >= 960);
    assert!(
        pk.iter().all(|p| !frames[100..120].contains(&p.payload)),
        "a member without the floor is not heard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talker_disconnect_frees_the_floor_at_once() {
    let gw = Gateway::start("");
    let (mut a_ws, a) = member(&gw, "alice", &["c1"]).await;
    let (mut b_ws, _b) = member(&gw, "bob", &["c1"]).await;
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    let taken = b_ws.notification("floor.taken").await;
    assert_eq!(taken["talker"]["userId"], "alice");
    a.close().await;
    a_ws.close();
    let idle = b_ws.notification("floor.idle").await;
    assert_eq!(idle["channelId"], "c1");
    b_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("floor free for bob");
}

/// The distinct host candidate addresses of an answer, as (IP, port).
fn candidates(sdp: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            Some((f.get(4)?.to_string(), f.get(5)?.parse().ok()?))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `a` (WebSocket `a_ws`) takes the floor of `c1` and talks 25 Opus speech frames: `b`, a
/// member of `c1`, receives at least 20 of them within 3 s.
async fn speech_flows(a_ws: &mut WsClient, a: &mut RtcClient, b: &RtcClient) {
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    let frames = encode_opus(&speech_pcm());
    a.talk(&frames[..25]).await;
    assert!(b.wait_received(20, Duration::from_secs(3)).await >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_shares_the_one_media_port_in_the_range_with_the_advertised_address() {
    // A range of 20 ports from a free one (other tests may hold ports near it).
    let lo = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .min(65_000);
    let hi = lo + 20;
    let gw = Gateway::start(&format!(
        "udp_port_min = {lo}\nudp_port_max = {hi}\nadvertise_ips = [\"127.0.0.1\"]\n"
    ));
    let (mut a_ws, mut a) = member(&gw, "alice", &["c1"]).await;
    let (_b_ws, b) = member(&gw, "bob", &["c1"]).await;
    let (ca, cb) = (candidates(&a.answer_sdp), candidates(&b.answer_sdp));
    assert_eq!(ca.len(), 1, "one host candidate: {}", a.answer_sdp);
    assert_eq!(ca, cb, "both peer connections on the one media socket");
    assert!(
        a.answer_sdp.contains("a=ice-lite"),
        "ICE-lite by default: {}",
        a.answer_sdp
    );
    let (ip, port) = &ca[0];
    assert_eq!(ip, "127.0.0.1");
    assert!((lo..=hi).contains(port), "port {port} in {lo}..={hi}");
    // And media flows through it.
    speech_flows(&mut a_ws, &mut a, &b).await;
}

/// `sfu.ice_lite = false`: the gateway answers as a full ICE agent (no `a=ice-lite`, its own
/// connectivity checks) and media flows as with the ICE-lite default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ice_gateway_still_carries_media() {
    let gw = Gateway::start("ice_lite = false\n");
    let (mut a_ws, mut a) = member(&gw, "alice", &["c1"]).await;
    let (_b_ws, b) = member(&gw, "bob", &["c1"]).await;
    assert!(!a.answer_sdp.contains("a=ice-lite"), "{}", a.answer_sdp);
    speech_flows(&mut a_ws, &mut a, &b).await;
}
