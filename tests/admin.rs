//! Admin control, bans, the audit log and abuse limits over the real protocol (spec notes
//! 000, 002, 004).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{connect, token, Gateway};
use radiogate::access::role::Role;
use radiogate::audit::Action;
use radiogate::signaling::methods::METHODS;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_method_as_every_role_matches_the_matrix() {
    let gw = Gateway::start("[limits]\nmessages_per_second = 1000\nmessage_burst = 1000\n");
    for role in Role::ALL {
        let mut ws = connect(&gw, &token(&format!("u-{role}"), role, "ev1", &["c1"]))
            .await
            .unwrap();
        ws.notification("channel.list").await;
        for (method, roles) in METHODS {
            // Params that are wrong on purpose: an allowed method then fails on params (or
            // succeeds), never with PERMISSION_DENIED / METHOD_NOT_FOUND.
            let r = ws.call(method, json!({"bogus": true})).await;
            let kind = r
                .as_ref()
                .err()
                .and_then(|e| e["data"]["type"].as_str().map(String::from));
            if roles.contains(&role) {
                assert!(
                    !matches!(
                        kind.as_deref(),
                        Some("PERMISSION_DENIED") | Some("METHOD_NOT_FOUND")
                    ),
                    "{role} {method}: {r:?}"
                );
            } else {
                assert_eq!(
                    kind.as_deref(),
                    Some("PERMISSION_DENIED"),
                    "{role} {method}"
                );
            }
        }
        let e = ws.call("admin.nothing", json!({})).await.unwrap_err();
        assert_eq!(e["data"]["type"], "METHOD_NOT_FOUND");
    }
}

#[tokio::test]
async fn bans_refuse_kick_and_survive_restart() {
    let gw = Gateway::start("");
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let mut eve = connect(&gw, &token("eve", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    eve.notification("channel.list").await;
    let r = admin
        .call("admin.ban", json!({"userId": "eve", "reason": "abuse"}))
        .await
        .unwrap();
    assert_eq!(r["disconnected"], 1);
    let (code, reason) = eve.wait_closed().await;
    assert_eq!(code, Some(4003));
    assert!(reason.contains("Account is suspended"), "{reason}");
    let err = connect(&gw, &token("eve", Role::General, "ev1", &["c1"]))
        .await
        .err()
        .unwrap();
    assert_eq!(err, (403, "Account is suspended".to_string()));

    let gw = gw.restart();
    let err = connect(&gw, &token("eve", Role::General, "ev1", &["c1"]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.0, 403, "ban survives restart");
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    assert_eq!(
        admin.call("admin.bans", json!({})).await.unwrap()["bans"][0]["userId"],
        "eve"
    );
    assert_eq!(
        admin
            .call("admin.unban", json!({"userId": "eve"}))
            .await
            .unwrap()["unbanned"],
        true
    );
    connect(&gw, &token("eve", Role::General, "ev1", &["c1"]))
        .await
        .expect("unbanned");
}

#[tokio::test]
async fn force_disconnect_by_user_and_by_device() {
    let gw = Gateway::start("");
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let mut u1a = connect(&gw, &token("u1", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let mut u1b = connect(&gw, &token("u1", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let mut other = connect(&gw, &token("u2", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let dev_tok = |n: &str| {
        let now = radiogate::clock::unix_secs();
        radiogate::access::token::TokenMinter::new(&radiogate::access::token::KeyMaterial::Hs256 {
            secret: common::SECRET.as_bytes().to_vec(),
        })
        .unwrap()
        .mint(&radiogate::access::token::Claims {
            sub: format!("radio-{n}"),
            name: "Radio".into(),
            event: "ev1".into(),
            role: Role::General,
            channels: vec![],
            device: Some("box-7".into()),
            link: None,
            iat: now,
            exp: now + 600,
        })
        .unwrap()
    };
    let mut d1 = connect(&gw, &dev_tok("a")).await.unwrap();
    let mut d2 = connect(&gw, &dev_tok("b")).await.unwrap();
    for c in [&mut u1a, &mut u1b, &mut other, &mut d1, &mut d2] {
        c.notification("channel.list").await;
    }
    let conns = admin.call("admin.connections", json!({})).await.unwrap();
    assert_eq!(conns["connections"].as_array().unwrap().len(), 6, "{conns}");
    let r = admin
        .call(
            "admin.disconnect",
            json!({"userId": "u1", "reason": "shift over"}),
        )
        .await
        .unwrap();
    assert_eq!(r["disconnected"], 2);
    for c in [&mut u1a, &mut u1b] {
        assert_eq!(
            c.wait_closed().await,
            (Some(4003), "shift over".to_string())
        );
    }
    let r = admin
        .call("device.revoke", json!({"deviceId": "box-7"}))
        .await
        .unwrap();
    assert_eq!(r["disconnected"], 2);
    for c in [&mut d1, &mut d2] {
        assert_eq!(c.wait_closed().await.0, Some(4003));
    }
    // The others are untouched.
    other.call("session.ping", json!({})).await.unwrap();
    let st = admin.call("admin.status", json!({})).await.unwrap();
    assert_eq!(st["hub"]["connectionsByRole"]["ADMIN"], 1);
    assert_eq!(st["hub"]["connectionsByRole"]["GENERAL"], 1);
    assert!(st["version"].is_string());
    let e = admin
        .call("admin.disconnect", json!({"userId": "x", "deviceId": "y"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "INVALID_PARAMS");
}

#[tokio::test]
async fn every_audit_action_appears() {
    let gw = Gateway::start(
        "[limits]\nmessages_per_second = 20\nmessage_burst = 20\nmessage_strikes = 1\n\
         [dispatch]\nbroadcast_hold_ms = 500\n[floor]\ntime_out_timer_ms = 1000\n",
    );
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    // AUTH_FAILURE
    assert!(connect(&gw, "bad.token.here").await.is_err());
    let mut g = connect(&gw, &token("g", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut d = connect(&gw, &token("d", Role::Dispatch, "ev1", &["c1"]))
        .await
        .unwrap();
    g.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    d.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    let _ = g.call("channel.join", json!({"channelId": "nope"})).await; // JOIN_DENIED
    g.call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap(); // GRANTED
    let _ = admin
        .call("floor.request", json!({"channelId": "c1"}))
        .await; // not a member
    d.call("floor.priority_request", json!({"channelId": "c1"}))
        .await
        .unwrap(); // PREEMPTED
    let _ = g.call("floor.request", json!({"channelId": "c1"})).await; // DENIED
    d.call("floor.release", json!({"channelId": "c1"}))
        .await
        .unwrap(); // RELEASED
    g.call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    g.notification("floor.revoke").await; // REVOKED by the time-out timer
    let _ = g.call("broadcast.arm", json!({})).await; // PERMISSION_DENIED
    d.call("broadcast.arm", json!({})).await.unwrap();
    let t = Instant::now();
    tokio::time::sleep_until((t + Duration::from_millis(550)).into()).await;
    d.call("broadcast.start", json!({})).await.unwrap();
    d.call("broadcast.stop", json!({})).await.unwrap();
    g.call("channel.leave", json!({"channelId": "c1"}))
        .await
        .unwrap(); // LEAVE
                   // PERMISSION_CHANGE: the same user comes back with other channels in the token.
    let _g2 = connect(&gw, &token("g", Role::General, "ev1", &["c1", "c2"]))
        .await
        .unwrap();
    admin
        .call("admin.ban", json!({"userId": "zed"}))
        .await
        .unwrap();
    admin
        .call("admin.unban", json!({"userId": "zed"}))
        .await
        .unwrap();
    admin
        .call(
            "admin.issueLink",
            json!({"userId": "late", "role": "GENERAL", "channels": ["c1"]}),
        )
        .await
        .unwrap(); // TOKEN_ISSUED
    g.call("session.renew", json!({})).await.unwrap(); // TOKEN_RENEWED
                                                       // RECORDING_DELETED: the spurts above were recorded (no media: silent files). Polled 10
                                                       // times a second, within this test's message rate.
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut first = None;
    for _ in 0..50 {
        poll.tick().await;
        let r = admin.call("admin.recordings", json!({})).await.unwrap();
        first = r["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| !x["ended"].is_null())
            .map(|x| x["id"].clone());
        if first.is_some() {
            break;
        }
    }
    admin
        .call(
            "admin.recording_delete",
            json!({"id": first.expect("a recording")}),
        )
        .await
        .unwrap();
    admin
        .call("admin.disconnect", json!({"userId": "d"}))
        .await
        .unwrap(); // FORCE, DISCONNECT
                   // RATE_LIMITED: a burst over the session's rate.
    let mut f = connect(&gw, &token("flood", Role::General, "ev1", &[]))
        .await
        .unwrap();
    for _ in 0..60 {
        f.send_text(r#"{"jsonrpc":"2.0","method":"session.ping"}"#);
    }
    assert_eq!(f.wait_closed().await.0, Some(1008));
    d.wait_closed().await;

    let wanted: BTreeSet<String> = Action::ALL.iter().map(|a| a.name()).collect();
    let mut seen = BTreeSet::new();
    // The writer is asynchronous: poll (bounded, 10 per second to stay within the rate).
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..50 {
        poll.tick().await;
        let r = admin
            .call("admin.audit", json!({"limit": 1000}))
            .await
            .unwrap();
        seen = r["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect();
        if wanted.is_subset(&seen) {
            break;
        }
    }
    let missing: Vec<_> = wanted.difference(&seen).collect();
    assert!(missing.is_empty(), "audit actions missing: {missing:?}");
    // Filters work.
    let r = admin
        .call("admin.audit", json!({"userId": "zed", "action": "BAN"}))
        .await
        .unwrap();
    assert_eq!(r["entries"].as_array().unwrap().len(), 1);
    assert_eq!(r["entries"][0]["actor"], "root");
}

#[tokio::test]
async fn connection_rate_and_failed_auth_backoff() {
    let gw = Gateway::start("[limits]\nconnections_per_minute = 5\nauth_failures = 2\n");
    // Failed authentications: 2 free, the 3rd starts a 1 s block for failed attempts.
    for _ in 0..3 {
        assert_eq!(connect(&gw, "x.y.z").await.err().unwrap().0, 401);
    }
    let (status, body) = connect(&gw, "x.y.z").await.err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("retry after 1 s"), "{body}");
    // Only failures are slowed: a valid token from the same address connects (issue 13).
    let ok = connect(&gw, &token("u", Role::General, "ev1", &[])).await;
    assert!(ok.is_ok(), "{:?}", ok.err());

    // Unauthenticated attempts per address: 5 per minute, then 429; a valid token still
    // connects (it counts against its user, not the address).
    let gw = Gateway::start("[limits]\nconnections_per_minute = 5\nauth_failures = 100\n");
    for _ in 0..5 {
        assert_eq!(connect(&gw, "x.y.z").await.err().unwrap().0, 401);
    }
    let (status, body) = connect(&gw, "x.y.z").await.err().unwrap();
    assert_eq!(status, 429);
    assert!(
        body.contains("too many connections from this address"),
        "{body}"
    );
    let ok = connect(&gw, &token("u", Role::General, "ev1", &[])).await;
    assert!(ok.is_ok(), "{:?}", ok.err());

    // Authenticated connects per user.
    let gw = Gateway::start("[limits]\nuser_connections_per_minute = 2\n");
    let _a = connect(&gw, &token("u", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let _b = connect(&gw, &token("u", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let (status, body) = connect(&gw, &token("u", Role::General, "ev1", &[]))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 429);
    assert!(
        body.contains("too many connections for this user"),
        "{body}"
    );
    assert!(connect(&gw, &token("v", Role::General, "ev1", &[]))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_message_flood_is_closed_and_does_not_slow_other_floor_grants() {
    // The talker's 100 calls must stay within its own rate; the flooder's 5000 do not.
    let gw = Gateway::start("[limits]\nmessages_per_second = 200\nmessage_burst = 200\n");
    let mut flooder = connect(&gw, &token("f", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut talker = connect(&gw, &token("t", Role::General, "ev1", &["c2"]))
        .await
        .unwrap();
    talker
        .call("channel.join", json!({"channelId": "c2"}))
        .await
        .unwrap();
    flooder.notification("channel.list").await;
    let flood = tokio::spawn(async move {
        for i in 0..5000 {
            flooder.send_text(&format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"channel.list"}}"#
            ));
        }
        flooder.wait_closed().await
    });
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let t0 = Instant::now();
        talker
            .call("floor.request", json!({"channelId": "c2"}))
            .await
            .unwrap();
        worst = worst.max(t0.elapsed());
        talker
            .call("floor.release", json!({"channelId": "c2"}))
            .await
            .unwrap();
    }
    let (code, _) = flood.await.unwrap();
    assert_eq!(code, Some(1008), "flooder closed for policy violation");
    eprintln!("worst floor grant during the flood: {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "grant took {worst:?} during a flood"
    );
}

#[tokio::test]
async fn an_admin_cannot_disconnect_or_ban_itself_and_rows_act_on_one_connection() {
    let gw = Gateway::start("");
    let mut me = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let mut my_phone = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let mut u_a = connect(&gw, &token("u1", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let mut u_b = connect(&gw, &token("u1", Role::General, "ev1", &[]))
        .await
        .unwrap();
    let my_id = me.notification("channel.list").await["connId"].clone();
    let phone_id = my_phone.notification("channel.list").await["connId"].clone();
    let a_id = u_a.notification("channel.list").await["connId"].clone();
    u_b.notification("channel.list").await;

    // One row, one connection: the user's other session stays.
    let r = admin_ok(&mut me, "admin.disconnect", json!({"connId": a_id})).await;
    assert_eq!(r["disconnected"], 1);
    assert_eq!(u_a.wait_closed().await.0, Some(4003));
    u_b.call("session.ping", json!({})).await.unwrap();

    // Not itself: by its own connection or by its own user id.
    for params in [json!({"connId": my_id}), json!({"userId": "root"})] {
        let e = me.call("admin.disconnect", params).await.unwrap_err();
        assert_eq!(e["data"]["type"], "INVALID_PARAMS", "{e}");
        assert!(e["message"].as_str().unwrap().contains("your own"), "{e}");
    }
    let e = me
        .call("admin.ban", json!({"userId": "root", "reason": "oops"}))
        .await
        .unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("your own user id"),
        "{e}"
    );
    // Its own other session (a phone) may be closed on its own.
    let r = admin_ok(&mut me, "admin.disconnect", json!({"connId": phone_id})).await;
    assert_eq!(r["disconnected"], 1);
    assert_eq!(my_phone.wait_closed().await.0, Some(4003));
    me.call("session.ping", json!({})).await.unwrap();
    let bans = admin_ok(&mut me, "admin.bans", json!({})).await;
    assert_eq!(bans["bans"].as_array().unwrap().len(), 0, "{bans}");
}

/// Issue 13: links issued from the panel for channels of the admin's own event, with the TTL
/// capped; the admin lists every channel of its event; rows carry joined channels; audit rows
/// read as sentences.
#[tokio::test]
async fn links_from_the_panel_connect_and_are_audited() {
    let gw = Gateway::start("");
    // ops and gate become channels of ev1 when these users connect (standalone mode).
    let mut ben = connect(&gw, &token("ben", Role::General, "ev1", &["ops", "gate"]))
        .await
        .unwrap();
    ben.notification("channel.list").await;
    ben.call("channel.join", json!({"channelId": "gate"}))
        .await
        .unwrap();
    let _other = connect(&gw, &token("x", Role::General, "ev2", &["elsewhere"]))
        .await
        .unwrap();
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let list = admin.notification("channel.list").await;
    let ids: Vec<&str> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channelId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gate", "ops"], "every channel of ev1, none of ev2");
    let st = admin_ok(&mut admin, "admin.status", json!({})).await;
    assert_eq!(st["eventChannels"], json!(["gate", "ops"]));
    assert_eq!(st["links"]["maxTtlSecs"], 7 * 86_400, "auth.max_ttl");
    let rows = admin_ok(&mut admin, "admin.connections", json!({})).await;
    let ben_row = rows["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userId"] == "ben")
        .unwrap()
        .clone();
    assert_eq!(ben_row["channels"], json!(["gate"]), "{ben_row}");

    let link = admin_ok(
        &mut admin,
        "admin.issueLink",
        json!({"userId": "late", "name": "Late Arrival", "role": "GENERAL",
               "channels": ["ops", "gate"], "ttl": "2h", "baseUrl": "https://pi.local:8443"}),
    )
    .await;
    let token = link["token"].as_str().unwrap();
    assert_eq!(
        link["url"].as_str().unwrap(),
        format!("https://pi.local:8443/?token={token}")
    );
    assert!(link["qrSvg"].as_str().unwrap().starts_with("<svg"));
    assert_eq!(link["claims"]["event"], "ev1");
    assert_eq!(
        link["claims"]["exp"].as_u64().unwrap() - link["claims"]["iat"].as_u64().unwrap(),
        7200
    );
    let mut late = connect(&gw, token).await.unwrap();
    let hello = late.notification("channel.list").await;
    assert_eq!(hello["name"], "Late Arrival");
    late.call("channel.join", json!({"channelId": "ops"}))
        .await
        .unwrap();

    for (params, why) in [
        (
            json!({"userId": "a", "role": "GENERAL", "channels": ["elsewhere"]}),
            "not a channel of this event",
        ),
        (
            json!({"userId": "a", "role": "GENERAL", "channels": []}),
            "at least one channel",
        ),
        (
            json!({"userId": "a", "role": "GENERAL", "channels": ["ops"], "ttl": "8d"}),
            "longer than auth.max_ttl",
        ),
        (
            json!({"userId": "", "role": "GENERAL", "channels": ["ops"]}),
            "user id",
        ),
        (
            json!({"userId": "a", "role": "KING", "channels": ["ops"]}),
            "KING",
        ),
    ] {
        let e = admin.call("admin.issueLink", params).await.unwrap_err();
        assert_eq!(e["data"]["type"], "INVALID_PARAMS", "{e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{why}: {e}");
    }
    let e = ben
        .call(
            "admin.issueLink",
            json!({"userId": "a", "role": "ADMIN", "channels": ["ops"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "PERMISSION_DENIED");

    // Audited, as a sentence.
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut text = String::new();
    for _ in 0..50 {
        poll.tick().await;
        let r = admin_ok(&mut admin, "admin.audit", json!({"action": "TOKEN_ISSUED"})).await;
        if let Some(t) = r["entries"][0]["text"].as_str() {
            text = t.to_string();
            break;
        }
    }
    assert_eq!(
        text,
        "root (ADMIN) issued a GENERAL link for late (Late Arrival) on ops, gate, valid 2 h 0 min."
    );
}

/// `session.renew` (issue 12): a fresh token with the same claims and `auth.default_ttl`; it
/// connects.
#[tokio::test]
async fn a_session_renews_its_token() {
    let gw = Gateway::start("");
    let short = common::token_with("ana", Role::Dispatch, "ev1", &["ops", "gate"], 120);
    let mut ana = connect(&gw, &short).await.unwrap();
    ana.notification("channel.list").await;
    let r = ana.call("session.renew", json!({})).await.unwrap();
    let fresh = r["token"].as_str().unwrap();
    let now_ms = radiogate::clock::unix_ms();
    let exp_ms = r["expiresAtMs"].as_u64().unwrap();
    assert!(
        exp_ms > now_ms + 8 * 3600 * 1000 - 60_000 && exp_ms <= now_ms + 8 * 3600 * 1000 + 1000,
        "default TTL 8 h: {r}"
    );
    let mut again = connect(&gw, fresh).await.unwrap();
    let hello = again.notification("channel.list").await;
    assert_eq!(
        (hello["userId"].clone(), hello["role"].clone()),
        (json!("ana"), json!("DISPATCH"))
    );
    let ids: Vec<&str> = hello["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channelId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{hello}");
}

async fn admin_ok(
    ws: &mut common::WsClient,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    ws.call(method, params).await.unwrap()
}
