//! Benchmark: permission sync from the control plane's Redis with 500 connected sessions.
//!
//! Run: `cargo bench --bench permission_sync` (needs `redis-server`; results go to
//! docs/BENCHMARKS.md by hand). Starts a real redis-server on a free loopback port and the
//! release gateway following it, connects 500 signaling sessions (500 users, each with its own
//! `u.{user}.g` set), then:
//! 1. PUBLISH -> `permission.update` latency: 1000 `set_user_channels` updates, each for one
//!    user (round robin), timed from just before the PUBLISH command is written to the
//!    notification read by that user's client;
//! 2. resync of 500 users: Redis is SIGKILLed, restarted on the same port with every user's
//!    set changed; reports the gateway's own full-resync duration (`lastFullSyncDurationMs`:
//!    500 users read in one pipeline, written to SQLite, pushed) and the time from Redis being
//!    back to the last of the 500 sessions holding its update (includes the 1 s reconnect
//!    backoff).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::redis_server::{redis_toml, sync_status, wait_sync, RedisServer};
use common::{connect, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::json;
use std::time::{Duration, Instant};

const SESSIONS: usize = 500;
const ROUNDS: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn seed_all(redis: &RedisServer, suffix: &str) {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut pipe = redis::pipe();
    for i in 0..SESSIONS {
        let key = format!("u.u{i}.g");
        pipe.del(&key).ignore();
        pipe.sadd(&key, vec![format!("c{}", i % 5), format!("x{suffix}")])
            .ignore();
    }
    let _: () = pipe.query_async(&mut c).await.expect("seed");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to run there
    }
    let mut redis = RedisServer::start().await;
    seed_all(&redis, "0").await;
    let gw = Gateway::start(&redis_toml(&redis, 60_000));
    wait_sync(&gw, Duration::from_secs(10), |s| s["state"] == "connected").await;
    let mut clients: Vec<WsClient> = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let mut ws = connect(&gw, &token(&format!("u{i}"), Role::General, "ev1", &[]))
            .await
            .expect("connect");
        ws.notification("channel.list").await;
        clients.push(ws);
    }
    let client = redis::Client::open(redis.url()).expect("client");
    let mut publisher = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");

    let mut lat = Vec::with_capacity(ROUNDS);
    for r in 0..ROUNDS {
        let i = (r * 7) % SESSIONS;
        let payload = json!({"eventId": "ev1", "userId": format!("u{i}"),
                             "channelIds": [format!("c{}", i % 5), format!("r{r}")],
                             "action": "set_user_channels"})
        .to_string();
        let t0 = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("vp:membership_updates")
            .arg(&payload)
            .query_async(&mut publisher)
            .await
            .expect("publish");
        let up = clients[i].notification("permission.update").await;
        lat.push(t0.elapsed());
        assert!(up["added"][0].as_str().is_some_and(|c| c.starts_with('r')));
    }
    lat.sort_unstable();
    let rss = gw.rss_kib();
    println!(
        "PUBLISH -> permission.update, {SESSIONS} sessions, {ROUNDS} updates: p50 {:?} p99 {:?} max {:?}; gateway RSS {rss} KiB",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
    );

    redis.kill();
    wait_sync(&gw, Duration::from_secs(10), |s| s["state"] == "degraded").await;
    redis.restart().await;
    let back = Instant::now();
    seed_all(&redis, "1").await;
    for ws in clients.iter_mut() {
        let up = ws.notification("permission.update").await;
        assert!(up["added"].to_string().contains("x1"), "{up}");
    }
    let all_updated = back.elapsed();
    let st = sync_status(&gw).await;
    println!(
        "resync after reconnect: {} users, gateway full resync {} ms; Redis back -> all {SESSIONS} sessions updated {:?} (includes the reconnect backoff)",
        st["lastFullSyncUsers"], st["lastFullSyncDurationMs"], all_updated
    );
}
