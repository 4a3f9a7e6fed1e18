//! Dispatch priority and emergency broadcast over the real protocol with real WebRTC peers
//! (spec note 003).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rtc_client::{encode_opus, speech_pcm, RtcClient};
use common::{connect, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::json;
use std::time::{Duration, Instant};

async fn member(gw: &Gateway, user: &str, role: Role, channels: &[&str]) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, role, "ev1", channels))
        .await
        .expect("connect");
    ws.notification("channel.list").await;
    let rtc = RtcClient::connect(&mut ws, 3).await;
    for ch in channels {
        ws.call("channel.join", json!({"channelId": ch}))
            .await
            .expect("join");
    }
    (ws, rtc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_pre_empts_a_general_talker_mid_transmission() {
    let gw = Gateway::start("");
    let (mut g_ws, mut g) = member(&gw, "gina", Role::General, &["c1"]).await;
    let (mut d_ws, mut d) = member(&gw, "dan", Role::Dispatch, &["c1"]).await;
    let (_l_ws, l) = member(&gw, "lee", Role::General, &["c1"]).await;
    let frames = encode_opus(&speech_pcm());
    let (gina_frames, dan_frames) = (&frames[..100], &frames[100..200]);

    g_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("gina granted");
    // Gina talks for 2 s; Dan (whose microphone is always on) talks over her; after 0.6 s
    // Dan presses priority talk.
    let dan = async {
        let mut grant_at = None;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for (i, f) in dan_frames.iter().enumerate() {
            tick.tick().await;
            d.send_frame(f).await;
            if i == 30 {
                let r = d_ws
                    .call("floor.priority_request", json!({"channelId": "c1"}))
                    .await
                    .expect("dan pre-empts");
                assert_eq!(r["granted"], true);
                grant_at = Some(Instant::now());
            }
        }
        grant_at.expect("granted")
    };
    let (grant_at, ()) = tokio::join!(dan, g.talk(gina_frames));
    let rev = g_ws.notification("floor.revoke").await;
    assert_eq!(rev["reason"], "PRE_EMPTED");
    assert_eq!(rev["message"], "Dispatch Name dan has priority");
    l.wait_received(100, Duration::from_secs(3)).await;

    let pk = l.packets();
    let is_dan = |p: &common::rtc_client::Received| dan_frames.contains(&p.payload);
    let is_gina = |p: &common::rtc_client::Received| gina_frames.contains(&p.payload);
    let first_dan = pk.iter().find(|p| is_dan(p)).expect("dan heard");
    // Dan's audio reaches the listener within one packet interval (20 ms) of the grant,
    // plus a margin for loopback and scheduling on a loaded 2-core machine.
    let lag = first_dan.at.saturating_duration_since(grant_at);
    assert!(
        lag <= Duration::from_millis(20 + 30),
        "first dispatch packet {lag:?} after grant"
    );
    assert!(
        pk.iter()
            .filter(|p| is_dan(p))
            .all(|p| p.at + Duration::from_millis(5) >= grant_at),
        "no dispatch audio before the grant"
    );
    // Gina's further packets reach no one (only those already in flight at the grant).
    let late_gina = pk
        .iter()
        .filter(|p| is_gina(p) && p.at > grant_at + Duration::from_millis(30))
        .count();
    assert_eq!(late_gina, 0, "revoked talker still heard");
    assert!(
        pk.iter().filter(|p| is_gina(p)).count() >= 25,
        "gina was heard before"
    );
    // One continuous stream for the listener across the switch.
    assert!(pk.iter().all(|p| p.ssrc == l.slot_ssrcs[0]));
    // Gina must press again; while Dan holds it she is denied.
    let e = g_ws
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "FLOOR_BUSY");
}

#[tokio::test]
async fn dispatch_does_not_pre_empt_dispatch_and_admin_has_no_priority() {
    let gw = Gateway::start("");
    let mut d1 = connect(&gw, &token("d1", Role::Dispatch, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut d2 = connect(&gw, &token("d2", Role::Dispatch, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut adm = connect(&gw, &token("adm", Role::Admin, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut g = connect(&gw, &token("g", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    for c in [&mut d1, &mut d2, &mut adm, &mut g] {
        c.call("channel.join", json!({"channelId": "c1"}))
            .await
            .unwrap();
    }
    d1.call("floor.priority_request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    let e = d2
        .call("floor.priority_request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "FLOOR_BUSY");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("Dispatch Name d1 is talking"));
    d1.call("floor.release", json!({"channelId": "c1"}))
        .await
        .unwrap();
    // ADMIN: no priority method, and a normal request does not pre-empt.
    g.call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    let e = adm
        .call("floor.priority_request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "PERMISSION_DENIED");
    let e = adm
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "FLOOR_BUSY");
    // A dispatcher's normal request does not pre-empt either; the priority one does.
    let e = d2
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "FLOOR_BUSY");
    d2.call("floor.priority_request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    assert_eq!(g.notification("floor.revoke").await["reason"], "PRE_EMPTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_broadcast_reaches_every_channel_and_restores_joins() {
    let gw = Gateway::start(""); // default hold guard: 2000 ms
    let chans = ["c1", "c2", "c3"];
    let (mut d_ws, mut d) = member(&gw, "dan", Role::Dispatch, &chans).await;
    // Dan is permanently in c1 only.
    d_ws.call("channel.leave", json!({"channelId": "c2"}))
        .await
        .unwrap();
    d_ws.call("channel.leave", json!({"channelId": "c3"}))
        .await
        .unwrap();
    let (mut a_ws, a) = member(&gw, "ann", Role::General, &["c1"]).await;
    let (mut b_ws, b) = member(&gw, "bob", Role::General, &["c2"]).await;
    let (mut c_ws, c) = member(&gw, "cat", Role::General, &["c3"]).await;
    let frames = encode_opus(&speech_pcm());

    // Bob is talking on c2 when the broadcast starts.
    b_ws.call("floor.request", json!({"channelId": "c2"}))
        .await
        .unwrap();

    // A start without arm, and one too soon after arm, are refused.
    let e = d_ws.call("broadcast.start", json!({})).await.unwrap_err();
    assert_eq!(e["data"]["type"], "BROADCAST_REFUSED");
    // The guard is real time measured by the server: a start 1500 ms after arm is refused.
    let armed_at = Instant::now();
    let armed = d_ws.call("broadcast.arm", json!({})).await.unwrap();
    assert_eq!(armed["holdMs"], 2000);
    tokio::time::sleep_until((armed_at + Duration::from_millis(1500)).into()).await;
    let e = d_ws.call("broadcast.start", json!({})).await.unwrap_err();
    assert_eq!(e["data"]["type"], "BROADCAST_REFUSED");
    assert!(e["data"]["heldMs"].as_u64().unwrap() < 2000);

    // Arm again, hold 2 s, then start.
    d_ws.call("broadcast.arm", json!({})).await.unwrap();
    let armed_at = Instant::now();
    tokio::time::sleep_until((armed_at + Duration::from_millis(2050)).into()).await;
    let r = d_ws
        .call("broadcast.start", json!({}))
        .await
        .expect("broadcast starts");
    assert_eq!(r["channels"], json!(["c1", "c2", "c3"]));
    assert_eq!(r["temporary"], json!(["c2", "c3"]));
    let rev = b_ws.notification("floor.revoke").await;
    assert_eq!(rev["reason"], "EMERGENCY");
    for ws in [&mut a_ws, &mut b_ws, &mut c_ws] {
        let n = ws.notification("broadcast.started").await;
        assert_eq!(n["by"]["userId"], "dan");
    }
    // Nobody else can take a floor during the broadcast.
    let e = a_ws
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "FLOOR_BUSY");

    d.talk(&frames[..50]).await;
    for (who, l) in [("ann", &a), ("bob", &b), ("cat", &c)] {
        let n = l.wait_received(48, Duration::from_secs(3)).await;
        assert!(n >= 48, "{who} heard {n}/50 of the broadcast");
    }
    d_ws.call("broadcast.stop", json!({})).await.unwrap();
    for ws in [&mut a_ws, &mut b_ws, &mut c_ws] {
        assert_eq!(
            ws.notification("broadcast.stopped").await["reason"],
            "stopped"
        );
    }
    // Back to exactly the previous channels: c1 kept, c2 and c3 left.
    let list = d_ws.call("channel.list", json!({})).await.unwrap();
    let joined: Vec<&str> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["joined"] == true)
        .map(|c| c["channelId"].as_str().unwrap())
        .collect();
    assert_eq!(joined, ["c1"]);
    // Floors are free again.
    b_ws.call("floor.request", json!({"channelId": "c2"}))
        .await
        .unwrap();
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn broadcast_ends_on_disconnect_and_on_time_out_timer() {
    let gw =
        Gateway::start("[dispatch]\nbroadcast_hold_ms = 500\n[floor]\ntime_out_timer_ms = 1500\n");
    let mut g = connect(&gw, &token("g", Role::General, "ev1", &["c1", "c2"]))
        .await
        .unwrap();
    g.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    g.call("channel.join", json!({"channelId": "c2"}))
        .await
        .unwrap();
    for round in 0..2 {
        let mut d = connect(&gw, &token("d", Role::Dispatch, "ev1", &["c1", "c2"]))
            .await
            .unwrap();
        // A second dispatcher arms at the same time: while d broadcasts, its start is refused
        // naming d (Dispatch never pre-empts Dispatch).
        let mut d2 = connect(&gw, &token("d2", Role::Dispatch, "ev1", &["c1"]))
            .await
            .unwrap();
        d.call("broadcast.arm", json!({})).await.unwrap();
        d2.call("broadcast.arm", json!({})).await.unwrap();
        let armed_at = Instant::now();
        tokio::time::sleep_until((armed_at + Duration::from_millis(550)).into()).await;
        d.call("broadcast.start", json!({})).await.unwrap();
        g.notification("broadcast.started").await;
        let e = d2.call("broadcast.start", json!({})).await.unwrap_err();
        assert_eq!(e["data"]["type"], "BROADCAST_REFUSED");
        assert_eq!(e["data"]["by"]["userId"], "d");
        // A session connecting during the broadcast is told about it after its channel list;
        // one of another event is not.
        let mut late = connect(&gw, &token("late", Role::General, "ev1", &["c1"]))
            .await
            .unwrap();
        let mut other = connect(&gw, &token("other", Role::General, "ev2", &["x"]))
            .await
            .unwrap();
        late.notification("channel.list").await;
        let b = late.notification("broadcast.started").await;
        assert_eq!(b["by"]["userId"], "d");
        assert_eq!(b["channels"], json!(["c1", "c2"]));
        other.call("channel.list", json!({})).await.unwrap();
        assert!(!other.has_pending("broadcast.started"));
        let reason = if round == 0 {
            d.close();
            "disconnected"
        } else {
            "time-out timer"
        };
        assert_eq!(g.notification("broadcast.stopped").await["reason"], reason);
        assert_eq!(
            late.notification("broadcast.stopped").await["reason"],
            reason
        );
        g.call("floor.request", json!({"channelId": "c2"}))
            .await
            .unwrap();
        g.call("floor.release", json!({"channelId": "c2"}))
            .await
            .unwrap();
    }
}
