//! Connections that carry no request and no session yet ("pending"): mid-TLS-handshake,
//! waiting for a request head, or idle between keep-alive requests.
//!
//! They are what a slow-loris client or a flood of half-open connections holds, and each
//! costs a file descriptor: with a descriptor limit of 256, 300 stalled connections would
//! otherwise keep every new client out. So pending connections are bounded (issue 15):
//! - each must finish its TLS handshake and send a request head within
//!   `server.header_timeout_ms` (and an idle keep-alive connection is closed after as long);
//! - at most `server.max_pending_per_address` per remote address and
//!   `server.max_pending_connections` in total: a new connection beyond either closes the
//!   OLDEST pending one (the newcomer may be a real phone; the oldest has had its chance),
//!   so stalled connections never keep a new client out.
//!
//! [`PendingTable`] is the pure decision (time passed in); [`Pending`] is its shared handle;
//! closing is a [`CancellationToken`] per connection that the connection's I/O watches.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The bounds on pending connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// Handshake plus request head, or keep-alive idle time (`server.header_timeout_ms`).
    pub timeout: Duration,
    /// In total (`server.max_pending_connections`).
    pub max_total: usize,
    /// Per remote address (`server.max_pending_per_address`).
    pub max_per_address: usize,
}

#[derive(Debug)]
struct Entry {
    remote: SocketAddr,
    since: Instant,
}

/// PURE. The pending connections, oldest first, and the counts per address.
#[derive(Debug)]
pub struct PendingTable {
    limits: PendingLimits,
    next: u64,
    /// Pending connections by admission order (the key grows: the first is the oldest).
    order: BTreeMap<u64, Entry>,
    /// Every live connection's key in `order` when it is pending.
    by_remote: HashMap<SocketAddr, u64>,
    per_ip: HashMap<IpAddr, usize>,
}

impl PendingTable {
    /// An empty table.
    pub fn new(limits: PendingLimits) -> Self {
        Self {
            limits,
            next: 0,
            order: BTreeMap::new(),
            by_remote: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    /// Number of pending connections.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// `remote` is (again) pending from `now`; returns the connections to close to stay
    /// within the limits (oldest first; never `remote` itself).
    pub fn pending(&mut self, remote: SocketAddr, now: Instant) -> Vec<SocketAddr> {
        self.remove(remote);
        let ip = remote.ip();
        let mut victims = Vec::new();
        while self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_address {
            let Some(oldest) = self
                .order
                .values()
                .find(|e| e.remote.ip() == ip)
                .map(|e| e.remote)
            else {
                break;
            };
            self.remove(oldest);
            victims.push(oldest);
        }
        while self.order.len() >= self.limits.max_total {
            let Some(oldest) = self.order.values().next().map(|e| e.remote) else {
                break;
            };
            self.remove(oldest);
            victims.push(oldest);
        }
        let key = self.next;
        self.next += 1;
        self.order.insert(key, Entry { remote, since: now });
        self.by_remote.insert(remote, key);
        *self.per_ip.entry(ip).or_default() += 1;
        victims
    }

    /// `remote` is no longer pending (a request arrived, a session began, or it closed).
    pub fn remove(&mut self, remote: SocketAddr) {
        let Some(key) = self.by_remote.remove(&remote) else {
            return;
        };
        self.order.remove(&key);
        if let Some(n) = self.per_ip.get_mut(&remote.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&remote.ip());
            }
        }
    }

    /// Removes and returns the connections pending for the timeout or longer at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<SocketAddr> {
        let expired: Vec<SocketAddr> = self
            .order
            .values()
            .take_while(|e| now.saturating_duration_since(e.since) >= self.limits.timeout)
            .map(|e| e.remote)
            .collect();
        for r in &expired {
            self.remove(*r);
        }
        expired
    }

    /// The oldest pending connection, removed (to free a descriptor when accept fails).
    pub fn evict_oldest(&mut self) -> Option<SocketAddr> {
        let oldest = self.order.values().next().map(|e| e.remote)?;
        self.remove(oldest);
        Some(oldest)
    }
}

/// The shared handle: the table and each live connection's close token.
#[derive(Debug, Clone)]
pub struct Pending {
    inner: Arc<Mutex<(PendingTable, HashMap<SocketAddr, CancellationToken>)>>,
}

/// Held by a connection for its lifetime: forgets it when dropped.
#[derive(Debug)]
pub struct PendingGuard {
    pending: Pending,
    remote: SocketAddr,
    /// Cancelled when the connection must close (timed out, or evicted).
    pub token: CancellationToken,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut g = self.pending.inner.lock();
        g.0.remove(self.remote);
        g.1.remove(&self.remote);
    }
}

impl Pending {
    /// An empty set with these limits.
    pub fn new(limits: PendingLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new((PendingTable::new(limits), HashMap::new()))),
        }
    }

    /// A connection from `remote` was accepted: pending from now. Closes the oldest pending
    /// connections beyond the limits.
    pub fn admit(&self, remote: SocketAddr) -> PendingGuard {
        let token = CancellationToken::new();
        let mut g = self.inner.lock();
        g.1.insert(remote, token.clone());
        let victims = g.0.pending(remote, Instant::now());
        close(&g.1, &victims);
        drop(g);
        if !victims.is_empty() {
            tracing::debug!(
                evicted = victims.len(),
                "pending connections over the limit closed"
            );
        }
        PendingGuard {
            pending: self.clone(),
            remote,
            token,
        }
    }

    /// A request head arrived on `remote`'s connection.
    pub fn active(&self, remote: SocketAddr) {
        self.inner.lock().0.remove(remote);
    }

    /// `remote`'s connection finished a response and waits for the next request.
    pub fn idle(&self, remote: SocketAddr) {
        let mut g = self.inner.lock();
        if g.1.contains_key(&remote) {
            let victims = g.0.pending(remote, Instant::now());
            close(&g.1, &victims);
        }
    }

    /// Closes the connections pending for too long; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut g = self.inner.lock();
        let expired = g.0.expire(now);
        close(&g.1, &expired);
        expired.len()
    }

    /// Closes the oldest pending connection (accept ran out of descriptors); false if none.
    pub fn evict_oldest(&self) -> bool {
        let mut g = self.inner.lock();
        match g.0.evict_oldest() {
            Some(r) => {
                close(&g.1, &[r]);
                true
            }
            None => false,
        }
    }

    /// Number of pending connections.
    pub fn len(&self) -> usize {
        self.inner.lock().0.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn close(tokens: &HashMap<SocketAddr, CancellationToken>, which: &[SocketAddr]) {
    for r in which {
        if let Some(t) = tokens.get(r) {
            t.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, ip], port))
    }

    fn table(total: usize, per: usize) -> PendingTable {
        PendingTable::new(PendingLimits {
            timeout: Duration::from_secs(10),
            max_total: total,
            max_per_address: per,
        })
    }

    #[test]
    fn a_new_connection_beyond_the_per_address_limit_closes_that_address_s_oldest() {
        let t0 = Instant::now();
        let mut t = table(100, 2);
        assert!(t.pending(addr(1, 1), t0).is_empty());
        assert!(t.pending(addr(2, 1), t0).is_empty());
        assert!(t.pending(addr(1, 2), t0).is_empty());
        assert_eq!(t.pending(addr(1, 3), t0), [addr(1, 1)]);
        assert_eq!(t.len(), 3);
        // Address 2 is untouched.
        assert_eq!(t.pending(addr(1, 4), t0), [addr(1, 2)]);
    }

    #[test]
    fn a_new_connection_beyond_the_total_closes_the_oldest_overall() {
        let t0 = Instant::now();
        let mut t = table(3, 10);
        for i in 1..=3 {
            assert!(t.pending(addr(i, 1), t0).is_empty());
        }
        assert_eq!(t.pending(addr(9, 1), t0), [addr(1, 1)]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn connections_expire_after_the_timeout_and_active_ones_never() {
        let t0 = Instant::now();
        let mut t = table(100, 100);
        t.pending(addr(1, 1), t0);
        t.pending(addr(1, 2), t0 + Duration::from_secs(5));
        t.pending(addr(1, 3), t0);
        t.remove(addr(1, 3)); // its request head arrived
        assert!(t.expire(t0 + Duration::from_millis(9_999)).is_empty());
        assert_eq!(t.expire(t0 + Duration::from_secs(10)), [addr(1, 1)]);
        // Pending again after a response: its clock restarts.
        t.pending(addr(1, 3), t0 + Duration::from_secs(12));
        assert_eq!(t.expire(t0 + Duration::from_secs(15)), [addr(1, 2)]);
        assert_eq!(t.evict_oldest(), Some(addr(1, 3)));
        assert!(t.is_empty() && t.per_ip.is_empty());
    }

    #[test]
    fn three_hundred_stalled_connections_stay_within_the_bounds() {
        let t0 = Instant::now();
        let mut t = table(128, 64);
        let mut closed = 0;
        for p in 0..300 {
            closed += t.pending(addr(1, p), t0).len();
        }
        assert_eq!(t.len(), 64);
        assert_eq!(closed, 300 - 64);
        // The newcomer always gets in.
        let newcomer = addr(1, 5000);
        t.pending(newcomer, t0);
        assert!(t.by_remote.contains_key(&newcomer));
    }
}
