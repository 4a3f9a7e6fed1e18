//! The media engine: one thread driving webrtc-rs's sans-IO `rtc` peer connections of every
//! session over ONE UDP socket.
//!
//! - Demultiplexing: a datagram goes to the peer connection its remote address belongs to; a
//!   STUN request from an address not seen yet goes to the peer connection whose ICE ufrag is
//!   the local part of its USERNAME ([`demux`], pure), and the address is remembered.
//! - Per uplink RTP packet (decrypted by the talker's `rtc`): the route table
//!   ([`Routes`], published by the hub shell on every floor or membership change) is read
//!   lock-free; each listener that is a peer of this engine gets a copy rewritten onto its slot
//!   stream ([`SlotStream`](crate::sfu::rewrite::SlotStream): SSRC, sequence number and
//!   timestamp continuous across talker changes, state kept here in the engine) and
//!   SRTP-protected by the engine itself with the listener's local master key, learned at the
//!   DTLS handshake through the peer connection's crypto provider ([`srtp_keys`], the
//!   context in `protect`); a peer whose key could not be learned keeps `rtc`'s
//!   `write_rtp` (`/metrics` `radiogate_webrtc_peers_srtp{by}` counts both). Radio ports get a
//!   [`Downlink`](crate::sfu::Downlink) on their queue. The copies leave in `sendmmsg` batches
//!   ([`socket`]).
//! - RTCP: `rtc`'s receiver-report interceptor, and sender reports: `rtc`'s interceptor for
//!   copies it protected, the engine's own (`protect::SenderStats`, sent through `rtc`'s
//!   SRTCP) every 5 s for the rest. No NACK, no TWCC: audio.
//! - Timers: every peer's `rtc` deadline in a min-heap (`timers`); a connected peer's are
//!   served at most once a second (`rtc`'s ICE agent asks every 200 ms).
//! - Control: sessions talk to the thread through a [`MediaEngine`] handle: offers and
//!   candidates with a reply, closes; uplink packets forwarded outside the engine (a radio
//!   port talking) are injected through a bounded queue ([`FORWARD_QUEUE`]).
//!
//! One thread, not one per core: a 2-core Pi 4 serving a few hundred listeners spends a small
//! share of one core here (docs/BENCHMARKS.md), and one thread keeps every peer's state
//! unshared. Sharding peers over threads (each with its own socket and port) is the next step
//! if a site needs more.

mod demux;
mod engine;
pub mod ice_states;
mod offer;
mod protect;
pub mod srtp_keys;
mod timers;

pub use engine::{host_candidate, opus_codec};
pub use offer::{
    dtls_certificate, negotiate, opus_media_engine, opus_track, Negotiated, OfferSettings,
    OPUS_PAYLOAD_TYPE,
};
mod socket;

use crate::config::SfuConfig;
use crate::sfu::routes::{Inject, Routes, Sink};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

pub use rtc::peer_connection::transport::RTCIceCandidateInit;

/// Uplink packets from outside the engine (radio ports) waiting for the media thread, at
/// most; over it a packet is dropped (counted as dropped).
pub const FORWARD_QUEUE: usize = 1024;

/// Errors of the media engine.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The offer does not contain usable audio or was refused.
    #[error("offer: {0}")]
    BadOffer(String),
    /// `rtc` refused an operation.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// Socket set-up failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// No UDP port is free in the configured range.
    #[error("no free UDP port in {0}..={1}")]
    NoPort(u16, u16),
    /// No such peer connection (closed or never made).
    #[error("no such peer connection")]
    NoPeer,
    /// The media thread is gone.
    #[error("media engine stopped")]
    Stopped,
}

/// Identifies one peer connection of the engine (unique for the process's life).
pub type PeerId = u64;

/// Called on the media thread with the peer's id when a peer connection failed or closed on
/// its own (not on [`MediaEngine::close`]).
pub type OnClosed = Arc<dyn Fn(PeerId) + Send + Sync>;

/// The result of an offer.
#[derive(Debug)]
pub struct Answer {
    /// The new peer connection.
    pub peer: PeerId,
    /// The SDP answer, with the host candidates (no trickle needed).
    pub sdp: String,
    /// Number of downlink slots negotiated (audio m-lines, at most the session's slots).
    pub slots: usize,
}

/// Commands to the media thread that carry a reply or change the peer set.
pub(crate) enum Control {
    Offer {
        peer: PeerId,
        conn: u64,
        sdp: String,
        slot_ssrcs: Vec<u32>,
        on_closed: OnClosed,
        reply: oneshot::Sender<Result<Answer, MediaError>>,
    },
    Candidate {
        peer: PeerId,
        candidate: RTCIceCandidateInit,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Close {
        peer: PeerId,
    },
    Stop,
}

/// An uplink packet forwarded outside the engine, for the engine's listeners.
pub(crate) struct Forward {
    from: u64,
    packet: rtc::rtp::Packet,
    received_at: Instant,
}

struct Shared {
    // The control queue is unbounded: each session awaits the reply to its offer or
    // candidate before sending another, so it holds at most one command per session plus
    // one close per ended session.
    control: Sender<Control>,
    forward: SyncSender<Forward>,
    waker: UnixDatagram,
    next_peer: AtomicU64,
    local: SocketAddr,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Peer connections by ICE state (written by the media thread).
    ice: Arc<ice_states::IceStates>,
    /// Connected peer connections by SRTP path (written by the media thread).
    srtp: Arc<ice_states::SrtpPaths>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEngine")
            .field("local", &self.local)
            .finish()
    }
}

impl Shared {
    fn wake(&self) {
        // A full waker buffer means a wake-up is pending already.
        let _ = self.waker.send(&[1]);
    }
}

impl Inject for Shared {
    fn inject(&self, from: u64, packet: &rtc::rtp::Packet, received_at: Instant) -> bool {
        let f = Forward {
            from,
            packet: packet.clone(),
            received_at,
        };
        match self.forward.try_send(f) {
            Ok(()) => {
                self.wake();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Handle to the media engine (cheap to clone). The thread stops on [`MediaEngine::stop`].
#[derive(Debug, Clone)]
pub struct MediaEngine {
    shared: Arc<Shared>,
}

/// The host candidate addresses for a socket bound on `bind` at `port`: the advertised IPs if
/// any, else the bind IP, else (bound on an unspecified IP) every IPv4 interface address that
/// is up and not loopback, else 127.0.0.1.
fn candidate_addrs(cfg: &SfuConfig, port: u16) -> Vec<SocketAddr> {
    let ips: Vec<IpAddr> = if !cfg.advertise_ips.is_empty() {
        cfg.advertise_ips.clone()
    } else if !cfg.udp_bind_ip.is_unspecified() {
        vec![cfg.udp_bind_ip]
    } else {
        let mut v: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
            .map(|it| {
                it.filter(|i| {
                    i.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                        && !i
                            .flags
                            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
                })
                .filter_map(|i| i.address?.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())))
                .collect()
            })
            .unwrap_or_default();
        v.dedup();
        if v.is_empty() {
            v.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        v
    };
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// Environment variable that restricts the SRTP profile (a measurement switch: the Pi
/// estimate of the fan-out benchmark): `aes128-cm-sha1-80` (AES counter mode and HMAC-SHA1,
/// RustCrypto, which `--cfg aes_force_soft` turns to software AES) or `aes128-gcm` (ring).
/// Unset: [`DEFAULT_SRTP_PROFILES`].
pub const SRTP_PROFILE_ENV: &str = "RADIOGATE_SRTP_PROFILE";

/// The SRTP profiles offered in DTLS by default: `rtc`'s default order without AES-256-GCM,
/// so every peer connection's key has 128 bits and its copies can be protected by the engine
/// itself ([`srtp_keys`]). AES-128-GCM (RFC 7714) first, then AES-CM with HMAC-SHA1, which
/// every WebRTC implementation supports (RFC 8827 §6.5).
pub const DEFAULT_SRTP_PROFILES: [SrtpProtectionProfile; 3] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
];

fn srtp_profiles_from_env() -> Vec<SrtpProtectionProfile> {
    use SrtpProtectionProfile as P;
    match std::env::var(SRTP_PROFILE_ENV).as_deref() {
        Ok("aes128-cm-sha1-80") => vec![P::Srtp_Aes128_Cm_Hmac_Sha1_80],
        Ok("aes128-gcm") => vec![P::Srtp_Aead_Aes_128_Gcm],
        Ok(other) => {
            tracing::warn!(
                value = other,
                "unknown {SRTP_PROFILE_ENV}, using the default"
            );
            DEFAULT_SRTP_PROFILES.to_vec()
        }
        Err(_) => DEFAULT_SRTP_PROFILES.to_vec(),
    }
}

impl MediaEngine {
    /// Binds the media socket (`sfu.udp_bind_ip`, the first free port of
    /// `sfu.udp_port_min..=udp_port_max`, or an ephemeral port) and starts the media thread,
    /// which forwards through `routes`.
    ///
    /// # Errors
    /// [`MediaError::NoPort`] or [`MediaError::Io`] when the socket or thread cannot be made.
    pub fn start(cfg: &SfuConfig, routes: Routes) -> Result<Self, MediaError> {
        let sock = socket::bind(cfg.udp_bind_ip, cfg.udp_port_min, cfg.udp_port_max)?;
        let bound = sock.local_addr()?;
        let candidates = candidate_addrs(cfg, bound.port());
        let local = candidates.first().copied().unwrap_or(bound);
        let advertised = local;
        let srtp_profiles = srtp_profiles_from_env();
        let ice_lite = cfg.ice_lite;
        let certificate = offer::dtls_certificate()?;
        let (control_tx, control_rx): (Sender<Control>, Receiver<Control>) = mpsc::channel();
        let (forward_tx, forward_rx) = mpsc::sync_channel(FORWARD_QUEUE);
        let (wake_tx, wake_rx) = UnixDatagram::pair()?;
        let ice = Arc::new(ice_states::IceStates::default());
        let ice_engine = Arc::clone(&ice);
        let srtp = Arc::new(ice_states::SrtpPaths::default());
        let srtp_engine = Arc::clone(&srtp);
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("media".into())
            .spawn(move || {
                // Built on the media thread: `rtc` peer connections never leave it.
                engine::Engine::new(engine::Parts {
                    sock,
                    local,
                    candidates,
                    routes,
                    control: control_rx,
                    forward: forward_rx,
                    waker: wake_rx,
                    srtp_profiles,
                    ice_lite,
                    ice: ice_engine,
                    srtp: srtp_engine,
                    certificate,
                })
                .run()
            })?;
        tracing::info!(socket = %bound, %advertised, "media engine started");
        Ok(Self {
            shared: Arc::new(Shared {
                control: control_tx,
                forward: forward_tx,
                waker: wake_tx,
                next_peer: AtomicU64::new(1),
                local: bound,
                thread: parking_lot::Mutex::new(Some(thread)),
                ice,
                srtp,
            }),
        })
    }

    /// Connected peer connections by what SRTP-protects their copies: `[("engine", n),
    /// ("webrtc", n)]` (the engine when their key was learned, else webrtc-rs).
    pub fn srtp_paths(&self) -> [(&'static str, u64); 2] {
        self.shared.srtp.snapshot()
    }

    /// Live peer connections by ICE state: `(W3C state name, count)` for every state.
    pub fn ice_states(&self) -> Vec<(&'static str, u64)> {
        self.shared.ice.snapshot()
    }

    /// The media socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    fn send(&self, c: Control) -> Result<(), MediaError> {
        self.shared
            .control
            .send(c)
            .map_err(|_| MediaError::Stopped)?;
        self.shared.wake();
        Ok(())
    }

    /// Answers `offer` of session `conn` with a new peer connection whose downlink slots send
    /// with `slot_ssrcs` (in slot order). A previous peer connection of `conn` is closed.
    ///
    /// # Errors
    /// [`MediaError::BadOffer`] (no audio m-line, no Opus), [`MediaError::Rtc`],
    /// [`MediaError::Stopped`].
    pub async fn offer(
        &self,
        conn: u64,
        offer: String,
        slot_ssrcs: Vec<u32>,
        on_closed: OnClosed,
    ) -> Result<Answer, MediaError> {
        let peer = self.shared.next_peer.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.send(Control::Offer {
            peer,
            conn,
            sdp: offer,
            slot_ssrcs,
            on_closed,
            reply,
        })?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Adds a trickled remote ICE candidate to `peer`.
    ///
    /// # Errors
    /// [`MediaError::NoPeer`], [`MediaError::Rtc`] (a bad candidate), [`MediaError::Stopped`].
    pub async fn add_candidate(
        &self,
        peer: PeerId,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.send(Control::Candidate {
            peer,
            candidate,
            reply,
        })?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Closes `peer` (no-op if it is gone).
    pub fn close(&self, peer: PeerId) {
        let _ = self.send(Control::Close { peer });
    }

    /// The route-table sink for `peer`: its listener copies are made on the media thread.
    pub fn sink(&self, peer: PeerId) -> Sink {
        Sink::Engine {
            peer,
            engine: Arc::clone(&self.shared) as Arc<dyn Inject>,
        }
    }

    /// Stops the media thread (closing every peer connection) and waits for it.
    pub fn stop(&self) {
        let _ = self.send(Control::Stop);
        if let Some(t) = self.shared.thread.lock().take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn cfg(bind: &str, advertise: &[&str]) -> SfuConfig {
        SfuConfig {
            udp_bind_ip: bind.parse().unwrap(),
            udp_port_min: 0,
            udp_port_max: 0,
            advertise_ips: advertise.iter().map(|a| a.parse().unwrap()).collect(),
            ice_lite: true,
        }
    }

    #[test]
    fn advertised_ips_replace_the_host_candidates() {
        let got = candidate_addrs(&cfg("0.0.0.0", &["10.1.2.3", "192.0.2.7"]), 5000);
        assert_eq!(got, vec![addr("10.1.2.3:5000"), addr("192.0.2.7:5000")]);
        let got = candidate_addrs(&cfg("127.0.0.1", &[]), 5001);
        assert_eq!(got, vec![addr("127.0.0.1:5001")]);
        let any = candidate_addrs(&cfg("0.0.0.0", &[]), 5002);
        assert!(
            !any.is_empty()
                && any
                    .iter()
                    .all(|a| a.port() == 5002 && !a.ip().is_unspecified())
        );
    }
}
