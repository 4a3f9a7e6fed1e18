//! State on an SD card: the gateway is SIGKILLed while it writes (bans over the admin API,
//! the audit log) and while `radiogate permissions set` writes the same database, then
//! restarted on the same state directory: everything that had been acknowledged is there
//! (bans, permissions, audit entries already committed), the database passes its integrity
//! check, and a second gateway on the same state directory is refused with a clear error.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{connect, token, Gateway};
use radiogate::access::role::Role;
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMITS: &str = "[limits]\nmessages_per_second = 10000\nmessage_burst = 10000\n";

fn db_path(gw: &Gateway) -> std::path::PathBuf {
    gw.dir.path().join("state").join("radiogate.db")
}

fn config_path(gw: &Gateway) -> std::path::PathBuf {
    gw.dir.path().join("radiogate.toml")
}

/// (largest id, count) of the audit rows committed so far, read by another connection.
fn audit_committed(db: &std::path::Path) -> (i64, i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(
        "SELECT coalesce(max(id), 0), count(*) FROM audit",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let mut gw = Gateway::start(LIMITS);
    let cfg = config_path(&gw);
    let db = db_path(&gw);
    let acked_bans = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let acked_perms = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mut audit_before_kill = Vec::new();

    for cycle in 0..3 {
        // Bans through the admin API, as fast as they are acknowledged, until the kill.
        let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
            .await
            .unwrap();
        let bans = Arc::clone(&acked_bans);
        let banner = tokio::spawn(async move {
            for i in 0.. {
                let user = format!("c{cycle}-u{i}");
                match admin
                    .call("admin.ban", json!({"userId": user, "reason": "test"}))
                    .await
                {
                    Ok(_) => {
                        bans.lock().unwrap().insert(user);
                    }
                    Err(_) => break,
                }
            }
        });
        // Meanwhile the CLI writes users' channels into the same database.
        let stop = Arc::new(AtomicBool::new(false));
        let perms = Arc::clone(&acked_perms);
        let (stop2, cfg2) = (Arc::clone(&stop), cfg.clone());
        let cli = std::thread::spawn(move || {
            let mut i = 0;
            while !stop2.load(Ordering::Relaxed) {
                let user = format!("c{cycle}-p{i}");
                let ok = Command::new(env!("CARGO_BIN_EXE_radiogate"))
                    .args(["permissions", "set", "--event", "ev1", "--user", &user])
                    .args(["--channel", "ops", "--config"])
                    .arg(&cfg2)
                    .output()
                    .expect("radiogate permissions")
                    .status
                    .success();
                if ok {
                    perms.lock().unwrap().insert(user);
                }
                i += 1;
            }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // What the audit writer has committed, then the kill while writes are in flight.
        audit_before_kill.push(audit_committed(&db));
        assert!(!banner.is_finished(), "ban writer stopped before the kill");
        gw = gw.restart();
        let _ = tokio::time::timeout(Duration::from_secs(10), banner).await;
        stop.store(true, Ordering::Relaxed);
        cli.join().unwrap();
        assert!(
            gw.logged("database integrity check ok"),
            "no integrity check at start"
        );
    }

    let bans = acked_bans.lock().unwrap().clone();
    let perms = acked_perms.lock().unwrap().clone();
    assert!(bans.len() > 30, "too few bans acknowledged: {}", bans.len());
    assert!(
        perms.len() > 3,
        "too few permission sets acknowledged: {}",
        perms.len()
    );

    // Every acknowledged ban is loaded by the restarted gateway and refuses the user.
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let listed: BTreeSet<String> = admin.call("admin.bans", json!({})).await.unwrap()["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["userId"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = bans.difference(&listed).collect();
    assert!(lost.is_empty(), "acknowledged bans lost: {lost:?}");
    let last = bans.iter().next_back().unwrap();
    let refused = connect(&gw, &token(last, Role::General, "ev1", &["ops"])).await;
    assert_eq!(refused.err().map(|e| e.0), Some(403));

    // Every acknowledged `permissions set`.
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(["permissions", "list", "--event", "ev1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let lost: Vec<_> = perms
        .iter()
        .filter(|u| {
            !listed
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == u.as_str()))
        })
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged permission sets lost: {lost:?}"
    );

    // Every audit row committed before each kill.
    let c = rusqlite::Connection::open(&db).unwrap();
    for (max_id, count) in audit_before_kill {
        let now: i64 = c
            .query_row("SELECT count(*) FROM audit WHERE id <= ?1", [max_id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(now, count, "audit rows up to id {max_id} lost");
    }
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[tokio::test]
async fn a_second_gateway_on_the_same_state_is_refused_clearly() {
    let gw = Gateway::start("");
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(["run", "--config"])
        .arg(config_path(&gw))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use by another radiogate") && err.contains("radiogate.lock"),
        "{err}"
    );
    // The first one still serves.
    assert_eq!(gw.http_get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_damaged_database_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = state.join("radiogate.db");
    std::fs::write(&db, vec![0x42; 16384]).unwrap();
    let cfg = dir.path().join("radiogate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n[auth]\nsecret = \"{}\"\n",
            state.display(),
            common::SECRET
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RADIOGATE_LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("database {} is damaged", db.display())) && err.contains(".recover"),
        "{err}"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let gw = Gateway::start("");
    let mut c = connect(&gw, &token("m", Role::General, "ev1", &["ops"]))
        .await
        .unwrap();
    // Registered once the channel list arrives.
    c.notification("channel.list").await;
    // Two timed floor requests (the holder asking again is granted again: idempotent).
    c.call("channel.join", json!({"channelId": "ops"}))
        .await
        .unwrap();
    c.call("floor.request", json!({"channelId": "ops"}))
        .await
        .unwrap();
    let _ = c.call("floor.request", json!({"channelId": "ops"})).await;
    let (status, body) = gw.http_get("/metrics").await;
    assert_eq!(status, 200);
    for want in [
        "# TYPE radiogate_sessions gauge",
        "radiogate_sessions 1",
        "radiogate_sessions_by_role{role=\"GENERAL\"} 1",
        "# TYPE radiogate_floors_granted_total counter",
        "radiogate_floors_denied_total 0",
        "radiogate_floors_revoked_total 0",
        "radiogate_rtp_packets_forwarded_total 0",
        "radiogate_rtp_bytes_forwarded_total 0",
        "radiogate_audit_dropped_total 0",
        "radiogate_permission_sync_state{state=\"standalone\"} 1",
        "radiogate_radio_ports ",
        "radiogate_build_info{version=",
        "radiogate_floors_granted_total 2",
        "radiogate_floor_requests_timed_total 2",
        "radiogate_floor_request_latency_seconds{quantile=\"0.99\"} ",
        "radiogate_channel_members{channel=\"ops\",event=\"ev1\"} 1",
        "radiogate_channel_talkers{channel=\"ops\",event=\"ev1\"} 1",
        "radiogate_webrtc_peers{ice_state=\"new\"} 0",
        "radiogate_webrtc_peers{ice_state=\"connected\"} 0",
    ] {
        assert!(body.contains(want), "missing {want:?} in\n{body}");
    }
    // Every sample line is `name{labels} value` with a number, every family typed.
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let family = name.split('{').next().unwrap();
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "untyped {family}"
        );
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
}
