//! Benchmark (b): one talker to N listeners (N = 10, 100, 500) through the gateway on loopback.
//!
//! Run: `cargo bench --bench fanout` (or `cargo bench --bench fanout -- 10 100` for some N).
//! For each N: starts the release gateway, connects N listener peers and one talker
//! (webrtc-rs, one slot each), all in channel c1; the talker takes the floor and sends 500
//! RTP packets paced at 20 ms (10 s of a 20 ms Opus stream; the payload carries its send time).
//! Reported: packets forwarded per second (listener deliveries / talk time); the gateway's
//! forwarding latency p50/p99 from its own histogram (`/healthz` `forwardLatency`: uplink packet
//! out of webrtc-rs's receive path to the rewritten copy handed to each listener's sender, i.e.
//! without SRTP encryption and the UDP send); one-way end-to-end latency talker -> gateway ->
//! listener p50/p99 measured by the clients (includes both clients' SRTP stacks and scheduling of
//! N+1 client peers sharing the 2 cores with the gateway, so it bounds the added latency from
//! above); gateway
//! CPU seconds per 1000 forwarded packets (utime+stime from /proc over the talk), gateway RSS
//! idle and per connected peer.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::rtc_client::RtcClient;
use common::{connect, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::json;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PACKETS: usize = 500;
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn peer(gw: &Gateway, user: &str) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, Role::General, "ev1", &["c1"]))
        .await
        .expect("connect");
    let rtc = RtcClient::join(&mut ws, "c1").await;
    (ws, rtc)
}

async fn run(n: usize) {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let gw = Gateway::start(
        "[channels]\nmax_users_per_channel = 1000\n[floor]\ntime_out_timer_ms = 600000\n",
    );
    let pid = gw.pid();
    let idle_rss = gw.rss_kib();
    let mut listeners = Vec::with_capacity(n);
    for i in 0..n {
        listeners.push(peer(&gw, &format!("l{i}")).await);
    }
    let (mut t_ws, mut talker) = peer(&gw, "talker").await;
    let loaded_rss = gw.rss_kib();
    t_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..PACKETS {
        tick.tick().await;
        let mut payload = vec![0u8; 60];
        let sent = epoch.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        talker.send_frame(&payload).await;
    }
    for (_, l) in &listeners {
        l.wait_received(PACKETS, Duration::from_secs(2)).await;
    }
    let talk = t0.elapsed();
    let cpu = cpu_ticks(pid) - cpu0;
    let (_, health) = gw.http_get("/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("healthz");
    let fwd = &health["forwardLatency"];
    let mut lat = Vec::with_capacity(n * PACKETS);
    let mut delivered = 0usize;
    for (_, l) in &listeners {
        for p in l.packets() {
            let sent = u64::from_le_bytes(p.payload[..8].try_into().unwrap());
            lat.push(p.at.duration_since(epoch + Duration::from_nanos(sent)));
            delivered += 1;
        }
    }
    lat.sort_unstable();
    let hz = 100.0; // USER_HZ on Linux
    let cpu_s = cpu as f64 / hz;
    println!(
        "N={n:4}: delivered {delivered}/{} ({:.1}%), {:.0} packets/s forwarded, \
         gateway forwarding p50 {} us p99 {} us ({} samples), end-to-end p50 {:.2} ms p99 {:.2} ms, \
         CPU {:.3} s per 1000 packets, RSS idle {} KiB, loaded {} KiB ({:.0} KiB per peer)",
        n * PACKETS,
        100.0 * delivered as f64 / (n * PACKETS) as f64,
        delivered as f64 / talk.as_secs_f64(),
        fwd["p50Us"],
        fwd["p99Us"],
        fwd["count"],
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        cpu_s * 1000.0 / delivered.max(1) as f64,
        idle_rss,
        loaded_rss,
        (loaded_rss.saturating_sub(idle_rss)) as f64 / (n + 1) as f64,
    );
    for (ws, l) in listeners {
        l.close().await;
        ws.close();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let ns: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let ns = if ns.is_empty() {
        vec![10, 100, 500]
    } else {
        ns
    };
    for n in ns {
        run(n).await;
    }
}
