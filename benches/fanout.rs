//! Benchmark (b): the gateway's own cost of fanning one talker out to N listeners.
//!
//! Run: `cargo bench --bench fanout` (N = 100, 500, 1000, 2000) or
//! `cargo bench --bench fanout -- 100 500` for some N; `--packets P` sets the talk length
//! (default 500 packets = 10 s at 20 ms), `--sample K` decrypts one RTP packet in K per
//! listener (default: N / 20, at least 1, so about 1,000 decrypted packets per second in all);
//! `--str0m PATH` measures the str0m comparison (`benches/str0m-sfu`, issue 11: built with
//! `cargo build --release --manifest-path benches/str0m-sfu/Cargo.toml`, PATH
//! `benches/str0m-sfu/target/release/str0m-sfu`) instead of the gateway: the same peers
//! signal over its TCP offer/answer exchange, there is no floor request, and the gateway's
//! counters read `null`. `--idle S` sets the idle window (default 5 s); `--full-ice` runs the
//! gateway as a full ICE agent (`sfu.ice_lite = false`) instead of the ICE-lite default.
//!
//! Set-up, per N: the release gateway is started and pinned to CPU 0 (`taskset -a -p -c 0` on
//! the process right after start, threads created later inherit it); this process pins itself
//! to CPU 1 (`sched_setaffinity`) before it creates any thread, so the load generator never
//! competes with the gateway for its core. N listeners and one talker join channel `c1` over
//! the real signaling protocol (WebSocket, `webrtc.offer` with one slot, `channel.join`).
//! Every peer is a sans-IO `rtc` peer connection with its own UDP socket, all driven from one
//! thread (a current-thread tokio runtime). A listener feeds its datagrams to `rtc` until ICE
//! and DTLS are connected; after that it feeds STUN, DTLS and RTCP but only counts RTP
//! datagrams, passing one in K to `rtc` (SRTP unprotect, so the sample is authenticated) to
//! read the send time the talker put in the payload. The talker sends 100-byte Opus-sized RTP
//! payloads paced at 20 ms, the first 8 bytes its send time (wall clock, ns since the Unix
//! epoch, taken before its SRTP and send).
//!
//! Reported per N: copies delivered (RTP datagrams counted by the listeners during the send
//! window plus 200 ms), loss %, gateway CPU (utime+stime from /proc/PID/stat, taken at the
//! first packet sent and 200 ms after the last) per copy delivered (µs), added latency
//! p50/p99 (talker send to the kernel's receive timestamp on the listener socket,
//! `SO_TIMESTAMPNS`, so the load generator's own turn-around does not count; sampled packets
//! only), gateway
//! RSS idle (before any peer) and per connected peer ((loaded − idle) / (N + 1), KiB, from
//! /proc/PID/status VmRSS); the gateway's CPU while the N + 1 peers are connected and nobody
//! talks (the idle window before the talk, `--idle`: ms/s, and µs/s per peer), and the CPU per
//! copy less that idle share.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::BytesMut;
use common::{connect, cpu_ticks, pin, token, Gateway, WsClient};
use futures_util::StreamExt;
use radiogate::access::role::Role;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;

use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use serde_json::json;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

/// Bytes of Opus payload per packet (a 20 ms voice frame at ~40 kbit/s).
const PAYLOAD: usize = 100;
/// Peers negotiating at once.
const CONCURRENCY: usize = 16;
/// Time after the last packet in which copies still count, and CPU is still charged.
const DRAIN: Duration = Duration::from_millis(200);
/// Default window over which the connected peers' idle cost is measured before the talk.
const IDLE: Duration = Duration::from_secs(5);

/// Wall-clock time, ns since the Unix epoch (the clock of the kernel's receive timestamps).
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64
}

/// What every listener adds to, shared on the one load thread.
#[derive(Default)]
struct Tally {
    /// RTP datagrams counted while `counting`.
    copies: u64,
    /// Send-to-receive latency of the sampled packets, ns.
    latency_ns: Vec<u64>,
    /// Whether the send window is open.
    counting: bool,
}

/// A sans-IO peer with its socket.
struct Peer {
    pc: RTCPeerConnection,
    sock: UdpSocket,
    local: SocketAddr,
}

impl Peer {
    /// A peer offering one audio m-line: `sendrecv` with a microphone track of `mic_ssrc` (the
    /// talker) or `recvonly` (a listener). No interceptors: a listener that skips packets must
    /// not send NACKs or receiver reports that would load the gateway.
    async fn new(mic_ssrc: Option<u32>) -> (Self, Option<rtc::rtp_transceiver::RTCRtpSenderId>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
            .expect("SO_TIMESTAMPNS");
        let local = sock.local_addr().expect("local addr");
        let mut me = MediaEngine::default();
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: radiogate::media::opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .expect("codec");
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .build(Instant::now())
            .expect("peer connection");
        let sender = match mic_ssrc {
            Some(ssrc) => Some(
                pc.add_track(MediaStreamTrack::new(
                    "mic".into(),
                    "mic".into(),
                    "mic".into(),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: radiogate::media::opus_codec(),
                        ..Default::default()
                    }],
                ))
                .expect("add track"),
            ),
            None => {
                pc.add_transceiver_from_kind(
                    RtpCodecKind::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .expect("transceiver");
                None
            }
        };
        pc.add_local_candidate(radiogate::media::host_candidate(local).expect("candidate"))
            .expect("local candidate");
        (Self { pc, sock, local }, sender)
    }

    fn feed(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
    }

    fn flush(&mut self) {
        while let Some(m) = self.pc.poll_write() {
            let _ = self.sock.try_send_to(&m.message, m.transport.peer_addr);
        }
    }
}

/// The SFU under test: radiogate's gateway, or the str0m comparison (`benches/str0m-sfu`).
enum Sfu {
    Gateway(Gateway),
    /// The str0m fan-out's process and its signaling address (offer in, answer out, over TCP).
    Str0m(std::process::Child, SocketAddr),
}

impl Sfu {
    fn pid(&self) -> u32 {
        match self {
            Sfu::Gateway(g) => g.pid(),
            Sfu::Str0m(c, _) => c.id(),
        }
    }

    /// Resident set size, KiB.
    fn rss_kib(&self) -> u64 {
        common::rss_kib(self.pid())
    }

    /// Signals `peer` as `user`: the gateway over its WebSocket (returned, to join later),
    /// the str0m process over TCP.
    async fn signal(&self, user: &str, peer: &mut Peer) -> Option<WsClient> {
        let offer = peer.pc.create_offer(None).expect("offer");
        peer.pc
            .set_local_description(Instant::now(), offer.clone())
            .expect("local description");
        let (ws, sdp) = match self {
            Sfu::Gateway(gw) => {
                let mut ws = connect(gw, &token(user, Role::General, "ev1", &["c1"]))
                    .await
                    .expect("connect");
                ws.notification("channel.list").await;
                let res = ws
                    .call("webrtc.offer", json!({"sdp": offer.sdp}))
                    .await
                    .expect("webrtc.offer accepted");
                (
                    Some(ws),
                    res["sdp"].as_str().expect("answer sdp").to_string(),
                )
            }
            Sfu::Str0m(_, addr) => {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut c = tokio::net::TcpStream::connect(addr).await.expect("str0m");
                c.write_all(offer.sdp.as_bytes()).await.expect("offer");
                c.shutdown().await.expect("shutdown");
                let mut sdp = String::new();
                c.read_to_string(&mut sdp).await.expect("answer");
                assert!(!sdp.is_empty(), "str0m refused the offer");
                (None, sdp)
            }
        };
        peer.pc
            .set_remote_description(
                Instant::now(),
                RTCSessionDescription::answer(sdp).expect("answer"),
            )
            .expect("remote description");
        ws
    }
}

/// Joins channel `c1` (the gateway; str0m forwards to every peer).
async fn join(ws: &mut Option<WsClient>) {
    if let Some(ws) = ws {
        ws.call("channel.join", json!({"channelId": "c1"}))
            .await
            .expect("join");
    }
}

/// Starts the str0m comparison binary at `path` pinned to CPU 0 and reads its ports.
fn start_str0m(path: &str) -> Sfu {
    use std::io::BufRead;
    let mut child = std::process::Command::new("taskset")
        .args(["-c", "0", path])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("str0m-sfu (build it: cargo build --release --manifest-path benches/str0m-sfu/Cargo.toml)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ports line");
    let tcp: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tcp="))
        .and_then(|p| p.parse().ok())
        .expect("tcp=PORT");
    Sfu::Str0m(child, SocketAddr::from(([127, 0, 0, 1], tcp)))
}

/// Drives a listener until `stop`: ICE/DTLS through `rtc`, then counts RTP and decrypts one
/// datagram in `sample`.
async fn listen(
    mut p: Peer,
    connected: oneshot::Sender<()>,
    tally: Rc<RefCell<Tally>>,
    sample: u64,
    phase: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut connected = Some(connected);
    let mut is_connected = false;
    let mut seen = phase;
    let mut buf = vec![0u8; 2048];
    loop {
        p.flush();
        while let Some(e) = p.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                if s == RTCPeerConnectionState::Connected {
                    is_connected = true;
                    if let Some(c) = connected.take() {
                        let _ = c.send(());
                    }
                }
            }
        }
        while p.pc.poll_read().is_some() {}
        let deadline =
            p.pc.poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = p.pc.handle_timeout(Instant::now());
            }
            r = p.sock.readable() => {
                if r.is_err() {
                    continue;
                }
                loop {
                    let got = p
                        .sock
                        .try_io(tokio::io::Interest::READABLE, || recv_stamped(&p.sock, &mut buf));
                    let Ok((n, from, kernel_ns)) = got else { break };
                    let now = Instant::now();
                    let d = &buf[..n];
                    let rtp = n >= 12 && (128..192).contains(&d[0]) && !(192..=223).contains(&d[1]);
                    if !(is_connected && rtp) {
                        p.feed(d, from, now);
                        continue;
                    }
                    seen += 1;
                    let mut t = tally.borrow_mut();
                    if t.counting {
                        t.copies += 1;
                    }
                    drop(t);
                    if !seen.is_multiple_of(sample) {
                        continue;
                    }
                    p.feed(d, from, now);
                    while let Some(TaggedRTCMessage { message, .. }) = p.pc.poll_read() {
                        let RTCMessage::RtpPacket(_, pkt) = message else { continue };
                        if pkt.payload.len() < 8 {
                            continue;
                        }
                        let sent = u64::from_le_bytes(pkt.payload[..8].try_into().expect("8 bytes"));
                        let mut t = tally.borrow_mut();
                        if t.counting {
                            t.latency_ns.push(kernel_ns.saturating_sub(sent));
                        }
                    }
                }
            }
        }
    }
}

/// Reads one datagram with its kernel receive time (`SO_TIMESTAMPNS`, ns since the Unix
/// epoch; the time of the read if the kernel gave none).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let mut at = wall_ns();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                at = ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64;
            }
        }
    }
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
        })
        .ok_or_else(|| std::io::Error::other("no IPv4 source address"))?;
    Ok((msg.bytes, from, at))
}

/// Drives the talker: `rtc` for everything it receives; sends `packets` RTP packets paced at
/// 20 ms when `go` fires, then reports the send window.
async fn talk(
    mut p: Peer,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
    ssrc: u32,
    connected: oneshot::Sender<()>,
    mut go: oneshot::Receiver<usize>,
    done: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connected = Some(connected);
    let mut done = Some(done);
    let mut buf = vec![0u8; 2048];
    let mut left = 0usize;
    let mut going = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut ts) = (rand::random::<u16>(), rand::random::<u32>());
    loop {
        p.flush();
        while let Some(e) = p.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = e
            {
                if let Some(c) = connected.take() {
                    let _ = c.send(());
                }
            }
        }
        while p.pc.poll_read().is_some() {}
        let deadline =
            p.pc.poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = stop.changed() => return,
            n = &mut go, if !going => {
                left = n.unwrap_or(0);
                going = true;
                tick.reset_immediately();
            }
            _ = tick.tick(), if going && left > 0 => {
                let mut payload = vec![0u8; PAYLOAD];
                payload[..8].copy_from_slice(&wall_ns().to_le_bytes());
                let pkt = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        payload_type: 111,
                        sequence_number: seq,
                        timestamp: ts,
                        ssrc,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from(payload),
                };
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(960);
                if let Some(mut s) = p.pc.rtp_sender(sender) {
                    let _ = s.write_rtp(Instant::now(), pkt);
                }
                p.flush();
                left -= 1;
                if left == 0 {
                    if let Some(d) = done.take() {
                        let _ = d.send(());
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = p.pc.handle_timeout(Instant::now());
            }
            r = p.sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    p.feed(&buf[..n], from, Instant::now());
                }
            }
        }
    }
}

async fn join_listener(
    sfu: &Sfu,
    i: usize,
    tally: Rc<RefCell<Tally>>,
    sample: u64,
    stop: watch::Receiver<bool>,
) -> Option<WsClient> {
    let (mut peer, _) = Peer::new(None).await;
    let mut ws = sfu.signal(&format!("l{i}"), &mut peer).await;
    let (ctx, crx) = oneshot::channel();
    tokio::task::spawn_local(listen(peer, ctx, tally, sample, i as u64 % sample, stop));
    tokio::time::timeout(common::WAIT, crx)
        .await
        .expect("listener connected in time")
        .expect("listener task");
    join(&mut ws).await;
    ws
}

/// What a run varies besides N.
struct Opts {
    packets: usize,
    sample: Option<u64>,
    str0m: Option<String>,
    idle: Duration,
    full_ice: bool,
}

async fn run(n: usize, o: &Opts) {
    let packets = o.packets;
    let sample = o.sample.unwrap_or((n as u64 / 20).max(1));
    let max = n + 10;
    let sfu = match &o.str0m {
        Some(path) => start_str0m(path),
        None => {
            let gw = Gateway::start(&format!(
                "ice_lite = {}\nudp_port_min = 40000\nudp_port_max = {}\n\
                 [channels]\nmax_users_per_channel = {max}\n[floor]\n\
                 time_out_timer_ms = 600000\n[limits]\nmax_sessions = {max}\n",
                !o.full_ice,
                40000 + max + 100
            ));
            pin(gw.pid(), 0);
            // The gateway settles (SQLite, listeners) before the idle figure.
            let (_, _) = gw.http_get("/healthz").await;
            Sfu::Gateway(gw)
        }
    };
    let pid = sfu.pid();
    let idle_rss = sfu.rss_kib();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let t_setup = Instant::now();
    let listeners: Vec<Option<WsClient>> = futures_util::stream::iter(0..n)
        .map(|i| join_listener(&sfu, i, Rc::clone(&tally), sample, stop_rx.clone()))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let ssrc = rand::random::<u32>() | 1;
    let (mut tp, sender) = Peer::new(Some(ssrc)).await;
    let mut t_ws = sfu.signal("talker", &mut tp).await;
    let (ctx, crx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::task::spawn_local(talk(
        tp,
        sender.expect("mic sender"),
        ssrc,
        ctx,
        go_rx,
        done_tx,
        stop_rx.clone(),
    ));
    tokio::time::timeout(common::WAIT, crx)
        .await
        .expect("talker connected")
        .expect("talker task");
    join(&mut t_ws).await;
    let setup = t_setup.elapsed();
    let loaded_rss = sfu.rss_kib();
    // The connected peers' idle cost (ICE consent, RTCP, timers, WebSocket): gateway CPU over
    // an IDLE window with nobody talking (a measurement window, not a wait for an event).
    let idle0 = cpu_ticks(pid);
    let t_idle = Instant::now();
    tokio::time::sleep(o.idle).await;
    let idle_per_s = (cpu_ticks(pid) - idle0) as f64 / 100.0 / t_idle.elapsed().as_secs_f64();
    if let Some(ws) = &mut t_ws {
        ws.call("floor.request", json!({"channelId": "c1"}))
            .await
            .expect("granted");
    }
    tally.borrow_mut().counting = true;
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let _ = go_tx.send(packets);
    let _ = done_rx.await;
    tokio::time::sleep(DRAIN).await;
    let cpu = cpu_ticks(pid) - cpu0;
    let window = t0.elapsed();
    let (copies, mut lat) = {
        let mut t = tally.borrow_mut();
        t.counting = false;
        (t.copies, std::mem::take(&mut t.latency_ns))
    };
    lat.sort_unstable();
    let health: serde_json::Value = match &sfu {
        Sfu::Gateway(gw) => {
            serde_json::from_str(&gw.http_get("/healthz").await.1).unwrap_or_default()
        }
        Sfu::Str0m(..) => serde_json::Value::Null,
    };
    let c = &health["counters"];
    let expected = (n * packets) as u64;
    let cpu_s = cpu as f64 / 100.0; // USER_HZ
    println!(
        "N={n:5}: copies {copies}/{expected} (loss {:.2}%), {:.0} copies/s, gateway CPU {:.2} s \
         = {:.1} us/copy, latency p50 {:.3} ms p99 {:.3} ms ({} samples, 1 in {sample}), \
         RSS idle {idle_rss} KiB, loaded {loaded_rss} KiB ({:.0} KiB/peer), set-up {:.1} s; \
         idle {:.1} ms/s ({:.0} us/s per peer), less the idle share {:.1} us/copy; \
         gateway counters: forwarded {} dropped {} unauthorised {}",
        100.0 * (expected.saturating_sub(copies)) as f64 / expected as f64,
        copies as f64 / window.as_secs_f64(),
        cpu_s,
        cpu_s * 1e6 / copies.max(1) as f64,
        percentile(&lat, 0.50) / 1e6,
        percentile(&lat, 0.99) / 1e6,
        lat.len(),
        loaded_rss.saturating_sub(idle_rss) as f64 / (n + 1) as f64,
        setup.as_secs_f64(),
        idle_per_s * 1e3,
        idle_per_s * 1e6 / (n + 1) as f64,
        (cpu_s - idle_per_s * window.as_secs_f64()).max(0.0) * 1e6 / copies.max(1) as f64,
        c["packetsForwarded"],
        c["packetsDropped"],
        c["packetsUnauthorised"],
    );
    let _ = stop_tx.send(true);
    for ws in listeners.iter().chain(std::iter::once(&t_ws)).flatten() {
        ws.close();
    }
    if let Sfu::Str0m(mut child, _) = sfu {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let mut ns = Vec::new();
    let mut o = Opts {
        packets: 500,
        sample: None,
        str0m: None,
        idle: IDLE,
        full_ice: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--packets" => o.packets = it.next().and_then(|v| v.parse().ok()).expect("--packets P"),
            "--sample" => o.sample = it.next().and_then(|v| v.parse().ok()),
            "--str0m" => o.str0m = Some(it.next().expect("--str0m PATH").clone()),
            "--idle" => {
                let s: u64 = it.next().and_then(|v| v.parse().ok()).expect("--idle S");
                o.idle = Duration::from_secs(s);
            }
            "--full-ice" => o.full_ice = true,
            _ => {
                if let Ok(n) = a.parse() {
                    ns.push(n);
                }
            }
        }
    }
    if ns.is_empty() {
        ns = vec![100, 500, 1000, 2000];
    }
    // CPU 1 for the load generator, before any thread exists (they inherit it).
    let mut set = nix::sched::CpuSet::new();
    set.set(1).expect("cpu 1");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .expect("pin the load generator to CPU 1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for n in ns {
            run(n, &o).await;
        }
    });
}
