//! Soak benchmark: the gateway's resident memory (RSS) before, during and after 1,000 sessions.
//!
//! Run: `cargo bench --bench session_soak` (1,000 sessions, 2 rounds; results go to
//! docs/BENCHMARKS.md by hand). Options (after `--`): `--sessions N`, `--rounds R` (connect,
//! hold, leave, settle; R times on the same gateway, so a plateau and a leak look different),
//! `--hold S` (seconds every session stays connected, default 5), `--settle S` (seconds of RSS
//! samples after the last session left, default 10), `--webrtc K` (the first K sessions of
//! each round also send a `webrtc.offer` and keep the answered peer connection, default 0),
//! `--env KEY=VALUE` (extra environment for the gateway, repeatable: e.g.
//! `MALLOC_ARENA_MAX=1` to test a hypothesis), `--malloc-stats` (after each round, glibc's
//! `malloc_stats()` of the gateway through gdb, printed from its stderr), `--gdb-trim`
//! (after each round, calls glibc's `malloc_trim(0)` in the gateway through gdb and samples
//! RSS again: what allocator retention accounts for).
//!
//! Set-up: the release gateway is started and pinned to CPU 0 (`taskset -a -p -c 0` right
//! after start); this process pins itself to CPU 1 before it creates any thread. Each round:
//! N sessions connect over the real signaling protocol (tokens for N distinct users, 32
//! connecting at once), each joins one of 10 channels (`c0`..`c9`), one session in 50 then
//! requests and releases the floor of its channel; all stay connected `--hold` seconds, then
//! all close (WebSocket close frame) and the bench waits (bounded, 30 s) until `/healthz`
//! says 0 sessions; then it samples RSS once a second for `--settle` seconds.
//!
//! Printed per round: RSS (VmRSS from /proc/PID/status, KiB) at the start, with every session
//! connected, the high-water mark (VmHWM), at the moment the last session has left, and each
//! second after; the gateway's thread count (Threads) alongside, because glibc gives threads
//! their own malloc arenas.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{connect, token, Gateway, WsClient};
use futures_util::StreamExt;
use radiogate::access::role::Role;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::json;
use std::time::{Duration, Instant};

/// Sessions connecting at once.
const CONCURRENCY: usize = 32;
/// Channels the sessions spread over.
const CHANNELS: usize = 10;
/// One session in this many requests and releases the floor.
const TALKER_EVERY: usize = 50;
/// Bound on the wait for `/healthz` to report 0 sessions after every client closed.
const LEAVE_LIMIT: Duration = Duration::from_secs(30);

struct Opts {
    sessions: usize,
    rounds: usize,
    hold: u64,
    settle: u64,
    webrtc: usize,
    env: Vec<(String, String)>,
    malloc_stats: bool,
    gdb_trim: bool,
}

fn parse() -> Option<Opts> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return None; // `cargo test --benches` probes; nothing to run there
    }
    let mut o = Opts {
        sessions: 1000,
        rounds: 2,
        hold: 5,
        settle: 10,
        webrtc: 0,
        env: Vec::new(),
        malloc_stats: false,
        gdb_trim: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--sessions" => o.sessions = num(),
            "--rounds" => o.rounds = num(),
            "--hold" => o.hold = num() as u64,
            "--settle" => o.settle = num() as u64,
            "--webrtc" => o.webrtc = num(),
            "--env" => {
                let kv = it.next().expect("--env KEY=VALUE");
                let (k, v) = kv.split_once('=').expect("--env KEY=VALUE");
                o.env.push((k.to_string(), v.to_string()));
            }
            "--malloc-stats" => o.malloc_stats = true,
            "--gdb-trim" => o.gdb_trim = true,
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    Some(o)
}

/// A field of /proc/PID/status, KiB or a count.
fn status_field(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

/// One RSS sample, printed.
fn sample(pid: u32, label: &str) -> u64 {
    let rss = status_field(pid, "VmRSS:");
    println!(
        "  {label:<24} RSS {:>8} KiB ({:>8})  threads {}",
        rss,
        mb(rss),
        status_field(pid, "Threads:")
    );
    rss
}

/// Runs gdb on the gateway with one `call`, returning whether it ran.
fn gdb_call(pid: u32, call: &str) -> bool {
    std::process::Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx", "-ex", call])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The number of sessions `/healthz` reports.
async fn sessions(gw: &Gateway) -> u64 {
    let (_, body) = gw.http_get("/healthz").await;
    let h: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    h["sessions"].as_u64().expect("sessions")
}

/// A sans-IO peer connection offering one receive-only audio m-line (nothing drives it: the
/// gateway's side is what is measured).
fn offerer() -> RTCPeerConnection {
    let mut me = MediaEngine::default();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: radiogate::media::opus_codec(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )
    .expect("codec");
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .build(Instant::now())
        .expect("peer connection");
    pc.add_transceiver_from_kind(
        RtpCodecKind::Audio,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .expect("transceiver");
    let local: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    pc.add_local_candidate(radiogate::media::host_candidate(local).expect("candidate"))
        .expect("local candidate");
    pc
}

/// Connects session `i` of round `round`, joins its channel, and (when `rtc`) negotiates.
async fn join(
    gw: &Gateway,
    round: usize,
    i: usize,
    rtc: bool,
) -> (WsClient, Option<RTCPeerConnection>) {
    let ch = format!("c{}", i % CHANNELS);
    let user = format!("r{round}u{i}");
    let mut ws = connect(gw, &token(&user, Role::General, "ev1", &[&ch]))
        .await
        .expect("connect");
    ws.notification("channel.list").await;
    let pc = if rtc {
        let mut pc = offerer();
        let offer = pc.create_offer(None).expect("offer");
        pc.set_local_description(Instant::now(), offer.clone())
            .expect("local description");
        let res = ws
            .call("webrtc.offer", json!({"sdp": offer.sdp}))
            .await
            .expect("webrtc.offer accepted");
        let sdp = res["sdp"].as_str().expect("answer sdp").to_string();
        pc.set_remote_description(
            Instant::now(),
            RTCSessionDescription::answer(sdp).expect("answer"),
        )
        .expect("remote description");
        Some(pc)
    } else {
        None
    };
    ws.call("channel.join", json!({"channelId": ch}))
        .await
        .expect("join");
    (ws, pc)
}

async fn round(gw: &Gateway, o: &Opts, r: usize) -> (u64, u64) {
    let pid = gw.pid();
    println!(
        "round {r}: {} sessions ({} with WebRTC)",
        o.sessions,
        o.webrtc.min(o.sessions)
    );
    let start = sample(pid, "start");
    let t0 = Instant::now();
    let mut clients: Vec<(WsClient, Option<RTCPeerConnection>)> =
        futures_util::stream::iter(0..o.sessions)
            .map(|i| join(gw, r, i, i < o.webrtc))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    println!(
        "  connected and joined in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    sample(pid, "connected");
    for (i, (ws, _)) in clients.iter_mut().enumerate() {
        if i % TALKER_EVERY == 0 {
            let ch = format!("c{}", i % CHANNELS);
            // Granted, or queued/denied behind another talker: either exercises the floor.
            let _ = ws.call("floor.request", json!({"channelId": ch})).await;
            let _ = ws.call("floor.release", json!({"channelId": ch})).await;
        }
    }
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(o.hold) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sample(pid, "held");
    println!(
        "  high-water mark (VmHWM)  {} KiB",
        status_field(pid, "VmHWM:")
    );
    for (ws, _) in &clients {
        ws.close();
    }
    let t_leave = Instant::now();
    loop {
        let n = sessions(gw).await;
        if n == 0 {
            break;
        }
        assert!(
            t_leave.elapsed() < LEAVE_LIMIT,
            "{n} sessions still registered {LEAVE_LIMIT:?} after every client closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(clients);
    println!("  all left in {:.2} s", t_leave.elapsed().as_secs_f64());
    sample(pid, "all left");
    let settled = Instant::now();
    let mut last = 0;
    for s in 1..=o.settle {
        while settled.elapsed() < Duration::from_secs(s) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last = sample(pid, &format!("+{s} s"));
    }
    if o.malloc_stats {
        let before = gw.log.0.lock().unwrap().len();
        let ok = gdb_call(pid, "call (void) malloc_stats()");
        // The gateway's stderr is read by another thread; give it the lines.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lines = gw.log.0.lock().unwrap()[before..].to_vec();
        println!("  malloc_stats() (gdb ran: {ok}):");
        for l in lines {
            println!("    {l}");
        }
    }
    if o.gdb_trim {
        let ok = gdb_call(pid, "call (int) malloc_trim(0)");
        sample(pid, &format!("after malloc_trim ({ok})"));
    }
    (start, last)
}

async fn run(o: Opts) {
    let cap = o.sessions + 100;
    let extra = format!(
        "udp_port_min = 40000\nudp_port_max = {}\n\
         [channels]\nmax_users_per_channel = {cap}\n\
         [limits]\nconnections_per_minute = 10000\nmessages_per_second = 10000\nmessage_burst = 10000\n",
        40000 + cap
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let env: Vec<(&str, String)> = o.env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let gw = Gateway::launch_full(dir, &state, "", &extra, &env);
    let pid = gw.pid();
    let pinned = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset")
        .success();
    assert!(pinned, "taskset could not pin the gateway to CPU 0");
    // The gateway settles (SQLite, listeners) before the first figure.
    assert_eq!(sessions(&gw).await, 0);
    if !o.env.is_empty() {
        println!("gateway environment: {:?}", o.env);
    }
    let first = status_field(pid, "VmRSS:");
    let mut last = first;
    for r in 1..=o.rounds {
        let (_, l) = round(&gw, &o, r).await;
        last = l;
    }
    println!(
        "summary: RSS at start {} KiB ({}), {} s after the last round's sessions left {} KiB ({}): {:+.1} MB",
        first,
        mb(first),
        o.settle,
        last,
        mb(last),
        (last as f64 - first as f64) * 1024.0 / 1e6
    );
}

fn main() {
    let Some(o) = parse() else { return };
    // CPU 1 for the load generator, before any thread exists (they inherit it).
    let mut set = nix::sched::CpuSet::new();
    set.set(1).expect("cpu 1");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .expect("pin the load generator to CPU 1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
}
