//! CM108/CM119 USB sound-card GPIO through hidraw (the common radio interface dongles: DMK URI,
//! RA-35, RIM-Lite, homebrew "USB fobs", and the AIOC which emulates the CM108 interface).
//!
//! The HID output report is written directly to `/dev/hidrawN` (no hidapi): 5 bytes
//! `[0 (report number), 0, mask, data, 0]` with `mask = data-bit = 1 << (gpio - 1)`, the format
//! Dire Wolf and hamlib use. GPIO3 (pin 13 on the CM108AH) is the usual PTT pin. The HID input
//! report (4 bytes) carries the volume-button inputs in its first byte: VOLUP `0x01`, VOLDN
//! `0x02`, MUTE `0x04`; radio interfaces wire COS to VOLDN, so that is the default.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use crate::error::DeviceError;
use crate::line::{LineError, LineInput};
use crate::ptt::{PttError, PttOutput};

/// Builds the hidraw output report that sets CM108 GPIO `gpio` (1..=8) to `high`.
pub fn gpio_report(gpio: u8, high: bool) -> [u8; 5] {
    let bit = 1u8 << (gpio.clamp(1, 8) - 1);
    [0, 0, bit, if high { bit } else { 0 }, 0]
}

/// PTT on a CM108/CM119 GPIO pin. Unkeys on drop.
#[derive(Debug)]
pub struct Cm108Ptt {
    path: String,
    gpio: u8,
    active_low: bool,
    file: File,
    keyed: bool,
}

impl Cm108Ptt {
    /// Opens `path` (`/dev/hidrawN`) and drives GPIO `gpio` (1..=8; 3 on most interfaces) to
    /// the unkeyed level. With `active_low` the pin is driven low to key.
    pub fn open(path: &str, gpio: u8, active_low: bool) -> Result<Self, PttError> {
        if !(1..=8).contains(&gpio) {
            return Err(PttError::Config(format!(
                "CM108 GPIO number must be 1 to 8, not {gpio} (GPIO3 is the usual PTT pin)"
            )));
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| PttError::Device(DeviceError::from_io(path, &e)))?;
        let mut p = Cm108Ptt {
            path: path.into(),
            gpio,
            active_low,
            file,
            keyed: true,
        };
        p.set_keyed(false)?;
        Ok(p)
    }

    fn write(&mut self, keyed: bool) -> Result<(), PttError> {
        let report = gpio_report(self.gpio, keyed != self.active_low);
        self.file
            .write_all(&report)
            .map_err(|e| PttError::Device(DeviceError::from_io(&self.path, &e)))
    }
}

impl PttOutput for Cm108Ptt {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        self.write(keyed)?;
        self.keyed = keyed;
        Ok(())
    }
    fn is_keyed(&self) -> bool {
        self.keyed
    }
    fn describe(&self) -> String {
        format!("CM108 GPIO{} on {}", self.gpio, self.path)
    }
}

impl Drop for Cm108Ptt {
    fn drop(&mut self) {
        if let Err(e) = self.write(false) {
            tracing::error!(ptt = %self.describe(), error = %e, "could not unkey on drop");
        }
    }
}

/// A line input on a CM108 HID input bit (byte `byte` of the input report, bits `mask`).
#[derive(Debug)]
pub struct Cm108Line {
    path: String,
    file: File,
    byte: usize,
    mask: u8,
    active_low: bool,
    level: bool,
}

/// VOLDN in the first byte of the input report: where COS is wired on radio interfaces.
pub const COS_VOLDN: (usize, u8) = (0, 0x02);

impl Cm108Line {
    /// Opens `path` (`/dev/hidrawN`) for input reports and watches `byte`/`mask` (see
    /// [`COS_VOLDN`]). A set bit means active unless `active_low`.
    pub fn open(path: &str, byte: usize, mask: u8, active_low: bool) -> Result<Self, LineError> {
        if byte >= 4 || mask == 0 {
            return Err(LineError::Config(format!("CM108 input must be a non-zero mask in byte 0..3 of the report, not byte {byte} mask {mask:#04x}")));
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| LineError::Device(DeviceError::from_io(path, &e)))?;
        Ok(Cm108Line {
            path: path.into(),
            file,
            byte,
            mask,
            active_low,
            level: false,
        })
    }
}

impl LineInput for Cm108Line {
    fn read(&mut self) -> Result<bool, LineError> {
        // The chip sends an input report on every change; drain them without blocking.
        let mut buf = [0u8; 64];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if n > self.byte {
                        self.level = buf[self.byte] & self.mask != 0;
                    }
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    break
                }
                Err(e) => return Err(LineError::Device(DeviceError::from_io(&self.path, &e))),
            }
        }
        Ok(self.level != self.active_low)
    }
    fn describe(&self) -> String {
        format!(
            "CM108 input byte {} mask {:#04x} on {}",
            self.byte, self.mask, self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_format() {
        assert_eq!(gpio_report(3, true), [0, 0, 4, 4, 0]);
        assert_eq!(gpio_report(3, false), [0, 0, 4, 0, 0]);
        assert_eq!(gpio_report(1, true), [0, 0, 1, 1, 0]);
    }

    #[test]
    fn writes_reports_and_unkeys_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hidraw");
        std::fs::write(&path, b"").unwrap();
        let p = path.to_str().unwrap();
        let mut ptt = Cm108Ptt::open(p, 3, false).unwrap();
        ptt.set_keyed(true).unwrap();
        assert!(ptt.is_keyed());
        drop(ptt);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes,
            [[0, 0, 4, 0, 0], [0, 0, 4, 4, 0], [0, 0, 4, 0, 0]].concat()
        );
    }

    #[test]
    fn reads_input_reports_from_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hidraw-in");
        let made = std::process::Command::new("mkfifo")
            .arg("-m600")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let p = path.to_str().unwrap();
        let mut line = Cm108Line::open(p, COS_VOLDN.0, COS_VOLDN.1, false).unwrap();
        let mut w = OpenOptions::new().write(true).open(&path).unwrap();
        assert!(!line.read().unwrap());
        w.write_all(&[0x02, 0, 0, 0]).unwrap();
        assert!(line.read().unwrap());
        w.write_all(&[0x00, 0, 0, 0]).unwrap();
        assert!(!line.read().unwrap());
    }

    #[test]
    fn missing_and_bad_config() {
        let e = Cm108Ptt::open("/dev/hidraw-radiogate-missing", 3, false).unwrap_err();
        assert!(
            matches!(e, PttError::Device(DeviceError::NotFound { .. })),
            "{e:?}"
        );
        assert!(matches!(
            Cm108Ptt::open("/dev/null", 9, false),
            Err(PttError::Config(_))
        ));
        assert!(matches!(
            Cm108Line::open("/dev/null", 4, 1, false),
            Err(LineError::Config(_))
        ));
    }
}
