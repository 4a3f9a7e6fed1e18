//! The radio port's sound-card path through cpal on real ALSA devices without hardware: the
//! test starts PulseAudio with two null sinks (the radio's transmitter audio `rg_tx` and its
//! receiver audio `rg_rx`) and ALSA PCMs of `type pulse` over them, and runs the real gateway
//! with a `[[radio]]` whose playback and capture are those PCMs (the card opened at 44.1 kHz
//! stereo, converted from / to 48 kHz mono), CAT PTT through a real rigctld and VOX squelch.
//!
//! - A WebRTC talker's speech comes out of the radio's playback (recorded from the `rg_tx`
//!   monitor) with the PTT keyed for its duration plus the hang time.
//! - Speech played into the radio's receiver opens the VOX and reaches a WebRTC listener.
//! - While a phone user holds the floor, the listener hears none of the radio's speech and the
//!   radio is not keyed while it receives.
//!
//! This file holds one test: it points the process environment (HOME, PULSE_SERVER) at its
//! own PulseAudio.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::radio::{rig_ptt, start_rig, PttWatch};
use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{connect, token, Gateway, WsClient, WAIT};
use radiogate::access::role::Role;
use radiogate_hal::audio::{CardOptions, CpalSink, CpalSource};
use radiogate_hal::{AudioSink, AudioSource};
use serde_json::json;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ASOUNDRC: &str = r#"
pcm.rg_radio_play {
    type pulse
    device "rg_tx"
    hint { show on description "radio transmitter audio (gateway playback)" }
}
pcm.rg_tx_monitor {
    type pulse
    device "rg_tx.monitor"
    hint { show on description "what the radio transmits (test recorder)" }
}
pcm.rg_radio_capture {
    type pulse
    device "rg_rx.monitor"
    hint { show on description "radio receiver audio (gateway capture)" }
}
pcm.rg_rx_play {
    type pulse
    device "rg_rx"
    hint { show on description "feeds the radio receiver (test player)" }
}
"#;

struct Pulse(Child);

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_pulse(dir: &std::path::Path) -> (Pulse, Vec<(&'static str, String)>) {
    let (child, server) = common::spawn_pulse(dir, &["rg_tx", "rg_rx"]);
    let pulse = Pulse(child);
    std::fs::write(dir.join(".asoundrc"), ASOUNDRC).expect("asoundrc");
    let env = vec![
        ("HOME", dir.display().to_string()),
        ("PULSE_SERVER", server),
        ("XDG_RUNTIME_DIR", dir.display().to_string()),
    ];
    // Only this test runs in this binary: pointing the process at the test's PulseAudio is safe.
    for (k, v) in &env {
        std::env::set_var(k, v);
    }
    (pulse, env)
}

/// Records a capture PCM from a thread into a shared buffer, with the time of each read.
struct Recorder {
    samples: Arc<Mutex<Vec<f32>>>,
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    fn start(pcm: &str) -> Self {
        let mut src = CpalSource::open(pcm, &CardOptions::default()).expect("open recorder");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0.0f32; 4800];
            while !st.load(Ordering::SeqCst) {
                if let Ok(n) = src.read(&mut buf) {
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            samples,
            started,
            stop,
            thread: Some(thread),
        }
    }
    fn take(&mut self) -> Vec<f32> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.samples.lock().unwrap().clone()
    }
}

/// Plays `samples` (48 kHz mono) into a playback PCM in real time from a thread.
fn play(pcm: &str, samples: Vec<f32>) -> std::thread::JoinHandle<()> {
    let mut sink = CpalSink::open(pcm, &CardOptions::default()).expect("open player");
    std::thread::spawn(move || {
        // A PulseAudio-backed PCM takes a while to start consuming (bounded wait).
        let end = Instant::now() + WAIT;
        while !sink.running() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        for (i, chunk) in samples.chunks(960).enumerate() {
            let due = start + Duration::from_millis(20 * i as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let _ = sink.write(chunk);
        }
        // Let the queued audio drain before the sink is dropped.
        while sink.queued() > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
    })
}

fn to_i16(s: &[f32]) -> Vec<i16> {
    s.iter()
        .map(|x| (x.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect()
}

/// Best envelope correlation of `got` against `reference` over lags of 0..max_lag frames.
fn best_match(got: &[f64], reference: &[f64], max_lag: usize) -> (f64, usize) {
    let n = reference.len();
    (0..max_lag.min(got.len().saturating_sub(n / 2)))
        .map(|lag| {
            let m = n.min(got.len() - lag);
            (correlation(&got[lag..lag + m], &reference[..m]), lag)
        })
        .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a })
}

async fn member(gw: &Gateway, user: &str) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, Role::General, "ev1", &["c1"]))
        .await
        .expect("connect");
    let rtc = RtcClient::join(&mut ws, "c1").await;
    (ws, rtc)
}

/// CPU seconds (utime + stime) of the thread named `name` in process `pid`.
fn thread_cpu(pid: u32, name: &str) -> f64 {
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm"))
            .unwrap_or_default()
            .trim()
            == name
        {
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let f: Vec<f64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0.0))
                .collect();
            return (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0;
        }
    }
    panic!("no thread {name} in {pid}");
}

async fn healthz_port(gw: &Gateway) -> serde_json::Value {
    let (_, body) = gw.http_get("/healthz").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz");
    v["radio"]["ports"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radio_sound_card_path_through_pulseaudio() {
    let dir = tempfile::tempdir().unwrap();
    let (_pulse, env) = start_pulse(dir.path());
    let rig = start_rig();
    let cfg = format!(
        "[[radio]]\nname = \"card1\"\nuser_id = \"radio-card1\"\ndisplay_name = \"Card radio\"\n\
         event = \"ev1\"\nchannel = \"c1\"\ntx_delay_ms = 150\nhang_time_ms = 500\n\
         [radio.ptt]\ntype = \"cat\"\naddress = \"{}\"\n\
         [radio.squelch]\ntype = \"vox\"\nthreshold_dbfs = -40.0\nattack_ms = 20\nrelease_ms = 500\n\
         [radio.audio]\ntype = \"cpal\"\ncapture = \"rg_radio_capture\"\nplayback = \"rg_radio_play\"\n\
         rate = 44100\nchannels = 2\n",
        rig.addr
    );
    let mut gw = Gateway::start_in_env(tempfile::tempdir().unwrap(), &cfg, &env);
    let end = Instant::now() + WAIT;
    loop {
        let p = healthz_port(&gw).await;
        let up = p["devices"]
            .as_array()
            .is_some_and(|d| d.len() == 4 && d.iter().all(|d| d["state"] == "up"));
        if p["joined"] == true && up {
            break;
        }
        assert!(Instant::now() < end, "radio port not ready: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut a_ws, mut alice) = member(&gw, "alice").await;
    let (mut b_ws, bob) = member(&gw, "bob").await;
    let frames = encode_opus(&speech_pcm());
    let speech: Vec<f32> = speech_pcm()
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();

    // 1. Alice's speech comes out of the radio's playback, keyed for it plus the hang time.
    let mut rec = Recorder::start("rg_tx_monitor");
    let watch = PttWatch::start(&rig.addr);
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    b_ws.notification("floor.taken").await;
    let cpu0 = thread_cpu(gw.pid(), "radio-card1");
    let t0 = Instant::now();
    alice.talk(&frames[..100]).await;
    let t_end = Instant::now();
    let cpu_play =
        (thread_cpu(gw.pid(), "radio-card1") - cpu0) / t_end.duration_since(t0).as_secs_f64();
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    b_ws.notification("floor.idle").await;
    let end = Instant::now() + WAIT;
    while rig_ptt(&rig.addr) != Some(false) || t_end.elapsed() < Duration::from_millis(900) {
        assert!(Instant::now() < end, "rig still keyed after the hang time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ptt = watch.stop();
    let recorded = rec.take();
    let first_key = ptt.iter().find(|(_, k)| *k).expect("keyed").0;
    let last_key = ptt.iter().rev().find(|(_, k)| *k).expect("keyed").0;
    assert!(first_key.duration_since(t0) < Duration::from_millis(100));
    assert!(
        ptt.iter()
            .filter(|(t, _)| *t >= first_key && *t <= t_end)
            .all(|(_, k)| *k),
        "keyed during the whole voice"
    );
    let hang = last_key.saturating_duration_since(t_end);
    assert!(
        hang >= Duration::from_millis(550) && hang <= Duration::from_millis(1100),
        "keyed {hang:?} after the last packet (TX delay 150 + hang 500 ms)"
    );
    // The recording (from before key-up to after unkey) holds the speech.
    let got = envelope(&to_i16(&recorded));
    let reference = envelope(&decode_opus(&frames[..100]));
    let (r, lag) = best_match(&got, &reference, 150);
    let onset_ms = lag as f64 * 20.0 - rec.started.elapsed().as_secs_f64() * 0.0;
    println!(
        "TX: recorded {:.2} s, speech correlation {r:.3} at {onset_ms} ms into the recording; keyed {:?} after the first packet, {hang:?} after the last",
        recorded.len() as f64 / 48_000.0,
        first_key.duration_since(t0)
    );
    assert!(
        r > 0.85,
        "the radio transmitted alice's speech: correlation {r}"
    );
    let p = healthz_port(&gw).await;
    println!("TX latency (driver): {}", p["latency"]);
    assert_eq!(p["counters"]["keyUps"], 1);
    let key_ms = p["counters"]["keyedMs"].as_u64().unwrap();
    assert!((2400..3300).contains(&key_ms), "time keyed {key_ms} ms");

    // 2. Speech into the radio's receiver opens the VOX and reaches bob.
    let before = bob.received();
    let player = play("rg_rx_play", speech[..48_000 * 2].to_vec());
    let taken = b_ws.notification("floor.taken").await;
    let (cpu0, t_rx) = (thread_cpu(gw.pid(), "radio-card1"), Instant::now());
    assert_eq!(taken["talker"]["userId"], "radio-card1");
    let _ = tokio::task::spawn_blocking(move || player.join()).await;
    let cpu_send = (thread_cpu(gw.pid(), "radio-card1") - cpu0) / t_rx.elapsed().as_secs_f64();
    println!(
        "port thread CPU (44.1 kHz stereo card, one core = 100%): playing {:.1}%, sending {:.1}%",
        cpu_play * 100.0,
        cpu_send * 100.0
    );
    // The VOX closes after its release time and the radio gives the floor back.
    let end = Instant::now() + WAIT;
    loop {
        let p = healthz_port(&gw).await;
        if p["sending"] == false && p["squelchOpen"] == false {
            break;
        }
        assert!(Instant::now() < end, "the radio kept the floor: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = bob.wait_received(before + 60, Duration::from_secs(3)).await - before;
    assert!(got >= 60, "bob got {got} packets from the radio");
    let pk = bob.packets();
    let payloads: Vec<Vec<u8>> = pk[before..].iter().map(|p| p.payload.clone()).collect();
    let heard = envelope(&decode_opus(&payloads));
    let fed = envelope(&to_i16(&speech[..48_000 * 2]));
    let (r, lag) = best_match(&fed, &heard[..heard.len().min(80)], 20);
    println!("RX: bob got {got} packets; speech correlation {r:.3} (lag {lag} frames)");
    assert!(r > 0.8, "bob heard the radio's speech: correlation {r}");
    let p = healthz_port(&gw).await;
    println!("RX latency (driver): {}", p["latency"]);
    assert_eq!(
        rig_ptt(&rig.addr),
        Some(false),
        "not keyed by its own receive"
    );

    // 3. While alice holds the floor, the radio's speech reaches nobody and it does not key.
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("alice granted");
    let denied_before = p["counters"]["floorDenied"].as_u64().unwrap();
    let before = bob.received();
    let watch = PttWatch::start(&rig.addr);
    let player = play("rg_rx_play", speech[..48_000 * 2].to_vec());
    // The radio asks for the floor and is denied.
    let end = Instant::now() + WAIT;
    while healthz_port(&gw).await["counters"]["floorDenied"]
        .as_u64()
        .unwrap()
        <= denied_before
    {
        assert!(
            Instant::now() < end,
            "the radio's floor request was not denied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Alice talks while the radio receives: never keyed (no loop), bob hears only alice.
    alice.talk(&frames[..50]).await;
    let _ = tokio::task::spawn_blocking(move || player.join()).await;
    let ptt = watch.stop();
    assert!(
        ptt.iter().all(|(_, k)| !k),
        "the radio was keyed while receiving"
    );
    bob.wait_received(before + 48, Duration::from_secs(3)).await;
    let alice_frames: std::collections::HashSet<&Vec<u8>> = frames[..50].iter().collect();
    let pk = bob.packets();
    assert!(pk.len() > before, "bob heard alice");
    assert!(
        pk[before..]
            .iter()
            .all(|p| alice_frames.contains(&p.payload)),
        "bob heard only alice while she held the floor"
    );
    gw.sigterm();
    assert!(gw.wait_exit(WAIT).is_some());
    assert_eq!(rig_ptt(&rig.addr), Some(false));
}
