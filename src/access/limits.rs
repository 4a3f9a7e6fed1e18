//! Abuse limits (spec note 002): unauthenticated connection attempts per remote address,
//! authenticated connects per user, failed authentications per address with a progressive
//! delay, and messages per session with a burst allowance.
//!
//! Limits that fit a NAT (issue 13): a site's phones often share one public address (a travel
//! router), so a correctly signed token is never refused by what other phones behind the same
//! address did: the token is verified first, and only a failed verification counts against
//! the address (connection rate and failed-authentication delay); a verified connect counts
//! against its user.
//!
//! Connection and message rates use `governor` (GCRA) with an injectable clock; the failed-
//! authentication backoff is a pure state machine with `now` passed in. ADMIN sessions are
//! rate limited like everyone else (spec note 002: "Admin bypasses permission checks but NOT
//! rate limits").

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Progressive delays after the failed-authentication budget is spent (spec note 002).
pub const BACKOFF_STEPS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(30),
];

/// Settings of [`AuthBackoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthBackoffConfig {
    /// Failures allowed per address within `window` before delays start (default 10).
    pub max_failures: u32,
    /// Window over which failures are counted (default 15 min).
    pub window: Duration,
}

#[derive(Debug, Default, Clone)]
struct Failures {
    at: Vec<Instant>,
    strikes: usize,
    blocked_until: Option<Instant>,
}

/// Failed-authentication counter per remote address with a progressive delay.
///
/// Up to `max_failures` failures within `window` are free. Each further failure blocks the
/// address for the next step of [`BACKOFF_STEPS`] (1, 2, 4, 8, 16, then 30 s for every later
/// one); connects during a block are refused without looking at the token. The steps restart
/// once the window holds no failure.
#[derive(Debug, Clone)]
pub struct AuthBackoff {
    cfg: AuthBackoffConfig,
    by_addr: HashMap<IpAddr, Failures>,
}

impl AuthBackoff {
    /// An empty counter.
    pub fn new(cfg: AuthBackoffConfig) -> Self {
        Self {
            cfg,
            by_addr: HashMap::new(),
        }
    }

    /// Before verifying a token from `addr` at `now`.
    ///
    /// # Errors
    /// The remaining delay when the address is blocked.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.by_addr.get(&addr).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `addr` at `now`; returns the delay now imposed
    /// (zero while within the budget).
    pub fn failure(&mut self, addr: IpAddr, now: Instant) -> Duration {
        let window = self.cfg.window;
        let f = self.by_addr.entry(addr).or_default();
        f.at.retain(|t| now.saturating_duration_since(*t) < window);
        if f.at.is_empty() {
            f.strikes = 0;
        }
        f.at.push(now);
        if f.at.len() as u32 <= self.cfg.max_failures {
            return Duration::ZERO;
        }
        let delay = BACKOFF_STEPS[f.strikes.min(BACKOFF_STEPS.len() - 1)];
        f.strikes += 1;
        f.blocked_until = Some(now + delay);
        delay
    }

    /// Forgets addresses with no failure in the window (call now and then to bound memory).
    pub fn prune(&mut self, now: Instant) {
        let window = self.cfg.window;
        self.by_addr.retain(|_, f| {
            f.at.iter()
                .any(|t| now.saturating_duration_since(*t) < window)
                || f.blocked_until.is_some_and(|u| u > now)
        });
    }
}

/// Keyed GCRA limiter over an injectable clock; keyed by remote address unless `K` says
/// otherwise.
pub type KeyedLimiter<C, K = IpAddr> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Unauthenticated connection attempts per remote address: `per_minute` with the whole budget
/// as burst (`limits.connections_per_minute`).
pub fn connection_limiter<C: Clock>(per_minute: NonZeroU32, clock: C) -> KeyedLimiter<C> {
    RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), clock)
}

/// Authenticated connects per user id: `per_minute` with the whole budget as burst
/// (`limits.user_connections_per_minute`).
pub fn user_limiter<C: Clock>(per_minute: NonZeroU32, clock: C) -> KeyedLimiter<C, String> {
    RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), clock)
}

/// Per-session message limiter: `per_second` sustained with a burst of `burst`.
pub type SessionLimiter<C = DefaultClock> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A per-session message limiter on clock `clock`.
pub fn session_limiter<C: Clock>(
    per_second: NonZeroU32,
    burst: NonZeroU32,
    clock: C,
) -> SessionLimiter<C> {
    RateLimiter::direct_with_clock(Quota::per_second(per_second).allow_burst(burst), clock)
}

/// What a session does about its message rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageVerdict {
    /// Within the rate: handle the message.
    Allow,
    /// Over the rate: refuse this message with a RATE_LIMITED error (the session is told).
    Refuse,
    /// Still over the rate after being told `strikes` times: close the session.
    Close,
}

/// Counts how often a session exceeded its message rate; pure.
#[derive(Debug, Clone, Default)]
pub struct MessageStrikes {
    strikes: u32,
}

impl MessageStrikes {
    /// Verdict for one message given the limiter's answer (`allowed`): the first
    /// `max_strikes` messages over the rate in the session are refused (the client is told),
    /// the next one over the rate closes the session.
    pub fn verdict(&mut self, allowed: bool, max_strikes: u32) -> MessageVerdict {
        if allowed {
            return MessageVerdict::Allow;
        }
        self.strikes += 1;
        if self.strikes > max_strikes {
            MessageVerdict::Close
        } else {
            MessageVerdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn failed_auth_budget_then_progressive_delay() {
        let t0 = Instant::now();
        let mut b = AuthBackoff::new(AuthBackoffConfig {
            max_failures: 10,
            window: Duration::from_secs(900),
        });
        for i in 0..10 {
            assert_eq!(b.check(ip(1), t0), Ok(()));
            assert_eq!(
                b.failure(ip(1), t0 + Duration::from_secs(i)),
                Duration::ZERO
            );
        }
        // Further failures: 1, 2, 4, 8, 16, 30, 30 s, each only after the previous block.
        let mut now = t0 + Duration::from_secs(10);
        for expected in [1u64, 2, 4, 8, 16, 30, 30] {
            assert_eq!(b.check(ip(1), now), Ok(()));
            let d = b.failure(ip(1), now);
            assert_eq!(d, Duration::from_secs(expected));
            assert_eq!(b.check(ip(1), now), Err(d));
            let half = now + d / 2;
            assert_eq!(b.check(ip(1), half), Err(d - d / 2));
            now += d;
        }
        // Another address is unaffected.
        assert_eq!(b.check(ip(2), now), Ok(()));
        // After a quiet window the budget and steps start over.
        now += Duration::from_secs(901);
        assert_eq!(b.check(ip(1), now), Ok(()));
        assert_eq!(b.failure(ip(1), now), Duration::ZERO);
        b.prune(now + Duration::from_secs(1000));
        assert!(b.by_addr.is_empty());
    }

    #[test]
    fn connection_rate_per_address_with_fake_clock() {
        let clock = FakeRelativeClock::default();
        let l = connection_limiter(NonZeroU32::new(20).unwrap(), clock.clone());
        for _ in 0..20 {
            assert!(l.check_key(&ip(1)).is_ok());
        }
        assert!(l.check_key(&ip(1)).is_err(), "21st within a minute refused");
        assert!(l.check_key(&ip(2)).is_ok(), "per address");
        clock.advance(Duration::from_secs(3)); // one token per 3 s
        assert!(l.check_key(&ip(1)).is_ok());
        assert!(l.check_key(&ip(1)).is_err());
    }

    #[test]
    fn user_connects_are_counted_per_user() {
        let clock = FakeRelativeClock::default();
        let l = user_limiter(NonZeroU32::new(3).unwrap(), clock.clone());
        for _ in 0..3 {
            assert!(l.check_key(&"a".to_string()).is_ok());
        }
        assert!(l.check_key(&"a".to_string()).is_err());
        // 200 users behind one address each reconnect once: none is refused.
        for u in 0..200 {
            assert!(l.check_key(&format!("u{u}")).is_ok());
        }
        clock.advance(Duration::from_secs(20));
        assert!(l.check_key(&"a".to_string()).is_ok());
    }

    #[test]
    fn session_messages_burst_then_rate_then_close() {
        let clock = FakeRelativeClock::default();
        let l = session_limiter(
            NonZeroU32::new(10).unwrap(),
            NonZeroU32::new(20).unwrap(),
            clock.clone(),
        );
        let mut s = MessageStrikes::default();
        for _ in 0..20 {
            assert_eq!(s.verdict(l.check().is_ok(), 3), MessageVerdict::Allow);
        }
        for _ in 0..3 {
            assert_eq!(s.verdict(l.check().is_ok(), 3), MessageVerdict::Refuse);
        }
        clock.advance(Duration::from_millis(100));
        assert_eq!(s.verdict(l.check().is_ok(), 3), MessageVerdict::Allow);
        assert_eq!(s.verdict(l.check().is_ok(), 3), MessageVerdict::Close);
    }
}
