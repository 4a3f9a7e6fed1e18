//! A webrtc-rs client peer for the tests: offers `slots` audio m-lines (the first sendrecv for
//! the microphone), records every RTP packet it receives, and sends Opus speech frames.

use super::{WsClient, WAIT};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, Registry,
};

/// One received RTP packet.
#[derive(Debug, Clone)]
pub struct Received {
    /// SSRC as received.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// Payload (Opus).
    pub payload: Vec<u8>,
    /// Arrival time.
    pub at: Instant,
}

/// Packets received so far and a notifier on each arrival.
#[derive(Default)]
pub struct Inbox {
    /// Received packets in arrival order.
    pub packets: Mutex<Vec<Received>>,
    /// Notified on each packet.
    pub notify: Notify,
}

struct Handler {
    gathered: mpsc::Sender<()>,
    connected: mpsc::Sender<()>,
    inbox: Arc<Inbox>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.try_send(());
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let inbox = Arc::clone(&self.inbox);
        tokio::spawn(async move {
            while let Some(evt) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = evt {
                    inbox.packets.lock().unwrap().push(Received {
                        ssrc: p.header.ssrc,
                        seq: p.header.sequence_number,
                        ts: p.header.timestamp,
                        payload: p.payload.to_vec(),
                        at: Instant::now(),
                    });
                    inbox.notify.notify_waiters();
                }
            }
        });
    }
}

/// A connected client peer.
pub struct RtcClient {
    pc: Arc<dyn PeerConnection>,
    mic: Arc<TrackLocalStaticRTP>,
    mic_ssrc: u32,
    seq: u16,
    ts: u32,
    /// What it received.
    pub inbox: Arc<Inbox>,
    /// Slot SSRCs from the server's answer, in slot order.
    pub slot_ssrcs: Vec<u32>,
    /// The server's SDP answer.
    pub answer_sdp: String,
}

impl RtcClient {
    /// Makes the session on `ws` a WebRTC member of `channel`: waits for its `channel.list`,
    /// negotiates a peer connection with one downlink slot and joins the channel.
    pub async fn join(ws: &mut WsClient, channel: &str) -> Self {
        ws.notification("channel.list").await;
        let rtc = Self::connect(ws, 1).await;
        ws.call("channel.join", json!({"channelId": channel}))
            .await
            .expect("join");
        rtc
    }

    /// Negotiates a peer connection with `slots` audio m-lines over `ws` and waits until it is
    /// connected.
    pub async fn connect(ws: &mut WsClient, slots: usize) -> Self {
        let mut me = MediaEngine::default();
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: radiogate::media::opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut me).unwrap();
        let (gtx, mut grx) = mpsc::channel(1);
        let (ctx, mut crx) = mpsc::channel(1);
        let inbox = Arc::new(Inbox::default());
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                gathered: gtx,
                connected: ctx,
                inbox: Arc::clone(&inbox),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
            .build()
            .await
            .unwrap();
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let mic_ssrc = rand::random::<u32>() | 1;
        let mic = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "mic".into(),
            "mic".into(),
            "mic".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(mic_ssrc),
                    ..Default::default()
                },
                codec: radiogate::media::opus_codec(),
                ..Default::default()
            }],
        )));
        pc.add_transceiver_from_track(
            Arc::clone(&mic) as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
        for _ in 1..slots {
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .unwrap();
        }
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        tokio::time::timeout(WAIT, grx.recv())
            .await
            .expect("client ICE gathering");
        let sdp = pc.local_description().await.unwrap().sdp;
        let res = ws
            .call("webrtc.offer", json!({"sdp": sdp}))
            .await
            .expect("webrtc.offer accepted");
        let slot_ssrcs = res["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ssrc"].as_u64().unwrap() as u32)
            .collect();
        let answer_sdp = res["sdp"].as_str().unwrap().to_string();
        pc.set_remote_description(RTCSessionDescription::answer(answer_sdp.clone()).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(WAIT, crx.recv())
            .await
            .expect("peer connection connected");
        Self {
            pc,
            mic,
            mic_ssrc,
            seq: rand::random(),
            ts: rand::random(),
            inbox,
            slot_ssrcs,
            answer_sdp,
        }
    }

    /// Sends one Opus frame (20 ms) as the next RTP packet of the microphone stream.
    pub async fn send_frame(&mut self, payload: &[u8]) {
        let pkt = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: self.seq,
                timestamp: self.ts,
                ssrc: self.mic_ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(960);
        let _ = self.mic.write_rtp(pkt).await;
    }

    /// Sends `frames` paced in real time (one every 20 ms), except those for which `lost`
    /// is true: their sequence number and timestamp pass as if they were lost on the way.
    pub async fn talk_with_loss(&mut self, frames: &[Vec<u8>], lost: impl Fn(usize) -> bool) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for (i, f) in frames.iter().enumerate() {
            tick.tick().await;
            if lost(i) {
                self.seq = self.seq.wrapping_add(1);
                self.ts = self.ts.wrapping_add(960);
            } else {
                self.send_frame(f).await;
            }
        }
    }

    /// Sends `frames` paced in real time (one every 20 ms).
    pub async fn talk(&mut self, frames: &[Vec<u8>]) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for f in frames {
            tick.tick().await;
            self.send_frame(f).await;
        }
    }

    /// Number of packets received so far.
    pub fn received(&self) -> usize {
        self.inbox.packets.lock().unwrap().len()
    }

    /// Snapshot of received packets.
    pub fn packets(&self) -> Vec<Received> {
        self.inbox.packets.lock().unwrap().clone()
    }

    /// Waits until at least `n` packets arrived or `limit` passed; returns the count.
    pub async fn wait_received(&self, n: usize, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inbox.notify.notified();
            let have = self.received();
            if have >= n {
                return have;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }

    /// Closes the peer connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// The committed speech clip (tests/fixtures/speech.wav, 48 kHz mono 16-bit) as samples.
pub fn speech_pcm() -> Vec<i16> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/speech.wav");
    let mut r = hound::WavReader::open(path).expect("speech.wav");
    let spec = r.spec();
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 1));
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// Encodes PCM into 20 ms Opus frames (960 samples each; the tail is dropped).
pub fn encode_opus(pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    pcm.chunks_exact(960)
        .map(|c| enc.encode_vec(c, 1500).unwrap())
        .collect()
}

/// Decodes Opus frames in order into PCM (960 samples per frame).
pub fn decode_opus(frames: &[Vec<u8>]) -> Vec<i16> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut out = Vec::new();
    for f in frames {
        let mut buf = vec![0i16; 5760];
        let n = dec.decode(f, &mut buf, false).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// RMS energy per 20 ms frame.
pub fn envelope(pcm: &[i16]) -> Vec<f64> {
    pcm.chunks_exact(960)
        .map(|c| (c.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / 960.0).sqrt())
        .collect()
}

/// Pearson correlation of two equally long series.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa.sqrt() * sbb.sqrt())
}
