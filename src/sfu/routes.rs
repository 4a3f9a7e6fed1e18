//! The media path's route table: an immutable snapshot of who hears whom, published by the hub
//! shell whenever floors, memberships or media links change, and read lock-free by every
//! uplink (the per-packet path takes no lock shared with signaling).
//!
//! A packet from a talker is looked up by the talker's connection id. Each listener is a
//! [`Sink`]: a downlink queue (a radio port: the packet is queued with `try_send`, with that
//! listener's slot and the talk spurt's grant number; a full queue drops it for that listener
//! only) or a peer connection of the media engine (which keeps the listener's slot rewrite
//! state and makes the copy on its own thread: the media engine reads this table itself for
//! its own uplinks; an uplink from elsewhere is injected into it once per packet).

use super::Downlink;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// The media engine as seen by an uplink forwarded outside it (a radio port talking).
pub trait Inject: Send + Sync + std::fmt::Debug {
    /// Hands one uplink packet of `from` to the engine, which makes the copies for its own
    /// peers among `from`'s listeners. False when its queue is full (the packet is dropped).
    fn inject(&self, from: u64, packet: &rtc::rtp::Packet, received_at: Instant) -> bool;
}

/// A listener of every routed uplink packet (the recorder, issue 14): called on the media path
/// once per packet of a floor holder, so it must only queue (never block).
pub trait Tap: Send + Sync + std::fmt::Debug {
    /// Uplink RTP `packet` of `talker`, routed by the current table.
    fn packet(&self, talker: u64, packet: &rtc::rtp::Packet);
}

/// Where a listener's copies go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A downlink queue (radio ports, consoles).
    Queue(mpsc::Sender<Downlink>),
    /// A peer connection of the media engine, `peer` its id there.
    Engine {
        /// The engine's id of the listener's peer connection.
        peer: u64,
        /// The engine, for uplinks forwarded outside it.
        engine: Arc<dyn Inject>,
    },
}

impl Sink {
    /// Whether `self` and `other` are the same sink (the same queue, or the same peer).
    pub fn same(&self, other: &Sink) -> bool {
        match (self, other) {
            (Sink::Queue(a), Sink::Queue(b)) => a.same_channel(b),
            (Sink::Engine { peer: a, .. }, Sink::Engine { peer: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// One listener of a talker in the table.
#[derive(Debug, Clone)]
pub struct Target {
    /// The listener's connection id.
    pub listener: u64,
    /// The listener's downlink slot for the channel.
    pub slot: usize,
    /// The floor grant (talk spurt) number.
    pub grant: u64,
    /// Where the listener's copies go.
    pub sink: Sink,
}

impl Target {
    /// Queues `packet` for this listener on the downlink queue `tx` (its slot and talk spurt
    /// attached; `try_send`, never waits). Returns false when the queue is full or closed:
    /// the packet is dropped for this listener only.
    pub fn queue(
        &self,
        tx: &mpsc::Sender<Downlink>,
        packet: &rtc::rtp::Packet,
        received_at: Instant,
    ) -> bool {
        tx.try_send(Downlink {
            slot: self.slot,
            grant: self.grant,
            packet: packet.clone(),
            received_at,
        })
        .is_ok()
    }
}

/// Talkers (by connection id) and their listeners. Immutable once published, except for
/// each talker's last-uplink stamp (an atomic, carried from table to table by
/// [`Routes::publish`]).
#[derive(Debug, Default)]
pub struct RouteTable {
    by_talker: HashMap<u64, Vec<Target>>,
    /// Per talker: when its uplink RTP was last seen, ms since [`Routes`]' base + 1 (0: never).
    heard: HashMap<u64, Arc<AtomicU64>>,
    /// Per talker: the packet counters of the channels whose floor it holds
    /// ([`Routes::channel_packets`]).
    channels: HashMap<u64, Vec<Arc<AtomicU64>>>,
}

impl RouteTable {
    /// A table from `(talker, listeners)` pairs. A talker holding a floor with no listener
    /// should be present with an empty list (its packets then count as forwarded to nobody,
    /// not as unauthorised).
    pub fn new(by_talker: HashMap<u64, Vec<Target>>) -> Self {
        Self {
            by_talker,
            heard: HashMap::new(),
            channels: HashMap::new(),
        }
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
    /// RTP packets queued or sent to listeners.
    pub packets_forwarded: u64,
    /// RTP payload bytes queued to listeners.
    pub bytes_forwarded: u64,
    /// RTP packets dropped because a listener's queue was full.
    pub packets_dropped: u64,
    /// RTP packets received from participants holding no floor (not forwarded).
    pub packets_unauthorised: u64,
}

/// The shared handle: the current table and the counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Routes {
    table: Arc<ArcSwap<RouteTable>>,
    stats: Arc<ForwardStats>,
    /// Uplink RTP packets routed per channel since start (read per scrape; the map is only
    /// locked when a table is published, never per packet).
    channel_stats: Arc<parking_lot::Mutex<HashMap<String, Arc<AtomicU64>>>>,
    /// The recorder's tap, once set.
    tap: Arc<std::sync::OnceLock<Arc<dyn Tap>>>,
    /// Time base of the last-uplink stamps.
    base: Instant,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            table: Arc::default(),
            stats: Arc::default(),
            channel_stats: Arc::default(),
            tap: Arc::default(),
            base: Instant::now(),
        }
    }
}

impl Routes {
    /// Replaces the table (the hub shell, after a change), with `talker_channels`: the
    /// channels whose floor each talker holds, whose packet counters its uplink advances.
    /// Each talker keeps its last-uplink stamp from the table it replaces.
    pub fn publish_with_channels(
        &self,
        mut table: RouteTable,
        talker_channels: &std::collections::BTreeMap<u64, Vec<String>>,
    ) {
        let mut stats = self.channel_stats.lock();
        table.channels = talker_channels
            .iter()
            .map(|(t, chs)| {
                let counters = chs
                    .iter()
                    .map(|c| Arc::clone(stats.entry(c.clone()).or_default()))
                    .collect();
                (*t, counters)
            })
            .collect();
        drop(stats);
        self.publish(table);
    }

    /// Uplink RTP packets routed to each channel since start (one per packet of the floor
    /// holder, however many members hear it), sorted by channel id.
    pub fn channel_packets(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .channel_stats
            .lock()
            .iter()
            .map(|(c, n)| (c.clone(), n.load(Ordering::Relaxed)))
            .collect();
        v.sort();
        v
    }

    /// Replaces the table (the hub shell, after a change). Each talker keeps its last-uplink
    /// stamp from the table it replaces.
    pub fn publish(&self, mut table: RouteTable) {
        let old = self.table.load();
        table.heard = table
            .by_talker
            .keys()
            .map(|t| {
                let stamp = old.heard.get(t).cloned().unwrap_or_default();
                (*t, stamp)
            })
            .collect();
        self.table.store(Arc::new(table));
    }

    /// Sets the tap that sees every routed uplink packet (once; later calls are ignored).
    pub fn set_tap(&self, tap: Arc<dyn Tap>) {
        let _ = self.tap.set(tap);
    }

    /// Records that uplink RTP `packet` of `talker` arrived at `at` (one relaxed atomic store,
    /// one add per channel whose floor it holds, and the tap's queueing; no lock). Call it with
    /// the table the packet was routed by.
    pub fn heard(&self, table: &RouteTable, talker: u64, at: Instant, packet: &rtc::rtp::Packet) {
        if let Some(tap) = self.tap.get() {
            tap.packet(talker, packet);
        }
        if let Some(stamp) = table.heard.get(&talker) {
            let ms = u64::try_from(at.saturating_duration_since(self.base).as_millis())
                .unwrap_or(u64::MAX - 1);
            stamp.store(ms + 1, Ordering::Relaxed);
        }
        for c in table.channels.get(&talker).into_iter().flatten() {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every talker of the current table whose uplink RTP has been seen, with when it last
    /// was (ms resolution): what the hub's end-of-media timer is fed before each tick.
    pub fn uplink_activity(&self) -> Vec<(u64, Instant)> {
        let table = self.table.load();
        table
            .heard
            .iter()
            .filter_map(|(t, stamp)| match stamp.load(Ordering::Relaxed) {
                0 => None,
                v => Some((*t, self.base + std::time::Duration::from_millis(v - 1))),
            })
            .collect()
    }

    /// The current table.
    pub fn current(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Forwards one RTP packet from `from` (an uplink outside the media engine: a radio port)
    /// to each of its listeners: queue sinks get a [`Downlink`], and the media engine gets the
    /// packet once if any listener is its peer (it counts its own copies). Returns the number
    /// of copies queued here. `received_at` is when the uplink packet was read (for the
    /// forwarding latency histogram).
    pub fn forward(&self, from: u64, packet: &rtc::rtp::Packet, received_at: Instant) -> usize {
        let table = self.table.load();
        let Some(targets) = table.targets(from) else {
            self.count_unauthorised();
            return 0;
        };
        self.heard(&table, from, received_at, packet);
        let mut queued = 0u64;
        let mut dropped = 0u64;
        let mut engine: Option<&Arc<dyn Inject>> = None;
        for t in targets {
            match &t.sink {
                Sink::Queue(tx) => {
                    if t.queue(tx, packet, received_at) {
                        queued += 1;
                    } else {
                        dropped += 1;
                    }
                }
                Sink::Engine { engine: e, .. } => engine = Some(e),
            }
        }
        if let Some(e) = engine {
            if !e.inject(from, packet, received_at) {
                dropped += 1;
            }
        }
        self.count_forwarded(queued, queued * packet.payload.len() as u64, dropped);
        queued as usize
    }

    /// Adds to the counters: copies sent or queued, their payload bytes, copies dropped.
    pub fn count_forwarded(&self, copies: u64, bytes: u64, dropped: u64) {
        let s = &self.stats;
        if copies > 0 {
            s.forwarded.fetch_add(copies, Ordering::Relaxed);
            s.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if dropped > 0 {
            s.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Counts one packet from a participant holding no floor.
    pub fn count_unauthorised(&self) {
        self.stats.unauthorised.fetch_add(1, Ordering::Relaxed);
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
