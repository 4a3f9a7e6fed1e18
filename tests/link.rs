//! Linked sites (issue 16): three gateways on loopback, one upstream ("central") and two sites
//! ("north", "south") linking channel `ops`, with real WebRTC phones on each. The upstream
//! decides the floor; speech crosses the link; island mode after a SIGKILL of the upstream and
//! the relink; a configured loop is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{connect, token, Gateway, WsClient, SECRET, WAIT};
use radiogate::access::role::Role;
use radiogate::access::token::{Claims, KeyMaterial, TokenMinter};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DISPATCH token with the `link` claim `site`, for the upstream.
fn link_token(site: &str) -> String {
    let now = radiogate::clock::unix_secs();
    TokenMinter::new(&KeyMaterial::Hs256 {
        secret: SECRET.as_bytes().to_vec(),
    })
    .unwrap()
    .mint(&Claims {
        sub: format!("site-{site}"),
        name: site.into(),
        event: "ev1".into(),
        role: Role::Dispatch,
        channels: vec!["ops".into()],
        device: Some(format!("gw-{site}")),
        link: Some(site.into()),
        iat: now - 60,
        exp: now + 3600,
    })
    .unwrap()
}

fn upstream(port: u16, name: &str, extra: &str) -> Gateway {
    Gateway::start_with(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("[site]\nname = \"{name}\"\n{extra}"),
    )
}

fn site(name: &str, up_port: u16, server: &str) -> Gateway {
    Gateway::start_with(
        server,
        &format!(
            "[site]\nname = \"{name}\"\n[[link]]\nupstream = \"ws://127.0.0.1:{up_port}\"\n\
             token = \"{}\"\nchannels = [\"ops\"]\nname = \"to-central\"\n",
            link_token(name)
        ),
    )
}

async fn phone(gw: &Gateway, user: &str, role: Role) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, role, "ev1", &["ops"]))
        .await
        .expect("connect");
    let rtc = RtcClient::join(&mut ws, "ops").await;
    (ws, rtc)
}

fn request(ws: &WsClient, id: u64) {
    ws.send_text(
        &json!({"jsonrpc": "2.0", "id": id, "method": "floor.request", "params": {"channelId": "ops"}})
            .to_string(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_linked_gateways_share_a_channel_decided_upstream() {
    let port = free_port();
    let mut central = upstream(port, "central", "");
    let north = site("north", port, "");
    let south = site("south", port, "");
    north.wait_lines(&["link up"], 1);
    south.wait_lines(&["link up"], 1);

    let (mut a, mut a_rtc) = phone(&north, "ana", Role::General).await;
    let (mut b, b_rtc) = phone(&south, "ben", Role::General).await;
    let (mut c, c_rtc) = phone(&central, "cat", Role::General).await;

    // Speech from north is heard at south and at central, named with its site.
    let r = a.call("floor.request", json!({"channelId": "ops"})).await;
    assert!(r.is_ok(), "north's floor request: {r:?}");
    let taken = b.notification("floor.taken").await;
    assert_eq!(taken["talker"]["name"], "Name ana @ north", "{taken}");
    let taken = c.notification("floor.taken").await;
    assert_eq!(taken["talker"]["name"], "Name ana @ north", "{taken}");
    let frames = encode_opus(&speech_pcm());
    a_rtc.talk(&frames).await;
    let want = frames.len() * 9 / 10;
    let got_b = b_rtc.wait_received(want, WAIT).await;
    let got_c = c_rtc.wait_received(want, WAIT).await;
    assert!(
        got_b >= want && got_c >= want,
        "south heard {got_b}, central {got_c} of {}",
        frames.len()
    );
    let by_payload: HashMap<Vec<u8>, usize> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (f.clone(), i))
        .collect();
    let mut pk = b_rtc.packets();
    let base = pk[0].seq;
    pk.sort_by_key(|p| p.seq.wrapping_sub(base));
    let received: Vec<Vec<u8>> = pk
        .iter()
        .map(|p| p.payload.clone())
        .filter(|f| by_payload.contains_key(f))
        .collect();
    let source_all = envelope(&decode_opus(&frames));
    let source: Vec<f64> = received.iter().map(|f| source_all[by_payload[f]]).collect();
    let r = correlation(&envelope(&decode_opus(&received)), &source);
    assert!(r > 0.9, "envelope correlation north -> south {r}");
    a.call("floor.release", json!({"channelId": "ops"}))
        .await
        .unwrap();
    b.notification("floor.idle").await;
    c.notification("floor.idle").await;

    // Simultaneous requests at north and south: exactly one granted, the other denied
    // naming the talker and its site.
    for trial in 0..20u64 {
        request(&a, 1000 + trial);
        request(&b, 1000 + trial);
        let ra = a.reply_to(json!(1000 + trial)).await;
        let rb = b.reply_to(json!(1000 + trial)).await;
        assert!(
            ra.is_ok() != rb.is_ok(),
            "trial {trial}: north {ra:?}, south {rb:?}"
        );
        let (winner, loser, site) = match (ra, rb) {
            (Ok(_), Err(e)) => (&mut a, e, "north"),
            (Err(e), _) => (&mut b, e, "south"),
            (Ok(_), Ok(_)) => unreachable!("checked above"),
        };
        let name = loser["data"]["talker"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            name.ends_with(&format!("@ {site}")),
            "trial {trial}: denied naming {loser}"
        );
        winner
            .call("floor.release", json!({"channelId": "ops"}))
            .await
            .unwrap();
        // Both sites see the upstream idle before the next trial.
        c.notification("floor.idle").await;
    }

    // Pre-emption: a dispatcher at south takes the floor from ana at north.
    let (mut d, _d_rtc) = phone(&south, "dora", Role::Dispatch).await;
    a.call("floor.request", json!({"channelId": "ops"}))
        .await
        .unwrap();
    let r = d
        .call("floor.priority_request", json!({"channelId": "ops"}))
        .await;
    assert!(r.is_ok(), "dispatch pre-emption across the link: {r:?}");
    let revoke = a.notification("floor.revoke").await;
    assert_eq!(revoke["reason"], "PRE_EMPTED", "{revoke}");
    d.call("floor.release", json!({"channelId": "ops"}))
        .await
        .unwrap();

    // The upstream dies: each site carries on alone within 1 s.
    central.sigkill();
    north.wait_lines(&["link down"], 1);
    let t0 = Instant::now();
    while a
        .call("floor.request", json!({"channelId": "ops"}))
        .await
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "north not on its own within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let island = t0.elapsed();
    // A talk in progress is not cut by the relink: the upstream comes back on its port.
    let central2 = upstream(port, "central", "");
    north.wait_lines(&["link up"], 2);
    south.wait_lines(&["link up"], 2);
    a_rtc.talk(&frames[..10]).await;
    assert!(!a.has_pending("floor.revoke"), "relink cut north's talk");
    a.call("floor.release", json!({"channelId": "ops"}))
        .await
        .unwrap();
    // Relinked at the idle floor: the upstream decides again.
    let (mut c2, _c2_rtc) = phone(&central2, "carl", Role::General).await;
    let t1 = Instant::now();
    while b
        .call("floor.request", json!({"channelId": "ops"}))
        .await
        .is_err()
    {
        assert!(
            t1.elapsed() < WAIT,
            "south's floor not granted after the relink"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken = c2.notification("floor.taken").await;
    assert_eq!(taken["talker"]["name"], "Name ben @ south", "{taken}");
    println!("island mode: local floor at north {island:?} after the upstream's SIGKILL");
}

#[tokio::test]
async fn a_configured_loop_is_refused() {
    let (pp, pq) = (free_port(), free_port());
    let link = |name: &str, to: u16| {
        format!(
            "[site]\nname = \"{name}\"\n[[link]]\nupstream = \"ws://127.0.0.1:{to}\"\n\
             token = \"{}\"\nchannels = [\"ops\"]\n",
            link_token(name)
        )
    };
    let p = Gateway::start_with(&format!("listen = \"127.0.0.1:{pp}\""), &link("p", pq));
    let q = Gateway::start_with(&format!("listen = \"127.0.0.1:{pq}\""), &link("q", pp));
    let seen =
        |g: &Gateway, needle: &str| g.log.0.lock().unwrap().iter().any(|l| l.contains(needle));
    let refused = |g: &Gateway| seen(g, "would close a loop");
    let end = Instant::now() + WAIT;
    while !(refused(&p) || refused(&q)) {
        assert!(Instant::now() < end, "no loop refusal logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let up = |g: &Gateway| seen(g, "link up") as usize;
    assert!(up(&p) + up(&q) <= 1, "both links of a loop came up");
}
