//! PTT outputs: the trait, its error type and the simulated backend.
//!
//! Backends: [`crate::serial::SerialPtt`] (RTS or DTR), [`crate::gpio::GpioPtt`] (GPIO
//! character device), [`crate::cm108::Cm108Ptt`] (CM108/CM119 GPIO through hidraw),
//! [`crate::cat::RigctldPtt`] (CAT through hamlib's rigctld) and [`SimPtt`]. Every backend
//! unkeys when dropped (fail-safe), so a port that shuts down or panics releases the radio.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::{DeviceError, ModemLine, Retry};

/// A transmitter key line. Implementations unkey on drop.
pub trait PttOutput: Send {
    /// Keys (`true`) or unkeys (`false`) the transmitter. Setting the current state again is
    /// allowed and re-asserts it on the hardware.
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError>;
    /// The state last set successfully.
    fn is_keyed(&self) -> bool;
    /// A short description for logs and status, e.g. `serial RTS on /dev/ttyUSB0`.
    fn describe(&self) -> String;
}

impl<P: PttOutput + ?Sized> PttOutput for Box<P> {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        (**self).set_keyed(keyed)
    }
    fn is_keyed(&self) -> bool {
        (**self).is_keyed()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Errors of PTT outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PttError {
    /// Opening or using the device node failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The serial device has no modem control lines (a pty, or a USB adapter without them).
    #[error("{path} has no modem control lines, cannot drive {line}: it is a pseudo-terminal or a serial adapter without handshake lines; use a real UART/USB serial adapter that wires {line}, or another PTT method (CAT, GPIO, CM108)")]
    NoModemLines {
        /// The serial device.
        path: String,
        /// The line that could not be set.
        line: ModemLine,
    },
    /// rigctld answered with an error or something unexpected.
    #[error("rigctld at {addr}: {detail}")]
    Cat {
        /// The rigctld address (`host:port`).
        addr: String,
        /// What went wrong, with the rigctld answer.
        detail: String,
    },
    /// The configuration cannot work (unknown line name, offset out of range, bad pin number).
    #[error("PTT configuration: {0}")]
    Config(String),
}

impl Retry for PttError {
    fn retryable(&self) -> bool {
        !matches!(self, PttError::Config(_) | PttError::NoModemLines { .. })
    }
}

/// Output polarity of a line that keys the radio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Polarity {
    /// The line is asserted (high / ON) to key.
    #[default]
    ActiveHigh,
    /// The line is asserted (high / ON) to unkey; keying drives it low / OFF.
    ActiveLow,
}

impl Polarity {
    /// The physical level (`true` = asserted) that means `keyed`.
    pub fn level(self, keyed: bool) -> bool {
        match self {
            Polarity::ActiveHigh => keyed,
            Polarity::ActiveLow => !keyed,
        }
    }
}

/// One recorded key-state change of a [`SimPtt`].
pub type Transition = (Instant, bool);

#[derive(Debug, Default)]
struct SimState {
    keyed: bool,
    transitions: Vec<Transition>,
    fail_next: Option<PttError>,
}

/// A simulated PTT output that records timestamped transitions. Clones of its
/// [`SimPttHandle`] see the same record; it unkeys on drop like real outputs.
#[derive(Debug)]
pub struct SimPtt {
    name: String,
    state: Arc<Mutex<SimState>>,
}

/// Read access to a [`SimPtt`]'s record, and fault injection.
#[derive(Debug, Clone)]
pub struct SimPttHandle {
    state: Arc<Mutex<SimState>>,
}

fn lock(m: &Mutex<SimState>) -> MutexGuard<'_, SimState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimPtt {
    /// A new unkeyed simulated output named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        SimPtt {
            name: name.into(),
            state: Arc::default(),
        }
    }

    /// A handle to read the record.
    pub fn handle(&self) -> SimPttHandle {
        SimPttHandle {
            state: self.state.clone(),
        }
    }

    /// Another output sharing this one's record (a "reopened" device in tests).
    pub fn clone_shared(&self) -> SimPtt {
        SimPtt {
            name: self.name.clone(),
            state: self.state.clone(),
        }
    }
}

impl SimPttHandle {
    /// Every change of the key state so far: (when, keyed).
    pub fn transitions(&self) -> Vec<Transition> {
        lock(&self.state).transitions.clone()
    }
    /// The current key state.
    pub fn is_keyed(&self) -> bool {
        lock(&self.state).keyed
    }
    /// Makes the next `set_keyed` fail with `err` (once).
    pub fn fail_next(&self, err: PttError) {
        lock(&self.state).fail_next = Some(err);
    }
}

impl PttOutput for SimPtt {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        let mut s = lock(&self.state);
        if let Some(e) = s.fail_next.take() {
            return Err(e);
        }
        if s.keyed != keyed {
            s.keyed = keyed;
            s.transitions.push((Instant::now(), keyed));
        }
        Ok(())
    }
    fn is_keyed(&self) -> bool {
        lock(&self.state).keyed
    }
    fn describe(&self) -> String {
        format!("simulated PTT {}", self.name)
    }
}

impl Drop for SimPtt {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        if s.keyed {
            s.keyed = false;
            s.transitions.push((Instant::now(), false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_records_transitions_and_unkeys_on_drop() {
        let mut p = SimPtt::new("a");
        let h = p.handle();
        p.set_keyed(true).unwrap();
        p.set_keyed(true).unwrap();
        assert!(h.is_keyed());
        drop(p);
        let t: Vec<bool> = h.transitions().iter().map(|t| t.1).collect();
        assert_eq!(t, vec![true, false]);
        assert!(!h.is_keyed());
    }

    #[test]
    fn polarity() {
        assert!(Polarity::ActiveHigh.level(true));
        assert!(!Polarity::ActiveLow.level(true));
        assert!(Polarity::ActiveLow.level(false));
    }
}
