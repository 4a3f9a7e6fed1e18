//! Radio and console port drivers end to end with simulated devices: the gateway runs in the
//! test process (so the test drives the `type = "sim"` PTT, squelch, button and audio), real
//! WebRTC clients (webrtc-rs) exchange Opus speech with the port through the SFU.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::radio::{feed, speech_f32, wait_until, InProcess};
use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{token, WsClient};
use radiogate::access::role::Role;
use radiogate::radio::devices::sim_handles;
use serde_json::json;
use std::time::{Duration, Instant};

fn radio(name: &str, channel: &str, extra: &str) -> String {
    format!(
        "[[radio]]\nname = \"{name}\"\nuser_id = \"radio-{name}\"\ndisplay_name = \"Radio {name}\"\n\
         event = \"ev1\"\nchannel = \"{channel}\"\n{extra}\n\
         [radio.ptt]\ntype = \"sim\"\n[radio.squelch]\ntype = \"sim\"\ndebounce_ms = 0\n\
         [radio.audio]\ntype = \"sim\"\n"
    )
}

async fn member(gw: &InProcess, user: &str, role: Role, channel: &str) -> (WsClient, RtcClient) {
    let mut ws = gw.connect(&token(user, role, "ev1", &[channel])).await;
    let rtc = RtcClient::join(&mut ws, channel).await;
    (ws, rtc)
}

fn pcm_envelope(s: &[f32]) -> Vec<f64> {
    let pcm: Vec<i16> = s.iter().map(|x| (x * 32767.0) as i16).collect();
    envelope(&pcm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_voice_keys_the_radio_and_squelch_sends_to_the_channel() {
    let gw = InProcess::start(&radio("s1", "c1", "tx_delay_ms = 150\nhang_time_ms = 500")).await;
    assert!(
        wait_until(Duration::from_secs(5), || gw.port("s1").joined).await,
        "radio joined"
    );
    let sim = sim_handles("s1").expect("sim devices");
    let (ptt, line, src, sink) = (
        sim.ptt.unwrap(),
        sim.line.unwrap(),
        sim.source.unwrap(),
        sim.sink.unwrap(),
    );
    let (mut a_ws, mut a) = member(&gw, "alice", Role::General, "c1").await;
    let (mut b_ws, b) = member(&gw, "bob", Role::General, "c1").await;

    // 1. Channel voice keys the radio, the speech plays after the TX delay, unkey after hang.
    let frames = encode_opus(&speech_pcm());
    let n = 100; // 2 s
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("alice granted");
    b_ws.notification("floor.taken").await;
    let t0 = Instant::now();
    a.talk(&frames[..n]).await;
    let talk_end = Instant::now();
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    b_ws.notification("floor.idle").await;
    assert!(
        wait_until(Duration::from_secs(5), || ptt.transitions().len() >= 2).await,
        "keyed and unkeyed: {:?}",
        ptt.transitions()
    );
    let tr = ptt.transitions();
    assert_eq!((tr[0].1, tr[1].1), (true, false));
    let key_at = tr[0].0.duration_since(t0);
    let keyed_for = tr[1].0.duration_since(tr[0].0);
    let talk = talk_end.duration_since(t0);
    println!("keyed {key_at:?} after the first packet, for {keyed_for:?} (talk {talk:?})");
    assert!(key_at < Duration::from_millis(200), "keyed at {key_at:?}");
    // Keyed for the talk + TX delay + hang time (500 ms), give or take scheduling.
    let expect = talk + Duration::from_millis(650);
    assert!(
        keyed_for + Duration::from_millis(150) >= expect
            && keyed_for <= expect + Duration::from_millis(400),
        "keyed for {keyed_for:?}, expected about {expect:?}"
    );
    let played = sink.samples();
    assert!(
        played.len() >= (n - 3) * 960,
        "played {} samples of {}",
        played.len(),
        n * 960
    );
    let m = played.len() / 960;
    let source = envelope(&decode_opus(&frames[..m]));
    let r = correlation(&pcm_envelope(&played[..m * 960]), &source);
    assert!(r > 0.9, "played speech matches: envelope correlation {r}");

    // 2. Squelch open: the radio takes the floor and bob hears the received speech.
    let speech = speech_f32();
    line.set(true);
    let feeder = feed(src.clone(), speech[..48_000 * 2].to_vec());
    let taken = b_ws.notification("floor.taken").await;
    assert_eq!(taken["talker"]["userId"], "radio-s1");
    let got = b.wait_received(80, Duration::from_secs(5)).await;
    assert!(got >= 80, "bob got {got} packets from the radio");
    let _ = feeder.await;
    line.set(false);
    b_ws.notification("floor.idle").await;
    // The port publishes its status once per loop step, which can be just after the hub told
    // bob: wait (bounded) for the snapshot to show the release.
    assert!(
        wait_until(Duration::from_secs(2), || {
            let s = gw.port("s1");
            !s.keyed && !s.sending && !s.squelch_open
        })
        .await,
        "{:?}",
        gw.port("s1")
    );
    let st = gw.port("s1");
    assert_eq!(st.counters.key_ups, 1);
    // 2 s fed, less what came in the squelch-ignore window after the unkey (<= 300 ms) and the
    // squelch tail (100 ms).
    assert!(st.counters.frames_sent >= 75, "{:?}", st.counters);
    let pk = b.packets();
    let rx: Vec<Vec<u8>> = pk.iter().map(|p| p.payload.clone()).collect();
    let heard = envelope(&decode_opus(&rx));
    let fed = pcm_envelope(&speech[..heard.len().min(100) * 960]);
    let m = heard.len().min(fed.len()).min(90);
    // The radio's audio arrives (up to a few frames shifted by the prebuffer): best lag.
    let best = (0..5)
        .map(|lag| correlation(&heard[lag..m], &fed[..m - lag]))
        .fold(f64::MIN, f64::max);
    assert!(
        best > 0.8,
        "received speech matches what the radio heard: {best}"
    );
    assert!(
        st.latency.squelch_to_first_packet_ms.is_some(),
        "{:?}",
        st.latency
    );

    // 3. While a phone user holds the floor, the radio's received audio reaches nobody and
    //    the radio is not keyed while it receives (no loop).
    let before = b.received();
    let tr_before = ptt.transitions().len();
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("alice granted again");
    line.set(true);
    let feeder = feed(src, speech[..48_000].to_vec());
    assert!(
        wait_until(Duration::from_secs(2), || gw
            .port("s1")
            .counters
            .floor_denied
            >= 1)
        .await,
        "the radio's floor request is denied"
    );
    let (_, _) = tokio::join!(a.talk(&frames[..50]), feeder);
    let got = b.wait_received(before + 48, Duration::from_secs(3)).await;
    let pk = b.packets();
    let alice: std::collections::HashSet<&Vec<u8>> = frames[..50].iter().collect();
    assert!(
        pk[before..].iter().all(|p| alice.contains(&p.payload)),
        "only alice is heard while she holds the floor ({} packets)",
        got - before
    );
    assert!(gw.port("s1").counters.floor_denied >= 1);
    assert_eq!(
        ptt.transitions().len(),
        tr_before,
        "never keyed while receiving"
    );
    line.set(false);
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");

    // 4. Graceful shutdown leaves it unkeyed.
    gw.shutdown().await;
    assert!(!ptt.is_keyed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_out_timer_unkeys_and_counts() {
    let gw = InProcess::start(&radio(
        "tot1",
        "c1",
        "tx_delay_ms = 0\nhang_time_ms = 200\ntx_timeout_ms = 1000",
    ))
    .await;
    assert!(wait_until(Duration::from_secs(5), || gw.port("tot1").joined).await);
    let ptt = sim_handles("tot1").unwrap().ptt.unwrap();
    let (mut a_ws, mut a) = member(&gw, "alice", Role::General, "c1").await;
    let frames = encode_opus(&speech_pcm());
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    a.talk(&frames[..100]).await;
    let tr = ptt.transitions();
    assert!(tr.len() >= 2, "{tr:?}");
    let keyed = tr[1].0.duration_since(tr[0].0);
    assert!(
        keyed >= Duration::from_millis(990) && keyed < Duration::from_millis(1200),
        "time-out after {keyed:?}"
    );
    // Locked out until the channel is idle: still unkeyed while alice keeps talking.
    assert_eq!(tr.len(), 2, "{tr:?}");
    let st = gw.port("tot1");
    assert_eq!(st.counters.time_outs, 1);
    assert!(st.locked_out);
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    assert!(wait_until(Duration::from_secs(3), || !gw.port("tot1").locked_out).await);
    let health: serde_json::Value =
        serde_json::from_str(&gw.http_get("/healthz").await.1).expect("healthz JSON");
    assert_eq!(health["radio"]["ports"][0]["counters"]["timeOuts"], 1);
    assert_eq!(health["radio"]["ports"][0]["name"], "tot1");
    // The same in /metrics, one sample per port.
    let metrics = gw.http_get("/metrics").await.1;
    let l = r#"{port="tot1",kind="radio",channel="c1"}"#;
    for want in [
        "radiogate_radio_ports 1".to_string(),
        format!("radiogate_radio_port_joined{l} 1"),
        format!("radiogate_radio_port_locked_out{l} 0"),
        format!("radiogate_radio_port_tot_expired_total{l} 1"),
        format!("radiogate_radio_port_key_ups_total{l} 1"),
        format!("radiogate_radio_port_devices_down{l} 0"),
    ] {
        assert!(
            metrics.lines().any(|line| line == want),
            "missing {want:?} in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_button_talks_and_its_speaker_plays_the_channel() {
    let cfg = "[[console]]\nname = \"desk\"\nuser_id = \"desk1\"\ndisplay_name = \"Desk\"\n\
               role = \"DISPATCH\"\nevent = \"ev1\"\nchannel = \"c1\"\npre_empt = true\n\
               [console.button]\ntype = \"sim\"\ndebounce_ms = 0\n[console.audio]\ntype = \"sim\"\n";
    let gw = InProcess::start(cfg).await;
    assert!(wait_until(Duration::from_secs(5), || gw.port("desk").joined).await);
    let sim = sim_handles("desk").unwrap();
    let (button, mic, speaker) = (sim.line.unwrap(), sim.source.unwrap(), sim.sink.unwrap());
    let (mut a_ws, mut a) = member(&gw, "alice", Role::General, "c1").await;
    let frames = encode_opus(&speech_pcm());
    // Alice talks: the console's speaker plays it.
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    let talk = a.talk(&frames[..50]);
    let press = async {
        // Half-way through, the dispatcher presses: pre-empts alice.
        tokio::time::sleep(Duration::from_millis(500)).await;
        button.set(true);
    };
    tokio::join!(talk, press);
    let revoke = a_ws.notification("floor.revoke").await;
    assert_eq!(revoke["reason"], "PRE_EMPTED");
    assert!(
        speaker.len() >= 20 * 960,
        "speaker played {}",
        speaker.len()
    );
    // The dispatcher's microphone reaches alice.
    let feeder = feed(mic, speech_f32()[..48_000].to_vec());
    let got = a.wait_received(40, Duration::from_secs(5)).await;
    assert!(got >= 40, "alice heard the console: {got}");
    let _ = feeder.await;
    button.set(false);
    a_ws.notification("floor.idle").await;
    assert!(wait_until(Duration::from_secs(2), || !gw.port("desk").sending).await);
}

/// Issue 14 point 5: a desk console with instant recall replays the channel's last recorded
/// transmission on its own speaker on a double press (in real time, the speech recorded),
/// and the taps never key the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_double_press_replays_the_last_transmission_on_its_speaker_only() {
    let cfg = "[[console]]\nname = \"desk\"\nuser_id = \"desk1\"\ndisplay_name = \"Desk\"\n\
               event = \"ev1\"\nchannel = \"c1\"\nreplay_on_double_press = true\n\
               double_press_ms = 400\n\
               [console.button]\ntype = \"sim\"\ndebounce_ms = 0\n[console.audio]\ntype = \"sim\"\n";
    let gw = InProcess::start(cfg).await;
    assert!(wait_until(Duration::from_secs(5), || gw.port("desk").joined).await);
    let sim = sim_handles("desk").unwrap();
    let (button, speaker) = (sim.line.unwrap(), sim.sink.unwrap());
    let (mut a_ws, mut a) = member(&gw, "alice", Role::General, "c1").await;
    let (mut b_ws, _b) = member(&gw, "bob", Role::General, "c1").await;

    // Alice talks 1 s of speech; it is recorded.
    let frames = encode_opus(&speech_pcm());
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    assert_eq!(
        b_ws.notification("floor.taken").await["talker"]["userId"],
        "alice"
    );
    a.talk(&frames[..50]).await;
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .unwrap();
    b_ws.notification("floor.idle").await;
    common::finished_recordings(&mut b_ws, "c1", 1).await;
    // The live talk reached the console's speaker; remember where the replay starts.
    assert!(wait_until(Duration::from_secs(3), || speaker.len() >= 40 * 960).await);
    let before = speaker.len();

    // Double press: down, up, down, up, each edge seen by the port before the next.
    let pressed = Instant::now();
    for level in [true, false, true, false] {
        button.set(level);
        assert!(
            wait_until(Duration::from_secs(2), || gw.port("desk").squelch_open
                == level)
            .await,
            "button {level} seen"
        );
    }
    // The replay: about 1 s of audio, paced in real time.
    assert!(
        wait_until(Duration::from_secs(5), || speaker.len()
            >= before + 45 * 960)
        .await,
        "replayed {} samples",
        speaker.len() - before
    );
    let took = pressed.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "45 frames of replay took {took:?}: not real time"
    );
    // It is the speech that was recorded.
    let replay = speaker.samples()[before..].to_vec();
    let sent: Vec<f32> = speech_f32()[..48_000].to_vec();
    let r = correlation(
        &pcm_envelope(&sent),
        &pcm_envelope(&replay[..replay.len().min(48_000)]),
    );
    assert!(r > 0.9, "replay envelope correlation {r:.3}");
    // The taps never keyed the channel: nobody was told of a talker, nothing was sent.
    assert_eq!(gw.port("desk").counters.frames_sent, 0);
    b_ws.call("channel.list", json!({})).await.unwrap(); // everything before it was read
    assert!(!b_ws.has_pending("floor.taken"), "a tap keyed the channel");
}
