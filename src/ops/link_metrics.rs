//! The linked sites' part of `/metrics` (issue 16): the number of linked channels, then per
//! link and channel (labels `link`, `channel`) its state (`radiogate_link_state`, one sample
//! per state with value 1 for the current one: `linked`, `relinking`, `site only`), the last
//! WebSocket round trip to the upstream in seconds (absent until measured), RTP packets each
//! way and the times the link came up, since start.

use super::metrics::{Families, Labels};
use crate::link::{LinkStatus, Links};
use std::fmt;

/// The states a link reports (`LinkStatus::state`).
const STATES: [&str; 3] = ["linked", "relinking", "site only"];

/// Writes the link families.
///
/// # Errors
/// Only when the output cannot be written.
pub fn site_links(links: &Links, f: &mut Families) -> fmt::Result {
    let all = links.status();
    f.gauge(
        "radiogate_links",
        "Channels linked to an upstream gateway ([[link]]).",
        all.len() as u64,
    )?;
    if all.is_empty() {
        return Ok(());
    }
    let label = |s: &LinkStatus| -> Labels {
        vec![("link", s.name.clone()), ("channel", s.channel.clone())]
    };
    let states: Vec<(Labels, u64)> = all
        .iter()
        .flat_map(|s| {
            STATES.iter().map(move |st| {
                let mut l = label(s);
                l.push(("state", (*st).to_string()));
                (l, u64::from(s.state == *st))
            })
        })
        .collect();
    f.gauges(
        "radiogate_link_state",
        "Each link's state: 1 for the current one (linked, relinking, site only).",
        &states,
    )?;
    let rtt: Vec<(Labels, f64)> = all
        .iter()
        .filter_map(|s| s.rtt_ms.map(|ms| (label(s), ms / 1000.0)))
        .collect();
    f.gauges(
        "radiogate_link_rtt_seconds",
        "Last WebSocket round trip to the upstream (link.hello every 5 s), seconds.",
        &rtt,
    )?;
    let counter = |v: &dyn Fn(&LinkStatus) -> u64| -> Vec<(Labels, u64)> {
        all.iter().map(|s| (label(s), v(s))).collect()
    };
    f.counters(
        "radiogate_link_packets_up",
        "RTP packets sent to the upstream on the link since start.",
        &counter(&|s| s.packets_up),
    )?;
    f.counters(
        "radiogate_link_packets_down",
        "RTP packets received from the upstream on the link since start.",
        &counter(&|s| s.packets_down),
    )?;
    f.counters(
        "radiogate_link_connects",
        "Times the link came up since start.",
        &counter(&|s| s.connects),
    )
}
