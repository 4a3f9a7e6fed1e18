//! A radio port keyed over CAT through a real hamlib rigctld (dummy rig `-m 1 -P RIG`, started
//! by the test) in the real gateway process: a WebRTC talker's voice keys the radio for the
//! voice plus the hang time (read back with `t`), plays into the radio's audio (a WAV file),
//! SIGTERM unkeys before exit, and after a SIGKILL while keyed `radiogate unkey` unkeys.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::free_port;
use common::radio::{rig_ptt, start_rig, PttWatch};
use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{connect, token, Gateway, WsClient, WAIT};
use radiogate::access::role::Role;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn radio_toml(rig: &str, wav: &std::path::Path) -> String {
    format!(
        "[[radio]]\nname = \"cat1\"\nuser_id = \"radio-cat1\"\ndisplay_name = \"CAT radio\"\n\
         event = \"ev1\"\nchannel = \"c1\"\ntx_delay_ms = 150\nhang_time_ms = 500\n\
         [radio.ptt]\ntype = \"cat\"\naddress = \"{rig}\"\n\
         [radio.audio]\ntype = \"wav\"\nplayback = \"{}\"\n",
        wav.display()
    )
}

async fn talker(gw: &Gateway) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token("alice", Role::General, "ev1", &["c1"]))
        .await
        .expect("connect");
    let rtc = RtcClient::join(&mut ws, "c1").await;
    (ws, rtc)
}

/// Waits (bounded) until `/healthz` shows the radio joined with its PTT device up.
async fn radio_ready(gw: &Gateway) {
    let end = Instant::now() + WAIT;
    loop {
        let (_, body) = gw.http_get("/healthz").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let p = &v["radio"]["ports"][0];
        if p["joined"] == true && p["devices"][0]["state"] == "up" {
            return;
        }
        assert!(Instant::now() < end, "radio port not ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_voice_keys_the_rig_for_the_voice_plus_hang_time() {
    let rig = start_rig();
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tx.wav");
    let mut gw = Gateway::start(&radio_toml(&rig.addr, &wav));
    radio_ready(&gw).await;
    let (mut ws, mut rtc) = talker(&gw).await;
    assert_eq!(rig_ptt(&rig.addr), Some(false));

    let frames = encode_opus(&speech_pcm());
    let watch = PttWatch::start(&rig.addr);
    ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    let t0 = Instant::now();
    rtc.talk(&frames[..100]).await;
    let t_end = Instant::now();
    ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    // After the hang time the rig is unkeyed (bounded wait on the read-back).
    let end = Instant::now() + WAIT;
    while rig_ptt(&rig.addr) != Some(false) || t_end.elapsed() < Duration::from_millis(900) {
        assert!(Instant::now() < end, "rig still keyed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = watch.stop();
    let first_key = log.iter().find(|(_, k)| *k).expect("the rig was keyed").0;
    let last_key = log.iter().rev().find(|(_, k)| *k).expect("keyed").0;
    let key_after = first_key.saturating_duration_since(t0);
    let held_after_talk = last_key.saturating_duration_since(t_end);
    println!(
        "rig keyed {key_after:?} after the first packet; last read keyed {held_after_talk:?} after the last packet"
    );
    assert!(
        key_after < Duration::from_millis(100),
        "keyed late: {key_after:?}"
    );
    // Keyed throughout the voice: every read-back between key-up and the end of the talk is 1.
    assert!(
        log.iter()
            .filter(|(t, _)| *t >= first_key && *t <= t_end)
            .all(|(_, k)| *k),
        "the rig was unkeyed during the voice"
    );
    // ... and through the TX delay (150 ms) + hang time (500 ms) after the last packet.
    assert!(
        held_after_talk >= Duration::from_millis(550)
            && held_after_talk <= Duration::from_millis(1000),
        "unkeyed {held_after_talk:?} after the last packet (expected about 650 ms)"
    );

    // The voice went into the radio's audio path: the WAV holds the speech.
    gw.sigterm();
    assert!(gw.wait_exit(WAIT).is_some_and(|s| s.success()));
    let mut r = hound::WavReader::open(&wav).expect("tx wav");
    let played: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    assert!(played.len() >= 95 * 960, "played {} samples", played.len());
    let m = played.len().min(100 * 960) / 960;
    let c = correlation(
        &envelope(&played[..m * 960]),
        &envelope(&decode_opus(&frames[..m])),
    );
    assert!(c > 0.9, "played audio matches the talker's: {c}");
    assert_eq!(rig_ptt(&rig.addr), Some(false));
}

/// A gateway with the CAT radio on `rig`, keyed by alice's voice on c1. Every part must be
/// kept until the test's end: dropping alice's session releases the floor, dropping `dir`
/// removes the WAV playback's directory.
struct Keyed {
    gw: Gateway,
    ws: WsClient,
    rtc: RtcClient,
    frames: Vec<Vec<u8>>,
    dir: tempfile::TempDir,
}

/// Starts the gateway with the CAT radio on `rig` (audio to a WAV file), has alice take the
/// floor of c1 and send 0.5 s of speech, and checks that the rig is keyed.
async fn keyed_by_alice(rig: &common::radio::Rig) -> Keyed {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&radio_toml(&rig.addr, &dir.path().join("tx.wav")));
    radio_ready(&gw).await;
    let (mut ws, mut rtc) = talker(&gw).await;
    let frames = encode_opus(&speech_pcm());
    ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    rtc.talk(&frames[..25]).await;
    assert_eq!(
        rig_ptt(&rig.addr),
        Some(true),
        "keyed while the voice plays"
    );
    Keyed {
        gw,
        ws,
        rtc,
        frames,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_keyed_unkeys_before_exit() {
    let rig = start_rig();
    let Keyed {
        mut gw,
        ws: _ws,
        mut rtc,
        frames,
        dir: _dir,
    } = keyed_by_alice(&rig).await;
    gw.sigterm();
    // Keep talking while the gateway shuts down.
    let exited = tokio::select! {
        st = tokio::task::spawn_blocking(move || { let s = gw.wait_exit(WAIT); (gw, s) }) => st.expect("join"),
        _ = rtc.talk(&frames[25..]) => panic!("the gateway did not exit during the talk"),
    };
    assert!(exited.1.is_some_and(|s| s.success()), "clean exit");
    assert_eq!(rig_ptt(&rig.addr), Some(false), "unkeyed before exit");
    assert!(exited.0.logged("radio ports stopped and unkeyed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_keyed_then_unkey_command_unkeys() {
    let rig = start_rig();
    // Alice's session stays open (and keeps the floor) until the kill.
    let Keyed {
        gw,
        ws: _ws,
        rtc: _rtc,
        frames: _,
        dir: _dir,
    } = keyed_by_alice(&rig).await;
    let status = Command::new("kill")
        .args(["-KILL", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut gw = gw;
    assert!(gw.wait_exit(WAIT).is_some(), "killed");
    // Nothing ran at exit: the rig is still keyed (what systemd's ExecStopPost= is for).
    assert_eq!(
        rig_ptt(&rig.addr),
        Some(true),
        "a killed gateway leaves the rig keyed"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(["unkey", "--config"])
        .arg(gw.dir.path().join("radiogate.toml"))
        .output()
        .expect("radiogate unkey");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cat1: unkeyed CAT PTT via rigctld"), "{text}");
    assert_eq!(
        rig_ptt(&rig.addr),
        Some(false),
        "unkeyed by radiogate unkey"
    );
}

#[test]
fn unkey_without_radios_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .arg("unkey")
        .output()
        .expect("radiogate unkey");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to unkey"));
}

#[test]
fn unkey_reports_an_unreachable_output_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "[[radio]]\nname = \"gone\"\nuser_id = \"r\"\ndisplay_name = \"R\"\nevent = \"e\"\nchannel = \"c\"\n\
             [radio.ptt]\ntype = \"cat\"\naddress = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(["unkey", "--config"])
        .arg(&cfg)
        .output()
        .expect("radiogate unkey");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gone: could not unkey") && text.contains("is rigctld running"),
        "{text}"
    );
}

#[test]
fn every_example_config_passes_check_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("config/examples") {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
                .arg("check-config")
                .arg(&path)
                .output()
                .expect("check-config");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 5, "five example configs, found {n}");
}
