//! The cpal sound-card path on real ALSA devices without hardware: a PulseAudio server with
//! two null sinks started by the test, and ALSA PCMs of `type pulse` on a sink and on its
//! monitor (defined in a temporary ~/.asoundrc). A tone played to the playback PCM comes back on
//! the capture PCM through the monitor, with the card opened at 44.1 kHz stereo and the
//! gateway side at 48 kHz mono.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{require, spawn_pulse, wait_for, Peer};
use radiogate_hal::audio::{list_devices, CardOptions, CpalSink, CpalSource};
use radiogate_hal::{AudioSink, AudioSource, RATE};

const ASOUNDRC: &str = r#"
pcm.rg_radio_play {
    type pulse
    device "rg_radio_tx"
    hint { show on description "radiogate test: radio playback (null sink rg_radio_tx)" }
}
pcm.rg_radio_capture {
    type pulse
    device "rg_radio_tx.monitor"
    hint { show on description "radiogate test: what the radio transmits (monitor of rg_radio_tx)" }
}
pcm.rg_radio_rx_play {
    type pulse
    device "rg_radio_rx"
    hint { show on description "radiogate test: feeds the radio receiver (null sink rg_radio_rx)" }
}
pcm.rg_radio_rx_capture {
    type pulse
    device "rg_radio_rx.monitor"
    hint { show on description "radiogate test: radio receiver capture (monitor of rg_radio_rx)" }
}
"#;

/// Starts PulseAudio (as root it needs its own runtime dir and no idle exit) with two null
/// sinks, writes the ALSA config and points this process at both.
fn start_pulse(dir: &std::path::Path) -> Peer {
    require("pulseaudio", "pulseaudio");
    require("pactl", "pulseaudio-utils");
    assert!(
        std::path::Path::new("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so").exists()
            || std::path::Path::new("/usr/lib/aarch64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so").exists()
            || std::path::Path::new("/usr/lib/arm-linux-gnueabihf/alsa-lib/libasound_module_pcm_pulse.so").exists(),
        "the ALSA pulse plugin is missing: run tests/setup-debian.sh (Debian package libasound2-plugins)"
    );
    let (child, server) = spawn_pulse(dir, &["rg_radio_tx", "rg_radio_rx"]);
    let peer = Peer(child);
    std::fs::write(dir.join(".asoundrc"), ASOUNDRC).expect("write .asoundrc");
    // This test binary holds only this test, so changing the process environment is safe.
    std::env::set_var("HOME", dir);
    std::env::set_var("PULSE_SERVER", &server);
    std::env::set_var("XDG_RUNTIME_DIR", dir);
    peer
}

fn tone(hz: f32, amp: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / RATE as f32).sin())
        .collect()
}

fn rms(s: &[f32]) -> f32 {
    (s.iter().map(|x| x * x).sum::<f32>() / s.len().max(1) as f32).sqrt()
}

/// Share of a block's energy at `hz` (Goertzel): ~1.0 for a clean tone at `hz`, small for a
/// tone 50 Hz or more away (as a wrong rate conversion would give: 44.1/48 of 1 kHz = 919 Hz).
fn tone_purity(block: &[f32], hz: f32) -> f32 {
    let n = block.len() as f32;
    let w = 2.0 * std::f32::consts::PI * hz / RATE as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let energy: f32 = block.iter().map(|x| x * x).sum();
    power / (n / 2.0 * energy.max(1e-12))
}

#[test]
fn tone_played_to_the_sink_comes_back_on_the_monitor_at_48k_mono() {
    let dir = tempfile::tempdir().unwrap();
    let _pulse = start_pulse(dir.path());

    let names = list_devices();
    assert!(
        names.iter().any(|n| n == "rg_radio_play"),
        "PCMs seen by cpal: {names:?}"
    );

    let card = CardOptions {
        rate: Some(44_100),
        channels: Some(2),
        ..CardOptions::default()
    };
    let mut src = CpalSource::open("rg_radio_capture", &card).expect("open capture");
    let mut sink = CpalSink::open("rg_radio_play", &card).expect("open playback");
    assert_eq!((src.info().rate, src.info().channels), (44_100, 2));
    assert_eq!((sink.info().rate, sink.info().channels), (44_100, 2));

    // Play 1 s of 1 kHz at half scale, in 20 ms frames as the gateway would.
    let t = tone(1000.0, 0.5, RATE as usize);
    for f in t.chunks(960) {
        sink.write(f).unwrap();
    }
    assert!(sink.queued() > 0);

    // Capture until a loud second has come back (bounded wait).
    let start = Instant::now();
    let mut got: Vec<f32> = Vec::new();
    let mut buf = vec![0.0f32; 4800];
    let loud = wait_for(Duration::from_secs(10), || {
        let n = src.read(&mut buf).expect("capture");
        got.extend_from_slice(&buf[..n]);
        let first = got.iter().position(|s| s.abs() > 0.2)?;
        (got.len() >= first + 36_000).then_some(first)
    })
    .expect("the tone did not come back on the monitor within 10 s");
    let elapsed = start.elapsed().as_secs_f64();
    let seg = &got[loud + 2400..loud + 33_600];
    // Judge 20 ms blocks, so that a dropout on a loaded machine spoils one block, not the test.
    let purities: Vec<f32> = seg
        .chunks_exact(960)
        .map(|b| tone_purity(b, 1000.0))
        .collect();
    let clean = purities.iter().filter(|&&p| p > 0.9).count();
    let off_pitch: Vec<f32> = seg
        .chunks_exact(960)
        .map(|b| tone_purity(b, 919.0))
        .collect();
    assert!(
        clean * 10 >= purities.len() * 8,
        "only {clean} of {} 20 ms blocks are a clean 1 kHz tone after 48k->44.1k->48k (xruns: capture {}, playback {}): {purities:?}",
        purities.len(),
        src.xruns(),
        sink.xruns()
    );
    assert!(
        off_pitch.iter().filter(|&&p| p > 0.9).count() * 10 < off_pitch.len(),
        "tone is off pitch"
    );
    let level = rms(seg);
    // 0.5 peak sine: RMS 0.354 (the null sink and conversions keep the level within 1.5 dB).
    assert!((0.30..0.42).contains(&level), "level {level}");
    eprintln!(
        "first loud sample after {elapsed:.2} s, index {loud}, xruns {}",
        src.xruns()
    );
    // The captured stream runs at 48 kHz: count what arrives in 2 s of steady state.
    let t1 = Instant::now();
    let mut n_total = 0usize;
    wait_for(Duration::from_secs(3), || {
        n_total += src.read(&mut buf).expect("capture");
        (t1.elapsed() >= Duration::from_secs(2)).then_some(())
    });
    let rate = n_total as f64 / t1.elapsed().as_secs_f64();
    eprintln!(
        "steady-state capture rate {rate:.0} samples/s, xruns {}",
        src.xruns()
    );
    assert!(
        (44_000.0..52_000.0).contains(&rate),
        "captured {n_total} samples in {:?}",
        t1.elapsed()
    );
}
