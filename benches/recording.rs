//! Benchmark: what recording costs per recorded packet (issue 14), and 50 simultaneous talk
//! spurts recorded with no drop.
//!
//! Run: `taskset -c 0 cargo bench --bench recording` (results go to docs/BENCHMARKS.md by
//! hand). In-process, release build: a [`Recorder`] on a temporary state directory gets 50
//! spurt starts, then 50 talkers' packets (a 20 ms libopus frame each) through the route
//! table's tap at real time (one packet per talker every 20 ms, 2,500 packets/s) for 30 s,
//! then the 50 ends. Reported:
//! - the media path's share: time in `Tap::packet` (queueing; the payload buffer is shared, not copied) per packet, measured around
//!   the calls;
//! - the recorder thread's CPU (its `/proc/self/task/TID/schedstat` run time, ns) per packet,
//!   from when all spurts are open to when every packet is written (the spurt boundaries,
//!   with their files, index rows and retention, are reported apart, per spurt);
//! - packets dropped by the recorder's queue (must be 0), recordings listed, bytes written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use radiogate::access::role::Role;
use radiogate::hub::SpurtEvent;
use radiogate::recording::index::Index;
use radiogate::recording::recorder::{Recorder, RecorderConfig};
use radiogate::sfu::routes::Tap;
use std::time::{Duration, Instant};

#[path = "../hal/tests/common/wait.rs"]
mod wait;

const TALKERS: u64 = 50;
const SECONDS: u64 = 30;

/// CPU time (ns) of the thread called `name` in this process: the first field of its
/// `/proc/self/task/TID/schedstat` (the scheduler's exact run time, not the 10 ms ticks of
/// utime + stime, which sample a thread that runs briefly at each wake-up badly).
fn thread_cpu_ns(name: &str) -> u64 {
    let mut total = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = t.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap();
        total += stat
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    total
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let recs = dir.path().join("recordings");
    let db = dir.path().join("radiogate.db");
    let rec = Recorder::start(RecorderConfig {
        dir: recs.clone(),
        db: db.clone(),
        max_bytes: 1 << 30,
        retention: Duration::from_secs(86_400),
        min_free_bytes: 0,
        queue: 4096,
    })
    .unwrap();
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let pcm: Vec<i16> = (0..960)
        .map(|i| ((i as f64 / 48_000.0 * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16)
        .collect();
    let frame = bytes::Bytes::from(enc.encode_vec(&pcm, 1500).unwrap());
    let start_ms = radiogate::clock::unix_ms();
    for t in 1..=TALKERS {
        rec.spurt(
            &SpurtEvent::Start {
                talker: t,
                channel: format!("c{t}"),
                event: "ev".into(),
                user_id: format!("u{t}"),
                name: format!("User {t}"),
                role: Role::General,
                emergency: false,
            },
            start_ms,
        );
    }
    // Per-packet cost is measured apart from the spurt boundaries (file creation, index
    // rows, retention): wait (bounded) until all 50 spurts are open.
    let index = Index::open(&db).unwrap();
    wait::wait_for(Duration::from_secs(30), || {
        (index.interrupted().unwrap().len() >= TALKERS as usize).then_some(())
    })
    .expect("all spurts open");
    let cpu0 = thread_cpu_ns("recorder");
    let mut in_tap = Duration::ZERO;
    let mut packets = 0u64;
    let rounds = SECONDS * 50;
    let t0 = Instant::now();
    for round in 0..rounds {
        let due = t0 + Duration::from_millis(round * 20);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // pacing the load at real time, not waiting for a result
        }
        for t in 1..=TALKERS {
            let pkt = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    timestamp: (round as u32).wrapping_mul(960),
                    sequence_number: round as u16,
                    ssrc: t as u32,
                    ..Default::default()
                },
                payload: frame.clone(),
            };
            let s = Instant::now();
            rec.packet(t, &pkt);
            in_tap += s.elapsed();
            packets += 1;
        }
    }
    // Wait (bounded) until every packet is written, then take the packets' CPU.
    wait::wait_for(Duration::from_secs(30), || {
        (rec.packets() >= packets).then_some(())
    })
    .expect("every packet written");
    let cpu1 = thread_cpu_ns("recorder");
    let packet_ns = cpu1 - cpu0;
    for t in 1..=TALKERS {
        rec.spurt(
            &SpurtEvent::End {
                talker: t,
                channel: format!("c{t}"),
                reason: "release".into(),
            },
            start_ms + SECONDS * 1000,
        );
    }
    // Wait (bounded) until the recorder has closed every file.
    wait::wait_for(Duration::from_secs(30), || {
        (rec.recorded() >= TALKERS).then_some(())
    })
    .expect("every recording closed");
    let end_ns = thread_cpu_ns("recorder") - cpu1;
    let listed: usize = (1..=TALKERS)
        .map(|t| index.list(&format!("c{t}"), 10, None).unwrap().len())
        .sum();
    let bytes: u64 = std::fs::read_dir(&recs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!("recording benchmark: {TALKERS} simultaneous spurts, {SECONDS} s, {packets} packets");
    println!(
        "  media path (Tap::packet: queue, payload shared): {:.2} us per packet",
        in_tap.as_secs_f64() * 1e6 / packets as f64
    );
    println!(
        "  recorder thread CPU while recording: {:.2} us per packet ({:.1} ms, {} packets written)",
        packet_ns as f64 / 1_000.0 / packets as f64,
        packet_ns as f64 / 1e6,
        rec.packets()
    );
    println!(
        "  recorder thread CPU closing the {TALKERS} spurts (files, index, retention): {:.0} us per spurt",
        end_ns as f64 / 1_000.0 / TALKERS as f64
    );
    println!(
        "  dropped: {}, recordings closed: {}, listed: {listed}, bytes on disk: {bytes}",
        rec.dropped(),
        rec.recorded()
    );
    assert_eq!(rec.dropped(), 0, "no packet dropped");
    assert_eq!(listed as u64, TALKERS);
}
