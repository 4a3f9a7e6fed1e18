//! PURE: the media thread's peer deadlines (`rtc`'s `poll_timeout` of each peer connection) in
//! a min-heap, so a wake-up costs O(log n) instead of a scan of every peer (at 1,000 peers the
//! scans were 5 % of the thread's time, docs/BENCHMARKS.md "Fan-out"). Time is passed in.
//!
//! A peer's deadline changes often (after each datagram it handles); the old entry is not
//! searched for but left in the heap and skipped when it comes up (the caller says which
//! deadline is current). The heap is rebuilt from the current deadlines when stale entries
//! outnumber [`STALE_FACTOR`] times the peers, so it stays bounded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Shortest time between two timer calls of a connected peer connection, ms.
///
/// `rtc`'s ICE agent asks for a call every 200 ms in every state (its check interval is the
/// floor of its tick, `rtc-ice` `get_timeout_interval`), and each call walks the peer
/// connection's whole handler pipeline: at 1,000 connected phones that was about 150 µs of CPU
/// per peer per second with nobody talking (docs/BENCHMARKS.md "Fan-out"). Once connected, a
/// peer's timers are the ICE keepalive (2 s, full ICE only: the default ICE-lite agent sends
/// none), the disconnected and failed timeouts (5 s, 25 s) and the RTCP report interval
/// (1 s): one call a second serves them all, a few hundred ms late at most. Datagrams are
/// still handled the moment they arrive.
pub const CONNECTED_TICK_MS: u64 = 1000;

/// The deadline to keep for a peer whose `rtc` deadline is `rtc`: for a `connected` one, no
/// earlier than [`CONNECTED_TICK_MS`] after its last timer call (`last`); else `rtc`'s.
pub fn coalesced(rtc: Option<Instant>, connected: bool, last: Option<Instant>) -> Option<Instant> {
    match (connected, last) {
        (true, Some(l)) => rtc.map(|d| d.max(l + Duration::from_millis(CONNECTED_TICK_MS))),
        _ => rtc,
    }
}

/// Heap entries allowed per live deadline (plus [`SLACK`]) before a rebuild.
pub const STALE_FACTOR: usize = 4;
/// Entries always allowed, whatever the number of peers.
const SLACK: usize = 1024;

/// Deadlines of peers identified by `u64`.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Timers {
    /// Peer `id`'s deadline changed from `old` to `new`.
    pub fn set(&mut self, id: u64, old: Option<Instant>, new: Option<Instant>) {
        if let Some(d) = new.filter(|d| Some(*d) != old) {
            self.heap.push(Reverse((d, id)));
        }
    }

    /// The earliest current deadline; stale entries on top are dropped. `current(id, d)`: is
    /// `d` still peer `id`'s deadline?
    pub fn next(&mut self, current: impl Fn(u64, Instant) -> bool) -> Option<Instant> {
        while let Some(Reverse((d, id))) = self.heap.peek().copied() {
            if current(id, d) {
                return Some(d);
            }
            self.heap.pop();
        }
        None
    }

    /// Moves the peers whose current deadline is at or before `now` into `due` (each once: a
    /// peer has one current deadline, so its copies of that entry come off the heap one after
    /// the other).
    pub fn due(
        &mut self,
        now: Instant,
        current: impl Fn(u64, Instant) -> bool,
        due: &mut Vec<u64>,
    ) {
        let mut last = None;
        while let Some(Reverse((d, id))) = self.heap.peek().copied() {
            if d > now {
                break;
            }
            self.heap.pop();
            if last != Some((d, id)) && current(id, d) {
                due.push(id);
            }
            last = Some((d, id));
        }
    }

    /// Rebuilds the heap from `live` (every peer's current deadline) when it holds more than
    /// [`STALE_FACTOR`] entries per peer (`peers`, an upper bound of `live`'s length) plus
    /// slack; `live` is only walked then.
    pub fn compact(&mut self, peers: usize, live: impl Iterator<Item = (u64, Instant)>) {
        if self.heap.len() > peers * STALE_FACTOR + SLACK {
            self.heap = live.map(|(id, d)| Reverse((d, id))).collect();
        }
    }

    /// Entries held (current and stale).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::time::Duration;

    #[test]
    fn a_connected_peer_is_called_at_most_once_a_second() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Connecting: rtc's 200 ms tick as it is.
        assert_eq!(coalesced(Some(ms(200)), false, Some(t0)), Some(ms(200)));
        // Connected: one second after the last call at the earliest; a later deadline stays.
        assert_eq!(coalesced(Some(ms(200)), true, Some(t0)), Some(ms(1000)));
        assert_eq!(coalesced(Some(ms(4000)), true, Some(t0)), Some(ms(4000)));
        // Never called yet, or nothing asked: unchanged.
        assert_eq!(coalesced(Some(ms(200)), true, None), Some(ms(200)));
        assert_eq!(coalesced(None, true, Some(t0)), None);
    }

    #[test]
    fn the_earliest_current_deadline_comes_first_and_stale_ones_are_skipped() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut cur: HashMap<u64, Instant> = HashMap::new();
        let mut t = Timers::default();
        for (id, d) in [(1, ms(30)), (2, ms(10)), (3, ms(20))] {
            t.set(id, None, Some(d));
            cur.insert(id, d);
        }
        // Peer 2 moves later: its 10 ms entry is stale.
        t.set(2, Some(ms(10)), Some(ms(40)));
        cur.insert(2, ms(40));
        let is = |id: u64, d: Instant| cur.get(&id) == Some(&d);
        assert_eq!(t.next(is), Some(ms(20)));
        let mut due = Vec::new();
        t.due(ms(30), is, &mut due);
        assert_eq!(due, vec![3, 1]);
        assert_eq!(t.next(is), Some(ms(40)));
    }

    proptest! {
        /// Whatever the updates, `due` returns exactly the peers whose current deadline has
        /// passed, and the heap stays bounded after compaction.
        #[test]
        fn due_is_exactly_the_expired_current_deadlines(
            ops in prop::collection::vec((0u64..20, prop::option::of(0u64..1000)), 1..400),
            at in 0u64..1000,
        ) {
            let t0 = Instant::now();
            let mut cur: HashMap<u64, Instant> = HashMap::new();
            let mut t = Timers::default();
            for (id, d) in ops {
                let new = d.map(|ms| t0 + Duration::from_millis(ms));
                let old = cur.get(&id).copied();
                t.set(id, old, new);
                match new {
                    Some(n) => cur.insert(id, n),
                    None => cur.remove(&id),
                };
                t.compact(cur.len(), cur.iter().map(|(k, v)| (*k, *v)));
                prop_assert!(t.len() <= cur.len() * STALE_FACTOR + SLACK + 1);
            }
            let now = t0 + Duration::from_millis(at);
            let mut due = Vec::new();
            t.due(now, |id, d| cur.get(&id) == Some(&d), &mut due);
            due.sort_unstable();
            let mut want: Vec<u64> =
                cur.iter().filter(|(_, d)| **d <= now).map(|(k, _)| *k).collect();
            want.sort_unstable();
            prop_assert_eq!(due, want);
            let next = t.next(|id, d| cur.get(&id) == Some(&d));
            prop_assert_eq!(next, cur.values().filter(|d| **d > now).min().copied());
        }
    }
}
