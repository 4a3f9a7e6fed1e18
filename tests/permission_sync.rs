//! Permission sync from the control plane's Redis (issue 5): a real `redis-server` on a free
//! loopback port, the real gateway binary and real signaling sessions.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis_server::{
    count_logged, redis_toml, start_gateway_in, sync_status, wait_logged, wait_sync, RedisServer,
};
use common::{connect, token, Gateway, WsClient, WAIT};
use radiogate::access::role::Role;
use serde_json::{json, Value};
use std::time::Duration;

fn set_payload(event: &str, user: &str, channels: &[&str]) -> String {
    json!({"eventId": event, "userId": user, "channelIds": channels,
           "action": "set_user_channels"})
    .to_string()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string id").to_string())
        .collect()
}

fn listed(list: &Value) -> Vec<String> {
    list["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["channelId"].as_str().expect("id").to_string())
        .collect()
}

async fn seed(redis: &RedisServer, user: &str, channels: &[&str]) {
    let key = format!("u.{user}.g");
    redis.cmd(&["DEL", &key]).await;
    if !channels.is_empty() {
        let mut args = vec!["SADD", key.as_str()];
        args.extend_from_slice(channels);
        redis.cmd(&args).await;
    }
}

async fn connected_gateway(redis: &RedisServer, refresh_ms: u64, extra: &str) -> Gateway {
    let gw = Gateway::start(&format!("{}{extra}", redis_toml(redis, refresh_ms)));
    wait_sync(&gw, WAIT, |s| {
        s["state"] == "connected" && !s["lastFullSyncMs"].is_null()
    })
    .await;
    gw
}

async fn session(
    gw: &Gateway,
    user: &str,
    role: Role,
    token_channels: &[&str],
) -> (WsClient, Value) {
    let mut ws = connect(gw, &token(user, role, "ev1", token_channels))
        .await
        .expect("connect");
    let list = ws.notification("channel.list").await;
    (ws, list)
}

#[tokio::test]
async fn publish_reaches_every_session_added_joinable_removed_left() {
    let redis = RedisServer::start().await;
    redis
        .cmd(&[
            "HSET",
            "channel:events",
            "c1",
            "ev1",
            "c2",
            "ev1",
            "x9",
            "ev2",
        ])
        .await;
    seed(&redis, "alice", &["c1", "x9"]).await;
    let gw = connected_gateway(&redis, 60_000, "").await;

    // Redis is the authority: the token's channels are not used; x9 is another event's.
    let (mut a1, list) = session(&gw, "alice", Role::General, &["zz"]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    let (mut a2, _) = session(&gw, "alice", Role::General, &[]).await;
    a1.call("channel.join", json!({"channelId": "c1"}))
        .await
        .expect("join c1");
    let denied = a1
        .call("channel.join", json!({"channelId": "c2"}))
        .await
        .unwrap_err();
    assert_eq!(denied["data"]["type"], "PERMISSION_DENIED");
    // A transmission on c1 (no audio needed: the spurt is recorded from the grant on), which
    // alice may replay while c1 is hers (issue 14: the same permissions as listening).
    a1.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("floor");
    a1.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("release");
    let id = common::finished_recordings(&mut a1, "c1", 1).await[0]["id"]
        .as_i64()
        .expect("recording id");
    let alice_token = token("alice", Role::General, "ev1", &["zz"]);
    let file = format!("/recordings/{id}.opus?token={alice_token}");
    assert_eq!(gw.http_get(&file).await.0, 200, "alice may play it");

    redis.publish(&set_payload("ev1", "alice", &["c2"])).await;
    for ws in [&mut a1, &mut a2] {
        let up = ws.notification("permission.update").await;
        assert_eq!(ids(&up["added"]), vec!["c2"], "{up}");
        assert_eq!(ids(&up["removed"]), vec!["c1"], "{up}");
        assert_eq!(ids(&up["channels"]), vec!["c2"], "{up}");
        assert!(ids(&up["pending"]).is_empty(), "{up}");
    }
    // a1 had joined c1: it is made to leave and told.
    let removed = a1.notification("channel.removed").await;
    assert_eq!(removed["channelId"], "c1");
    assert_eq!(removed["reason"], "PERMISSION_REVOKED");
    assert_eq!(removed["deferred"], false);
    // c1 revoked: its recordings are refused too.
    let e = a1
        .call("recording.list", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "PERMISSION_DENIED", "{e}");
    assert_eq!(
        gw.http_get(&file).await.0,
        403,
        "the file of a revoked channel"
    );
    let err = a1
        .call("channel.leave", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["type"], "NOT_A_MEMBER");
    // the added channel can be joined at once; the removed one cannot
    a1.call("channel.join", json!({"channelId": "c2"}))
        .await
        .expect("join c2");
    let err = a2
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["type"], "PERMISSION_DENIED");
    let l = a2.call("channel.list", json!({})).await.unwrap();
    assert_eq!(listed(&l), vec!["c2"]);
    // written through to SQLite: visible to `radiogate permissions list`
    let st = sync_status(&gw).await;
    assert!(st["updatesApplied"].as_u64().unwrap() >= 1, "{st}");
}

/// An update applied while a user is connecting (after the gateway read the user's channels,
/// before the session registered to receive updates) still reaches the session at once, not
/// at the next heartbeat refresh (10 minutes here). The publish is fired at varying points of
/// the connect so that some land inside that window.
#[tokio::test]
async fn update_during_connect_is_not_lost() {
    let redis = RedisServer::start().await;
    let gw = connected_gateway(&redis, 600_000, "").await;
    for i in 0..100u64 {
        let user = format!("racer{i}");
        seed(&redis, &user, &["a"]).await;
        let tok = token(&user, Role::General, "ev1", &[]);
        let (ws, ()) = tokio::join!(connect(&gw, &tok), async {
            for _ in 0..(i % 8) {
                tokio::task::yield_now().await;
            }
            seed(&redis, &user, &["b"]).await;
            redis.publish(&set_payload("ev1", &user, &["b"])).await;
        });
        let mut ws = ws.expect("connect");
        let list = ws.notification("channel.list").await;
        wait_sync(&gw, WAIT, |s| {
            s["updatesApplied"].as_u64().is_some_and(|n| n > i)
        })
        .await;
        // The session ends up with the updated list: either it read it at connect or it is
        // told (waiting on the notification fails the test after WAIT if it never comes).
        let mut now = listed(&list);
        while now != ["b"] {
            let up = ws.notification("permission.update").await;
            now = ids(&up["channels"]);
        }
    }
}

#[tokio::test]
async fn floor_holder_keeps_talking_until_release_or_revoke() {
    let redis = RedisServer::start().await;
    seed(&redis, "alice", &["c1", "c3"]).await;
    seed(&redis, "bob", &["c1", "c3"]).await;
    let gw = connected_gateway(&redis, 60_000, "").await;
    let (mut alice, _) = session(&gw, "alice", Role::General, &[]).await;
    let (mut bob, _) = session(&gw, "bob", Role::Dispatch, &[]).await;
    for ch in ["c1", "c3"] {
        alice
            .call("channel.join", json!({"channelId": ch}))
            .await
            .unwrap();
        bob.call("channel.join", json!({"channelId": ch}))
            .await
            .unwrap();
    }

    // 1. released: alice talks on c1, loses c1, keeps talking, releases, then loses it.
    alice
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    bob.notification("floor.taken").await;
    redis.publish(&set_payload("ev1", "alice", &["c3"])).await;
    let up = alice.notification("permission.update").await;
    assert_eq!(ids(&up["removed"]), vec!["c1"]);
    assert_eq!(ids(&up["pending"]), vec!["c1"], "pending flag first: {up}");
    assert_eq!(ids(&up["channels"]), vec!["c3"]);
    // still the talker and still a member
    let again = alice
        .call("floor.request", json!({"channelId": "c1"}))
        .await;
    assert!(again.is_ok(), "holder keeps the floor: {again:?}");
    assert!(!alice.has_pending("channel.removed"));
    alice
        .call("floor.release", json!({"channelId": "c1"}))
        .await
        .unwrap();
    assert_eq!(bob.notification("floor.idle").await["channelId"], "c1");
    let removed = alice.notification("channel.removed").await;
    assert_eq!(removed["channelId"], "c1");
    assert_eq!(removed["deferred"], true);
    let err = alice
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["type"], "NOT_A_MEMBER");

    // 2. revoked: alice talks on c3, loses c3 (pending), Dispatch bob pre-empts her.
    alice
        .call("floor.request", json!({"channelId": "c3"}))
        .await
        .expect("granted");
    redis.publish(&set_payload("ev1", "alice", &[])).await;
    let up = alice.notification("permission.update").await;
    assert_eq!(ids(&up["pending"]), vec!["c3"], "{up}");
    bob.call("floor.priority_request", json!({"channelId": "c3"}))
        .await
        .expect("pre-empts");
    let rv = alice.notification("floor.revoke").await;
    assert_eq!(rv["reason"], "PRE_EMPTED");
    let removed = alice.notification("channel.removed").await;
    assert_eq!(removed["channelId"], "c3");
    assert_eq!(removed["deferred"], true);
    let l = alice.call("channel.list", json!({})).await.unwrap();
    assert!(listed(&l).is_empty(), "{l}");
}

#[tokio::test]
async fn heartbeat_refresh_catches_a_change_without_publish() {
    let redis = RedisServer::start().await;
    seed(&redis, "alice", &["c1"]).await;
    let gw = connected_gateway(&redis, 300, "").await;
    let (mut alice, list) = session(&gw, "alice", Role::General, &[]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    redis.cmd(&["SADD", "u.alice.g", "c2"]).await;
    redis.cmd(&["SREM", "u.alice.g", "c1"]).await;
    let up = alice.notification("permission.update").await;
    assert_eq!(ids(&up["channels"]), vec!["c2"], "{up}");
    assert_eq!(ids(&up["added"]), vec!["c2"]);
    assert_eq!(ids(&up["removed"]), vec!["c1"]);
    alice
        .call("channel.join", json!({"channelId": "c2"}))
        .await
        .expect("join");
    let st = sync_status(&gw).await;
    assert!(st["usersChangedByRefresh"].as_u64().unwrap() >= 1, "{st}");
}

#[tokio::test]
async fn outage_keeps_sessions_working_and_reconnect_applies_changes() {
    let mut redis = RedisServer::start().await;
    seed(&redis, "alice", &["c1", "c2"]).await;
    seed(&redis, "bob", &["c1"]).await;
    seed(&redis, "dave", &["c1"]).await;
    let gw = connected_gateway(&redis, 60_000, "").await;
    let (mut alice, _) = session(&gw, "alice", Role::General, &[]).await;
    let (mut bob, _) = session(&gw, "bob", Role::General, &[]).await;
    let (dave, _) = session(&gw, "dave", Role::General, &[]).await;
    dave.close();
    alice
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    bob.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();

    redis.kill();
    let st = wait_sync(&gw, WAIT, |s| s["state"] == "degraded").await;
    assert!(st["degradedSinceMs"].as_u64().is_some(), "{st}");
    // connected users keep talking and can still join their permitted channels
    alice
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    assert_eq!(
        bob.notification("floor.taken").await["talker"]["userId"],
        "alice"
    );
    alice
        .call("floor.release", json!({"channelId": "c1"}))
        .await
        .unwrap();
    bob.notification("floor.idle").await;
    alice
        .call("channel.join", json!({"channelId": "c2"}))
        .await
        .expect("join from SQLite copy");
    // a new user with a valid token connects (token channels: never seen before)
    let (mut carol, list) = session(&gw, "carol", Role::General, &["c1"]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    carol
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .expect("carol joins");
    // a known user gets the SQLite copy, not the token
    let (_dave2, list) = session(&gw, "dave", Role::General, &["c7"]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    // retries do not log again
    wait_sync(&gw, Duration::from_secs(15), |s| {
        s["reconnectAttempts"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(count_logged(&gw, "permission sync degraded"), 1);

    // Redis comes back on the same port with changed data
    redis.restart().await;
    seed(&redis, "alice", &["c1", "c3"]).await;
    seed(&redis, "bob", &["c1"]).await;
    seed(&redis, "carol", &["c1", "c4"]).await;
    seed(&redis, "dave", &["c5"]).await;
    // within the backoff (attempt 3: 4 s ±10 %, attempt 4: 8 s)
    let st = wait_sync(&gw, Duration::from_secs(20), |s| s["state"] == "connected").await;
    assert_eq!(st["reconnectAttempts"], 0);
    let up = alice.notification("permission.update").await;
    assert_eq!(ids(&up["added"]), vec!["c3"], "{up}");
    assert_eq!(ids(&up["removed"]), vec!["c2"], "{up}");
    assert_eq!(
        alice.notification("channel.removed").await["channelId"],
        "c2"
    );
    let up = carol.notification("permission.update").await;
    assert_eq!(ids(&up["channels"]), vec!["c1", "c4"], "{up}");
    wait_logged(&gw, "permission sync reconnected to Redis").await;
    wait_logged(&gw, "permission full resync done").await;
    assert!(
        !bob.has_pending("permission.update"),
        "bob unchanged, not told"
    );
    let st = wait_sync(&gw, WAIT, |s| {
        !s["lastFullSyncMs"].is_null() && s["lastFullSyncUsers"].as_u64() >= Some(4)
    })
    .await;
    assert!(st["degradedSinceMs"].is_null(), "{st}");
}

#[tokio::test]
async fn restarted_while_redis_is_down_serves_the_last_seen_permissions() {
    let mut redis = RedisServer::start().await;
    seed(&redis, "alice", &["c1"]).await;
    let state = tempfile::tempdir().unwrap();
    let toml = redis_toml(&redis, 60_000);
    let mut gw = start_gateway_in(state.path(), &toml);
    wait_sync(&gw, WAIT, |s| {
        s["state"] == "connected" && !s["lastFullSyncMs"].is_null()
    })
    .await;
    let (alice, list) = session(&gw, "alice", Role::General, &["tok"]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    redis
        .publish(&set_payload("ev1", "alice", &["c1", "c2"]))
        .await;
    // an update for a user with no session is recorded too
    redis.publish(&set_payload("ev1", "erin", &["c5"])).await;
    wait_logged(&gw, "user=erin").await;
    drop(alice);
    gw.sigterm();
    assert!(gw.wait_exit(WAIT).is_some(), "gateway exits on SIGTERM");
    redis.kill();

    let gw = start_gateway_in(state.path(), &toml);
    wait_sync(&gw, WAIT, |s| s["state"] == "degraded").await;
    let (mut alice, list) = session(&gw, "alice", Role::General, &["tok"]).await;
    assert_eq!(listed(&list), vec!["c1", "c2"]);
    alice
        .call("channel.join", json!({"channelId": "c2"}))
        .await
        .expect("join c2");
    let err = alice
        .call("channel.join", json!({"channelId": "tok"}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["type"], "PERMISSION_DENIED");
    let (_erin, list) = session(&gw, "erin", Role::General, &["tok"]).await;
    assert_eq!(listed(&list), vec!["c5"]);
}

#[tokio::test]
async fn malformed_payloads_are_logged_and_skipped() {
    let redis = RedisServer::start().await;
    seed(&redis, "alice", &["c1"]).await;
    seed(&redis, "bob", &["c1"]).await;
    let gw = connected_gateway(&redis, 400, "").await;
    let (mut alice, _) = session(&gw, "alice", Role::General, &[]).await;
    let (mut bob, _) = session(&gw, "bob", Role::General, &[]).await;
    let bad = [
        "not json at all",
        "[1,2,3]",
        r#"{"userId":"alice","channelIds":["c9"],"action":"set_user_channels"}"#,
        r#"{"eventId":"ev1","channelIds":["c9"],"action":"set_user_channels"}"#,
        r#"{"eventId":"ev1","userId":"alice","channelIds":"c9","action":"set_user_channels"}"#,
        r#"{"eventId":"ev1","userId":"alice","channelIds":[9],"action":"set_user_channels"}"#,
        r#"{"eventId":"ev1","userId":["alice"],"channelIds":["c9"],"action":"set_user_channels"}"#,
        r#"{"eventId":"ev1","userId":"alice","channelIds":["c9"],"action":"grant_everything"}"#,
    ];
    for p in bad {
        redis.publish(p).await;
    }
    // unknown user: recorded, nobody told
    redis
        .publish(&set_payload("ev1", "nobody-here", &["c9"]))
        .await;
    // a key of the wrong Redis type, read by resync_user and by the heartbeat
    redis.cmd(&["DEL", "u.bob.g"]).await;
    redis.cmd(&["SET", "u.bob.g", "c1,c2"]).await;
    redis
        .publish(&json!({"eventId": "ev1", "userId": "bob", "action": "resync_user"}).to_string())
        .await;
    wait_logged(&gw, "resync_user skipped").await;
    wait_logged(&gw, "permission key skipped").await;
    // a later good update still applies
    redis
        .publish(&set_payload("ev1", "alice", &["c1", "c2"]))
        .await;
    let up = alice.notification("permission.update").await;
    assert_eq!(
        ids(&up["added"]),
        vec!["c2"],
        "the good update, nothing from the bad ones: {up}"
    );
    assert_eq!(
        count_logged(&gw, "malformed membership update skipped"),
        bad.len()
    );
    assert!(gw.logged("user=nobody-here"));
    let st = sync_status(&gw).await;
    assert_eq!(st["state"], "connected");
    assert!(
        st["updatesSkipped"].as_u64().unwrap() > bad.len() as u64,
        "{st}"
    );
    // bob kept his channels despite the broken key
    assert!(!bob.has_pending("permission.update"));
    bob.call("channel.join", json!({"channelId": "c1"}))
        .await
        .expect("bob keeps c1");
}

/// Makes a CA and a server certificate for localhost/127.0.0.1 with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (tests/setup-debian.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=radiogate-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

#[tokio::test]
async fn tls_with_acl_user_and_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let tls_port = common::free_port();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let redis = RedisServer::start_with(&[
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        p("srv.pem"),
        "--tls-key-file".into(),
        p("srv.key"),
        "--tls-ca-cert-file".into(),
        p("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ])
    .await;
    redis
        .cmd(&[
            "ACL",
            "SETUSER",
            "gw",
            "on",
            ">gw-pass-123",
            "~u.*.g",
            "~channel:events",
            "&vp:membership_updates",
            "+smembers",
            "+hmget",
            "+subscribe",
            "+ping",
        ])
        .await;
    seed(&redis, "alice", &["c1"]).await;
    let toml = |pass: &str| {
        format!(
            "[redis]\nurl = \"rediss://gw:{pass}@localhost:{tls_port}\"\nca_file = \"{}\"\n\
             refresh_interval_ms = 60000\nconnect_timeout_ms = 2000\n",
            p("ca.pem")
        )
    };
    let gw = Gateway::start(&toml("gw-pass-123"));
    wait_sync(&gw, WAIT, |s| s["state"] == "connected").await;
    assert!(
        gw.logged("url=rediss://gw:***@localhost"),
        "password redacted in logs"
    );
    assert!(!gw
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("gw-pass-123")));
    let (mut alice, list) = session(&gw, "alice", Role::General, &[]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    redis
        .publish(&set_payload("ev1", "alice", &["c1", "c2"]))
        .await;
    let up = alice.notification("permission.update").await;
    assert_eq!(ids(&up["added"]), vec!["c2"]);

    // a wrong password never connects: degraded, with the reason
    let bad = Gateway::start(&toml("wrong-pass"));
    let st = wait_sync(&bad, WAIT, |s| s["state"] == "degraded").await;
    assert!(!st["lastError"].is_null(), "{st}");
}

fn permissions_cli(cfg: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .arg("permissions")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .expect("run radiogate permissions");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn standalone_cli_sets_channels_and_live_sessions_follow() {
    let gw = Gateway::start("[redis]\nrefresh_interval_ms = 300\n");
    let st = sync_status(&gw).await;
    assert_eq!(st["state"], "standalone");
    let cfg = gw.dir.path().join("radiogate.toml");
    // standalone default: the token's channels, recorded at connect
    let (mut alice, list) = session(&gw, "alice", Role::General, &["c1"]).await;
    assert_eq!(listed(&list), vec!["c1"]);
    let (ok, out, _) = permissions_cli(&cfg, &["list", "--event", "ev1"]);
    assert!(ok);
    assert_eq!(out.trim(), "ev1\talice\ttoken\tc1");
    // a site admin sets alice's channels: the live session follows within the refresh
    let (ok, out, err) = permissions_cli(
        &cfg,
        &[
            "set",
            "--event",
            "ev1",
            "--user",
            "alice",
            "--channel",
            "c2",
            "--channel",
            "c3",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ev1\talice\tlocal\tc2,c3");
    let up = alice.notification("permission.update").await;
    assert_eq!(ids(&up["channels"]), vec!["c2", "c3"], "{up}");
    // and wins over the token at the next connect
    let (_a2, list) = session(&gw, "alice", Role::General, &["c1"]).await;
    assert_eq!(listed(&list), vec!["c2", "c3"]);
    // clear: the token applies again
    let (ok, out, _) = permissions_cli(&cfg, &["clear", "--event", "ev1", "--user", "alice"]);
    assert!(ok);
    assert_eq!(out.trim(), "cleared");
    let (_a3, list) = session(&gw, "alice", Role::General, &["c9"]).await;
    assert_eq!(listed(&list), vec!["c9"]);
    // the channels of an event
    let (ok, _, _) = permissions_cli(
        &cfg,
        &[
            "event-set",
            "--event",
            "ev1",
            "--channel",
            "c1",
            "--channel",
            "c2",
        ],
    );
    assert!(ok);
    let (ok, out, _) = permissions_cli(&cfg, &["event-list", "--event", "ev1"]);
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["c1", "c2"]);
    // bad input is refused with a reason
    let (ok, _, err) = permissions_cli(&cfg, &["set", "--event", "", "--user", "x"]);
    assert!(!ok);
    assert!(err.contains("event"), "{err}");
}
