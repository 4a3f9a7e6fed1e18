//! Benchmark: what a link between gateways costs (issue 16).
//!
//! Run: `cargo bench --bench link` (both parts), `cargo bench --bench link -- added` or
//! `cargo bench --bench link -- hub [SITES] [CHANNELS]` (default 50 sites of 10 channels).
//! Results go to docs/BENCHMARKS.md "Linked sites" by hand.
//!
//! **added**: the release gateway three times on loopback, an upstream ("central") and two
//! sites ("north", "south") linking channel `ops`. The access time (a phone's `floor.request`
//! written to its grant read, 200 grants) and the mouth-to-ear latency (a talker's RTP send to
//! the listener's receive, 250 packets of 100 bytes at 20 ms; webrtc-rs clients) are measured
//! for two phones on the upstream (no link) and for a phone at north and one at south (two
//! links: site, upstream, site). The link's round trip (`admin.status` `siteLinks[].rttMs`,
//! `link.hello` over the WebSocket) is printed beside them. The three gateways are pinned to
//! CPU 0, this process (the phones) to CPU 1.
//!
//! **hub**: an upstream pinned to CPU 0 (`taskset -a -p -c 0`) with SITES site gateways pinned
//! to CPU 1 (as is this process, the load generator), each linking CHANNELS channels
//! (`c0`..): SITES × CHANNELS link sessions and peer connections at the upstream. The
//! upstream's CPU (utime + stime from /proc/PID/stat) is read over 10 s idle (per site) and
//! while one phone at the first site talks on each channel for 10 s (per RTP copy the
//! upstream forwards, from its `radiogate_rtp_packets_forwarded_total`; each packet goes to
//! the SITES − 1 other sites). A phone at the second site on `c0` counts what arrives (loss).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::rtc_client::RtcClient;
use common::{connect, cpu_ticks, free_port, link_token, pin, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const FAST: &str = "[limits]\nmessages_per_second = 1000\nmessage_burst = 1000\n";

fn upstream(port: u16, extra: &str) -> Gateway {
    Gateway::start_with(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("[site]\nname = \"central\"\n{extra}{FAST}"),
    )
}

fn site(name: &str, port: u16, channels: &[String]) -> Gateway {
    let list: Vec<String> = channels.iter().map(|c| format!("\"{c}\"")).collect();
    Gateway::start_with(
        "",
        &format!(
            "[site]\nname = \"{name}\"\n[[link]]\nupstream = \"ws://127.0.0.1:{port}\"\n\
             token = \"{}\"\nchannels = [{}]\n{FAST}",
            link_token(
                name,
                &channels.iter().map(String::as_str).collect::<Vec<_>>()
            ),
            list.join(", ")
        ),
    )
}

async fn phone(gw: &Gateway, user: &str, channel: &str) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, Role::General, "ev1", &[channel]))
        .await
        .expect("connect");
    let rtc = RtcClient::join(&mut ws, channel).await;
    (ws, rtc)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(v: &mut [Duration]) -> String {
    v.sort_unstable();
    format!(
        "p50 {:.2} ms, p99 {:.2} ms ({} samples)",
        percentile(v, 0.5).as_secs_f64() * 1e3,
        percentile(v, 0.99).as_secs_f64() * 1e3,
        v.len()
    )
}

/// 200 grants: `floor.request` written to its reply read. After each release, waits for
/// `watcher` (a phone elsewhere) to see the floor idle, so that the next request finds it
/// idle at the upstream too.
async fn access_time(ws: &mut WsClient, watcher: &mut WsClient, channel: &str) -> Vec<Duration> {
    let mut v = Vec::with_capacity(200);
    for _ in 0..200 {
        let t0 = Instant::now();
        ws.call("floor.request", json!({"channelId": channel}))
            .await
            .expect("granted");
        v.push(t0.elapsed());
        ws.call("floor.release", json!({"channelId": channel}))
            .await
            .expect("released");
        watcher.notification("floor.idle").await;
    }
    v
}

/// 250 numbered 100-byte packets from `talker` (holding the floor) to `listener`: send to
/// receive, matched by payload.
async fn mouth_to_ear(talker: &mut RtcClient, listener: &RtcClient) -> Vec<Duration> {
    let before = listener.received();
    let mut sent: HashMap<Vec<u8>, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..250u32 {
        tick.tick().await;
        let mut p = vec![0x55u8; 100];
        p[..4].copy_from_slice(&i.to_be_bytes());
        sent.insert(p.clone(), Instant::now());
        talker.send_frame(&p).await;
    }
    listener
        .wait_received(before + 245, Duration::from_secs(5))
        .await;
    listener.packets()[before..]
        .iter()
        .filter_map(|r| {
            sent.get(&r.payload)
                .map(|t| r.at.saturating_duration_since(*t))
        })
        .collect()
}

async fn added() {
    pin(std::process::id(), 1);
    let port = free_port();
    let central = upstream(port, "");
    let north = site("north", port, &["ops".into()]);
    let south = site("south", port, &["ops".into()]);
    for g in [&central, &north, &south] {
        pin(g.pid(), 0);
    }
    north.wait_lines(&["link up"], 1);
    south.wait_lines(&["link up"], 1);
    let (mut c1, mut c1_rtc) = phone(&central, "c1", "ops").await;
    let (mut c2, c2_rtc) = phone(&central, "c2", "ops").await;
    let mut direct = access_time(&mut c1, &mut c2, "ops").await;
    c1.call("floor.request", json!({"channelId": "ops"}))
        .await
        .unwrap();
    let mut m2e_direct = mouth_to_ear(&mut c1_rtc, &c2_rtc).await;
    c1.call("floor.release", json!({"channelId": "ops"}))
        .await
        .unwrap();
    // The sites' phones connect now: none of the notifications above are queued for them.
    let (mut a, mut a_rtc) = phone(&north, "ana", "ops").await;
    let (mut b, b_rtc) = phone(&south, "ben", "ops").await;
    let mut linked = access_time(&mut a, &mut b, "ops").await;
    a.call("floor.request", json!({"channelId": "ops"}))
        .await
        .unwrap();
    let mut m2e_linked = mouth_to_ear(&mut a_rtc, &b_rtc).await;
    a.call("floor.release", json!({"channelId": "ops"}))
        .await
        .unwrap();
    let mut adm = connect(&north, &token("adm", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let st = adm.call("admin.status", json!({})).await.unwrap();
    println!(
        "link round trip north -> central (link.hello): {} ms",
        st["siteLinks"][0]["rttMs"]
    );
    println!(
        "access time, phone on the upstream:         {}",
        summary(&mut direct)
    );
    println!(
        "access time, phone at a site (1 link):      {}",
        summary(&mut linked)
    );
    println!(
        "mouth-to-ear, two phones on the upstream:   {}",
        summary(&mut m2e_direct)
    );
    println!(
        "mouth-to-ear, site to site (2 links):       {}",
        summary(&mut m2e_linked)
    );
}

async fn forwarded(gw: &Gateway) -> u64 {
    let (_, text) = gw.http_get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with("radiogate_rtp_packets_forwarded_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("forwarded counter")
}

async fn hub(sites: usize, channels: usize) {
    pin(std::process::id(), 1);
    let port = free_port();
    let central = upstream(port, "");
    pin(central.pid(), 0);
    let names: Vec<String> = (0..channels).map(|i| format!("c{i}")).collect();
    let t0 = Instant::now();
    let mut gws = Vec::with_capacity(sites);
    for s in 0..sites {
        let g = site(&format!("site{s}"), port, &names);
        pin(g.pid(), 1);
        gws.push(g);
    }
    for g in &gws {
        let up = g.wait_lines(&["link up"], channels).len();
        assert_eq!(up, channels, "a site linked {up} of {channels} channels");
    }
    println!(
        "{sites} sites x {channels} channels linked in {:?}; upstream RSS {} KiB",
        t0.elapsed(),
        central.rss_kib()
    );
    let idle0 = cpu_ticks(central.pid());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = cpu_ticks(central.pid()) - idle0;
    println!(
        "upstream CPU idle: {:.1} ms/s in all, {:.1} us/s per site ({idle} ticks over 10 s)",
        idle as f64 * 10.0 / 10.0,
        idle as f64 * 10_000.0 / 10.0 / sites as f64
    );
    let mut talkers = Vec::new();
    for c in &names {
        talkers.push(phone(&gws[0], &format!("t-{c}"), c).await);
    }
    let (_l, listener) = phone(&gws[1], "listener", "c0").await;
    for (i, (ws, _)) in talkers.iter_mut().enumerate() {
        ws.call("floor.request", json!({"channelId": names[i]}))
            .await
            .expect("granted");
    }
    let packets = 500usize;
    let f0 = forwarded(&central).await;
    let c0 = cpu_ticks(central.pid());
    let frame = vec![0x55u8; 100];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..packets {
        tick.tick().await;
        for (_, rtc) in &mut talkers {
            rtc.send_frame(&frame).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = cpu_ticks(central.pid()) - c0;
    let copies = forwarded(&central).await - f0;
    let heard = listener.received();
    println!(
        "upstream CPU while {channels} talkers at site0 talk {packets} packets each: {:.2} us per \
         forwarded copy ({copies} copies, {cpu} ticks; {:.1} ms per second of talk); a \
         listener at site1 got {heard} of {packets}",
        cpu as f64 * 10_000.0 / copies.max(1) as f64,
        cpu as f64 * 10.0 / (packets as f64 * 0.02),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to run there
    }
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let part = args.first().copied().unwrap_or("all");
    if part == "added" || part == "all" {
        added().await;
    }
    if part == "hub" || part == "all" {
        let n = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
        hub(n(1, 50), n(2, 10)).await;
    }
}
