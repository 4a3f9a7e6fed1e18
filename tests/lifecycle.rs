//! Process lifecycle: the CLI, graceful shutdown, and memory returning to its baseline after
//! many peer connections (webrtc-rs issue #906).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rtc_client::RtcClient;
use common::{connect, token, Gateway};
use radiogate::access::role::Role;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn radiogate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(args)
        .output()
        .expect("run radiogate")
}

#[test]
fn print_config_and_check_config() {
    let out = radiogate(&["print-config"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("time_out_timer_ms = 60000"));
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &text).unwrap();
    assert!(radiogate(&["check-config", good.to_str().unwrap()])
        .status
        .success());

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[channels]\nmax_users_per_channel = 0\n").unwrap();
    let out = radiogate(&["check-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("channels.max_users_per_channel"), "{err}");

    std::fs::write(&bad, "[floor]\ntot = 5\n").unwrap();
    let out = radiogate(&["check-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("tot"));
}

#[tokio::test]
async fn minted_token_is_accepted_by_the_gateway() {
    let gw = Gateway::start("");
    let cfg = gw.dir.path().join("radiogate.toml");
    let out = radiogate(&[
        "token",
        "--user",
        "u7",
        "--name",
        "Uma",
        "--role",
        "DISPATCH",
        "--event",
        "ev1",
        "--channel",
        "c1",
        "--channel",
        "c2",
        "--ttl",
        "1h",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = String::from_utf8(out.stdout).unwrap();
    let mut ws = connect(&gw, tok.trim()).await.expect("accepted");
    let list = ws.notification("channel.list").await;
    assert_eq!(list["role"], "DISPATCH");
    assert_eq!(list["name"], "Uma");
    assert_eq!(list["channels"].as_array().unwrap().len(), 2);
    let out = radiogate(&[
        "token", "--user", "u", "--name", "n", "--role", "BOSS", "--event", "e",
    ]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_floors_closes_sessions_with_1001_and_exits_0() {
    let mut gw = Gateway::start("");
    let mut a = connect(&gw, &token("a", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut b = connect(&gw, &token("b", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    a.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    b.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    a.call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    b.notification("floor.taken").await;
    let started = std::time::Instant::now();
    gw.sigterm();
    b.notification("floor.idle").await;
    let (code, reason) = a.wait_closed().await;
    assert_eq!(code, Some(1001));
    assert!(reason.contains("shutting down"), "{reason}");
    assert_eq!(b.wait_closed().await.0, Some(1001));
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .expect("exited within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(gw.logged("shutdown complete"));
}

/// Connects, negotiates and closes `n` peers one after another.
async fn churn(gw: &Gateway, n: usize) {
    for i in 0..n {
        let mut ws = connect(gw, &token(&format!("p{i}"), Role::General, "ev1", &["c1"]))
            .await
            .unwrap();
        let rtc = RtcClient::connect(&mut ws, 2).await;
        ws.call("channel.join", json!({"channelId": "c1"}))
            .await
            .unwrap();
        rtc.close().await;
        ws.close();
        ws.wait_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_to_baseline_after_200_peers() {
    let gw = Gateway::start("");
    // Warm up allocator arenas and lazily initialised state, then take the baseline.
    churn(&gw, 20).await;
    let baseline = gw.rss_kib();
    churn(&gw, 200).await;
    // Freed connections are released by background tasks; wait (bounded) for RSS to settle.
    let limit = baseline + 4 * 1024;
    let mut rss = gw.rss_kib();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rss > limit && std::time::Instant::now() < deadline {
        let (_, _) = gw.http_get("/healthz").await;
        rss = gw.rss_kib();
    }
    eprintln!("RSS baseline {baseline} KiB, after 200 peers {rss} KiB");
    assert!(
        rss <= limit,
        "RSS grew from {baseline} KiB to {rss} KiB after 200 closed peers"
    );
    let (_, body) = gw.http_get("/healthz").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sessions"], 0);
}
