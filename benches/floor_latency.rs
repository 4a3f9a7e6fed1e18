//! Benchmark (a): floor grant latency with 500 connected sessions.
//!
//! Run: `cargo bench --bench floor_latency` (results go to docs/BENCHMARKS.md by hand).
//! Starts the release gateway, connects 500 signaling sessions (5 channels of 100 members),
//! then one member of channel c0 requests and releases the floor 2000 times. Latency is the
//! WebSocket round trip measured by the client: `floor.request` frame written to the reply
//! frame read (the server's grant also fans out `floor.taken` to the 99 other members). Then
//! the gateway's own figure from `/healthz` `floorRequestLatency` (request frame read to reply
//! queued: the server-side part, without the client's and the kernel's share).
//!
//! `cargo bench --bench floor_latency -- --pin` pins the gateway to CPU 0 (`taskset -a -p`) and
//! this process (the 500 clients) to CPU 1, so the clients' wake-ups on each `floor.taken` do
//! not compete with the gateway for its core.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{connect, cpu_ticks, pin, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::json;
use std::time::{Duration, Instant};

const SESSIONS: usize = 500;
const ROUNDS: usize = 2000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to run there
    }
    let gw = Gateway::start(
        "[channels]\nmax_users_per_channel = 100\n[limits]\nmessages_per_second = 10000\nmessage_burst = 10000\n",
    );
    if std::env::args().any(|a| a == "--pin") {
        pin(gw.pid(), 0);
        pin(std::process::id(), 1);
        println!("gateway pinned to CPU 0, the clients to CPU 1");
    }
    let mut clients: Vec<WsClient> = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let ch = format!("c{}", i % 5);
        let mut ws = connect(&gw, &token(&format!("u{i}"), Role::General, "ev1", &[&ch]))
            .await
            .expect("connect");
        ws.call("channel.join", json!({"channelId": ch}))
            .await
            .expect("join");
        clients.push(ws);
    }
    let rss = gw.rss_kib();
    let cpu0 = cpu_ticks(gw.pid());
    let talker = &mut clients[0];
    let mut lat = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        talker
            .call("floor.request", json!({"channelId": "c0"}))
            .await
            .expect("granted");
        lat.push(t0.elapsed());
        talker
            .call("floor.release", json!({"channelId": "c0"}))
            .await
            .expect("released");
    }
    let cpu = cpu_ticks(gw.pid()) - cpu0;
    lat.sort_unstable();
    println!(
        "floor grant latency, {SESSIONS} sessions, {ROUNDS} grants: p50 {:?} p99 {:?} max {:?}; gateway RSS {} KiB",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        rss
    );
    // The gateway's own measurement (request frame read to reply queued; no socket I/O).
    let (code, body) = gw.http_get("/healthz").await;
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    let f = &h["floorRequestLatency"];
    println!(
        "server-side floor request handling, {} requests: p50 {} us, p99 {} us (10 us buckets)",
        f["count"], f["p50Us"], f["p99Us"]
    );
    // CPU per unit of work, which noise disturbs least: the gateway process's utime + stime
    // (all threads, 10 ms ticks) over the loop, per grant (request, release and the
    // floor.taken / floor.idle to the 99 other members).
    println!(
        "gateway CPU per floor grant and release: {:.0} us ({cpu} ticks over {ROUNDS} rounds)",
        cpu as f64 * 10_000.0 / ROUNDS as f64
    );
}
