//! Linked sites (issue 16): three gateways on loopback, one upstream ("central") and two sites
//! ("north", "south") linking channel `ops`, with real WebRTC phones on each. The upstream
//! decides the floor; speech crosses the link; island mode after a SIGKILL of the upstream and
//! the relink; a configured loop is refused. With in-process gateways (simulated radios):
//! radio ports at the upstream and at a site, emergency broadcasts both ways, a site killed
//! while its phone talks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::radio::{feed, speech_f32, wait_until, InProcess};
use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{connect, free_port, link_token, token, Gateway, WsClient, WAIT};
use radiogate::access::role::Role;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A link token of channel `ops` for site `site`.
fn ops_token(site: &str) -> String {
    link_token(site, &["ops"])
}

/// The trials send requests faster than a phone's default message rate (20/s).
const FAST_PHONES: &str = "[limits]\nmessages_per_second = 500\nmessage_burst = 500\n";

fn upstream(port: u16, name: &str, extra: &str) -> Gateway {
    Gateway::start_with(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("[site]\nname = \"{name}\"\n{extra}{FAST_PHONES}"),
    )
}

/// `[site]` and a `[[link]]` of channel `ops` to the upstream on `up_port`.
fn site_cfg(name: &str, up_port: u16) -> String {
    format!(
        "[site]\nname = \"{name}\"\n[[link]]\nupstream = \"ws://127.0.0.1:{up_port}\"\n\
         token = \"{}\"\nchannels = [\"ops\"]\nname = \"to-central\"\n",
        ops_token(name)
    )
}

fn site(name: &str, up_port: u16, server: &str) -> Gateway {
    Gateway::start_with(server, &format!("{}{FAST_PHONES}", site_cfg(name, up_port)))
}

/// A radio port on `ops` with simulated PTT, squelch and audio.
fn radio_cfg(name: &str) -> String {
    format!(
        "[[radio]]\nname = \"{name}\"\nuser_id = \"radio-{name}\"\ndisplay_name = \"Radio {name}\"\n\
         event = \"ev1\"\nchannel = \"ops\"\ntx_delay_ms = 0\nhang_time_ms = 200\n\
         [radio.ptt]\ntype = \"sim\"\n[radio.squelch]\ntype = \"sim\"\ndebounce_ms = 0\n\
         [radio.audio]\ntype = \"sim\"\n"
    )
}

/// The next notification `method` for which `pred` holds (others of that name are skipped).
async fn note_where(ws: &mut WsClient, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < end, "no {method} as expected");
        let n = ws.notification(method).await;
        if pred(&n) {
            return n;
        }
    }
}

/// Waits until every linked channel of the in-process gateway is `linked`.
async fn wait_linked(gw: &InProcess) {
    let mut adm = gw.connect(&token("adm", Role::Admin, "ev1", &[])).await;
    let end = Instant::now() + WAIT;
    loop {
        let st = adm.call("admin.status", json!({})).await.unwrap();
        let links = st["siteLinks"].as_array().cloned().unwrap_or_default();
        if !links.is_empty() && links.iter().all(|l| l["state"] == "linked") {
            return;
        }
        assert!(Instant::now() < end, "not linked: {links:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pcm_envelope(s: &[f32]) -> Vec<f64> {
    let pcm: Vec<i16> = s.iter().map(|x| (x * 32767.0) as i16).collect();
    envelope(&pcm)
}

/// Envelope correlation of what `rtc` received (in arrival order, from packet `from` on)
/// with `fed` (48 kHz samples a radio heard), best over a lag of up to 30 frames (the
/// radio ignores its squelch for up to 300 ms after an unkey, and the port prebuffers).
fn heard_like(rtc: &RtcClient, from: usize, fed: &[f32]) -> f64 {
    let pk = rtc.packets();
    let rx: Vec<Vec<u8>> = pk[from..].iter().map(|p| p.payload.clone()).collect();
    let heard = envelope(&decode_opus(&rx));
    let fed = pcm_envelope(fed);
    let m = heard.len().min(50);
    (0..=30)
        .filter(|lag| lag + m <= fed.len())
        .map(|lag| correlation(&heard[..m], &fed[lag..lag + m]))
        .fold(f64::MIN, f64::max)
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
    // naming the talker and its site (200 trials; LINK_TRIALS=N for another number).
    let trials: u64 = std::env::var("LINK_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let t_trials = Instant::now();
    for trial in 0..trials {
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

    println!(
        "{trials} trials of simultaneous requests in {:?}",
        t_trials.elapsed()
    );

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
            ops_token(name)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radios_broadcasts_and_a_lost_site_across_the_links() {
    let hold = "[dispatch]\nbroadcast_hold_ms = 500\n";
    let central = InProcess::start(&format!(
        "{hold}[site]\nname = \"central\"\n{}",
        radio_cfg("hub-r")
    ))
    .await;
    let port: u16 = central.addr.rsplit(':').next().unwrap().parse().unwrap();
    let north = InProcess::start(&format!(
        "{hold}{}{}",
        site_cfg("north", port),
        radio_cfg("north-r")
    ))
    .await;
    let mut south = Gateway::start_with("", &format!("{hold}{}", site_cfg("south", port)));
    wait_linked(&north).await;
    south.wait_lines(&["link up"], 1);
    for (gw, name) in [(&central, "hub-r"), (&north, "north-r")] {
        assert!(
            wait_until(Duration::from_secs(5), || gw.port(name).joined).await,
            "{name} joined"
        );
    }
    let hub_r = radiogate::radio::devices::sim_handles("hub-r").expect("sim devices");
    let north_r = radiogate::radio::devices::sim_handles("north-r").expect("sim devices");
    let (hub_sink, hub_line, hub_src) = (
        hub_r.sink.unwrap(),
        hub_r.line.unwrap(),
        hub_r.source.unwrap(),
    );
    let (north_line, north_src) = (north_r.line.unwrap(), north_r.source.unwrap());

    let mut a = north
        .connect(&token("ana", Role::General, "ev1", &["ops"]))
        .await;
    let mut a_rtc = RtcClient::join(&mut a, "ops").await;
    let (mut b, b_rtc) = phone(&south, "ben", Role::General).await;
    let mut dan = central
        .connect(&token("dan", Role::Dispatch, "ev1", &["ops"]))
        .await;
    let mut dan_rtc = RtcClient::join(&mut dan, "ops").await;

    // 1. A phone at north is played to the radio at the upstream.
    let frames = encode_opus(&speech_pcm());
    let n = 100;
    a.call("floor.request", json!({"channelId": "ops"}))
        .await
        .expect("north's phone granted");
    a_rtc.talk(&frames[..n]).await;
    a.call("floor.release", json!({"channelId": "ops"}))
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || hub_sink.samples().len()
            >= (n - 5) * 960)
        .await,
        "the upstream's radio played {} samples",
        hub_sink.samples().len()
    );
    let played = hub_sink.samples();
    let m = (played.len() / 960).min(n);
    let r = correlation(
        &pcm_envelope(&played[..m * 960]),
        &envelope(&decode_opus(&frames[..m])),
    );
    assert!(r > 0.9, "north's phone -> central's radio: correlation {r}");
    note_where(&mut b, "floor.idle", |_| true).await;

    // 2. The other way round: the upstream's radio receives; phones at both sites hear it.
    let speech = speech_f32();
    //    (2 s fed; up to 300 ms after the radio's unkey is ignored as its own squelch tail.)
    assert!(
        wait_until(Duration::from_secs(5), || !central.port("hub-r").keyed).await,
        "central's radio unkeyed"
    );
    let (a0, b0) = (a_rtc.received(), b_rtc.received());
    hub_line.set(true);
    let feeder = feed(hub_src, speech[..48_000 * 2].to_vec());
    note_where(&mut b, "floor.taken", |t| {
        t["talker"]["name"] == "Radio hub-r @ central"
    })
    .await;
    let got_a = a_rtc.wait_received(a0 + 70, WAIT).await - a0;
    let got_b = b_rtc.wait_received(b0 + 70, WAIT).await - b0;
    let _ = feeder.await;
    hub_line.set(false);
    println!(
        "central's radio (2 s fed): {} packets at north, {} at south by the end of the feed",
        a_rtc.received() - a0,
        b_rtc.received() - b0
    );
    assert!(
        got_a >= 70 && got_b >= 70,
        "heard {got_a} at north, {got_b} at south"
    );
    let r = heard_like(&b_rtc, b0, &speech);
    assert!(r > 0.8, "central's radio -> south's phone: correlation {r}");
    note_where(&mut b, "floor.idle", |_| true).await;

    // 3. A radio at a site: its floor request goes up; the other site hears it.
    //    (North's radio played central's radio: wait for its unkey first.)
    assert!(
        wait_until(Duration::from_secs(5), || !north.port("north-r").keyed).await,
        "north's radio unkeyed"
    );
    let b1 = b_rtc.received();
    north_line.set(true);
    let feeder = feed(north_src, speech[..48_000 * 2].to_vec());
    note_where(&mut b, "floor.taken", |t| {
        t["talker"]["name"] == "Radio north-r @ north"
    })
    .await;
    let got = b_rtc.wait_received(b1 + 70, WAIT).await - b1;
    let _ = feeder.await;
    north_line.set(false);
    println!(
        "north's radio (2 s fed): {} packets at south by the end of the feed",
        b_rtc.received() - b1
    );
    assert!(got >= 70, "south heard {got} packets of north's radio");
    let r = heard_like(&b_rtc, b1, &speech);
    assert!(r > 0.8, "north's radio -> south's phone: correlation {r}");
    note_where(&mut b, "floor.idle", |_| true).await;
    note_where(&mut dan, "floor.idle", |_| true).await;
    // The link in north's /metrics: linked, its round trip, packets each way.
    let (status, text) = north.http_get("/metrics").await;
    assert_eq!(status, 200);
    let sample = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    };
    let labels = "{link=\"to-central\",channel=\"ops\"";
    assert_eq!(
        sample(&format!("radiogate_link_state{labels},state=\"linked\"}}")),
        1.0
    );
    assert_eq!(
        sample(&format!(
            "radiogate_link_state{labels},state=\"site only\"}}"
        )),
        0.0
    );
    assert!(sample(&format!("radiogate_link_packets_up_total{labels}}}")) >= 70.0);
    assert!(sample(&format!("radiogate_link_packets_down_total{labels}}}")) >= 70.0);
    assert_eq!(
        sample(&format!("radiogate_link_connects_total{labels}}}")),
        1.0
    );

    // 4. An emergency broadcast at the upstream reaches both sites.
    dan.call("broadcast.arm", json!({})).await.unwrap();
    let armed = Instant::now();
    tokio::time::sleep_until((armed + Duration::from_millis(550)).into()).await;
    dan.call("broadcast.start", json!({}))
        .await
        .expect("broadcast at the upstream");
    for ws in [&mut a, &mut b] {
        let started = ws.notification("broadcast.started").await;
        assert_eq!(started["by"]["name"], "Name dan @ central", "{started}");
        let taken = note_where(ws, "floor.taken", |t| t["emergency"] == true).await;
        assert_eq!(taken["talker"]["name"], "Name dan @ central", "{taken}");
    }
    let b2 = b_rtc.received();
    dan_rtc.talk(&frames[..50]).await;
    let got = b_rtc.wait_received(b2 + 45, WAIT).await - b2;
    assert!(got >= 45, "south heard {got} packets of the broadcast");
    dan.call("broadcast.stop", json!({})).await.unwrap();
    for ws in [&mut a, &mut b] {
        let stopped = ws.notification("broadcast.stopped").await;
        assert_eq!(stopped["by"]["name"], "Name dan @ central", "{stopped}");
    }

    // 5. A broadcast started at a site goes up and out: central and north hear it.
    let (mut dora, mut dora_rtc) = phone(&south, "dora", Role::Dispatch).await;
    dora.call("broadcast.arm", json!({})).await.unwrap();
    let armed = Instant::now();
    tokio::time::sleep_until((armed + Duration::from_millis(550)).into()).await;
    dora.call("broadcast.start", json!({}))
        .await
        .expect("broadcast at south");
    for ws in [&mut a, &mut dan] {
        note_where(ws, "broadcast.started", |n| {
            n["by"]["name"] == "Name dora @ south"
        })
        .await;
    }
    let a3 = a_rtc.received();
    dora_rtc.talk(&frames[..50]).await;
    let got = a_rtc.wait_received(a3 + 45, WAIT).await - a3;
    assert!(got >= 45, "north heard {got} packets of south's broadcast");
    dora.call("broadcast.stop", json!({})).await.unwrap();
    for ws in [&mut a, &mut dan] {
        note_where(ws, "broadcast.stopped", |n| {
            n["by"]["name"] == "Name dora @ south"
        })
        .await;
    }
    note_where(&mut dan, "floor.idle", |_| true).await;

    // 6. SIGKILL of a site while its phone talks: the upstream frees the floor within the
    //    end-of-media timer (4 s).
    b.call("floor.request", json!({"channelId": "ops"}))
        .await
        .expect("south's phone granted");
    note_where(&mut dan, "floor.taken", |t| {
        t["talker"]["name"] == "Name ben @ south"
    })
    .await;
    let killed = Instant::now();
    south.sigkill();
    note_where(&mut dan, "floor.idle", |_| true).await;
    let freed = killed.elapsed();
    assert!(
        freed < Duration::from_secs(4),
        "floor freed after {freed:?}"
    );
    println!("upstream floor freed {freed:?} after the site's SIGKILL");
    north.shutdown().await;
    central.shutdown().await;
}

#[tokio::test]
async fn a_site_links_over_wss_trusting_only_the_configured_ca() {
    let port = free_port();
    let central = upstream(port, "central", "");
    let ca = central.dir.path().join("state/tls/ca.pem");
    assert!(ca.exists(), "the upstream generated its CA");
    let wss = |name: &str, ca: &std::path::Path| {
        site_cfg(name, port).replace("ws://", "wss://").replace(
            "name = \"to-central\"\n",
            &format!("name = \"to-central\"\nca_file = \"{}\"\n", ca.display()),
        )
    };
    // Two channels to one upstream (each says hello with the site's path, which must not
    // name the upstream it goes to).
    let two = format!(
        "[site]\nname = \"north\"\n[[link]]\nupstream = \"wss://127.0.0.1:{port}\"\n\
         token = \"{}\"\nchannels = [\"ops\", \"gate\"]\nca_file = \"{}\"\n",
        link_token("north", &["ops", "gate"]),
        ca.display()
    );
    let north = Gateway::start_with("", &two);
    assert_eq!(
        north.wait_lines(&["link up"], 2).len(),
        2,
        "north linked twice over wss://"
    );
    // admin.disconnect of the site's link user at the upstream unlinks it until it reconnects
    // (after the first backoff step, 1 s).
    let mut adm = connect(&central, &token("adm", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    adm.call("admin.disconnect", json!({"userId": "site-north"}))
        .await
        .expect("disconnect the link");
    assert_eq!(
        north.wait_lines(&["link down"], 2).len(),
        2,
        "both links went down"
    );
    assert_eq!(
        north.wait_lines(&["link up"], 4).len(),
        4,
        "both links came back"
    );
    // A site that trusts another CA (north's own) does not link: the TLS handshake fails.
    let other_ca = north.dir.path().join("state/tls/ca.pem");
    let south = Gateway::start_with("", &wss("south", &other_ca));
    let down = south.wait_lines(&["link down", "TLS"], 1);
    assert_eq!(down.len(), 1, "south refused the upstream's certificate");
    let up = south
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("link up"));
    assert!(!up, "south linked with the wrong CA");
}

/// A loop that no handshake can see: C links to A while A is alone, A then links to B, and B,
/// once C lets it in, links to C (C still knows A as alone). The `link.hello` every 5 s finds
/// it: a link of the loop is dropped, logged "closes a loop".
#[tokio::test]
async fn a_loop_closed_later_is_dropped_at_the_next_hello() {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let link = |name: &str, to: u16| {
        format!(
            "[site]\nname = \"{name}\"\n[[link]]\nupstream = \"ws://127.0.0.1:{to}\"\n\
             token = \"{}\"\nchannels = [\"ops\"]\n",
            ops_token(name)
        )
    };
    // A links to B, which is not there yet: A retries.
    let a = Gateway::start_with(&format!("listen = \"127.0.0.1:{pa}\""), &link("a", pb));
    // C links to A, which is alone: C learns A's chain as [a].
    let c = Gateway::start_with(&format!("listen = \"127.0.0.1:{pc}\""), &link("c", pa));
    assert_eq!(c.wait_lines(&["link up"], 1).len(), 1, "c linked to a");
    // B starts linking to C, but C refuses B until A has linked to B.
    let mut adm = connect(&c, &token("adm", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    adm.call(
        "admin.ban",
        json!({"userId": "site-b", "reason": "not yet"}),
    )
    .await
    .unwrap();
    let b = Gateway::start_with(&format!("listen = \"127.0.0.1:{pb}\""), &link("b", pc));
    assert_eq!(a.wait_lines(&["link up"], 1).len(), 1, "a linked to b");
    adm.call("admin.unban", json!({"userId": "site-b"}))
        .await
        .unwrap();
    // B's next retry (at most 8 s away) links to C: its handshake passes (C still knows A's
    // chain as [a]); within 5 s more, the paths are checked again.
    let seen =
        |g: &Gateway, needle: &str| g.log.0.lock().unwrap().iter().any(|l| l.contains(needle));
    let end = Instant::now() + Duration::from_secs(25);
    while ![&a, &b, &c].iter().any(|g| seen(g, "closes a loop")) {
        assert!(
            Instant::now() < end,
            "the loop a -> b -> c -> a was not found"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_at_handshake = [&a, &b, &c].iter().any(|g| seen(g, "would close a loop"));
    println!(
        "loop found by the repeated hello (also refused at a handshake: {refused_at_handshake})"
    );
}
