//! `GET /metrics`: the gateway's state in the Prometheus text exposition format (0.0.4),
//! encoded by prometheus-client from the live state on each scrape: one [`Collector`] reads
//! the hub, the route table's counters, the media engine, the audit queue, the permission sync
//! and the radio ports, so there is no second copy of any counter to keep in step.
//!
//! Sections: build and uptime; sessions (by role); channels (per channel: members, floor
//! taken, uplink packets); floor control; media forwarding and WebRTC peer connections by ICE
//! state; the audit queue; permission sync; radio ports ([`radio_ports`]); linked sites
//! ([`super::link_metrics`]). Every family has
//! HELP. Counter names get `_total` from the encoder. To add a metric, add it to a section with
//! [`Families`].

use super::radio_metrics::radio_ports;
use crate::access::role::Role;
use crate::permissions::policy::LinkState;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

/// The Prometheus text format's content type (0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of one sample: `(name, value)` pairs; values are escaped by the encoder.
pub type Labels = Vec<(&'static str, String)>;

/// Writes families to an encoder: thin helpers over prometheus-client's const metrics.
pub struct Families<'a> {
    enc: DescriptorEncoder<'a>,
}

impl Families<'_> {
    /// A gauge family with one unlabelled sample.
    ///
    /// # Errors
    /// Only when the output cannot be written (never for a `String`).
    pub fn gauge<V: EncodeGaugeValue>(&mut self, name: &str, help: &str, v: V) -> fmt::Result {
        let g = ConstGauge::new(v);
        g.encode(
            self.enc
                .encode_descriptor(name, help, None, g.metric_type())?,
        )
    }

    /// A counter family (`name` without `_total`: the encoder adds it) with one sample.
    ///
    /// # Errors
    /// Only when the output cannot be written.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) -> fmt::Result {
        let c = ConstCounter::new(v);
        c.encode(
            self.enc
                .encode_descriptor(name, help, None, c.metric_type())?,
        )
    }

    /// A family of `kind` with one sample per label set, each made by `metric`.
    fn family<V: Copy, M: EncodeMetric>(
        &mut self,
        (name, help, kind): (&str, &str, MetricType),
        samples: &[(Labels, V)],
        metric: impl Fn(V) -> M,
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, kind)?;
        for (labels, v) in samples {
            metric(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    /// A gauge family with one sample per label set.
    ///
    /// # Errors
    /// Only when the output cannot be written.
    pub fn gauges<V: EncodeGaugeValue + Copy>(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(Labels, V)],
    ) -> fmt::Result {
        self.family((name, help, MetricType::Gauge), samples, ConstGauge::new)
    }

    /// A counter family (`name` without `_total`) with one sample per label set.
    ///
    /// # Errors
    /// Only when the output cannot be written.
    pub fn counters<V: EncodeCounterValue + Copy>(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(Labels, V)],
    ) -> fmt::Result {
        self.family(
            (name, help, MetricType::Counter),
            samples,
            ConstCounter::new,
        )
    }

    /// A latency summary: `name{quantile="0.5"|"0.99"}` in seconds (a gauge family) and its
    /// sample count as the counter `count_name` (without `_total`).
    ///
    /// # Errors
    /// Only when the output cannot be written.
    pub fn latency(
        &mut self,
        (name, help): (&str, &str),
        (count_name, count_help): (&str, &str),
        s: crate::sfu::stats::LatencySummary,
    ) -> fmt::Result {
        self.gauges(
            name,
            help,
            &[
                (vec![("quantile", "0.5".into())], s.p50_us as f64 / 1e6),
                (vec![("quantile", "0.99".into())], s.p99_us as f64 / 1e6),
            ],
        )?;
        self.counter(count_name, count_help, s.count)
    }
}

/// What `/metrics` and `/healthz` read: the hub, the media engine, the audit queue, the
/// permission sync, the radio ports and the start time.
#[derive(Clone)]
pub struct Observed {
    /// The hub's shell (floors, sessions, forwarding counters).
    pub hub: std::sync::Arc<crate::switchboard::Switchboard>,
    /// The media engine (peer connections by ICE state).
    pub media: crate::media::MediaEngine,
    /// The audit log (dropped entries).
    pub audit: crate::audit::Audit,
    /// The permission sync (state, counters).
    pub perm_sync: std::sync::Arc<crate::permissions::PermissionSync>,
    /// The radio and console ports.
    pub radio: std::sync::Arc<crate::bridge::Radios>,
    /// When the gateway started.
    pub started: std::time::Instant,
    /// The state directory's file system.
    pub disk: crate::state::disk::DiskCheck,
    /// The recorder, when `[recording] enabled`.
    pub recorder: Option<crate::recording::recorder::Recorder>,
    /// The linked channels (issue 16; empty without `[[link]]`).
    pub links: std::sync::Arc<crate::link::Links>,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl Collector for Observed {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        let mut f = Families { enc };
        f.gauges(
            "radiogate_build_info",
            "Version and git revision of the running binary (value 1).",
            &[(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").into()),
                    ("revision", super::GIT_REV.into()),
                ],
                1u64,
            )],
        )?;
        f.gauge(
            "radiogate_uptime_seconds",
            "Seconds since the gateway started.",
            self.started.elapsed().as_secs(),
        )?;
        hub_section(self, &mut f)?;
        media_section(self, &mut f)?;
        f.counter(
            "radiogate_audit_dropped",
            "Audit entries dropped because the audit queue was full.",
            self.audit.dropped(),
        )?;
        permission_sync(self, &mut f)?;
        if let Some(r) = &self.recorder {
            f.counter(
                "radiogate_recordings",
                "Talk spurts recorded (files closed) since start.",
                r.recorded(),
            )?;
            f.counter(
                "radiogate_recording_packets",
                "Audio packets written into recordings since start.",
                r.packets(),
            )?;
            f.counter(
                "radiogate_recording_dropped",
                "Packets and spurt boundaries the recorder's queue could not take (dropped).",
                r.dropped(),
            )?;
            f.gauge(
                "radiogate_recording_paused",
                "1 while new spurts are not recorded for lack of free space.",
                u64::from(r.paused()),
            )?;
        }
        let disk = self.disk.status();
        if let Some(free) = disk.free_bytes {
            f.gauge(
                "radiogate_state_disk_free_bytes",
                "Bytes free on the state directory's file system (statvfs f_bavail).",
                free,
            )?;
        }
        radio_ports(&self.radio, &mut f)?;
        super::link_metrics::site_links(&self.links, &mut f)
    }
}

/// The whole exposition.
pub fn render(gw: &Observed) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(gw.clone()));
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

fn hub_section(gw: &Observed, f: &mut Families) -> fmt::Result {
    let (sessions, by_role, channels, c) = {
        let hub = gw.hub.lock();
        let reg = hub.registry();
        let by_role: Vec<(Labels, f64)> = Role::ALL
            .into_iter()
            .map(|r| {
                (
                    vec![("role", r.as_str().into())],
                    reg.count_by_role(r) as f64,
                )
            })
            .collect();
        (reg.len(), by_role, hub.channel_gauges(), hub.counters())
    };
    f.gauge(
        "radiogate_sessions",
        "Connected signaling sessions.",
        sessions as u64,
    )?;
    f.gauges(
        "radiogate_sessions_by_role",
        "Connected signaling sessions by role.",
        &by_role,
    )?;
    f.gauge(
        "radiogate_channels",
        "Channels with at least one member.",
        channels.len() as u64,
    )?;
    f.gauge(
        "radiogate_floors_taken",
        "Channels whose floor is taken now.",
        channels.iter().filter(|c| c.3).count() as u64,
    )?;
    let label = |ch: &str, ev: &str| vec![("channel", ch.to_string()), ("event", ev.to_string())];
    f.gauges(
        "radiogate_channel_members",
        "Members of each channel with members (phones, consoles, radio ports).",
        &channels
            .iter()
            .map(|(ch, ev, n, _)| (label(ch, ev), *n as u64))
            .collect::<Vec<_>>(),
    )?;
    f.gauges(
        "radiogate_channel_talkers",
        "Talkers on each channel with members: 1 while its floor is taken, else 0.",
        &channels
            .iter()
            .map(|(ch, ev, _, taken)| (label(ch, ev), u64::from(*taken)))
            .collect::<Vec<_>>(),
    )?;
    f.counters(
        "radiogate_channel_rtp_packets",
        "Uplink RTP packets of each channel's floor holder forwarded to its members since \
         start (one per packet, however many members hear it).",
        &gw.hub
            .routes()
            .channel_packets()
            .into_iter()
            .map(|(ch, n)| (vec![("channel", ch)], n))
            .collect::<Vec<_>>(),
    )?;
    f.counter(
        "radiogate_floors_granted",
        "Floor requests granted.",
        c.floors_granted,
    )?;
    f.counter(
        "radiogate_floors_denied",
        "Floor requests denied.",
        c.floors_denied,
    )?;
    f.counter(
        "radiogate_floors_revoked",
        "Floors revoked (time-out timer, pre-emption, end-of-media timer, emergency).",
        c.floors_revoked,
    )?;
    f.latency(
        (
            "radiogate_floor_request_latency_seconds",
            "Floor request handling since start (request frame read to reply queued), 10 us buckets.",
        ),
        (
            "radiogate_floor_requests_timed",
            "floor.request and floor.priority_request frames whose handling was timed.",
        ),
        crate::signaling::stats::FLOOR_REQUEST_LATENCY.summary(),
    )
}

fn media_section(gw: &Observed, f: &mut Families) -> fmt::Result {
    let r = gw.hub.routes().counters();
    f.counter(
        "radiogate_rtp_packets_forwarded",
        "RTP packets sent or queued to listeners (copies).",
        r.packets_forwarded,
    )?;
    f.counter(
        "radiogate_rtp_bytes_forwarded",
        "RTP payload bytes sent or queued to listeners.",
        r.bytes_forwarded,
    )?;
    f.counter(
        "radiogate_rtp_packets_dropped",
        "RTP copies dropped because a listener's queue was full.",
        r.packets_dropped,
    )?;
    f.counter(
        "radiogate_rtp_packets_unauthorised",
        "RTP packets from members not holding the floor (not forwarded).",
        r.packets_unauthorised,
    )?;
    f.latency(
        (
            "radiogate_forward_latency_seconds",
            "SFU forwarding latency since start (uplink RTP to listener sender), 10 us buckets.",
        ),
        (
            "radiogate_forward_latency_samples",
            "RTP packets whose forwarding latency was measured.",
        ),
        crate::sfu::stats::FORWARD_LATENCY.summary(),
    )?;
    f.gauges(
        "radiogate_webrtc_peers",
        "WebRTC peer connections by ICE connection state (W3C RTCIceConnectionState).",
        &gw.media
            .ice_states()
            .into_iter()
            .map(|(s, n)| (vec![("ice_state", s.to_string())], n))
            .collect::<Vec<_>>(),
    )?;
    f.gauges(
        "radiogate_webrtc_peers_srtp",
        "Connected WebRTC peer connections by what SRTP-protects their copies: the media \
         engine itself (the DTLS-SRTP key was learned) or webrtc-rs's write path.",
        &gw.media
            .srtp_paths()
            .into_iter()
            .map(|(s, n)| (vec![("by", s.to_string())], n))
            .collect::<Vec<_>>(),
    )
}

fn permission_sync(gw: &Observed, f: &mut Families) -> fmt::Result {
    let s = gw.perm_sync.status();
    let states = [
        (LinkState::Standalone, "standalone"),
        (LinkState::Connecting, "connecting"),
        (LinkState::Connected, "connected"),
        (LinkState::Degraded, "degraded"),
    ];
    f.gauges(
        "radiogate_permission_sync_state",
        "Permission sync state: 1 for the current one (standalone: no Redis configured).",
        &states
            .iter()
            .map(|(st, name)| {
                (
                    vec![("state", (*name).to_string())],
                    u64::from(s.state == *st),
                )
            })
            .collect::<Vec<_>>(),
    )?;
    f.gauge(
        "radiogate_permission_sync_degraded_since_seconds",
        "Unix time sync became degraded (0 when it is not).",
        s.degraded_since_ms.map_or(0.0, |m| m as f64 / 1000.0),
    )?;
    f.gauge(
        "radiogate_permission_sync_last_full_sync_seconds",
        "Unix time of the last full read of the permissions from Redis (0: never).",
        s.last_full_sync_ms.map_or(0.0, |m| m as f64 / 1000.0),
    )?;
    f.counter(
        "radiogate_permission_updates_applied",
        "Membership updates from Redis applied.",
        s.updates_applied,
    )?;
    f.counter(
        "radiogate_permission_updates_skipped",
        "Membership updates from Redis skipped (unusable or for an event not followed).",
        s.updates_skipped,
    )
}

/// The `GET /metrics` response.
pub fn respond(gw: &Observed) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(gw))
}
