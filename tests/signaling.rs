//! Signaling end to end against the gateway process: authentication at connect, the channel
//! list, typed errors for bad input, channel limits and floor control.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{connect, token, token_with, Gateway};
use radiogate::access::role::Role;
use radiogate::access::token::{Claims, KeyMaterial, TokenMinter};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade_with_401_and_a_reason() {
    let gw = Gateway::start("");
    let good = token("u1", Role::General, "ev1", &["c1"]);
    let claims = json!({"sub": "u1", "name": "U", "event": "ev1", "role": "GENERAL",
                        "channels": ["c1"], "exp": radiogate::clock::unix_secs() + 3600});
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    let forged = {
        let m = TokenMinter::new(&KeyMaterial::Hs256 {
            secret: b"another-secret-another-secret-another!!".to_vec(),
        })
        .unwrap();
        m.mint(&serde_json::from_value::<Claims>(claims.clone()).unwrap())
            .unwrap()
    };
    let rs256 = {
        let m = TokenMinter::new(&KeyMaterial::Rs256 {
            public_pem: include_str!("fixtures/keys/rsa_public.pem").into(),
            private_pem: Some(include_str!("fixtures/keys/rsa_private.pem").into()),
        })
        .unwrap();
        m.mint(&serde_json::from_value::<Claims>(claims.clone()).unwrap())
            .unwrap()
    };
    let expired = token_with("u1", Role::General, "ev1", &["c1"], -3600);
    let cases = [
        ("missing", String::new(), "no token"),
        ("malformed", "not.a.jwt".to_string(), "malformed"),
        ("garbage", "abc".to_string(), "malformed"),
        ("alg none", alg_none, "alg none"),
        ("forged", forged, "signature"),
        ("expired", expired, "expired"),
        ("wrong algorithm", rs256, "algorithm"),
    ];
    for (what, tok, reason) in cases {
        let err = connect(&gw, &tok)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} accepted"));
        assert_eq!(err.0, 401, "{what}: {err:?}");
        assert!(err.1.contains(reason), "{what}: body {:?}", err.1);
    }
    assert!(gw.logged("authentication refused"));
    // The Authorization header works as well as the query parameter.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", gw.addr),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {good}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer accepted");
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("channel.list"));
}

#[tokio::test]
async fn channel_list_on_connect_and_bad_messages_get_typed_errors() {
    let gw = Gateway::start("");
    let mut ws = connect(&gw, &token("u1", Role::General, "ev1", &["c2", "c1"]))
        .await
        .unwrap();
    let list = ws.notification("channel.list").await;
    assert_eq!(list["userId"], "u1");
    assert_eq!(list["role"], "GENERAL");
    let ids: Vec<&str> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channelId"].as_str().unwrap())
        .collect();
    // In the token's order: the first is where a phone starts talking (issue 12).
    assert_eq!(ids, ["c2", "c1"]);

    // Malformed JSON: parse error, id null.
    ws.send_text("{not json");
    let e = ws.reply_to(json!(null)).await.unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["type"].as_str()),
        (Some(-32700), Some("PARSE_ERROR"))
    );
    // Not a request object.
    ws.send_text(r#"{"id": 5, "method": 42}"#);
    let e = ws.reply_to(json!(5)).await.unwrap_err();
    assert_eq!(e["code"], -32600);
    // Unknown method.
    let e = ws.call("floor.steal", json!({})).await.unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["type"].as_str()),
        (Some(-32601), Some("METHOD_NOT_FOUND"))
    );
    // Invalid params.
    let e = ws
        .call("channel.join", json!({"channel": 1}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "INVALID_PARAMS");
    // A channel not in the token: permission denied.
    let e = ws
        .call("channel.join", json!({"channelId": "c9"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["type"].as_str()),
        (Some(-32001), Some("PERMISSION_DENIED"))
    );
    // Floor request without joining: not a member.
    let e = ws
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "NOT_A_MEMBER");
    let e = ws
        .call("channel.leave", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "NOT_A_MEMBER");
    // Binary frames are refused, the session goes on.
    ws.send_raw(Message::Binary(vec![1u8, 2, 3].into()));
    let e = ws.reply_to(json!(null)).await.unwrap_err();
    assert_eq!(e["data"]["type"], "INVALID_REQUEST");
    // After all that, the session still works.
    let j = ws
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    assert_eq!(j["channelId"], "c1");
    assert_eq!(j["slot"], 0);
    assert!(gw.logged("request refused"));
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let gw = Gateway::start(""); // max_frame_bytes = 4096 in the test config
    let mut ws = connect(&gw, &token("u1", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    ws.notification("channel.list").await;
    ws.send_text(&format!(
        r#"{{"id":1,"method":"session.ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(8000)
    ));
    let (code, _) = ws.wait_closed().await;
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn channel_limits_per_user_and_per_channel() {
    let gw = Gateway::start("[channels]\nmax_channels_per_user = 2\nmax_users_per_channel = 2\n");
    let chans = ["c1", "c2", "c3"];
    let mut g = connect(&gw, &token("g", Role::General, "ev1", &chans))
        .await
        .unwrap();
    g.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    g.call("channel.join", json!({"channelId": "c2"}))
        .await
        .unwrap();
    let e = g
        .call("channel.join", json!({"channelId": "c3"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["type"].as_str()),
        (Some(-32004), Some("TOO_MANY_CHANNELS"))
    );
    // Joining again is idempotent, not a third channel.
    g.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();

    // ADMIN bypasses the per-user limit...
    let mut admin = connect(&gw, &token("adm", Role::Admin, "ev1", &chans))
        .await
        .unwrap();
    for c in chans {
        admin
            .call("channel.join", json!({"channelId": c}))
            .await
            .unwrap();
    }
    // ...but not the per-channel limit: c1 now has g and adm.
    let mut h = connect(&gw, &token("h", Role::General, "ev1", &chans))
        .await
        .unwrap();
    let e = h
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["type"].as_str()),
        (Some(-32003), Some("CHANNEL_FULL"))
    );
    let mut admin2 = connect(&gw, &token("adm2", Role::Admin, "ev1", &chans))
        .await
        .unwrap();
    let e = admin2
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "CHANNEL_FULL");
    // Leaving frees the place.
    g.call("channel.leave", json!({"channelId": "c1"}))
        .await
        .unwrap();
    h.call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap();
    // A channel of another event is refused even if named in the token.
    let mut other = connect(&gw, &token("o", Role::General, "ev2", &["c1"]))
        .await
        .unwrap();
    let e = other
        .call("channel.join", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn busy_floor_is_denied_and_time_out_timer_revokes() {
    let gw = Gateway::start("[floor]\ntime_out_timer_ms = 1500\n");
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
    let g = a
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    assert_eq!(g["granted"], true);
    assert!(g["expiresInMs"].as_u64().unwrap() <= 1500);
    // The requester first: the reply came before its floor.granted notification.
    assert!(
        !a.pending_methods().iter().any(|m| m == "floor.granted"),
        "floor.granted before the reply: {:?}",
        a.pending_methods()
    );
    a.notification("floor.granted").await;
    let taken = b.notification("floor.taken").await;
    assert_eq!(taken["talker"]["name"], "Name a");
    let e = b
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["type"].as_str()),
        (Some(-32005), Some("FLOOR_BUSY"))
    );
    assert_eq!(e["data"]["talker"]["userId"], "a");
    // The time-out timer revokes the talker and the floor goes idle for everyone.
    let started = std::time::Instant::now();
    let rev = a.notification("floor.revoke").await;
    assert_eq!(rev["reason"], "TIME_OUT");
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    b.notification("floor.idle").await;
    b.call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    // A non-holder's release changes nothing.
    a.call("floor.release", json!({"channelId": "c1"}))
        .await
        .unwrap();
    let e = a
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "FLOOR_BUSY");
}

#[tokio::test]
async fn healthz_reports_sessions() {
    let gw = Gateway::start("");
    let (status, body) = gw.http_get("/healthz").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["sessions"], 0);
    let mut ws = connect(&gw, &token("u", Role::Dispatch, "ev1", &[]))
        .await
        .unwrap();
    // channel.list is sent after the session is registered.
    ws.notification("channel.list").await;
    let (_, body) = gw.http_get("/healthz").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sessions"], 1);
}
