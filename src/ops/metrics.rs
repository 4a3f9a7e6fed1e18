//! `GET /metrics`: the gateway's counters in the Prometheus text exposition format (0.0.4),
//! rendered from the live state on each scrape (no separate registry to keep in step).
//!
//! Sections: build and uptime; sessions (by role), channels, floors; floor control counters;
//! media forwarding; the audit queue; permission sync (Redis state,
//! [`crate::permissions::PermissionSync::metrics_text`]); radio ports ([`radio_ports`]).
//! To add a metric, write it in the section's function with [`gauge`] / [`counter`].

use crate::access::role::Role;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one metric family with a single unlabelled sample.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, help, "gauge", &[("", value.to_string())]);
}

/// Writes one counter family (`name` should end in `_total`) with a single sample.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, help, "counter", &[("", value.to_string())]);
}

/// Writes a metric family: `# HELP`, `# TYPE` and one sample per (labels, value); labels
/// are given preformatted (`role="ADMIN"`), empty for none.
pub fn family<L: AsRef<str>>(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    samples: &[(L, String)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let labels = labels.as_ref();
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Writes a latency histogram's summary: `name{quantile="0.5"|"0.99"}` in seconds (a gauge
/// family) and its sample count as the counter `count_name`.
pub fn latency(
    out: &mut String,
    name: &str,
    help: &str,
    count_name: &str,
    count_help: &str,
    summary: crate::sfu::stats::LatencySummary,
) {
    family(
        out,
        name,
        help,
        "gauge",
        &[
            (
                "quantile=\"0.5\"",
                format!("{}", summary.p50_us as f64 / 1e6),
            ),
            (
                "quantile=\"0.99\"",
                format!("{}", summary.p99_us as f64 / 1e6),
            ),
        ],
    );
    counter(out, count_name, count_help, summary.count);
}

/// Escapes a label value (backslash, double quote, newline).
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What `/metrics` and `/healthz` read: the hub, the audit queue, the permission sync, the
/// radio ports and the start time.
#[derive(Clone)]
pub struct Observed {
    /// The hub's shell (floors, sessions, forwarding counters).
    pub hub: std::sync::Arc<crate::switchboard::Switchboard>,
    /// The audit log (dropped entries).
    pub audit: crate::audit::Audit,
    /// The permission sync (state, counters).
    pub perm_sync: std::sync::Arc<crate::permissions::PermissionSync>,
    /// The radio and console ports.
    pub radio: std::sync::Arc<crate::bridge::Radios>,
    /// When the gateway started.
    pub started: std::time::Instant,
}

/// The whole exposition.
pub fn render(gw: &Observed) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "radiogate_build_info",
        "Version and git revision of the running binary.",
        "gauge",
        &[(
            format!(
                "version=\"{}\",revision=\"{}\"",
                env!("CARGO_PKG_VERSION"),
                label_value(super::GIT_REV)
            ),
            "1".into(),
        )],
    );
    gauge(
        &mut out,
        "radiogate_uptime_seconds",
        "Seconds since the gateway started.",
        gw.started.elapsed().as_secs(),
    );
    hub_section(gw, &mut out);
    counter(
        &mut out,
        "radiogate_audit_dropped_total",
        "Audit entries dropped because the audit queue was full.",
        gw.audit.dropped(),
    );
    out.push_str(&gw.perm_sync.metrics_text());
    radio_ports(gw, &mut out);
    out
}

fn hub_section(gw: &Observed, out: &mut String) {
    let (sessions, by_role, channels, floors, c) = {
        let hub = gw.hub.lock();
        let reg = hub.registry();
        let by_role: Vec<(String, String)> = [Role::Admin, Role::Dispatch, Role::General]
            .into_iter()
            .map(|r| {
                (
                    format!("role=\"{}\"", r.as_str()),
                    reg.count_by_role(r).to_string(),
                )
            })
            .collect();
        (
            reg.len(),
            by_role,
            hub.channel_count(),
            hub.floors_taken(),
            hub.counters(),
        )
    };
    let f = gw.hub.routes().counters();
    gauge(
        out,
        "radiogate_sessions",
        "Connected signaling sessions.",
        sessions,
    );
    family(
        out,
        "radiogate_sessions_by_role",
        "Connected signaling sessions by role.",
        "gauge",
        &by_role,
    );
    gauge(
        out,
        "radiogate_channels",
        "Channels with at least one member.",
        channels,
    );
    gauge(
        out,
        "radiogate_floors_taken",
        "Channels whose floor is taken now.",
        floors,
    );
    counter(
        out,
        "radiogate_floors_granted_total",
        "Floor requests granted.",
        c.floors_granted,
    );
    counter(
        out,
        "radiogate_floors_denied_total",
        "Floor requests denied.",
        c.floors_denied,
    );
    counter(
        out,
        "radiogate_floors_revoked_total",
        "Floors revoked (time-out timer, pre-emption).",
        c.floors_revoked,
    );
    counter(
        out,
        "radiogate_rtp_packets_forwarded_total",
        "RTP packets queued to listeners.",
        f.packets_forwarded,
    );
    counter(
        out,
        "radiogate_rtp_bytes_forwarded_total",
        "RTP payload bytes queued to listeners.",
        f.bytes_forwarded,
    );
    counter(
        out,
        "radiogate_rtp_packets_dropped_total",
        "RTP packets dropped because a listener's queue was full.",
        f.packets_dropped,
    );
    counter(
        out,
        "radiogate_rtp_packets_unauthorised_total",
        "RTP packets from members not holding the floor (not forwarded).",
        f.packets_unauthorised,
    );
    latency(
        out,
        "radiogate_forward_latency_seconds",
        "SFU forwarding latency since start (uplink RTP to listener sender), 10 us buckets.",
        "radiogate_forward_latency_samples_total",
        "RTP packets whose forwarding latency was measured.",
        crate::sfu::stats::FORWARD_LATENCY.summary(),
    );
    latency(
        out,
        "radiogate_floor_request_latency_seconds",
        "Floor request handling since start (request frame read to reply queued), 10 us buckets.",
        "radiogate_floor_requests_timed_total",
        "floor.request and floor.priority_request frames whose handling was timed.",
        crate::signaling::stats::FLOOR_REQUEST_LATENCY.summary(),
    );
}

/// Radio and console ports: the port count, then one sample per port (label
/// `port="NAME",kind="radio|console",channel="ID"`) of its state (joined, keyed, squelch open or
/// button pressed, sending, locked out after a time-out, devices down) and its counters since
/// start (key-ups, seconds keyed, time-outs, floors denied and revoked, 20 ms frames sent,
/// channel voice packets received and lost, errors, playout samples dropped).
pub fn radio_ports(gw: &Observed, out: &mut String) {
    let ports = gw.radio.status();
    gauge(
        out,
        "radiogate_radio_ports",
        "Configured radio and console ports.",
        ports.len(),
    );
    if ports.is_empty() {
        return;
    }
    let labels: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "port=\"{}\",kind=\"{}\",channel=\"{}\"",
                label_value(&p.name),
                p.kind,
                label_value(&p.channel)
            )
        })
        .collect();
    let per_port = |out: &mut String,
                    name: &str,
                    help: &str,
                    kind: &str,
                    v: &dyn Fn(&crate::bridge::PortStatus) -> String| {
        let samples: Vec<(&String, String)> = labels
            .iter()
            .zip(ports.iter())
            .map(|(l, p)| (l, v(p)))
            .collect();
        family(out, name, help, kind, &samples);
    };
    let flag = |b: bool| u8::from(b).to_string();
    per_port(
        out,
        "radiogate_radio_port_joined",
        "1 while the port is a member of its channel.",
        "gauge",
        &|p| flag(p.joined),
    );
    per_port(
        out,
        "radiogate_radio_port_keyed",
        "1 while the port's PTT is keyed.",
        "gauge",
        &|p| flag(p.keyed),
    );
    per_port(
        out,
        "radiogate_radio_port_receiving",
        "1 while the squelch (COS) is open or the console button pressed.",
        "gauge",
        &|p| flag(p.squelch_open),
    );
    per_port(
        out,
        "radiogate_radio_port_sending",
        "1 while the port holds the floor and sends to its channel.",
        "gauge",
        &|p| flag(p.sending),
    );
    per_port(
        out,
        "radiogate_radio_port_locked_out",
        "1 while the transmitter is locked out after a time-out.",
        "gauge",
        &|p| flag(p.locked_out),
    );
    per_port(
        out,
        "radiogate_radio_port_devices_down",
        "Devices of the port that are down (reconnecting); a sound card still starting is not counted.",
        "gauge",
        &|p| {
            p.devices
                .iter()
                .filter(|d| d.state == "down")
                .count()
                .to_string()
        },
    );
    let c = |f: fn(&crate::bridge::PortCounters) -> u64| {
        move |p: &crate::bridge::PortStatus| f(&p.counters).to_string()
    };
    per_port(
        out,
        "radiogate_radio_port_key_ups_total",
        "Times the PTT was keyed.",
        "counter",
        &c(|c| c.key_ups),
    );
    per_port(
        out,
        "radiogate_radio_port_keyed_seconds_total",
        "Time keyed, seconds.",
        "counter",
        &|p| format!("{}", p.counters.keyed_ms as f64 / 1000.0),
    );
    per_port(
        out,
        "radiogate_radio_port_tot_expired_total",
        "Transmit time-outs (time-out timer).",
        "counter",
        &c(|c| c.time_outs),
    );
    per_port(
        out,
        "radiogate_radio_port_floor_denied_total",
        "Floor requests of the port denied.",
        "counter",
        &c(|c| c.floor_denied),
    );
    per_port(
        out,
        "radiogate_radio_port_floor_revoked_total",
        "Floors of the port revoked.",
        "counter",
        &c(|c| c.floor_revoked),
    );
    per_port(
        out,
        "radiogate_radio_port_frames_sent_total",
        "20 ms audio frames sent to the channel.",
        "counter",
        &c(|c| c.frames_sent),
    );
    per_port(
        out,
        "radiogate_radio_port_packets_received_total",
        "Channel voice RTP packets decoded for the radio.",
        "counter",
        &c(|c| c.packets_received),
    );
    per_port(
        out,
        "radiogate_radio_port_packets_lost_total",
        "Channel voice packets missing (sequence gaps), concealed.",
        "counter",
        &c(|c| c.packets_lost),
    );
    per_port(
        out,
        "radiogate_radio_port_errors_total",
        "Device and codec errors.",
        "counter",
        &c(|c| c.errors),
    );
    per_port(
        out,
        "radiogate_radio_port_playout_dropped_samples_total",
        "Samples to play dropped (card not running or queue over its cap).",
        "counter",
        &c(|c| c.playout_dropped),
    );
}

/// The `GET /metrics` response.
pub fn respond(gw: &Observed) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(gw))
}
