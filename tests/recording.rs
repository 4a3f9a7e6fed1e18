//! Recording (issue 14) end to end: real speech from a real WebRTC peer through the gateway is
//! kept as one Ogg Opus file per talk spurt and listed by `recording.list` to those who may
//! hear the channel.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rtc_client::{correlation, decode_opus, encode_opus, envelope, speech_pcm, RtcClient};
use common::{connect, finished_recordings, token, Gateway, WsClient};
use radiogate::access::role::Role;
use serde_json::{json, Value};
use std::time::Duration;

async fn member(gw: &Gateway, user: &str, event: &str, channels: &[&str]) -> (WsClient, RtcClient) {
    let mut ws = connect(gw, &token(user, Role::General, event, channels))
        .await
        .expect("connect");
    ws.notification("channel.list").await;
    let rtc = RtcClient::connect(&mut ws, 2).await;
    for ch in channels {
        ws.call("channel.join", json!({"channelId": ch}))
            .await
            .expect("join");
    }
    (ws, rtc)
}

/// A plain HTTP GET on the gateway: (status, raw headers, body bytes). `auth` is a Bearer
/// token and a Range header.
async fn get(gw: &Gateway, path: &str, auth: Option<(&str, &str)>) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    let extra = auth.map_or(String::new(), |(t, r)| {
        format!("Authorization: Bearer {t}\r\nRange: {r}\r\n")
    });
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

/// The Opus packets of an Ogg file (headers skipped).
fn ogg_packets(path: &std::path::Path) -> (Vec<Vec<u8>>, u64) {
    let f = std::fs::File::open(path).unwrap();
    let mut r = ogg::reading::PacketReader::new(std::io::BufReader::new(f));
    let mut out = Vec::new();
    let mut granule = 0;
    while let Some(p) = r.read_packet().unwrap() {
        granule = p.absgp_page();
        out.push(p.data);
    }
    assert_eq!(&out[0][..8], b"OpusHead");
    assert_eq!(&out[1][..8], b"OpusTags");
    (out.split_off(2), granule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talk_spurt_is_recorded_listed_and_decodes_to_the_speech() {
    let gw = Gateway::start("");
    let (mut a_ws, mut a) = member(&gw, "alice", "ev1", &["c1"]).await;
    let (mut b_ws, b) = member(&gw, "bob", "ev1", &["c1"]).await;
    let frames = encode_opus(&speech_pcm());
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    a.talk(&frames).await;
    b.wait_received(frames.len(), Duration::from_secs(3)).await;
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    let released = std::time::Instant::now();

    let list = finished_recordings(&mut b_ws, "c1", 1).await;
    // The proof: listed within 500 ms of the release (the recorder takes its queue
    // every 100 ms; the list is polled every 50 ms).
    let took = released.elapsed();
    assert!(
        took <= Duration::from_millis(500),
        "listed {took:?} after the release"
    );
    let r = &list[0];
    assert_eq!(r["userId"], "alice");
    assert_eq!(r["name"], "Name alice");
    assert_eq!(r["role"], "GENERAL");
    assert_eq!(r["channels"], json!(["c1"]));
    assert_eq!(r["ended"], "release");
    assert_eq!(r["emergency"], false);
    let path = gw
        .dir
        .path()
        .join("state/recordings")
        .join(format!("{}.opus", r["id"]));
    assert_eq!(
        r["bytes"].as_u64().unwrap(),
        std::fs::metadata(&path).unwrap().len()
    );

    // The file plays the speech: its packets are what alice sent (gaps filled with silence),
    // the decoded envelope follows the source, and the duration matches the talk.
    let (packets, granule) = ogg_packets(&path);
    let sent: std::collections::HashMap<&Vec<u8>, usize> =
        frames.iter().enumerate().map(|(i, f)| (f, i)).collect();
    let voiced: Vec<Vec<u8>> = packets
        .iter()
        .filter(|p| sent.contains_key(p))
        .cloned()
        .collect();
    assert!(
        voiced.len() * 100 >= frames.len() * 95,
        "{} of {} frames recorded",
        voiced.len(),
        frames.len()
    );
    let decoded = envelope(&decode_opus(&voiced));
    let source_all = envelope(&decode_opus(&frames));
    let source: Vec<f64> = voiced.iter().map(|f| source_all[sent[f]]).collect();
    let corr = correlation(&decoded, &source);
    assert!(corr > 0.9, "envelope correlation {corr}");
    let talk_ms = frames.len() as u64 * 20;
    let file_ms = (granule - 312) / 48;
    assert!(
        file_ms.abs_diff(talk_ms) <= 60,
        "file {file_ms} ms, talk {talk_ms} ms"
    );
    assert!(
        r["durationMs"].as_u64().unwrap().abs_diff(talk_ms) <= 60,
        "{r}"
    );

    // GET /recordings/ID.opus: the same bytes, byte ranges, and refusals.
    let id = r["id"].as_i64().unwrap();
    let bob_token = token("bob", Role::General, "ev1", &["c1"]);
    let file = std::fs::read(&path).unwrap();
    let (status, headers, body) = get(
        &gw,
        &format!("/recordings/{id}.opus?token={bob_token}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: audio/ogg"),
        "{headers}"
    );
    assert_eq!(body, file);
    let (status, headers, body) = get(
        &gw,
        &format!("/recordings/{id}.opus"),
        Some((&bob_token, "bytes=10-109")),
    )
    .await;
    assert_eq!(status, 206, "{headers}");
    assert!(
        headers.contains(&format!("bytes 10-109/{}", file.len())),
        "{headers}"
    );
    assert_eq!(body, file[10..110].to_vec());
    assert_eq!(
        get(&gw, &format!("/recordings/{id}.opus"), None).await.0,
        401
    );
    let carol_token = token("carol", Role::General, "ev1", &["c2"]);
    assert_eq!(
        get(
            &gw,
            &format!("/recordings/{id}.opus?token={carol_token}"),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        get(
            &gw,
            &format!("/recordings/999999.opus?token={bob_token}"),
            None
        )
        .await
        .0,
        404
    );

    // Same permissions as listening: another channel's member and another event's user are
    // refused; the event's ADMIN may list it.
    let (mut c_ws, _c) = member(&gw, "carol", "ev1", &["c2"]).await;
    let e = c_ws
        .call("recording.list", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "PERMISSION_DENIED", "{e}");
    let mut x = connect(&gw, &token("xavier", Role::General, "ev2", &["c1"]))
        .await
        .unwrap();
    x.notification("channel.list").await;
    let e = x
        .call("recording.list", json!({"channelId": "c1"}))
        .await
        .unwrap_err();
    assert_eq!(e["data"]["type"], "PERMISSION_DENIED", "{e}");
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    admin.notification("channel.list").await;
    let r = admin
        .call("recording.list", json!({"channelId": "c1"}))
        .await
        .unwrap();
    assert_eq!(r["recordings"].as_array().unwrap().len(), 1);
}

/// A gateway killed in the middle of a talk spurt leaves a playable file; the next start closes
/// it as "interrupted" with the duration the file holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spurt_cut_by_sigkill_is_playable_and_closed_at_the_next_start() {
    let gw = Gateway::start("");
    let (mut a_ws, mut a) = member(&gw, "alice", "ev1", &["c1"]).await;
    let frames = encode_opus(&speech_pcm());
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    a.talk(&frames[..125]).await; // 2.5 s: at least two pages flushed (one per second)
    let dir = gw.dir.path().join("state/recordings");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "opus"))
        .expect("the spurt's file exists while it is recorded");
    let gw = gw.restart(); // SIGKILL, then a new process on the same state
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    admin.notification("channel.list").await;
    let r = admin
        .call("admin.recordings", json!({"channelId": "c1"}))
        .await
        .unwrap();
    let rec = &r["recordings"][0];
    assert_eq!(rec["ended"], "interrupted", "{r}");
    let ms = rec["durationMs"].as_u64().unwrap();
    assert!(
        (1_000..=2_600).contains(&ms),
        "what the flushed pages hold: {ms} ms"
    );
    let (packets, _) = ogg_packets(&path);
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 5_760];
    for p in &packets {
        assert!(dec.decode(p, &mut pcm, false).unwrap() > 0);
    }
    assert!(packets.len() >= 50, "{} packets playable", packets.len());
}

/// An emergency broadcast is one recording, marked emergency, listed in every channel it
/// reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_broadcast_is_one_recording_listed_in_every_channel() {
    let gw = Gateway::start("[dispatch]\nbroadcast_hold_ms = 500\n");
    let mut d_ws = connect(&gw, &token("dina", Role::Dispatch, "ev1", &["c1", "c2"]))
        .await
        .unwrap();
    d_ws.notification("channel.list").await;
    let mut d = RtcClient::connect(&mut d_ws, 2).await;
    for ch in ["c1", "c2"] {
        d_ws.call("channel.join", json!({"channelId": ch}))
            .await
            .unwrap();
    }
    let frames = encode_opus(&speech_pcm());
    d_ws.call("broadcast.arm", json!({})).await.unwrap();
    let mut hold = tokio::time::interval(Duration::from_millis(550));
    hold.tick().await;
    hold.tick().await; // the hold guard (500 ms) has passed
    d_ws.call("broadcast.start", json!({})).await.unwrap();
    d.talk(&frames[..50]).await;
    d_ws.call("broadcast.stop", json!({})).await.unwrap();
    let c1 = finished_recordings(&mut d_ws, "c1", 1).await;
    let c2 = finished_recordings(&mut d_ws, "c2", 1).await;
    assert_eq!(c1[0]["id"], c2[0]["id"], "one recording");
    assert_eq!(c1[0]["emergency"], true);
    assert_eq!(c1[0]["channels"], json!(["c1", "c2"]));
}

/// A talk with 5 % of its packets lost on the way still plays in real time: the gaps are
/// filled with silence, so the file lasts as long as the talk and every sent packet is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talk_with_five_percent_loss_still_plays_in_real_time() {
    let gw = Gateway::start("");
    let (mut a_ws, mut a) = member(&gw, "alice", "ev1", &["c1"]).await;
    let frames = encode_opus(&speech_pcm());
    let lost = |i: usize| i % 20 == 7; // 1 packet in 20
    a_ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    a.talk_with_loss(&frames, lost).await;
    a_ws.call("floor.release", json!({"channelId": "c1"}))
        .await
        .expect("released");
    let r = finished_recordings(&mut a_ws, "c1", 1).await.remove(0);
    let path = gw
        .dir
        .path()
        .join("state/recordings")
        .join(format!("{}.opus", r["id"]));
    let (packets, granule) = ogg_packets(&path);
    let sent: Vec<&Vec<u8>> = (0..frames.len())
        .filter(|i| !lost(*i))
        .map(|i| &frames[i])
        .collect();
    let dropped = frames.len() - sent.len();
    assert!(
        dropped * 100 >= frames.len() * 4,
        "{dropped} of {}",
        frames.len()
    );
    // The sent packets are in the file, in order (the first one or two may precede the
    // recording's start), and a silence frame stands for each lost one.
    let index: std::collections::HashMap<&Vec<u8>, usize> =
        frames.iter().enumerate().map(|(i, f)| (f, i)).collect();
    let voiced: Vec<usize> = packets
        .iter()
        .filter_map(|p| index.get(p).copied())
        .collect();
    assert!(
        voiced.len() + 2 >= sent.len(),
        "{} of {} sent packets recorded",
        voiced.len(),
        sent.len()
    );
    assert!(
        voiced.windows(2).all(|w| w[0] < w[1]),
        "in order: {voiced:?}"
    );
    assert!(voiced.iter().all(|i| !lost(*i)), "a lost packet recorded");
    let silence = packets.len() - voiced.len();
    assert!(
        silence >= dropped,
        "{silence} silence frames for {dropped} lost packets"
    );
    let talk_ms = frames.len() as u64 * 20;
    let file_ms = (granule - 312) / 48;
    assert!(
        file_ms.abs_diff(talk_ms) <= 60,
        "file {file_ms} ms, talk {talk_ms} ms"
    );
    // Decoded packet by packet, it lasts as long as the talk (real time).
    let pcm = decode_opus(&packets);
    let pcm_ms = pcm.len() as u64 / 48;
    assert!(
        pcm_ms.abs_diff(talk_ms) <= 60,
        "decoded {pcm_ms} ms, talk {talk_ms} ms"
    );
}

/// The byte budget (`recording.max_bytes`): after each spurt the oldest recordings (file and
/// index row) go until the rest fits; the age limit (`recording.retention_secs`) then
/// removes the rest by itself, with no new spurt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_recordings_go_when_the_budget_is_exceeded() {
    let gw = Gateway::start("[recording]\nmax_bytes = 12000\nretention_secs = \"4s\"\n");
    let (mut a_ws, mut a) = member(&gw, "alice", "ev1", &["c1"]).await;
    let frames = encode_opus(&speech_pcm());
    let dir = gw.dir.path().join("state/recordings");
    let mut ids = Vec::new();
    for spurt in 0..3 {
        a_ws.call("floor.request", json!({"channelId": "c1"}))
            .await
            .expect("granted");
        a.talk(&frames[spurt * 50..spurt * 50 + 50]).await;
        a_ws.call("floor.release", json!({"channelId": "c1"}))
            .await
            .expect("released");
        // Listed once finished (the row exists from the grant on): the newest first.
        let list = finished_recordings(&mut a_ws, "c1", 1).await;
        ids.push(list[0]["id"].as_i64().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "three spurts recorded: {ids:?}");
    let list = finished_recordings(&mut a_ws, "c1", 1).await;
    let kept: Vec<i64> = list.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let total: u64 = list.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert!(total <= 12_000, "kept {total} bytes in {kept:?}");
    assert!(!kept.contains(&ids[0]), "the oldest is gone: {kept:?}");
    assert!(kept.contains(&ids[2]), "the newest stays: {kept:?}");
    assert!(
        !dir.join(format!("{}.opus", ids[0])).exists(),
        "its file too"
    );

    // Age: 4 s after their start the rest go too (checked every second by the recorder).
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut r = Value::Null;
    for _ in 0..100 {
        poll.tick().await;
        r = a_ws
            .call("recording.list", json!({"channelId": "c1"}))
            .await
            .unwrap();
        if r["recordings"].as_array().unwrap().is_empty() {
            break;
        }
    }
    assert_eq!(r["recordings"], json!([]), "aged out within 10 s");
    for id in &kept {
        assert!(
            !dir.join(format!("{id}.opus")).exists(),
            "{id}.opus aged out"
        );
    }
}
