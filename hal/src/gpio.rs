//! GPIO lines through the Linux GPIO character device (`/dev/gpiochipN`, gpiocdev): a PTT
//! output and an edge-event line input, by chip and offset or by line name, active-low option.
//!
//! The kernel releases a requested line when the process exits (even on a crash), and an
//! output line keeps its last value afterwards; [`GpioPtt`] unkeys on drop so a clean shutdown
//! never leaves the line keyed, and `radiogate unkey` covers crashes.

use std::time::Duration;

use gpiocdev::line::{EdgeDetection, EdgeKind, Offset, Value};
use gpiocdev::request::Request;

use crate::error::DeviceError;
use crate::line::{LineError, LineInput};
use crate::ptt::{PttError, PttOutput};

/// Which GPIO line: a chip and an offset, or a line name looked up on every chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpioLineId {
    /// `chip` is a path (`/dev/gpiochip0`) or a name (`gpiochip0`); `offset` the line number
    /// on that chip (on a Raspberry Pi, the BCM GPIO number on `gpiochip0`, or `gpiochip4` on a
    /// Pi 5).
    Offset {
        /// The chip path or name.
        chip: String,
        /// The line offset on the chip.
        offset: u32,
    },
    /// A line name from the device tree, e.g. `GPIO17` on a Raspberry Pi.
    Name(String),
}

impl std::fmt::Display for GpioLineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpioLineId::Offset { chip, offset } => write!(f, "{chip} line {offset}"),
            GpioLineId::Name(n) => write!(f, "GPIO line \"{n}\""),
        }
    }
}

/// Why a GPIO request failed (converted into [`PttError`] / [`LineError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpioError {
    /// Opening or using the chip failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The configuration names a line that does not exist or cannot be used.
    #[error("{0}")]
    Config(String),
}

impl From<GpioError> for PttError {
    fn from(e: GpioError) -> Self {
        match e {
            GpioError::Device(d) => PttError::Device(d),
            GpioError::Config(c) => PttError::Config(c),
        }
    }
}

impl From<GpioError> for LineError {
    fn from(e: GpioError) -> Self {
        match e {
            GpioError::Device(d) => LineError::Device(d),
            GpioError::Config(c) => LineError::Config(c),
        }
    }
}

fn chip_path(chip: &str) -> String {
    if chip.starts_with('/') {
        chip.to_string()
    } else {
        format!("/dev/{chip}")
    }
}

fn classify(path: &str, e: &gpiocdev::Error) -> GpioError {
    use gpiocdev::Error as G;
    // gpiocdev keeps its uAPI error type private: take the errno from "(os error N)".
    let text = e.to_string();
    let errno = match e {
        G::Os(n) => Some(n.0),
        _ => text
            .rfind("(os error ")
            .and_then(|i| text[i + 10..].split(')').next())
            .and_then(|n| n.parse().ok()),
    };
    match (errno, e) {
        (Some(libc::EINVAL), _) => GpioError::Config(format!(
            "{path}: the kernel rejected the line request ({e}): check the offset and options"
        )),
        (Some(code), _) => GpioError::Device(DeviceError::from_errno(path, code, &e.to_string())),
        (None, G::GpioChip(..)) | (None, G::InvalidArgument(_)) => {
            GpioError::Config(format!("{path}: {e}"))
        }
        (None, G::NoGpioChips()) => GpioError::Device(DeviceError::NotFound {
            path: "/dev/gpiochip*".into(),
        }),
        _ => GpioError::Device(DeviceError::Other {
            path: path.into(),
            detail: e.to_string(),
        }),
    }
}

/// Resolves the chip path and offset of `id`.
fn resolve(id: &GpioLineId) -> Result<(String, Offset), GpioError> {
    match id {
        GpioLineId::Offset { chip, offset } => Ok((chip_path(chip), *offset)),
        GpioLineId::Name(name) => match gpiocdev::find_named_line(name) {
            Some(found) => Ok((found.chip.to_string_lossy().into_owned(), found.info.offset)),
            None => Err(GpioError::Config(format!(
                "no GPIO line named \"{name}\" on any /dev/gpiochip* (list names with `gpioinfo`, or give chip and offset)"
            ))),
        },
    }
}

/// PTT on a GPIO output line. Unkeys on drop.
pub struct GpioPtt {
    id: GpioLineId,
    path: String,
    req: Request,
    keyed: bool,
}

impl GpioPtt {
    /// Requests `id` as an output driven inactive (unkeyed); with `active_low`, keying drives
    /// the pin low.
    pub fn open(id: &GpioLineId, active_low: bool) -> Result<Self, PttError> {
        let (path, offset) = resolve(id)?;
        let mut b = Request::builder();
        b.on_chip(&path)
            .with_consumer("radiogate-ptt")
            .with_line(offset)
            .as_output(Value::Inactive);
        if active_low {
            b.as_active_low();
        }
        let req = b.request().map_err(|e| classify(&path, &e))?;
        Ok(GpioPtt {
            id: id.clone(),
            path,
            req,
            keyed: false,
        })
    }
}

impl PttOutput for GpioPtt {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        let v = if keyed {
            Value::Active
        } else {
            Value::Inactive
        };
        self.req
            .set_lone_value(v)
            .map_err(|e| classify(&self.path, &e))?;
        self.keyed = keyed;
        Ok(())
    }
    fn is_keyed(&self) -> bool {
        self.keyed
    }
    fn describe(&self) -> String {
        format!("GPIO PTT on {}", self.id)
    }
}

impl Drop for GpioPtt {
    fn drop(&mut self) {
        if let Err(e) = self.req.set_lone_value(Value::Inactive) {
            tracing::error!(ptt = %self.describe(), error = %e, "could not unkey on drop");
        }
    }
}

/// A line input on a GPIO line with edge events (both edges), optionally active-low, with the
/// kernel's debounce when `debounce` is non-zero (not every chip supports it; the request then
/// fails with a configuration error and software debouncing with [`crate::line::Debouncer`]
/// is the alternative).
pub struct GpioLine {
    id: GpioLineId,
    path: String,
    req: Request,
    level: bool,
}

impl GpioLine {
    /// Requests `id` as an input with edge detection.
    pub fn open(id: &GpioLineId, active_low: bool, debounce: Duration) -> Result<Self, LineError> {
        let (path, offset) = resolve(id)?;
        let mut b = Request::builder();
        b.on_chip(&path)
            .with_consumer("radiogate-line")
            .with_line(offset)
            .as_input()
            .with_edge_detection(EdgeDetection::BothEdges);
        if active_low {
            b.as_active_low();
        }
        if !debounce.is_zero() {
            b.with_debounce_period(debounce);
        }
        let req = b.request().map_err(|e| classify(&path, &e))?;
        let level = req.lone_value().map_err(|e| classify(&path, &e))? == Value::Active;
        Ok(GpioLine {
            id: id.clone(),
            path,
            req,
            level,
        })
    }
}

impl LineInput for GpioLine {
    fn read(&mut self) -> Result<bool, LineError> {
        // Drain pending edge events without blocking; the last one is the current level.
        while self
            .req
            .has_edge_event()
            .map_err(|e| classify(&self.path, &e))?
        {
            let ev = self
                .req
                .read_edge_event()
                .map_err(|e| classify(&self.path, &e))?;
            self.level = ev.kind == EdgeKind::Rising;
        }
        Ok(self.level)
    }
    fn describe(&self) -> String {
        format!("GPIO input on {}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_chip_is_not_found() {
        let id = GpioLineId::Offset {
            chip: "gpiochip-radiogate-missing".into(),
            offset: 17,
        };
        let e = GpioPtt::open(&id, false).err().expect("no such chip");
        assert!(
            matches!(e, PttError::Device(DeviceError::NotFound { .. })),
            "{e:?}"
        );
        let e = GpioLine::open(&id, true, Duration::ZERO)
            .err()
            .expect("no such chip");
        assert!(
            e.to_string().contains("/dev/gpiochip-radiogate-missing"),
            "{e}"
        );
    }

    #[test]
    fn unknown_name_is_config_error() {
        let e = GpioPtt::open(&GpioLineId::Name("RADIOGATE_NO_SUCH_LINE".into()), false)
            .err()
            .expect("no such line");
        assert!(matches!(e, PttError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("gpioinfo"), "{e}");
    }

    #[test]
    fn non_gpio_file_is_rejected() {
        let id = GpioLineId::Offset {
            chip: "/dev/null".into(),
            offset: 0,
        };
        let e = GpioPtt::open(&id, false).err().expect("not a gpio chip");
        assert!(
            matches!(e, PttError::Config(_) | PttError::Device(_)),
            "{e:?}"
        );
    }
}
