//! The media path's route table: an immutable snapshot of who hears whom, published by the hub
//! shell whenever floors, memberships or media links change, and read lock-free by every
//! uplink (the per-packet path takes no lock shared with signaling).
//!
//! A packet from a talker is looked up by the talker's connection id and queued (`try_send`)
//! on each listener's downlink queue with that listener's slot and the talk spurt's grant
//! number; a full queue drops the packet for that listener only.

use super::Downlink;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// One listener of a talker in the table.
#[derive(Debug, Clone)]
pub struct Target {
    /// The listener's connection id.
    pub listener: u64,
    /// The listener's downlink slot for the channel.
    pub slot: usize,
    /// The floor grant (talk spurt) number.
    pub grant: u64,
    /// The listener's downlink queue.
    pub tx: mpsc::Sender<Downlink>,
}

/// Talkers (by connection id) and their listeners. Immutable once published.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_talker: HashMap<u64, Vec<Target>>,
}

impl RouteTable {
    /// A table from `(talker, listeners)` pairs. A talker holding a floor with no listener
    /// should be present with an empty list (its packets then count as forwarded to nobody,
    /// not as unauthorised).
    pub fn new(by_talker: HashMap<u64, Vec<Target>>) -> Self {
        Self { by_talker }
    }

    /// The listeners of `talker`, if it holds a floor.
    pub fn targets(&self, talker: u64) -> Option<&[Target]> {
        self.by_talker.get(&talker).map(Vec::as_slice)
    }

    /// Number of talkers in the table.
    pub fn talkers(&self) -> usize {
        self.by_talker.len()
    }
}

/// Forwarding counters since start (lock-free).
#[derive(Debug, Default)]
pub struct ForwardStats {
    forwarded: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    unauthorised: AtomicU64,
}

/// A snapshot of [`ForwardStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardCounters {
    /// RTP packets queued to listeners.
    pub packets_forwarded: u64,
    /// RTP payload bytes queued to listeners.
    pub bytes_forwarded: u64,
    /// RTP packets dropped because a listener's queue was full.
    pub packets_dropped: u64,
    /// RTP packets received from participants holding no floor (not forwarded).
    pub packets_unauthorised: u64,
}

/// The shared handle: the current table and the counters. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    table: Arc<ArcSwap<RouteTable>>,
    stats: Arc<ForwardStats>,
}

impl Routes {
    /// Replaces the table (the hub shell, after a change).
    pub fn publish(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The current table.
    pub fn current(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Forwards one RTP packet from `from` to each of its listeners; returns the number of
    /// copies queued. `received_at` is when the uplink packet was read (for the forwarding
    /// latency histogram).
    pub fn forward(&self, from: u64, packet: &rtc::rtp::Packet, received_at: Instant) -> usize {
        let table = self.table.load();
        let Some(targets) = table.targets(from) else {
            self.stats.unauthorised.fetch_add(1, Ordering::Relaxed);
            return 0;
        };
        let mut queued = 0usize;
        let mut dropped = 0u64;
        for t in targets {
            let d = Downlink {
                slot: t.slot,
                grant: t.grant,
                packet: packet.clone(),
                received_at,
            };
            if t.tx.try_send(d).is_ok() {
                queued += 1;
            } else {
                dropped += 1;
            }
        }
        let s = &self.stats;
        s.forwarded.fetch_add(queued as u64, Ordering::Relaxed);
        s.bytes
            .fetch_add((queued * packet.payload.len()) as u64, Ordering::Relaxed);
        if dropped > 0 {
            s.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        queued
    }

    /// The counters since start.
    pub fn counters(&self) -> ForwardCounters {
        let s = &self.stats;
        ForwardCounters {
            packets_forwarded: s.forwarded.load(Ordering::Relaxed),
            bytes_forwarded: s.bytes.load(Ordering::Relaxed),
            packets_dropped: s.dropped.load(Ordering::Relaxed),
            packets_unauthorised: s.unauthorised.load(Ordering::Relaxed),
        }
    }
}
