//! Device error classification shared by every backend: each error says what to fix.

use std::fmt;
use std::io;

/// What went wrong with a device node (serial port, GPIO chip, hidraw node, sound card,
/// rigctld address), classified so that the message tells the operator what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device node does not exist (unplugged, wrong name).
    #[error("{path} not found: is the device plugged in and the name right? (check `ls -l {path}`; USB devices may get another name after re-plugging, prefer /dev/serial/by-id/... or a udev symlink)")]
    NotFound {
        /// The device path or name.
        path: String,
    },
    /// The process may not open the device.
    #[error("permission denied on {path}: {fix}")]
    PermissionDenied {
        /// The device path or name.
        path: String,
        /// What to do about it (which group to join, which udev rule to add).
        fix: String,
    },
    /// Another process holds the device.
    #[error("{path} is busy: another process holds it (find it with `fuser -v {path}` and stop it, e.g. ModemManager or a second radiogate)")]
    Busy {
        /// The device path or name.
        path: String,
    },
    /// The device went away while in use (USB unplugged, cable cut, peer closed).
    #[error("{path} was lost ({detail}): check the cable/USB connection; radiogate retries until it comes back")]
    Lost {
        /// The device path or name.
        path: String,
        /// The operating system's description.
        detail: String,
    },
    /// The device is down and a reconnect attempt is pending.
    #[error("{what} is unavailable, retrying: {last_error}")]
    Down {
        /// Description of the device.
        what: String,
        /// The error of the last attempt.
        last_error: String,
    },
    /// Anything else, with the operating system's description.
    #[error("{path}: {detail}")]
    Other {
        /// The device path or name.
        path: String,
        /// The operating system's description.
        detail: String,
    },
}

impl DeviceError {
    /// Classifies an I/O error that happened on `path`.
    pub fn from_io(path: &str, err: &io::Error) -> Self {
        match err.raw_os_error() {
            Some(code) => Self::from_errno(path, code, &err.to_string()),
            None => match err.kind() {
                io::ErrorKind::NotFound => Self::NotFound { path: path.into() },
                io::ErrorKind::PermissionDenied => Self::permission(path),
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => Self::Lost {
                    path: path.into(),
                    detail: err.to_string(),
                },
                _ => Self::Other {
                    path: path.into(),
                    detail: err.to_string(),
                },
            },
        }
    }

    /// Classifies an errno value (`libc::E*`) that happened on `path`.
    pub fn from_errno(path: &str, code: i32, detail: &str) -> Self {
        match code {
            libc::ENOENT => Self::NotFound { path: path.into() },
            libc::EACCES | libc::EPERM => Self::permission(path),
            libc::EBUSY => Self::Busy { path: path.into() },
            libc::EIO
            | libc::ENODEV
            | libc::ENXIO
            | libc::EPIPE
            | libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::ESHUTDOWN => Self::Lost {
                path: path.into(),
                detail: detail.into(),
            },
            _ => Self::Other {
                path: path.into(),
                detail: detail.into(),
            },
        }
    }

    /// A permission error on `path`, with the fix that fits the kind of device.
    pub fn permission(path: &str) -> Self {
        Self::PermissionDenied {
            path: path.into(),
            fix: permission_fix(path),
        }
    }
}

/// What to do when `path` may not be opened: the group that owns that kind of device on
/// Debian / Raspberry Pi OS, or the udev rule that is needed.
pub fn permission_fix(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with("/dev/tty")
        || path.starts_with("/dev/serial/")
        || name.starts_with("rfcomm")
    {
        "add the user to group dialout (`sudo usermod -aG dialout USER`, then log in again or restart the service)".into()
    } else if name.starts_with("gpiochip") {
        "add the user to group gpio (Raspberry Pi OS), or add a udev rule `SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip*\", GROUP=\"gpio\", MODE=\"0660\"` and add the user to that group".into()
    } else if name.starts_with("hidraw") {
        "hidraw nodes are root-only by default: add a udev rule `SUBSYSTEM==\"hidraw\", ATTRS{idVendor}==\"0d8c\", GROUP=\"plugdev\", MODE=\"0660\"` (0d8c = C-Media; 1209 for the AIOC) and add the user to group plugdev".into()
    } else if path.starts_with("/dev/snd") || !path.starts_with('/') {
        "add the user to group audio (`sudo usermod -aG audio USER`)".into()
    } else {
        format!("give the user read/write access to {path} (`ls -l {path}` shows the owning group)")
    }
}

/// Errors that a reconnect wrapper may retry.
pub trait Retry {
    /// `false` for configuration mistakes that no retry can fix (bad line name, bad offset).
    fn retryable(&self) -> bool;
}

/// Renders an error and its sources on one line, for logs and status.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// A printable line name for messages (RTS, DTR, CTS, DSR, DCD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemLine {
    /// Request To Send (output, DB9 pin 7).
    Rts,
    /// Data Terminal Ready (output, DB9 pin 4).
    Dtr,
    /// Clear To Send (input, DB9 pin 8).
    Cts,
    /// Data Set Ready (input, DB9 pin 6).
    Dsr,
    /// Data Carrier Detect (input, DB9 pin 1).
    Dcd,
}

impl fmt::Display for ModemLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModemLine::Rts => "RTS",
            ModemLine::Dtr => "DTR",
            ModemLine::Cts => "CTS",
            ModemLine::Dsr => "DSR",
            ModemLine::Dcd => "DCD",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_messages_name_the_fix() {
        let e = DeviceError::from_errno("/dev/ttyUSB0", libc::EACCES, "Permission denied");
        assert!(
            e.to_string()
                .starts_with("permission denied on /dev/ttyUSB0: add the user to group dialout"),
            "{e}"
        );
        let e = DeviceError::from_errno("/dev/gpiochip0", libc::EACCES, "x");
        assert!(e.to_string().contains("group gpio"), "{e}");
        let e = DeviceError::from_errno("/dev/hidraw3", libc::EACCES, "x");
        assert!(e.to_string().contains("udev rule"), "{e}");
    }

    #[test]
    fn classifies_errnos() {
        assert!(matches!(
            DeviceError::from_errno("/dev/x", libc::ENOENT, ""),
            DeviceError::NotFound { .. }
        ));
        assert!(matches!(
            DeviceError::from_errno("/dev/x", libc::EBUSY, ""),
            DeviceError::Busy { .. }
        ));
        assert!(matches!(
            DeviceError::from_errno("/dev/x", libc::EIO, ""),
            DeviceError::Lost { .. }
        ));
        let io = io::Error::from_raw_os_error(libc::ENODEV);
        assert!(matches!(
            DeviceError::from_io("/dev/x", &io),
            DeviceError::Lost { .. }
        ));
    }
}
