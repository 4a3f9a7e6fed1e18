//! Benchmark: radio port latency and CPU, with the gateway in-process and a `[[radio]]` port on
//! simulated devices (sim PTT, squelch line and audio), real WebRTC peers (webrtc-rs) on
//! loopback.
//!
//! Run: `cargo bench --bench radio_latency` (optionally `-- OVERS`, default 20).
//!
//! Reported:
//! 1. squelch open -> first RTP packet of the radio's audio arriving at a WebRTC listener (so
//!    it includes the gateway's forwarding and both SRTP stacks), p50/p95/max over OVERS overs,
//!    (a) with `debounce_ms = 0`, `squelch_tail_ms = 0` and (b) with the defaults (20 ms debounce,
//!    100 ms squelch tail: the sent audio lags the radio by the tail, by design);
//! 2. channel voice packet sent by a WebRTC talker -> its decoded audio written to the radio's
//!    playback ring (the card), per packet after key-up, p50/p95/max, with `tx_delay_ms = 0`; on a
//!    real card the audio then waits behind what is queued (the TX delay on key-up, see
//!    tests/radio_sound_card.rs) plus the card period (10 ms);
//! 3. CPU of the port's driver thread (from /proc/self/task/TID/stat): idle (polling every
//!    5 ms), playing channel voice (Opus decode, limiter, playback), sending (capture, Opus
//!    encode, hub forwarding).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::radio::{feed, speech_f32, wait_until, InProcess};
use common::rtc_client::{encode_opus, speech_pcm, RtcClient};
use common::{token, WsClient};
use radiogate::access::role::Role;
use radiogate::radio::devices::sim_handles;
use serde_json::json;
use std::time::{Duration, Instant};

fn radio(name: &str, extra: &str, squelch: &str) -> String {
    format!(
        "[[radio]]\nname = \"{name}\"\nuser_id = \"radio-{name}\"\ndisplay_name = \"Radio\"\n\
         event = \"ev1\"\nchannel = \"c1\"\n{extra}\n[radio.ptt]\ntype = \"sim\"\n\
         [radio.squelch]\ntype = \"sim\"\n{squelch}\n[radio.audio]\ntype = \"sim\"\n"
    )
}

async fn member(gw: &InProcess, user: &str) -> (WsClient, RtcClient) {
    let mut ws = gw
        .connect(&token(user, Role::General, "ev1", &["c1"]))
        .await;
    let rtc = RtcClient::join(&mut ws, "c1").await;
    (ws, rtc)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, v: &mut [f64]) {
    println!(
        "{name}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (n = {})",
        pct(v, 0.5),
        pct(v, 0.95),
        pct(v, 1.0),
        v.len()
    );
}

/// CPU seconds (utime + stime) of this process's thread named `name`.
fn thread_cpu(name: &str) -> f64 {
    let tck = 100.0; // USER_HZ on Linux
    for e in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            return (ut + st) / tck;
        }
    }
    panic!("no thread named {name}");
}

async fn squelch_to_packet(name: &str, extra: &str, squelch: &str, overs: usize) -> Vec<f64> {
    let gw = InProcess::start(&radio(name, extra, squelch)).await;
    assert!(wait_until(Duration::from_secs(5), || gw.port(name).joined).await);
    let sim = sim_handles(name).expect("sim");
    let (line, src) = (sim.line.unwrap(), sim.source.unwrap());
    let (_ws, bob) = member(&gw, "bob").await;
    let speech = speech_f32();
    let mut out = Vec::new();
    for _ in 0..overs {
        let before = bob.received();
        let t0 = Instant::now();
        line.set(true);
        let feeder = feed(src.clone(), speech[..48_000].to_vec());
        let got = bob.wait_received(before + 1, Duration::from_secs(5)).await;
        assert!(got > before, "no packet from the radio");
        let at = bob.packets()[before].at;
        out.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        let _ = feeder.await;
        line.set(false);
        assert!(wait_until(Duration::from_secs(5), || !gw.port(name).sending).await);
    }
    gw.shutdown().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let overs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    println!("radio_latency: {overs} overs per figure");

    // 1. Squelch open -> first RTP packet at a listener.
    let mut a = squelch_to_packet("b1", "squelch_tail_ms = 0", "debounce_ms = 0", overs).await;
    summary(
        "squelch open -> first RTP at listener (debounce 0, tail 0)",
        &mut a,
    );
    let mut b = squelch_to_packet("b2", "", "", overs).await;
    summary(
        "squelch open -> first RTP at listener (defaults: debounce 20 ms, tail 100 ms)",
        &mut b,
    );

    // 2. Talker packet -> audio written to the radio's card, and 3. CPU of the port thread.
    let gw = InProcess::start(&radio(
        "b3",
        "tx_delay_ms = 0\nhang_time_ms = 500",
        "debounce_ms = 0",
    ))
    .await;
    assert!(wait_until(Duration::from_secs(5), || gw.port("b3").joined).await);
    let sim = sim_handles("b3").expect("sim");
    let (line, src, sink) = (sim.line.unwrap(), sim.source.unwrap(), sim.sink.unwrap());
    let (mut a_ws, mut alice) = member(&gw, "alice").await;
    let (_b_ws, bob) = member(&gw, "bob").await;
    let frames = encode_opus(&speech_pcm());
    let n = frames.len().min(250);

    let secs = 5.0;
    let c0 = thread_cpu("radio-b3");
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let idle = (thread_cpu("radio-b3") - c0) / secs * 100.0;

    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    // Watch the sink from a thread: when does the audio of packet k reach it?
    let watcher = {
        let sink = sink.clone();
        std::thread::spawn(move || {
            let mut when = Vec::with_capacity(n);
            let end = Instant::now() + Duration::from_secs(30);
            while when.len() < n && Instant::now() < end {
                let have = sink.len() / 960;
                while when.len() < have.min(n) {
                    when.push(Instant::now());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            when
        })
    };
    let c0 = thread_cpu("radio-b3");
    let t0 = Instant::now();
    let mut sent = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for f in &frames[..n] {
        tick.tick().await;
        sent.push(Instant::now());
        alice.send_frame(f).await;
    }
    let play_secs = t0.elapsed().as_secs_f64();
    let playing = (thread_cpu("radio-b3") - c0) / play_secs * 100.0;
    let when = tokio::task::spawn_blocking(move || watcher.join().expect("watcher"))
        .await
        .expect("join");
    let mut lat: Vec<f64> = when
        .iter()
        .zip(&sent)
        .map(|(w, s)| w.saturating_duration_since(*s).as_secs_f64() * 1000.0)
        .collect();
    summary(
        "talker packet sent -> its audio written to the radio card (TX delay 0)",
        &mut lat,
    );
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    let ptt = sim.ptt.unwrap();
    assert!(wait_until(Duration::from_secs(5), || !ptt.is_keyed()).await);
    assert!(wait_until(Duration::from_secs(5), || !gw.port("b3").keyed).await);

    // Sending: squelch open with speech captured in real time.
    let speech = speech_f32();
    let before = bob.received();
    let c0 = thread_cpu("radio-b3");
    let t0 = Instant::now();
    line.set(true);
    let _ = feed(src, speech).await;
    let send_secs = t0.elapsed().as_secs_f64();
    let sending = (thread_cpu("radio-b3") - c0) / send_secs * 100.0;
    line.set(false);
    let got = bob
        .wait_received(before + 150, Duration::from_secs(3))
        .await
        - before;
    println!(
        "port driver thread CPU (one core = 100%): idle {idle:.2}%, playing channel voice {playing:.2}%, sending received audio {sending:.2}% ({got} packets reached the listener in {send_secs:.1} s)"
    );
    let st = gw.port("b3");
    println!(
        "driver's own figures: {}",
        serde_json::to_string(&st.latency).unwrap_or_default()
    );
    gw.shutdown().await;
}
