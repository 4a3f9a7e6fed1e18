//! `GET /metrics`: the gateway's counters in the Prometheus text exposition format (0.0.4),
//! rendered from the live state on each scrape (no separate registry to keep in step).
//!
//! Sections: build and uptime; sessions (by role), channels, floors; floor control counters;
//! media forwarding; the audit queue; permission sync (Redis state,
//! [`crate::permissions::PermissionSync::metrics_text`]); radio ports ([`radio_ports`]).
//! To add a metric, write it in the section's function with [`gauge`] / [`counter`].

use crate::access::role::Role;
use crate::app::Gateway;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::Arc;

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

/// Escapes a label value (backslash, double quote, newline).
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(gw: &Gateway) -> String {
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

fn hub_section(gw: &Gateway, out: &mut String) {
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
        c.packets_forwarded,
    );
    counter(
        out,
        "radiogate_rtp_bytes_forwarded_total",
        "RTP payload bytes queued to listeners.",
        c.bytes_forwarded,
    );
    counter(
        out,
        "radiogate_rtp_packets_dropped_total",
        "RTP packets dropped because a listener's queue was full.",
        c.packets_dropped,
    );
    counter(
        out,
        "radiogate_rtp_packets_unauthorised_total",
        "RTP packets from members not holding the floor (not forwarded).",
        c.packets_unauthorised,
    );
    let lat = crate::sfu::stats::FORWARD_LATENCY.summary();
    family(
        out,
        "radiogate_forward_latency_seconds",
        "SFU forwarding latency since start (uplink RTP to listener sender), 10 us buckets.",
        "gauge",
        &[
            ("quantile=\"0.5\"", format!("{}", lat.p50_us as f64 / 1e6)),
            ("quantile=\"0.99\"", format!("{}", lat.p99_us as f64 / 1e6)),
        ],
    );
    counter(
        out,
        "radiogate_forward_latency_samples_total",
        "RTP packets whose forwarding latency was measured.",
        lat.count,
    );
}

/// Radio and console ports. The radio bridge adds one sample per configured port here
/// (labels `port="NAME"`), e.g. `radiogate_radio_port_keyed`, `radiogate_radio_port_receiving`
/// and `radiogate_radio_port_tot_expired_total`; until then only the port count (0).
pub fn radio_ports(_gw: &Gateway, out: &mut String) {
    gauge(
        out,
        "radiogate_radio_ports",
        "Configured radio and console ports.",
        0,
    );
}

/// The `GET /metrics` handler.
pub async fn handler(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&gw))
}
