//! Hardening against vanished, slow, stalled and hostile peers (issue 15), against the real
//! binary: dead-peer detection (WebSocket pings, the end-of-RTP-media timer T1), bounded
//! queues and session caps, stalled connections under a low descriptor limit, hostile strings
//! in the log, and the WebSocket close codes of RFC 6455.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rtc_client::{encode_opus, speech_pcm, RtcClient};
use common::{connect, token, Gateway, WsClient, WAIT};
use radiogate::access::role::Role;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

async fn member(gw: &Gateway, user: &str, channel: &str) -> WsClient {
    let mut ws = connect(gw, &token(user, Role::General, "ev1", &[channel]))
        .await
        .expect("connect");
    ws.notification("channel.list").await;
    ws.call("channel.join", json!({"channelId": channel}))
        .await
        .expect("join");
    ws
}

/// The first log line containing every one of `needles` (waits at most [`WAIT`]).
fn wait_log(gw: &Gateway, needles: &[&str]) -> Option<String> {
    gw.wait_lines(needles, 1).into_iter().next()
}

/// How many log lines contain every one of `needles`, once `n` do (waits at most [`WAIT`]).
fn wait_count(gw: &Gateway, needles: &[&str], n: usize) -> usize {
    gw.wait_lines(needles, n).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talker_gone_silent_is_released_by_t1_and_closed_after_the_ping_timeout() {
    let gw = Gateway::start_with(
        "ping_interval_ms = 500\nping_timeout_ms = 4000\n",
        "[floor]\nend_of_media_timer_ms = 1000\n",
    );
    let mut talker = connect(&gw, &token("tara", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    let mut mic = RtcClient::join(&mut talker, "c1").await;
    let mut listener = member(&gw, "lena", "c1").await;
    let speech = encode_opus(&speech_pcm());

    // 1. Uplink audio stops while the WebSocket stays up: T1 revokes the floor.
    talker
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    listener.notification("floor.taken").await;
    mic.talk(&speech[..50]).await; // 1 s of speech keeps T1 running
    let stopped = Instant::now();
    let revoke = talker.notification("floor.revoke").await;
    let after = stopped.elapsed();
    assert_eq!(revoke["reason"], "MEDIA_TIMEOUT", "{revoke}");
    assert_eq!(revoke["channelId"], "c1");
    listener.notification("floor.idle").await;
    assert!(
        after >= Duration::from_millis(900),
        "revoked {after:?} after the audio stopped, before T1 (1 s)"
    );

    // 2. The phone vanishes (stops reading, answers no ping) while holding the floor: the
    // floor is released within T1 and the session closed after the ping timeout.
    talker
        .call("floor.request", json!({"channelId": "c1"}))
        .await
        .unwrap();
    listener.notification("floor.taken").await;
    mic.talk(&speech[..10]).await;
    talker.freeze();
    let vanished = Instant::now();
    listener.notification("floor.idle").await;
    let idle_after = vanished.elapsed();
    assert!(
        idle_after < Duration::from_secs(3),
        "floor kept {idle_after:?} after the talker vanished (T1 = 1 s; ping timeout 4 s)"
    );
    let revokes =
        tokio::task::block_in_place(|| wait_count(&gw, &["floor revoke", "MEDIA_TIMEOUT"], 2));
    assert_eq!(revokes, 2, "both floors ended by the end-of-media timer");
    let line =
        tokio::task::block_in_place(|| wait_log(&gw, &["session ended", "no response to ping"]))
            .expect("the vanished session is closed after the ping timeout");
    assert!(line.contains("tara"), "{line}");
    assert!(
        vanished.elapsed() >= Duration::from_millis(3900),
        "closed before the ping timeout"
    );
    let (_, health) = gw.http_get("/healthz").await;
    let v: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["sessions"], 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_stops_reading_is_closed_not_buffered_for() {
    const CHANNELS: [&str; 8] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    let gw = Gateway::start_with(
        "outbound_queue = 16\nwrite_timeout_ms = 1000\nping_interval_ms = 60000\nping_timeout_ms = 120000\n",
        "[limits]\nmessages_per_second = 10000\nmessage_burst = 10000\n",
    );
    // The slow one: a socket with a tiny receive buffer that stops reading.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = gw.addr.parse().unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(sock.into()).unwrap();
    let url = format!(
        "ws://{}/ws?token={}",
        gw.addr,
        token("slow", Role::General, "ev1", &CHANNELS)
    );
    let (slow, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let (mut slow_tx, _slow_rx) = futures_util::StreamExt::split(slow);
    for (i, ch) in CHANNELS.iter().enumerate() {
        let join =
            json!({"jsonrpc":"2.0","id":i,"method":"channel.join","params":{"channelId":ch}});
        futures_util::SinkExt::send(&mut slow_tx, Message::Text(join.to_string().into()))
            .await
            .unwrap();
    }
    // Busy talkers, one per channel, make notifications for it (floor.taken / floor.idle)
    // until it is closed: kernel socket buffers hold a few MB before the writer blocks.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut busy = Vec::new();
    for (i, ch) in CHANNELS.iter().enumerate() {
        let mut ws = member(&gw, &format!("busy{i}"), ch).await;
        let stop = stop.clone();
        busy.push(tokio::spawn(async move {
            let mut cycles = 0u32;
            while !stop.is_cancelled() {
                ws.call("floor.request", json!({"channelId": ch}))
                    .await
                    .unwrap();
                ws.call("floor.release", json!({"channelId": ch}))
                    .await
                    .unwrap();
                cycles += 1;
            }
            cycles
        }));
    }
    let line = tokio::task::block_in_place(|| {
        (0..6).find_map(|_| wait_log(&gw, &["session ended", "not keeping up"]))
    });
    stop.cancel();
    let mut cycles = 0;
    for b in busy {
        // Every busy talker kept being served while the slow session was stuck.
        cycles += tokio::time::timeout(WAIT, b).await.unwrap().unwrap();
    }
    let line = line.expect("the non-reading session is closed");
    assert!(line.contains("slow"), "{line}");
    // Closed for its queue (1008 sent) or for a write that timed out (the socket was full:
    // no close frame can get through).
    assert!(
        line.contains("outbound queue full") || line.contains("write timed out"),
        "{line}"
    );
    eprintln!("closed after {cycles} request/release cycles: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_user_and_in_total() {
    let gw = Gateway::start("[limits]\nmax_sessions_per_user = 2\nmax_sessions = 3\n");
    let t = token("ann", Role::General, "ev1", &["c1"]);
    // Each session is registered before its channel.list: wait for it, so the next connect
    // sees it (the caps are checked at connect).
    let mut a = connect(&gw, &t).await.unwrap();
    a.notification("channel.list").await;
    let mut b = connect(&gw, &t).await.unwrap();
    b.notification("channel.list").await;
    let (status, body) = connect(&gw, &t).await.err().expect("third session refused");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too many sessions for this user"), "{body}");
    let mut c = connect(&gw, &token("bob", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    c.notification("channel.list").await;
    let (status, body) = connect(&gw, &token("cy", Role::General, "ev1", &["c1"]))
        .await
        .err()
        .expect("fourth session refused");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("full"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frames_count_towards_the_message_rate() {
    let gw = Gateway::start(
        "[limits]\nmessages_per_second = 5\nmessage_burst = 5\nmessage_strikes = 5\n",
    );
    let mut ws = member(&gw, "pinger", "c1").await;
    for _ in 0..200 {
        ws.send_raw(Message::Ping(Default::default()));
    }
    let (code, reason) = ws.wait_closed().await;
    assert_eq!(code, Some(1008), "{reason}");
}

/// Opens `n` connections that stall: half mid-request-head, half mid-TLS-handshake.
async fn stall(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for i in 0..n {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        let part: &[u8] = if i % 2 == 0 {
            b"GET /ws HTTP/1.1\r\nHost: x\r\n"
        } else {
            &[0x16, 0x03, 0x01]
        };
        let _ = s.write_all(part).await;
        held.push(s);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_under_a_low_descriptor_limit_never_keep_a_client_out() {
    let gw = Gateway::start("");
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &gw.pid().to_string(), "--nofile=256:256"])
        .status()
        .expect("prlimit (util-linux)")
        .success();
    assert!(ok, "prlimit failed");
    let _held = stall(&gw.addr, 300).await;
    let t = token("late", Role::General, "ev1", &["c1"]);
    let started = Instant::now();
    let mut ws = connect(&gw, &t).await.expect("a new client gets in");
    ws.notification("channel.list").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a new client waited {took:?} behind 300 stalled connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_head_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let gw = Gateway::start_with("header_timeout_ms = 500\n", "");
    let mut s = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed by the gateway")
        .unwrap_or(0);
    assert_eq!(n, 0, "no response to a partial request head");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_logged_escaped() {
    let gw = Gateway::start("");
    let evil_user = "ev\u{1b}[2J\nFORGED-USER-LINE x";
    let mut ws = connect(&gw, &token(evil_user, Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    ws.notification("channel.list").await;
    let _ = ws
        .call(
            "channel.join",
            json!({"channelId": "x\nFORGED-LOG-LINE level=ERROR"}),
        )
        .await;
    let _ = ws.call("x\r\nFORGED-METHOD-LINE", json!({})).await;
    let _ = ws
        .call(
            "floor.request",
            json!({"channelId": "y\u{1b}]0;title\u{7}\nFORGED-FLOOR"}),
        )
        .await;
    ws.close();
    assert!(
        tokio::task::block_in_place(|| wait_log(&gw, &["session ended", "FORGED-USER-LINE"]))
            .is_some()
    );
    let lines = gw.log.0.lock().unwrap().clone();
    for l in &lines {
        assert!(!l.starts_with("FORGED"), "forged log line: {l:?}");
        assert!(
            !l.chars().any(|c| c.is_control()),
            "control character in a log line: {l:?}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("FORGED-LOG-LINE")));
    assert!(lines.iter().any(|l| l.contains("FORGED-METHOD-LINE")));
}

async fn closed_with(ws: &mut WsClient) -> (Option<u16>, String) {
    tokio::time::timeout(WAIT, ws.wait_closed())
        .await
        .expect("closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_edges_get_their_close_codes() {
    let gw = Gateway::start_with("max_frame_bytes = 65536\n", "");
    let t = |u: &str| token(u, Role::General, "ev1", &["c1"]);

    // Invalid UTF-8 in a text message: 1007.
    let mut ws = connect(&gw, &t("u1")).await.unwrap();
    ws.send_raw(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )));
    assert_eq!(closed_with(&mut ws).await.0, Some(1007));

    // A reserved opcode: 1002.
    let mut ws = connect(&gw, &t("u2")).await.unwrap();
    ws.send_raw(Message::Frame(Frame::message(
        b"x".to_vec(),
        OpCode::Data(Data::Reserved(3)),
        true,
    )));
    assert_eq!(closed_with(&mut ws).await.0, Some(1002));

    // 70 KB in 1 KB fragments over a 64 KiB limit: 1009, every time.
    for i in 0..5 {
        let mut ws = connect(&gw, &t(&format!("big{i}"))).await.unwrap();
        let chunk = vec![b' '; 1024];
        for k in 0..70 {
            let op = if k == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            ws.send_raw(Message::Frame(Frame::message(chunk.clone(), op, k == 69)));
        }
        let (code, reason) = closed_with(&mut ws).await;
        assert_eq!(code, Some(1009), "attempt {i}: {reason}");
    }

    // webrtc.candidate refuses unknown fields.
    let mut ws = connect(&gw, &t("u3")).await.unwrap();
    let err = ws
        .call(
            "webrtc.candidate",
            json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "evil": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(err["message"].as_str().unwrap().contains("evil"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_longer_than_a_close_frame_is_cut_and_sent_whole_before_the_close() {
    let gw = Gateway::start("");
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &["c1"]))
        .await
        .unwrap();
    admin.notification("channel.list").await;
    let mut victim = member(&gw, "vic", "c1").await;
    let reason = format!("Schichtende – {}", "ä".repeat(150));
    admin
        .call("admin.ban", json!({"userId": "vic", "reason": reason}))
        .await
        .unwrap();
    let note = victim.notification("session.closing").await;
    assert!(
        note["reason"].as_str().unwrap().ends_with(&"ä".repeat(150)),
        "{note}"
    );
    let (code, cut) = closed_with(&mut victim).await;
    assert_eq!(code, Some(4003));
    assert!(cut.len() <= 123 && !cut.is_empty(), "{cut:?}");
    assert!(
        note["reason"].as_str().unwrap().starts_with(&cut),
        "{cut:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_candidates_are_capped_per_peer_connection() {
    let gw = Gateway::start("");
    let mut ws = connect(&gw, &token("cand", Role::General, "ev1", &["c1"]))
        .await
        .unwrap();
    let _rtc = RtcClient::join(&mut ws, "c1").await;
    let max = radiogate::signaling::session::MAX_REMOTE_CANDIDATES;
    for i in 0..max {
        let c = format!(
            "candidate:{i} 1 udp 2122260223 10.9.{}.{} {} typ host",
            i / 250,
            i % 250 + 1,
            40000 + i
        );
        ws.call(
            "webrtc.candidate",
            json!({"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}),
        )
        .await
        .unwrap_or_else(|e| panic!("candidate {i}: {e}"));
    }
    let e = ws
        .call(
            "webrtc.candidate",
            json!({"candidate": "candidate:99 1 udp 2122260223 10.9.9.9 49999 typ host", "sdpMid": "0", "sdpMLineIndex": 0}),
        )
        .await
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("at most"), "{e}");
}
