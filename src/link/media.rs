//! SHELL. The audio of one linked channel between this site and its upstream (issue 16): one
//! WebRTC peer connection (webrtc-rs's sans-IO `rtc`, as in the media engine) with ONE audio
//! stream each way, offered by the site, driven by its own task on its own UDP socket.
//!
//! Why not the media engine's socket: the upstream's engine tells its peer connections apart
//! by remote address, and a site links several channels to the same upstream; one socket per
//! linked channel gives each its own address. The cost is one tokio task and one socket per
//! linked channel at the site; the upstream serves the link like any other session. The task
//! wakes on a datagram, on a local packet queued for the upstream (sent at once: a thread
//! polling its queue between socket reads added up to its poll period to every packet), and
//! on the peer connection's next timer.
//!
//! - Upstream → site: the packets of whoever talks elsewhere arrive on the downlink stream and
//!   are forwarded through the site's route table as the link participant's uplink
//!   ([`Routes::forward`]): heard locally while the link participant holds the local floor.
//! - Site → upstream: the link participant is a listener of the local channel (a queue sink);
//!   its [`Downlink`]s (a local talker's packets) are rewritten onto the one uplink stream
//!   (continuous SSRC, sequence numbers and timestamps across talkers) and sent while
//!   [`LinkAudio::set_sending`] is on (a local talker holds the upstream floor).

use crate::media::{host_candidate, opus_media_engine, opus_track, MediaError, OPUS_PAYLOAD_TYPE};
use crate::sfu::rewrite::{SlotStream, SpurtKey};
use crate::sfu::routes::Routes;
use crate::sfu::Downlink;
use bytes::BytesMut;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest sleep without a timer of the peer connection.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Largest datagram read, bytes.
const MTU: usize = 1500;

/// Packet counters and state of one link's audio (`admin.status`, `/metrics`).
#[derive(Debug, Default)]
pub struct AudioStats {
    /// RTP packets received from the upstream.
    pub packets_down: AtomicU64,
    /// RTP packets sent to the upstream.
    pub packets_up: AtomicU64,
    /// Whether DTLS and SRTP are up.
    pub connected: AtomicBool,
}

/// The running audio of one linked channel. Dropping it stops the task (which closes the
/// peer connection).
pub struct LinkAudio {
    answer: mpsc::UnboundedSender<String>,
    sending: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl std::fmt::Debug for LinkAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAudio").finish_non_exhaustive()
    }
}

fn rerr(e: impl std::fmt::Display) -> MediaError {
    MediaError::Rtc(e.to_string())
}

/// What the audio thread forwards through and reads from.
pub struct AudioParts {
    /// The IP the socket binds (`sfu.udp_bind_ip`; the unspecified address binds all).
    pub bind_ip: IpAddr,
    /// The IP put in the offer's host candidate (the bind IP, or the first advertised IP).
    pub advertise_ip: IpAddr,
    /// The link participant's connection id at this site (the talker of forwarded packets).
    pub conn: u64,
    /// The site's route table.
    pub routes: Routes,
    /// The link participant's downlink queue (local talkers' packets).
    pub downlink: mpsc::Receiver<Downlink>,
    /// Counters.
    pub stats: Arc<AudioStats>,
}

impl LinkAudio {
    /// Binds a UDP socket, builds the offering peer connection (one sendrecv Opus stream)
    /// and starts its task (on the current tokio runtime). Returns the handle and the SDP
    /// offer (with the host candidate).
    ///
    /// # Errors
    /// [`MediaError::Io`] (socket), [`MediaError::Rtc`] (`rtc` refused a step).
    pub fn start(p: AudioParts) -> Result<(Self, String), MediaError> {
        let std_sock = std::net::UdpSocket::bind(SocketAddr::new(p.bind_ip, 0))?;
        std_sock.set_nonblocking(true)?;
        let sock = UdpSocket::from_std(std_sock)?;
        let local = SocketAddr::new(p.advertise_ip, sock.local_addr()?.port());
        let now = Instant::now();
        let ssrc: u32 = rand::random();
        let media = opus_media_engine()?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_interceptor_registry(configure_rtcp_reports(rtc::interceptor::Registry::new()))
            .build(now)
            .map_err(rerr)?;
        let track = opus_track(format!("radiogate-link-{}", p.conn), "link".into(), ssrc);
        let sender = pc.add_track(track).map_err(rerr)?;
        pc.add_local_candidate(host_candidate(local)?)
            .map_err(rerr)?;
        let offer = pc.create_offer(None).map_err(rerr)?;
        pc.set_local_description(now, offer).map_err(rerr)?;
        let sdp = pc
            .local_description()
            .ok_or_else(|| MediaError::Rtc("no local description".into()))?
            .sdp;
        let (answer_tx, answer_rx) = mpsc::unbounded_channel();
        let sending = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let run = Run {
            sock,
            local,
            pc,
            sender,
            stream: SlotStream::new(ssrc, OPUS_PAYLOAD_TYPE, rand::random(), rand::random()),
            answer: answer_rx,
            sending: Arc::clone(&sending),
            stop: stop.clone(),
            conn: p.conn,
            routes: p.routes,
            downlink: p.downlink,
            stats: p.stats,
        };
        tokio::spawn(run.run());
        Ok((
            Self {
                answer: answer_tx,
                sending,
                stop,
            },
            sdp,
        ))
    }

    /// Hands the upstream's SDP answer to the task.
    pub fn answer(&self, sdp: String) {
        let _ = self.answer.send(sdp);
    }

    /// Whether local talkers' packets go upstream (a local talker holds the upstream floor).
    pub fn set_sending(&self, on: bool) {
        self.sending.store(on, Ordering::Relaxed);
    }
}

impl Drop for LinkAudio {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Run {
    sock: UdpSocket,
    local: SocketAddr,
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    stream: SlotStream,
    answer: mpsc::UnboundedReceiver<String>,
    sending: Arc<AtomicBool>,
    stop: CancellationToken,
    conn: u64,
    routes: Routes,
    downlink: mpsc::Receiver<Downlink>,
    stats: Arc<AudioStats>,
}

impl Run {
    async fn run(mut self) {
        let mut buf = vec![0u8; MTU];
        loop {
            let now = Instant::now();
            let wake = self
                .pc
                .poll_timeout()
                .map_or(now + IDLE_POLL, |d| d.min(now + IDLE_POLL));
            tokio::select! {
                _ = self.stop.cancelled() => break,
                r = self.sock.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.read(&buf[..n], from);
                    }
                }
                d = self.downlink.recv() => match d {
                    Some(d) => self.uplink(d),
                    None => break,
                },
                a = self.answer.recv() => match a {
                    Some(sdp) => self.answered(sdp),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if self.pc.poll_timeout().is_some_and(|d| d <= now) {
                let _ = self.pc.handle_timeout(now);
            }
            self.drain(now);
        }
        let _ = self.pc.close();
        self.drain(Instant::now());
    }

    fn read(&mut self, datagram: &[u8], from: SocketAddr) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        });
    }

    fn answered(&mut self, sdp: String) {
        let res = RTCSessionDescription::answer(sdp)
            .map_err(rerr)
            .and_then(|d| {
                self.pc
                    .set_remote_description(Instant::now(), d)
                    .map_err(rerr)
            });
        if let Err(e) = res {
            tracing::warn!(conn = self.conn, error = ?e.to_string(), "link audio: the upstream's answer was refused");
        }
    }

    /// A local talker's packet: rewritten onto the uplink stream and sent while a local
    /// talker holds the upstream floor (dropped otherwise).
    fn uplink(&mut self, d: Downlink) {
        if !self.sending.load(Ordering::Relaxed) || !self.stats.connected.load(Ordering::Relaxed) {
            return;
        }
        let mut pkt = d.packet;
        let key = SpurtKey {
            grant: d.grant,
            ssrc: pkt.header.ssrc,
        };
        self.stream.rewrite(key, &mut pkt.header, d.received_at);
        if self
            .pc
            .rtp_sender(self.sender)
            .is_some_and(|mut s| s.write_rtp(Instant::now(), pkt).is_ok())
        {
            self.stats.packets_up.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(w) = self.pc.poll_write() {
            // Non-blocking: a datagram the socket buffer cannot take is lost, as on the wire.
            let _ = self.sock.try_send_to(&w.message, w.transport.peer_addr);
        }
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                tracing::debug!(conn = self.conn, state = %s, "link audio state");
                self.stats
                    .connected
                    .store(s == RTCPeerConnectionState::Connected, Ordering::Relaxed);
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, pkt) = message {
                self.stats.packets_down.fetch_add(1, Ordering::Relaxed);
                self.routes.forward(self.conn, &pkt, now);
            }
        }
    }
}
