//! One session's WebRTC peer connection: answers the client's offer, reads the client's
//! microphone (uplink) into the hub, and writes the hub's downlink packets to the client's
//! slot tracks.

use super::rewrite::{SlotStream, SpurtKey};
use super::routes::Routes;
use super::{audio_mlines, opus_payload_type, Downlink, Sfu, SfuError, DOWNLINK_QUEUE};
use crate::hub::ConnId;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateType,
    RTCIceGatheringState, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

/// How long ICE gathering of host candidates may take before the answer is sent anyway.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`MediaPeer::negotiate`] needs.
pub struct PeerSetup {
    /// The session's connection id (the floor participant whose uplink this is).
    pub conn_id: ConnId,
    /// The client's SDP offer.
    pub offer_sdp: String,
    /// SSRC of each downlink slot, in slot order (fixed for the session).
    pub slot_ssrcs: Vec<u32>,
    /// The route table the uplink is forwarded through (read lock-free per packet).
    pub routes: Routes,
    /// Called with the peer's downlink queue when the peer connection fails or closes (the
    /// shell detaches it from the routes if it is still the attached one).
    pub on_closed: OnClosed,
}

/// See [`PeerSetup::on_closed`].
pub type OnClosed = Arc<dyn Fn(&mpsc::Sender<Downlink>) + Send + Sync>;

/// A live peer connection and its downlink writer.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    writer: tokio::task::JoinHandle<()>,
    /// Number of slots negotiated (audio m-lines in the offer, at most the slot count).
    pub slots: usize,
    /// The downlink queue: attach it to the hub's routes to be heard.
    pub downlink: mpsc::Sender<Downlink>,
}

struct Handler {
    conn_id: ConnId,
    routes: Routes,
    on_closed: OnClosed,
    downlink: mpsc::Sender<Downlink>,
    gathered: mpsc::Sender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(conn = self.conn_id, ?state, "peer connection state");
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            (self.on_closed)(&self.downlink);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            return;
        }
        let (conn, routes) = (self.conn_id, self.routes.clone());
        tokio::spawn(async move {
            while let Some(evt) = track.poll().await {
                match evt {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let at = Instant::now();
                        routes.forward(conn, &p, at);
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
            tracing::debug!(conn, "uplink track ended");
        });
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

impl MediaPeer {
    /// Builds the peer connection for `setup`, applies the offer and returns the peer and the
    /// SDP answer (with every host candidate gathered, no trickle needed).
    ///
    /// # Errors
    /// [`SfuError::BadOffer`] when the offer has no audio m-line or no Opus;
    /// [`SfuError::WebRtc`] when webrtc-rs refuses it; [`SfuError::NoPort`] from the allocator.
    pub async fn negotiate(sfu: &Sfu, setup: PeerSetup) -> Result<(Self, String), SfuError> {
        let wanted = audio_mlines(&setup.offer_sdp);
        if wanted == 0 {
            return Err(SfuError::BadOffer("no audio m-line".into()));
        }
        let slots = wanted.min(setup.slot_ssrcs.len());
        let werr = |e: webrtc::error::Error| SfuError::WebRtc(e.to_string());

        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus_codec(),
                    payload_type: 111,
                },
                RtpCodecKind::Audio,
            )
            .map_err(werr)?;
        let registry =
            register_default_interceptors(Registry::new(), &mut media_engine).map_err(werr)?;
        let mut setting = SettingEngineBuilder::new();
        if !sfu.config().advertise_ips.is_empty() {
            let ips = sfu
                .config()
                .advertise_ips
                .iter()
                .map(|i| i.to_string())
                .collect();
            setting = setting.with_nat_1to1_ips(ips, RTCIceCandidateType::Host);
        }
        let (gtx, mut grx) = mpsc::channel(1);
        let (tx, rx) = mpsc::channel(DOWNLINK_QUEUE);
        let handler = Arc::new(Handler {
            conn_id: setup.conn_id,
            routes: setup.routes.clone(),
            on_closed: Arc::clone(&setup.on_closed),
            downlink: tx.clone(),
            gathered: gtx,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(setting.build())
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![sfu.allocate_addr()?])
            .build()
            .await
            .map_err(werr)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        match Self::offer_answer(&pc, &setup, slots, &mut grx).await {
            Ok((tracks, answer)) => {
                let pt = opus_payload_type(&answer)
                    .ok_or_else(|| SfuError::BadOffer("no Opus in the negotiated answer".into()))?;
                let streams = setup.slot_ssrcs[..slots]
                    .iter()
                    .map(|ssrc| SlotStream::new(*ssrc, pt, rand::random(), rand::random()))
                    .collect();
                let writer = tokio::spawn(downlink_writer(setup.conn_id, rx, tracks, streams));
                Ok((
                    Self {
                        pc,
                        writer,
                        slots,
                        downlink: tx,
                    },
                    answer,
                ))
            }
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    async fn offer_answer(
        pc: &Arc<dyn PeerConnection>,
        setup: &PeerSetup,
        slots: usize,
        gathered: &mut mpsc::Receiver<()>,
    ) -> Result<(Vec<Arc<TrackLocalStaticRTP>>, String), SfuError> {
        let werr = |e: webrtc::error::Error| SfuError::WebRtc(e.to_string());
        pc.set_remote_description(
            RTCSessionDescription::offer(setup.offer_sdp.clone())
                .map_err(|e| SfuError::BadOffer(e.to_string()))?,
        )
        .await
        .map_err(|e| SfuError::BadOffer(e.to_string()))?;
        let mut tracks = Vec::with_capacity(slots);
        for (i, ssrc) in setup.slot_ssrcs[..slots].iter().enumerate() {
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                format!("radiogate-{}", setup.conn_id),
                format!("slot-{i}"),
                format!("slot-{i}"),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            )));
            pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .map_err(werr)?;
            tracks.push(track);
        }
        let answer = pc.create_answer(None).await.map_err(werr)?;
        pc.set_local_description(answer).await.map_err(werr)?;
        let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.recv()).await;
        let local = pc
            .local_description()
            .await
            .ok_or_else(|| SfuError::WebRtc("no local description".into()))?;
        Ok((tracks, local.sdp))
    }

    /// Adds a trickled remote ICE candidate.
    ///
    /// # Errors
    /// [`SfuError::WebRtc`] if webrtc-rs refuses the candidate.
    pub async fn add_candidate(
        &self,
        candidate: webrtc::peer_connection::RTCIceCandidateInit,
    ) -> Result<(), SfuError> {
        self.pc
            .add_ice_candidate(candidate)
            .await
            .map_err(|e| SfuError::WebRtc(e.to_string()))
    }

    /// Closes the peer connection and stops the downlink writer.
    pub async fn close(self) {
        self.writer.abort();
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "peer close");
        }
    }
}

async fn downlink_writer(
    conn: ConnId,
    mut rx: mpsc::Receiver<Downlink>,
    tracks: Vec<Arc<TrackLocalStaticRTP>>,
    mut streams: Vec<SlotStream>,
) {
    while let Some(d) = rx.recv().await {
        let (Some(track), Some(stream)) = (tracks.get(d.slot), streams.get_mut(d.slot)) else {
            continue;
        };
        let mut p = d.packet;
        let key = SpurtKey {
            grant: d.grant,
            ssrc: p.header.ssrc,
        };
        stream.rewrite(key, &mut p.header, Instant::now());
        let received_at = d.received_at;
        match track.write_rtp(p).await {
            Ok(()) => super::stats::FORWARD_LATENCY.record(received_at.elapsed()),
            Err(e) => tracing::trace!(conn, error = %e, "downlink write"),
        }
    }
}
