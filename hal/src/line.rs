//! Line inputs (COS/squelch, PTT buttons): the trait, its error type, debouncing and the
//! simulated backend.
//!
//! Backends: [`crate::serial::SerialLine`] (CTS, DSR or DCD), [`crate::gpio::GpioLine`]
//! (GPIO edge events), [`crate::cm108::Cm108Line`] (CM108 HID input), [`crate::vox::VoxLine`]
//! (audio level) and [`SimLine`]. Backends apply their active-low option themselves, so
//! [`LineInput::read`] always returns `true` for "active". [`Debouncer`] turns raw readings
//! into clean transitions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{DeviceError, ModemLine, Retry};

/// A binary input line, polled.
pub trait LineInput: Send {
    /// The current logical level, not debounced: `true` = active (squelch open, button
    /// pressed), after the backend's active-low inversion. Never blocks.
    fn read(&mut self) -> Result<bool, LineError>;
    /// A short description for logs and status, e.g. `serial CTS on /dev/ttyUSB0`.
    fn describe(&self) -> String;
}

impl<L: LineInput + ?Sized> LineInput for Box<L> {
    fn read(&mut self) -> Result<bool, LineError> {
        (**self).read()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Errors of line inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Opening or using the device node failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The serial device has no modem status lines (a pty, or an adapter without them).
    #[error("{path} has no modem status lines, cannot read {line}: it is a pseudo-terminal or a serial adapter without handshake lines; use a real UART/USB serial adapter that wires {line}, or another squelch input (GPIO, CM108, VOX)")]
    NoModemLines {
        /// The serial device.
        path: String,
        /// The line that could not be read.
        line: ModemLine,
    },
    /// The configuration cannot work (unknown line name, offset out of range, bad bit).
    #[error("line input configuration: {0}")]
    Config(String),
}

impl Retry for LineError {
    fn retryable(&self) -> bool {
        !matches!(self, LineError::Config(_) | LineError::NoModemLines { .. })
    }
}

/// Debouncing: a new level is accepted once the raw reading has stayed at it for the
/// debounce time. Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct Debouncer {
    debounce: Duration,
    level: bool,
    candidate: Option<(bool, Instant)>,
}

impl Debouncer {
    /// A debouncer starting at `initial`, accepting changes stable for `debounce`
    /// (typically 10 to 50 ms for contacts, 0 for clean logic signals).
    pub fn new(debounce: Duration, initial: bool) -> Self {
        Debouncer {
            debounce,
            level: initial,
            candidate: None,
        }
    }

    /// Feeds a raw reading taken at `now`; returns `Some(level)` when the debounced level
    /// changes.
    pub fn update(&mut self, now: Instant, raw: bool) -> Option<bool> {
        if raw == self.level {
            self.candidate = None;
            return None;
        }
        let since = match self.candidate {
            Some((v, t)) if v == raw => t,
            _ => {
                self.candidate = Some((raw, now));
                now
            }
        };
        if now.saturating_duration_since(since) >= self.debounce {
            self.level = raw;
            self.candidate = None;
            Some(raw)
        } else {
            None
        }
    }

    /// The debounced level.
    pub fn level(&self) -> bool {
        self.level
    }

    /// When a pending change would be accepted if the raw level stays, for timers.
    pub fn pending_until(&self) -> Option<Instant> {
        self.candidate.map(|(_, t)| t + self.debounce)
    }
}

/// A line input with a [`Debouncer`]. A read error counts as inactive (a lost squelch line
/// must not hold the floor; a lost button must not keep talking) and is returned.
pub struct DebouncedLine<L> {
    line: L,
    debouncer: Debouncer,
}

impl<L: LineInput> DebouncedLine<L> {
    /// Wraps `line`, starting inactive.
    pub fn new(line: L, debounce: Duration) -> Self {
        DebouncedLine {
            line,
            debouncer: Debouncer::new(debounce, false),
        }
    }

    /// Reads the line at `now`; `Ok(Some(level))` when the debounced level changed.
    pub fn poll(&mut self, now: Instant) -> Result<Option<bool>, LineError> {
        match self.line.read() {
            Ok(raw) => Ok(self.debouncer.update(now, raw)),
            Err(e) => {
                let changed = if self.debouncer.level() {
                    self.debouncer = Debouncer::new(self.debouncer.debounce, false);
                    true
                } else {
                    false
                };
                if changed {
                    tracing::warn!(line = %self.line.describe(), "line lost while active: treating it as inactive");
                }
                Err(e)
            }
        }
    }

    /// The debounced level.
    pub fn level(&self) -> bool {
        self.debouncer.level()
    }

    /// The wrapped line.
    pub fn inner(&self) -> &L {
        &self.line
    }
}

/// A simulated line whose level is set through a [`SimLineHandle`].
#[derive(Debug, Clone, Default)]
pub struct SimLine {
    level: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
}

/// Sets the level of a [`SimLine`].
#[derive(Debug, Clone)]
pub struct SimLineHandle {
    level: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
}

impl SimLine {
    /// A new inactive line.
    pub fn new() -> Self {
        Self::default()
    }
    /// The handle that drives it.
    pub fn handle(&self) -> SimLineHandle {
        SimLineHandle {
            level: self.level.clone(),
            fail: self.fail.clone(),
        }
    }
}

impl SimLineHandle {
    /// Sets the logical level (`true` = active).
    pub fn set(&self, active: bool) {
        self.level.store(active, Ordering::SeqCst);
    }
    /// Makes reads fail as if the device were unplugged (`true`) or back (`false`).
    pub fn set_lost(&self, lost: bool) {
        self.fail.store(lost, Ordering::SeqCst);
    }
}

impl LineInput for SimLine {
    fn read(&mut self) -> Result<bool, LineError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(LineError::Device(DeviceError::Lost {
                path: "sim".into(),
                detail: "simulated loss".into(),
            }));
        }
        Ok(self.level.load(Ordering::SeqCst))
    }
    fn describe(&self) -> String {
        "simulated line".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn debounce_rejects_bounces_and_accepts_stable_levels() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(20), false);
        assert_eq!(d.update(t0, true), None);
        assert_eq!(d.update(t0 + ms(5), false), None); // bounce
        assert_eq!(d.update(t0 + ms(10), true), None);
        assert_eq!(d.pending_until(), Some(t0 + ms(30)));
        assert_eq!(d.update(t0 + ms(25), true), None);
        assert_eq!(d.update(t0 + ms(30), true), Some(true));
        assert!(d.level());
        assert_eq!(d.update(t0 + ms(40), true), None);
        assert_eq!(d.update(t0 + ms(50), false), None);
        assert_eq!(d.update(t0 + ms(70), false), Some(false));
    }

    #[test]
    fn zero_debounce_passes_through() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::ZERO, false);
        assert_eq!(d.update(t0, true), Some(true));
        assert_eq!(d.update(t0, false), Some(false));
    }

    #[test]
    fn debounced_sim_line_and_loss_counts_inactive() {
        let line = SimLine::new();
        let h = line.handle();
        let mut l = DebouncedLine::new(line, ms(10));
        let t0 = Instant::now();
        h.set(true);
        assert_eq!(l.poll(t0).unwrap(), None);
        assert_eq!(l.poll(t0 + ms(10)).unwrap(), Some(true));
        h.set_lost(true);
        assert!(l.poll(t0 + ms(20)).is_err());
        assert!(!l.level());
    }
}
