//! SHELL: the media thread. Owns every session's sans-IO `rtc` peer connection and the one UDP
//! socket; demultiplexes datagrams by remote address and, for an address not seen yet, by
//! the ICE ufrag in a STUN request's USERNAME; forwards each decrypted uplink RTP packet
//! through the route table (read lock-free), rewriting and SRTP-protecting one copy per
//! listener and sending the copies in `sendmmsg` batches.

use super::demux::{self, Kind};
use super::ice_states::{IceStates, SrtpPaths};
use super::offer::{negotiate, Negotiated, OfferSettings};
use super::protect::{Protector, SenderStats};
use super::socket::Batch;
use super::srtp_keys::{profile_from_stats, KeyCapture};
use super::timers::{coalesced, Timers};
use super::{Answer, Control, Forward, MediaError, OnClosed, PeerId, RTCIceCandidateInit};
use crate::sfu::rewrite::{SlotStream, SpurtKey};
use crate::sfu::routes::{Routes, Sink};
use bytes::BytesMut;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp::Header;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::time::SystemInstant;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::StatsSelector;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

/// Longest the thread sleeps without a deadline, ms.
const IDLE_WAIT_MS: u16 = 1000;
/// Datagrams read per wake-up before timers and commands get a turn.
const READ_BUDGET: usize = 512;
/// Remote addresses remembered per peer connection (ICE may try several).
const MAX_ADDRS: usize = 8;
/// Largest datagram read, bytes.
const MTU: usize = 1500;
/// Copies queued before they are sent mid-fan-out: the first listeners do not wait for the
/// last one's copy to be protected (added latency), and one `sendmmsg` still carries many.
const FLUSH_EVERY: usize = 64;
/// How often the engine looks for sender reports due, ms.
const REPORT_SWEEP_MS: u64 = 1000;

/// One downlink slot of a peer connection: its sender, its continuous stream and what its
/// sender reports say (copies protected by the engine; `rtc`'s interceptor counts the rest).
struct Slot {
    sender: RTCRtpSenderId,
    stream: SlotStream,
    sent: SenderStats,
}

/// One session's peer connection.
struct Peer {
    conn: u64,
    pc: RTCPeerConnection,
    ufrag: String,
    slots: Vec<Slot>,
    addrs: Vec<SocketAddr>,
    connected: bool,
    /// Its ICE connection state (counted in [`IceStates`]).
    ice: RTCIceConnectionState,
    deadline: Option<Instant>,
    /// When its `rtc` timers were last served (connected peers: at most once a second,
    /// [`CONNECTED_TICK_MS`](super::timers::CONNECTED_TICK_MS)).
    last_tick: Option<Instant>,
    on_closed: OnClosed,
    /// Its crypto provider, which learns the local SRTP master key at the DTLS handshake.
    keys: Arc<KeyCapture>,
    /// The engine's own SRTP protection of this peer's copies, from the learned key; `None`
    /// before DTLS is done or when the key could not be learned (copies then go through
    /// `rtc`'s `write_rtp`). Once set, every copy goes through it: the two contexts never
    /// protect the same stream.
    fast: Option<Protector>,
    /// Where `rtc` sends this peer's DTLS and SRTCP: the selected candidate pair's remote
    /// address, which the engine's own copies go to.
    media_to: Option<SocketAddr>,
}

/// The media thread's state.
pub(super) struct Engine {
    sock: UdpSocket,
    /// The address given to `rtc` as the local end of every datagram (the first host
    /// candidate: `rtc` matches it against its local candidates).
    local: SocketAddr,
    /// Host candidates put in every answer.
    candidates: Vec<SocketAddr>,
    routes: Routes,
    control: Receiver<Control>,
    forward: Receiver<Forward>,
    waker: UnixDatagram,
    peers: FxHashMap<PeerId, Peer>,
    by_addr: FxHashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    by_conn: HashMap<u64, PeerId>,
    batch: Batch,
    uplink: Vec<rtc::rtp::Packet>,
    /// SRTP protection profiles offered in DTLS (empty: `rtc`'s default, AES-GCM first).
    srtp_profiles: Vec<SrtpProtectionProfile>,
    /// Answer as an ICE-lite agent (`sfu.ice_lite`).
    ice_lite: bool,
    /// Peer connections by ICE state (`/metrics`).
    ice: Arc<IceStates>,
    /// Connected peer connections by SRTP path (`/metrics`).
    srtp: Arc<SrtpPaths>,
    /// The DTLS certificate of every peer connection.
    certificate: RTCCertificate,
    /// When the next sender-report sweep is due.
    next_reports: Instant,
    /// Every peer's `rtc` deadline.
    timers: Timers,
}

/// The one audio codec the gateway offers and expects: Opus, 48 kHz, 2 channels (RFC 7587),
/// in-band FEC, 10 ms minimum packet time. Shared with the test and bench clients.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The UDP host candidate (ICE component 1) for `addr`.
///
/// # Errors
/// [`MediaError::Rtc`] when `rtc` refuses the address.
pub fn host_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, MediaError> {
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(rerr)?;
    RTCIceCandidate::from(&cand).to_json().map_err(rerr)
}

fn rerr(e: impl std::fmt::Display) -> MediaError {
    MediaError::Rtc(e.to_string())
}

/// `len` random letters and digits (ICE credentials, the DTLS certificate's name).
pub(super) fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What the media thread starts with.
pub(super) struct Parts {
    pub sock: UdpSocket,
    pub local: SocketAddr,
    pub candidates: Vec<SocketAddr>,
    pub routes: Routes,
    pub control: Receiver<Control>,
    pub forward: Receiver<Forward>,
    pub waker: UnixDatagram,
    pub srtp_profiles: Vec<SrtpProtectionProfile>,
    pub ice_lite: bool,
    pub ice: Arc<IceStates>,
    pub srtp: Arc<SrtpPaths>,
    pub certificate: RTCCertificate,
}

impl Engine {
    /// The engine with no peer connection yet.
    pub fn new(p: Parts) -> Self {
        Self {
            sock: p.sock,
            local: p.local,
            candidates: p.candidates,
            routes: p.routes,
            control: p.control,
            forward: p.forward,
            waker: p.waker,
            peers: FxHashMap::default(),
            by_addr: FxHashMap::default(),
            by_ufrag: HashMap::new(),
            by_conn: HashMap::new(),
            batch: Batch::default(),
            uplink: Vec::new(),
            srtp_profiles: p.srtp_profiles,
            ice_lite: p.ice_lite,
            ice: p.ice,
            srtp: p.srtp,
            certificate: p.certificate,
            next_reports: Instant::now(),
            timers: Timers::default(),
        }
    }

    /// Runs until [`Control::Stop`] or every handle is gone.
    pub fn run(mut self) {
        let mut buf = vec![0u8; MTU];
        let mut due: Vec<PeerId> = Vec::new();
        loop {
            let now = Instant::now();
            let peers = &self.peers;
            let next = self
                .timers
                .next(|id, d| is_deadline(peers, id, d))
                .map_or(self.next_reports, |d| d.min(self.next_reports));
            let wait_ms = next
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .min(IDLE_WAIT_MS as u128) as u16;
            if wait_ms > 0 && !self.wait(wait_ms) {
                continue;
            }
            if !self.commands() {
                break;
            }
            for _ in 0..READ_BUDGET {
                match self.sock.recv_from(&mut buf) {
                    Ok((n, from)) => self.datagram(&buf[..n], from),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "media socket read");
                        break;
                    }
                }
                if self.batch.len() >= super::socket::BATCH / 2 {
                    self.batch.flush(&self.sock);
                }
            }
            let now = Instant::now();
            due.clear();
            let peers = &self.peers;
            self.timers
                .due(now, |id, d| is_deadline(peers, id, d), &mut due);
            for id in &due {
                if let Some(p) = self.peers.get_mut(id) {
                    // Its entry left the heap: the deadline read next is pushed anew.
                    p.deadline = None;
                    p.last_tick = Some(now);
                    let _ = p.pc.handle_timeout(now);
                }
                self.service(*id);
            }
            self.timers.compact(
                self.peers.len(),
                self.peers
                    .iter()
                    .filter_map(|(id, p)| p.deadline.map(|d| (*id, d))),
            );
            if self.next_reports <= now {
                self.sender_reports(now);
                self.next_reports = now + std::time::Duration::from_millis(REPORT_SWEEP_MS);
            }
            self.batch.flush(&self.sock);
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove(id, false);
        }
        self.batch.flush(&self.sock);
    }

    /// Waits for the socket or the waker to be readable, or `ms` to pass. Returns false on an
    /// interrupted wait (the loop recomputes its deadline).
    fn wait(&self, ms: u16) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [
            PollFd::new(self.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.waker.as_fd(), PollFlags::POLLIN),
        ];
        !matches!(
            poll(&mut fds, PollTimeout::from(ms)),
            Err(nix::errno::Errno::EINTR)
        )
    }

    /// Carries out queued commands; false when the engine must stop.
    fn commands(&mut self) -> bool {
        let mut scratch = [0u8; 64];
        while self.waker.recv(&mut scratch).is_ok() {}
        loop {
            match self.control.try_recv() {
                Ok(Control::Offer {
                    peer,
                    conn,
                    sdp,
                    slot_ssrcs,
                    on_closed,
                    reply,
                }) => {
                    let res = self.answer(peer, conn, &sdp, &slot_ssrcs, on_closed);
                    if res.is_ok() {
                        self.service(peer);
                    }
                    let _ = reply.send(res);
                }
                Ok(Control::Candidate {
                    peer,
                    candidate,
                    reply,
                }) => {
                    let res = match self.peers.get_mut(&peer) {
                        Some(p) => p.pc.add_remote_candidate(candidate).map_err(rerr),
                        None => Err(MediaError::NoPeer),
                    };
                    self.service(peer);
                    let _ = reply.send(res);
                }
                Ok(Control::Close { peer }) => self.remove(peer, false),
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => break,
            }
        }
        while let Ok(f) = self.forward.try_recv() {
            self.fan_out(f.from, &f.packet, f.received_at, true);
        }
        true
    }

    /// Builds the peer connection for an offer and returns the answer.
    fn answer(
        &mut self,
        id: PeerId,
        conn: u64,
        offer: &str,
        slot_ssrcs: &[u32],
        on_closed: OnClosed,
    ) -> Result<Answer, MediaError> {
        let ufrag = loop {
            let u = random_token(16);
            if !self.by_ufrag.contains_key(&u) {
                break u;
            }
        };
        let settings = OfferSettings {
            conn,
            ufrag: &ufrag,
            pwd: &random_token(24),
            srtp_profiles: &self.srtp_profiles,
            ice_lite: self.ice_lite,
            candidates: &self.candidates,
            slot_ssrcs,
            certificate: &self.certificate,
        };
        let Negotiated {
            pc,
            senders,
            sdp,
            payload_type: pt,
            keys,
        } = negotiate(offer, &settings, Instant::now())?;
        let slots = senders.len();
        let slots_v = senders
            .into_iter()
            .zip(slot_ssrcs)
            .map(|(sender, ssrc)| Slot {
                sender,
                stream: SlotStream::new(*ssrc, pt, rand::random(), rand::random()),
                sent: SenderStats::default(),
            })
            .collect();
        // A newer offer of the same session replaces its peer connection.
        if let Some(old) = self.by_conn.insert(conn, id) {
            self.remove(old, false);
            self.by_conn.insert(conn, id);
        }
        self.by_ufrag.insert(ufrag.clone(), id);
        self.peers.insert(
            id,
            Peer {
                conn,
                pc,
                ufrag,
                slots: slots_v,
                addrs: Vec::new(),
                connected: false,
                ice: RTCIceConnectionState::New,
                deadline: None,
                last_tick: None,
                on_closed,
                keys,
                fast: None,
                media_to: None,
            },
        );
        self.ice.enter(RTCIceConnectionState::New);
        Ok(Answer {
            peer: id,
            sdp,
            slots,
        })
    }

    /// One datagram from `from`.
    fn datagram(&mut self, d: &[u8], from: SocketAddr) {
        let kind = demux::classify(d);
        if kind == Kind::Other {
            return;
        }
        let id = match self.by_addr.get(&from) {
            Some(id) => *id,
            None => {
                let Some(id) = demux::stun_local_ufrag(d).and_then(|u| self.by_ufrag.get(u)) else {
                    return;
                };
                let id = *id;
                if let Some(p) = self.peers.get_mut(&id) {
                    if p.addrs.len() >= MAX_ADDRS {
                        let old = p.addrs.remove(0);
                        self.by_addr.remove(&old);
                    }
                    p.addrs.push(from);
                }
                self.by_addr.insert(from, id);
                id
            }
        };
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let _ = p.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(d),
        });
        self.service(id);
    }

    /// Drains what `rtc` produced for peer `id`: datagrams to send, state changes, and uplink
    /// RTP to forward; then reads its next deadline.
    fn service(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        while let Some(w) = p.pc.poll_write() {
            if demux::classify(&w.message) != Kind::Stun {
                p.media_to = Some(w.transport.peer_addr);
            }
            self.batch
                .push(&self.sock, w.transport.peer_addr, w.message);
        }
        let mut gone = false;
        while let Some(e) = p.pc.poll_event() {
            match e {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => {
                    tracing::debug!(conn = p.conn, state = %s, "media peer state");
                    match s {
                        RTCPeerConnectionState::Connected if !p.connected => {
                            p.connected = true;
                            p.fast = own_protection(&mut p.pc, &p.keys, p.conn);
                            self.srtp.add(p.fast.is_some(), 1);
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            gone = true
                        }
                        _ => {}
                    }
                }
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(s) if s != p.ice => {
                    tracing::debug!(conn = p.conn, state = %s, "media peer ICE state");
                    self.ice.leave(p.ice);
                    self.ice.enter(s);
                    p.ice = s;
                }
                _ => {}
            }
        }
        self.uplink.clear();
        while let Some(TaggedRTCMessage { message, .. }) = p.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, pkt) = message {
                self.uplink.push(pkt);
            }
        }
        let old = p.deadline;
        p.deadline = coalesced(p.pc.poll_timeout(), p.connected, p.last_tick);
        self.timers.set(id, old, p.deadline);
        let conn = p.conn;
        if !self.uplink.is_empty() {
            let now = Instant::now();
            let pkts = std::mem::take(&mut self.uplink);
            for pkt in &pkts {
                self.fan_out(conn, pkt, now, false);
            }
            self.uplink = pkts;
        }
        if gone {
            self.remove(id, true);
        }
    }

    /// Forwards one uplink packet of `from` to its listeners: engine peers get a rewritten,
    /// SRTP-protected copy queued on the batch; queue sinks (radio ports) get a [`Downlink`]
    /// unless `injected` (whoever injected it served those already).
    fn fan_out(&mut self, from: u64, pkt: &rtc::rtp::Packet, received_at: Instant, injected: bool) {
        let table = self.routes.current();
        let Some(targets) = table.targets(from) else {
            self.routes.count_unauthorised();
            return;
        };
        if !injected {
            self.routes.heard(&table, from, received_at, pkt);
        }
        let (mut sent, mut dropped) = (0u64, 0u64);
        let now = Instant::now();
        for t in targets {
            match &t.sink {
                Sink::Engine { peer, .. } => {
                    let Some(lp) = self.peers.get_mut(peer) else {
                        dropped += 1;
                        continue;
                    };
                    let Some(slot) = lp.slots.get_mut(t.slot) else {
                        continue;
                    };
                    if !lp.connected {
                        dropped += 1;
                        continue;
                    }
                    let key = SpurtKey {
                        grant: t.grant,
                        ssrc: pkt.header.ssrc,
                    };
                    if let (Some(fast), Some(to)) = (lp.fast.as_mut(), lp.media_to) {
                        let mut hdr = Header {
                            version: 2,
                            marker: pkt.header.marker,
                            sequence_number: pkt.header.sequence_number,
                            timestamp: pkt.header.timestamp,
                            ..Default::default()
                        };
                        slot.stream.rewrite(key, &mut hdr, received_at);
                        match fast.protect(&hdr, &pkt.payload) {
                            Ok(d) => {
                                slot.sent.sent(hdr.timestamp, pkt.payload.len(), now);
                                self.batch.push(&self.sock, to, d);
                                sent += 1;
                                if self.batch.len() >= FLUSH_EVERY {
                                    self.batch.flush(&self.sock);
                                }
                            }
                            Err(e) => {
                                tracing::debug!(conn = lp.conn, error = %e, "copy not protected");
                                dropped += 1;
                            }
                        }
                        continue;
                    }
                    let mut copy = pkt.clone();
                    slot.stream.rewrite(key, &mut copy.header, received_at);
                    let ok = lp
                        .pc
                        .rtp_sender(slot.sender)
                        .is_some_and(|mut s| s.write_rtp(now, copy).is_ok());
                    if ok {
                        sent += 1;
                    } else {
                        dropped += 1;
                    }
                    while let Some(w) = lp.pc.poll_write() {
                        self.batch
                            .push(&self.sock, w.transport.peer_addr, w.message);
                    }
                }
                Sink::Queue(tx) if !injected => {
                    if t.queue(tx, pkt, received_at) {
                        sent += 1;
                    } else {
                        dropped += 1;
                    }
                }
                Sink::Queue(_) => {}
            }
        }
        self.routes
            .count_forwarded(sent, sent * pkt.payload.len() as u64, dropped);
        crate::sfu::stats::FORWARD_LATENCY.record(received_at.elapsed());
    }

    /// Sends the RTCP sender reports due (RFC 3550 §6.4.1) for the slots whose copies the
    /// engine protects itself, through each peer's `rtc` (its SRTCP context).
    fn sender_reports(&mut self, now: Instant) {
        let wall = SystemInstant::now(now);
        for p in self.peers.values_mut() {
            if p.fast.is_none() {
                continue;
            }
            for slot in &mut p.slots {
                let Some(sr) = slot.sent.due(slot.stream.ssrc(), now, wall) else {
                    continue;
                };
                if let Some(mut s) = p.pc.rtp_sender(slot.sender) {
                    if let Err(e) = s.write_rtcp(now, vec![Box::new(sr)]) {
                        tracing::debug!(conn = p.conn, error = %e, "sender report not sent");
                    }
                }
            }
            while let Some(w) = p.pc.poll_write() {
                self.batch
                    .push(&self.sock, w.transport.peer_addr, w.message);
            }
        }
    }

    /// Closes and forgets peer `id`; `notify` calls its `on_closed` (it failed or closed on
    /// its own, not on its session's request).
    fn remove(&mut self, id: PeerId, notify: bool) {
        let Some(mut p) = self.peers.remove(&id) else {
            return;
        };
        self.ice.leave(p.ice);
        if p.connected {
            self.srtp.add(p.fast.is_some(), -1);
        }
        let _ = p.pc.close();
        while let Some(w) = p.pc.poll_write() {
            self.batch
                .push(&self.sock, w.transport.peer_addr, w.message);
        }
        for a in &p.addrs {
            self.by_addr.remove(a);
        }
        self.by_ufrag.remove(&p.ufrag);
        if self.by_conn.get(&p.conn) == Some(&id) {
            self.by_conn.remove(&p.conn);
        }
        if notify {
            (p.on_closed)(id);
        }
        tracing::debug!(conn = p.conn, peer = id, "media peer removed");
    }
}

/// Whether `d` is peer `id`'s current deadline (not a stale heap entry).
fn is_deadline(peers: &FxHashMap<PeerId, Peer>, id: PeerId, d: Instant) -> bool {
    peers.get(&id).is_some_and(|p| p.deadline == Some(d))
}

/// The engine's own SRTP protection for a peer connection whose DTLS just completed: its
/// profile from `rtc`'s transport statistics, its local master key from its [`KeyCapture`].
/// `None` (logged) when either is not to be had: the peer's copies then go through `rtc`.
fn own_protection(pc: &mut RTCPeerConnection, keys: &KeyCapture, conn: u64) -> Option<Protector> {
    let stats = pc.get_stats(Instant::now(), StatsSelector::None);
    let name = stats
        .transport()
        .map(|t| t.srtp_cipher.clone())
        .unwrap_or_default();
    let res = profile_from_stats(&name)
        .ok_or_else(|| format!("unknown SRTP profile {name:?}"))
        .and_then(|profile| keys.local(profile).map_err(|e| e.to_string()))
        .and_then(|key| Protector::new(&key, keys.inner().crypto()).map_err(|e| e.to_string()));
    match res {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::info!(conn, error = %e, "SRTP key not learned: copies go through webrtc-rs");
            None
        }
    }
}
