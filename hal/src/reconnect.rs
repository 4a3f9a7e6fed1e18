//! Retrying a lost device until it comes back, without restarting the gateway.
//!
//! [`Reconnect`] holds an opener closure and the open device (if any). When an operation on
//! the device fails, the caller reports it with [`Reconnect::fail`]; the device is dropped
//! (closing the node) and reopened on a later [`Reconnect::get`] once the backoff has passed
//! (doubling from [`Backoff::initial`] up to [`Backoff::max`]). [`ReconnectingPtt`] and
//! [`ReconnectingLine`] wrap a PTT output / line input in it and implement the same trait.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{chain, DeviceError, Retry};
use crate::line::{LineError, LineInput};
use crate::ptt::{PttError, PttOutput};

/// Reopen delays: the first retry after `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first reopen attempt after a failure.
    pub initial: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s doubling up to 30 s (1, 2, 4, 8, 16, 30 s).
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (`failures >= 1`).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << shift).min(self.max)
    }
}

/// The state of a wrapped device, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// Open and working.
    Up,
    /// Not open; `last_error` is why, the next attempt is at `retry_at`.
    Down {
        /// The last error, rendered with its sources.
        last_error: String,
        /// When the next open attempt happens (at the next use after this instant).
        retry_at: Instant,
    },
}

type Opener<T, E> = Box<dyn FnMut() -> Result<T, E> + Send>;

/// A device that is reopened with backoff after it fails. See the module docs.
pub struct Reconnect<T, E> {
    what: String,
    open: Opener<T, E>,
    dev: Option<T>,
    backoff: Backoff,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<String>,
}

impl<T, E: std::error::Error + Retry> Reconnect<T, E> {
    /// Wraps `open`; `what` names the device in logs. Nothing is opened until [`Self::get`].
    pub fn new(
        what: impl Into<String>,
        backoff: Backoff,
        open: impl FnMut() -> Result<T, E> + Send + 'static,
    ) -> Self {
        Reconnect {
            what: what.into(),
            open: Box::new(open),
            dev: None,
            backoff,
            failures: 0,
            next_attempt: None,
            last_error: None,
        }
    }

    /// The open device, opening it first when it is closed and the backoff has passed.
    /// `None` while it is down; [`Self::state`] tells why.
    pub fn get(&mut self, now: Instant) -> Option<&mut T> {
        if self.dev.is_none() && self.next_attempt.is_none_or(|t| now >= t) {
            match (self.open)() {
                Ok(dev) => {
                    if self.failures > 0 {
                        tracing::info!(device = %self.what, "device is back");
                    }
                    self.failures = 0;
                    self.next_attempt = None;
                    self.last_error = None;
                    self.dev = Some(dev);
                }
                Err(e) => self.record(now, &e),
            }
        }
        self.dev.as_mut()
    }

    /// Reports that an operation on the device failed: a retryable error closes the device and
    /// schedules a reopen.
    pub fn fail(&mut self, now: Instant, err: &E) {
        if err.retryable() {
            self.dev = None;
        }
        self.record(now, err);
    }

    fn record(&mut self, now: Instant, err: &E) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff.delay(self.failures);
        self.next_attempt = Some(now + delay);
        let msg = chain(err);
        if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(device = %self.what, error = %msg, retry_in_ms = delay.as_millis() as u64, "device error");
        }
        self.last_error = Some(msg);
    }

    /// Whether the device is open.
    pub fn is_up(&self) -> bool {
        self.dev.is_some()
    }

    /// Up, or down with the last error and the next attempt.
    pub fn state(&self) -> DeviceState {
        match (&self.dev, self.next_attempt) {
            (Some(_), _) => DeviceState::Up,
            (None, at) => DeviceState::Down {
                last_error: self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not opened yet".into()),
                retry_at: at.unwrap_or_else(Instant::now),
            },
        }
    }

    /// The error of the last failed open or operation, if the device has not worked since.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The device description given to [`Self::new`].
    pub fn what(&self) -> &str {
        &self.what
    }

    fn down_error(&self) -> DeviceError {
        DeviceError::Down {
            what: self.what.clone(),
            last_error: self
                .last_error
                .clone()
                .unwrap_or_else(|| "not opened yet".into()),
        }
    }

    /// The open device, without trying to open it.
    pub fn peek(&self) -> Option<&T> {
        self.dev.as_ref()
    }

    /// Drops the device (closing it); the next [`Self::get`] reopens it at once.
    pub fn close(&mut self) -> Option<T> {
        self.next_attempt = None;
        self.dev.take()
    }
}

impl<T, E> Display for Reconnect<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// A PTT output that is reopened after it fails and re-applies the wanted key state when it
/// comes back. Call [`ReconnectingPtt::poll`] periodically (every 10 to 100 ms) so that a lost
/// output is retried even while the key state does not change.
pub struct ReconnectingPtt<P: PttOutput> {
    inner: Reconnect<P, PttError>,
    want: bool,
    applied: Option<bool>,
}

impl<P: PttOutput> ReconnectingPtt<P> {
    /// Wraps an opener of a PTT output. The output is opened (and unkeyed) on the first
    /// [`Self::poll`] or [`PttOutput::set_keyed`].
    pub fn new(
        what: impl Into<String>,
        backoff: Backoff,
        open: impl FnMut() -> Result<P, PttError> + Send + 'static,
    ) -> Self {
        ReconnectingPtt {
            inner: Reconnect::new(what, backoff, open),
            want: false,
            applied: None,
        }
    }

    /// Opens the output when it is down and due, and applies the wanted state.
    pub fn poll(&mut self, now: Instant) -> Result<(), PttError> {
        let want = self.want;
        let was_up = self.inner.is_up();
        let Some(dev) = self.inner.get(now) else {
            self.applied = None;
            return Err(self.inner.down_error().into());
        };
        if !was_up {
            self.applied = None;
        }
        if self.applied == Some(want) {
            return Ok(());
        }
        match dev.set_keyed(want) {
            Ok(()) => {
                self.applied = Some(want);
                Ok(())
            }
            Err(e) => {
                self.applied = None;
                self.inner.fail(now, &e);
                Err(e)
            }
        }
    }

    /// Up or down with the last error.
    pub fn state(&self) -> DeviceState {
        self.inner.state()
    }
}

impl<P: PttOutput> PttOutput for ReconnectingPtt<P> {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        self.want = keyed;
        self.poll(Instant::now())
    }

    fn is_keyed(&self) -> bool {
        self.applied == Some(true)
    }

    fn describe(&self) -> String {
        self.inner.what().to_string()
    }
}

/// A line input that is reopened after it fails. While the line is down, [`LineInput::read`]
/// returns an error; treat that as inactive (squelch closed, button released).
pub struct ReconnectingLine<L: LineInput> {
    inner: Reconnect<L, LineError>,
}

impl<L: LineInput> ReconnectingLine<L> {
    /// Wraps an opener of a line input; it is opened on the first read.
    pub fn new(
        what: impl Into<String>,
        backoff: Backoff,
        open: impl FnMut() -> Result<L, LineError> + Send + 'static,
    ) -> Self {
        ReconnectingLine {
            inner: Reconnect::new(what, backoff, open),
        }
    }

    /// Up or down with the last error.
    pub fn state(&self) -> DeviceState {
        self.inner.state()
    }
}

impl<L: LineInput> LineInput for ReconnectingLine<L> {
    fn read(&mut self) -> Result<bool, LineError> {
        let now = Instant::now();
        let Some(dev) = self.inner.get(now) else {
            return Err(self.inner.down_error().into());
        };
        match dev.read() {
            Ok(v) => Ok(v),
            Err(e) => {
                self.inner.fail(now, &e);
                Err(e)
            }
        }
    }

    fn describe(&self) -> String {
        self.inner.what().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptt::SimPtt;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn lost_output_is_reopened_and_state_reapplied() {
        let present = Arc::new(AtomicBool::new(false));
        let opens = Arc::new(AtomicU32::new(0));
        let sim = SimPtt::new("sim");
        let log = sim.handle();
        let (p2, o2) = (present.clone(), opens.clone());
        let mut ptt = ReconnectingPtt::new(
            "sim ptt",
            Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            move || {
                if !p2.load(Ordering::SeqCst) {
                    return Err(PttError::Device(DeviceError::NotFound {
                        path: "/dev/sim".into(),
                    }));
                }
                o2.fetch_add(1, Ordering::SeqCst);
                Ok(sim.clone_shared())
            },
        );
        let t0 = Instant::now();
        let err = ptt.poll(t0).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        assert!(matches!(ptt.state(), DeviceState::Down { .. }));
        present.store(true, Ordering::SeqCst);
        // Not due yet: still down, no open attempted.
        assert!(ptt.poll(t0 + Duration::from_millis(50)).is_err());
        assert_eq!(opens.load(Ordering::SeqCst), 0);
        ptt.want = true;
        ptt.poll(t0 + Duration::from_millis(150)).unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), 1);
        assert!(ptt.is_keyed());
        assert_eq!(ptt.state(), DeviceState::Up);
        assert_eq!(log.transitions().last().map(|t| t.1), Some(true));
    }
}
