//! Serial port modem lines: RTS/DTR as PTT outputs, CTS/DSR/DCD as line inputs.
//!
//! One [`SerialDevice`] is opened per port (exclusively, like every serial program should) and
//! shared by the PTT output and the squelch input that use its lines, so "RTS PTT with CTS
//! squelch" on one adapter works. The device reopens itself after it is lost (USB adapter
//! unplugged: the next operation fails with EIO, the port is closed, and later operations
//! reopen it with backoff) and re-applies the output levels that were set.
//!
//! Opening a tty raises RTS and DTR (Linux does so on every open); the device drives every
//! configured output to its unkeyed level immediately after opening, so the radio sees at most a
//! few microseconds of key-up. Wire PTT so that this is harmless, or use an active-low output.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use serialport::TTYPort;

use crate::error::{DeviceError, ModemLine};
use crate::line::{LineError, LineInput};
use crate::ptt::{Polarity, PttError, PttOutput};
use crate::reconnect::Backoff;

/// Why a serial operation failed (converted into [`PttError`] / [`LineError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    /// Opening or using the device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The modem-line ioctl is not supported (pty or adapter without handshake lines).
    #[error("{path} has no modem control lines ({line})")]
    NoModemLines {
        /// The device.
        path: String,
        /// The line.
        line: ModemLine,
    },
}

impl From<SerialError> for PttError {
    fn from(e: SerialError) -> Self {
        match e {
            SerialError::Device(d) => PttError::Device(d),
            SerialError::NoModemLines { path, line } => PttError::NoModemLines { path, line },
        }
    }
}

impl From<SerialError> for LineError {
    fn from(e: SerialError) -> Self {
        match e {
            SerialError::Device(d) => LineError::Device(d),
            SerialError::NoModemLines { path, line } => LineError::NoModemLines { path, line },
        }
    }
}

/// Classifies a `serialport` error on `path`. `serialport` keeps only the errno description
/// for most errors, so the well-known descriptions are matched.
fn classify(path: &str, line: Option<ModemLine>, e: &serialport::Error) -> SerialError {
    use serialport::ErrorKind as K;
    use std::io::ErrorKind as IO;
    let desc = e.description.as_str();
    let dev = match e.kind {
        K::Io(IO::NotFound) => DeviceError::NotFound { path: path.into() },
        K::Io(IO::PermissionDenied) => DeviceError::permission(path),
        K::NoDevice if desc.contains("busy") || desc.contains("lock") => {
            DeviceError::Busy { path: path.into() }
        }
        K::NoDevice => DeviceError::Lost {
            path: path.into(),
            detail: desc.into(),
        },
        _ if desc.contains("Inappropriate ioctl") || desc.contains("Not a typewriter") => {
            return SerialError::NoModemLines {
                path: path.into(),
                line: line.unwrap_or(ModemLine::Rts),
            }
        }
        _ if desc.contains("I/O error")
            || desc.contains("Bad file number")
            || desc.contains("Input/output error")
            || desc.contains("No such device")
            || desc.contains("Bad file descriptor") =>
        {
            DeviceError::Lost {
                path: path.into(),
                detail: desc.into(),
            }
        }
        _ if desc.contains("busy") => DeviceError::Busy { path: path.into() },
        _ => DeviceError::Other {
            path: path.into(),
            detail: desc.into(),
        },
    };
    SerialError::Device(dev)
}

/// Sets or clears one modem-control bit with TIOCMBIS / TIOCMBIC. Done directly (rather than
/// through `serialport`'s helpers) to keep the exact errno: ENOTTY means "no modem lines".
#[allow(unsafe_code)] // one of the hal's two ioctl calls; see the SAFETY comment
fn set_modem_bit(port: &TTYPort, bit: libc::c_int, on: bool) -> std::io::Result<()> {
    let req = if on { libc::TIOCMBIS } else { libc::TIOCMBIC };
    // SAFETY: the fd is open for the lifetime of `port`; the argument points to a valid int.
    let r = unsafe { libc::ioctl(port.as_raw_fd(), req, &bit as *const libc::c_int) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads one modem-status bit with TIOCMGET.
#[allow(unsafe_code)] // one of the hal's two ioctl calls; see the SAFETY comment
fn get_modem_bit(port: &TTYPort, bit: libc::c_int) -> std::io::Result<bool> {
    let mut bits: libc::c_int = 0;
    // SAFETY: the fd is open for the lifetime of `port`; the argument points to a valid int.
    let r = unsafe {
        libc::ioctl(
            port.as_raw_fd(),
            libc::TIOCMGET,
            &mut bits as *mut libc::c_int,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(bits & bit != 0)
    }
}

fn classify_io(path: &str, line: ModemLine, e: &std::io::Error) -> SerialError {
    if e.raw_os_error() == Some(libc::ENOTTY) || e.raw_os_error() == Some(libc::EINVAL) {
        return SerialError::NoModemLines {
            path: path.into(),
            line,
        };
    }
    SerialError::Device(DeviceError::from_io(path, e))
}

struct Inner {
    port: Option<TTYPort>,
    rts: Option<bool>,
    dtr: Option<bool>,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<SerialError>,
}

/// An exclusively opened serial port whose modem lines are shared by a [`SerialPtt`] and a
/// [`SerialLine`]. Reopens itself after it is lost; see the module docs.
pub struct SerialDevice {
    path: String,
    backoff: Backoff,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice")
            .field("path", &self.path)
            .finish()
    }
}

impl SerialDevice {
    /// Opens `path` now (exclusive); fails with what to fix when it cannot be opened.
    /// Later losses are retried with the default [`Backoff`].
    pub fn open(path: &str) -> Result<Arc<Self>, SerialError> {
        let dev = Self::lazy(path, Backoff::default());
        {
            let mut inner = dev.lock();
            dev.ensure_open(&mut inner, Instant::now(), true)?;
        }
        Ok(dev)
    }

    /// A device that is opened on first use and reopened with `backoff` after failures (a
    /// gateway starting while the adapter is unplugged keeps running and picks it up later).
    pub fn lazy(path: &str, backoff: Backoff) -> Arc<Self> {
        Arc::new(SerialDevice {
            path: path.into(),
            backoff,
            inner: Mutex::new(Inner {
                port: None,
                rts: None,
                dtr: None,
                failures: 0,
                next_attempt: None,
                last_error: None,
            }),
        })
    }

    /// The device path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the port is open now.
    pub fn is_open(&self) -> bool {
        self.lock().port.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_open(&self, inner: &mut Inner, now: Instant, force: bool) -> Result<(), SerialError> {
        if inner.port.is_some() {
            return Ok(());
        }
        if !force {
            if let Some(t) = inner.next_attempt {
                if now < t {
                    return Err(inner.last_error.clone().unwrap_or_else(|| {
                        SerialError::Device(DeviceError::Down {
                            what: self.path.clone(),
                            last_error: "not opened yet".into(),
                        })
                    }));
                }
            }
        }
        let opened = serialport::new(&self.path, 9600)
            .timeout(Duration::from_millis(100))
            .open_native()
            .map_err(|e| classify(&self.path, None, &e));
        let res = opened.and_then(|port| {
            // Opening raised RTS and DTR: restore the configured levels at once.
            if let Some(v) = inner.rts {
                set_modem_bit(&port, libc::TIOCM_RTS, v)
                    .map_err(|e| classify_io(&self.path, ModemLine::Rts, &e))?;
            }
            if let Some(v) = inner.dtr {
                set_modem_bit(&port, libc::TIOCM_DTR, v)
                    .map_err(|e| classify_io(&self.path, ModemLine::Dtr, &e))?;
            }
            Ok(port)
        });
        match res {
            Ok(port) => {
                if inner.failures > 0 {
                    tracing::info!(device = %self.path, "serial port is back");
                }
                inner.port = Some(port);
                inner.failures = 0;
                inner.next_attempt = None;
                inner.last_error = None;
                Ok(())
            }
            Err(e) => {
                self.record(inner, now, &e);
                Err(e)
            }
        }
    }

    fn record(&self, inner: &mut Inner, now: Instant, e: &SerialError) {
        inner.failures = inner.failures.saturating_add(1);
        inner.next_attempt = Some(now + self.backoff.delay(inner.failures));
        if inner.last_error.as_ref() != Some(e) {
            tracing::warn!(device = %self.path, error = %e, "serial port error");
        }
        inner.last_error = Some(e.clone());
    }

    fn op<R>(
        &self,
        line: ModemLine,
        store: impl FnOnce(&mut Inner),
        f: impl FnOnce(&mut TTYPort) -> std::io::Result<R>,
    ) -> Result<R, SerialError> {
        let now = Instant::now();
        let mut inner = self.lock();
        store(&mut inner);
        self.ensure_open(&mut inner, now, false)?;
        let Some(port) = inner.port.as_mut() else {
            return Err(SerialError::Device(DeviceError::Down {
                what: self.path.clone(),
                last_error: "not open".into(),
            }));
        };
        match f(port) {
            Ok(v) => Ok(v),
            Err(e) => {
                let err = classify_io(&self.path, line, &e);
                if matches!(err, SerialError::Device(DeviceError::Lost { .. })) {
                    inner.port = None;
                }
                self.record(&mut inner, now, &err);
                Err(err)
            }
        }
    }

    /// Sets RTS or DTR (`true` = asserted) and remembers it for reopening.
    pub fn set_output(&self, line: ModemLine, level: bool) -> Result<(), SerialError> {
        match line {
            ModemLine::Rts => self.op(
                line,
                |i| i.rts = Some(level),
                |p| set_modem_bit(p, libc::TIOCM_RTS, level),
            ),
            ModemLine::Dtr => self.op(
                line,
                |i| i.dtr = Some(level),
                |p| set_modem_bit(p, libc::TIOCM_DTR, level),
            ),
            other => Err(SerialError::Device(DeviceError::Other {
                path: self.path.clone(),
                detail: format!("{other} is an input line, not an output"),
            })),
        }
    }

    /// Reads CTS, DSR or DCD (`true` = asserted).
    pub fn read_input(&self, line: ModemLine) -> Result<bool, SerialError> {
        match line {
            ModemLine::Cts => self.op(line, |_| {}, |p| get_modem_bit(p, libc::TIOCM_CTS)),
            ModemLine::Dsr => self.op(line, |_| {}, |p| get_modem_bit(p, libc::TIOCM_DSR)),
            ModemLine::Dcd => self.op(line, |_| {}, |p| get_modem_bit(p, libc::TIOCM_CAR)),
            other => Err(SerialError::Device(DeviceError::Other {
                path: self.path.clone(),
                detail: format!("{other} is an output line, not an input"),
            })),
        }
    }
}

/// PTT on a serial RTS or DTR line, either polarity. Unkeys on drop.
#[derive(Debug)]
pub struct SerialPtt {
    dev: Arc<SerialDevice>,
    line: ModemLine,
    polarity: Polarity,
    keyed: bool,
}

impl SerialPtt {
    /// PTT on `line` (RTS or DTR) of `dev`; drives it to the unkeyed level now.
    pub fn new(
        dev: Arc<SerialDevice>,
        line: ModemLine,
        polarity: Polarity,
    ) -> Result<Self, PttError> {
        if !matches!(line, ModemLine::Rts | ModemLine::Dtr) {
            return Err(PttError::Config(format!(
                "serial PTT must use RTS or DTR, not {line}"
            )));
        }
        dev.set_output(line, polarity.level(false))?;
        Ok(SerialPtt {
            dev,
            line,
            polarity,
            keyed: false,
        })
    }
}

impl PttOutput for SerialPtt {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        self.dev.set_output(self.line, self.polarity.level(keyed))?;
        self.keyed = keyed;
        Ok(())
    }
    fn is_keyed(&self) -> bool {
        self.keyed
    }
    fn describe(&self) -> String {
        format!("serial {} on {}", self.line, self.dev.path())
    }
}

impl Drop for SerialPtt {
    fn drop(&mut self) {
        if let Err(e) = self.dev.set_output(self.line, self.polarity.level(false)) {
            tracing::error!(ptt = %self.describe(), error = %e, "could not unkey on drop");
        }
    }
}

/// A line input on serial CTS, DSR or DCD, optionally active-low.
#[derive(Debug)]
pub struct SerialLine {
    dev: Arc<SerialDevice>,
    line: ModemLine,
    active_low: bool,
}

impl SerialLine {
    /// Input on `line` (CTS, DSR or DCD) of `dev`.
    pub fn new(
        dev: Arc<SerialDevice>,
        line: ModemLine,
        active_low: bool,
    ) -> Result<Self, LineError> {
        if !matches!(line, ModemLine::Cts | ModemLine::Dsr | ModemLine::Dcd) {
            return Err(LineError::Config(format!(
                "serial input must be CTS, DSR or DCD, not {line}"
            )));
        }
        Ok(SerialLine {
            dev,
            line,
            active_low,
        })
    }
}

impl LineInput for SerialLine {
    fn read(&mut self) -> Result<bool, LineError> {
        Ok(self.dev.read_input(self.line)? != self.active_low)
    }
    fn describe(&self) -> String {
        format!("serial {} on {}", self.line, self.dev.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_port_is_not_found_with_hint() {
        let e = SerialDevice::open("/dev/ttyUSB-radiogate-missing").unwrap_err();
        assert!(
            matches!(e, SerialError::Device(DeviceError::NotFound { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("plugged in"), "{e}");
    }

    #[test]
    fn enotty_is_no_modem_lines() {
        let e = serialport::Error::new(
            serialport::ErrorKind::Unknown,
            "Inappropriate ioctl for device",
        );
        let c = classify("/dev/pts/3", Some(ModemLine::Dtr), &e);
        assert_eq!(
            c,
            SerialError::NoModemLines {
                path: "/dev/pts/3".into(),
                line: ModemLine::Dtr
            }
        );
        let p: PttError = c.into();
        assert!(p.to_string().contains("pseudo-terminal"), "{p}");
    }

    #[test]
    fn wrong_lines_are_config_errors() {
        let dev = SerialDevice::lazy("/dev/null-x", Backoff::default());
        assert!(matches!(
            SerialPtt::new(dev.clone(), ModemLine::Cts, Polarity::ActiveHigh),
            Err(PttError::Config(_))
        ));
        assert!(matches!(
            SerialLine::new(dev, ModemLine::Rts, false),
            Err(LineError::Config(_))
        ));
    }
}
