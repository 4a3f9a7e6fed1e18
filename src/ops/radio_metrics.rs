//! The radio and console ports' part of `/metrics`: the port count, then one sample per port
//! (labels `port`, `kind` = `radio` | `console`, `channel`) of its state (joined, keyed,
//! squelch open or button pressed, sending, locked out after a time-out, devices down) and its
//! counters since start (key-ups, seconds keyed, time-outs, floors denied and revoked, 20 ms
//! frames sent, channel voice packets received and lost, errors, playout samples dropped).

use super::metrics::{Families, Labels};
use crate::bridge::{PortCounters, PortStatus, Radios};
use std::fmt;

/// Writes the radio port families.
///
/// # Errors
/// Only when the output cannot be written.
pub fn radio_ports(radio: &Radios, f: &mut Families) -> fmt::Result {
    let ports = radio.status();
    f.gauge(
        "radiogate_radio_ports",
        "Configured radio and console ports.",
        ports.len() as u64,
    )?;
    if ports.is_empty() {
        return Ok(());
    }
    let labels: Vec<Labels> = ports
        .iter()
        .map(|p| {
            vec![
                ("port", p.name.clone()),
                ("kind", p.kind.to_string()),
                ("channel", p.channel.clone()),
            ]
        })
        .collect();
    let mut state = |name: &str, help: &str, v: &dyn Fn(&PortStatus) -> u64| {
        let samples: Vec<(Labels, u64)> = labels
            .iter()
            .zip(&ports)
            .map(|(l, p)| (l.clone(), v(p)))
            .collect();
        f.gauges(name, help, &samples)
    };
    let flag = u64::from;
    state(
        "radiogate_radio_port_joined",
        "1 while the port is a member of its channel.",
        &|p| flag(p.joined),
    )?;
    state(
        "radiogate_radio_port_keyed",
        "1 while the port's PTT is keyed.",
        &|p| flag(p.keyed),
    )?;
    state(
        "radiogate_radio_port_receiving",
        "1 while the squelch (COS) is open or the console button pressed.",
        &|p| flag(p.squelch_open),
    )?;
    state(
        "radiogate_radio_port_sending",
        "1 while the port holds the floor and sends to its channel.",
        &|p| flag(p.sending),
    )?;
    state(
        "radiogate_radio_port_locked_out",
        "1 while the transmitter is locked out after a time-out.",
        &|p| flag(p.locked_out),
    )?;
    state(
        "radiogate_radio_port_devices_down",
        "Devices of the port that are down (reconnecting); a sound card still starting is not counted.",
        &|p| p.devices.iter().filter(|d| d.state == "down").count() as u64,
    )?;
    let keyed: Vec<(Labels, f64)> = labels
        .iter()
        .zip(&ports)
        .map(|(l, p)| (l.clone(), p.counters.keyed_ms as f64 / 1000.0))
        .collect();
    f.counters(
        "radiogate_radio_port_keyed_seconds",
        "Time keyed, seconds.",
        &keyed,
    )?;
    let mut count = |name: &str, help: &str, v: fn(&PortCounters) -> u64| {
        let samples: Vec<(Labels, u64)> = labels
            .iter()
            .zip(&ports)
            .map(|(l, p)| (l.clone(), v(&p.counters)))
            .collect();
        f.counters(name, help, &samples)
    };
    count(
        "radiogate_radio_port_key_ups",
        "Times the PTT was keyed.",
        |c| c.key_ups,
    )?;
    count(
        "radiogate_radio_port_tot_expired",
        "Transmit time-outs (time-out timer).",
        |c| c.time_outs,
    )?;
    count(
        "radiogate_radio_port_floor_denied",
        "Floor requests of the port denied.",
        |c| c.floor_denied,
    )?;
    count(
        "radiogate_radio_port_floor_revoked",
        "Floors of the port revoked.",
        |c| c.floor_revoked,
    )?;
    count(
        "radiogate_radio_port_frames_sent",
        "20 ms audio frames sent to the channel.",
        |c| c.frames_sent,
    )?;
    count(
        "radiogate_radio_port_packets_received",
        "Channel voice RTP packets decoded for the radio.",
        |c| c.packets_received,
    )?;
    count(
        "radiogate_radio_port_packets_lost",
        "Channel voice packets missing (sequence gaps), concealed.",
        |c| c.packets_lost,
    )?;
    count(
        "radiogate_radio_port_errors",
        "Device and codec errors.",
        |c| c.errors,
    )?;
    count(
        "radiogate_radio_port_playout_dropped_samples",
        "Samples to play dropped (card not running or queue over its cap).",
        |c| c.playout_dropped,
    )
}
