//! Serial backend on a real pty pair from socat: opening, exclusivity and the typed error for
//! the missing modem lines (RTS/DTR/CTS ioctls fail with ENOTTY on a pty).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require, wait_for, Peer};
use radiogate_hal::serial::{SerialDevice, SerialError, SerialLine, SerialPtt};
use radiogate_hal::{DeviceError, LineError, LineInput, ModemLine, Polarity, PttError};

fn pty_pair(dir: &std::path::Path) -> (Peer, String, String) {
    require("socat", "socat");
    let a = dir.join("a");
    let b = dir.join("b");
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat");
    let peer = Peer(child);
    wait_for(Duration::from_secs(10), || {
        (a.exists() && b.exists()).then_some(())
    })
    .expect("socat ptys");
    (peer, a.display().to_string(), b.display().to_string())
}

#[test]
fn pty_has_no_modem_lines_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_socat, a, b) = pty_pair(dir.path());

    // The pty opens as a serial port and carries data.
    let mut port = serialport::new(&a, 9600)
        .timeout(Duration::from_secs(2))
        .open_native()
        .unwrap();
    let mut other = serialport::new(&b, 9600)
        .timeout(Duration::from_secs(2))
        .open_native()
        .unwrap();
    port.write_all(b"FA;\n").unwrap();
    let mut buf = [0u8; 4];
    other.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"FA;\n");
    drop(port);
    drop(other);

    // RTS/DTR PTT: a typed error that explains the pty has no modem lines.
    let dev = SerialDevice::open(&a).unwrap();
    let err = SerialPtt::new(dev.clone(), ModemLine::Rts, Polarity::ActiveHigh).unwrap_err();
    assert_eq!(
        err,
        PttError::NoModemLines {
            path: a.clone(),
            line: ModemLine::Rts
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("pseudo-terminal") && msg.contains("RTS"),
        "{msg}"
    );
    let err = SerialPtt::new(dev.clone(), ModemLine::Dtr, Polarity::ActiveLow).unwrap_err();
    assert!(
        matches!(
            err,
            PttError::NoModemLines {
                line: ModemLine::Dtr,
                ..
            }
        ),
        "{err:?}"
    );

    // CTS squelch: same, as a line error.
    let mut line = SerialLine::new(dev.clone(), ModemLine::Cts, false).unwrap();
    let err = line.read().unwrap_err();
    assert!(
        matches!(
            err,
            LineError::NoModemLines {
                line: ModemLine::Cts,
                ..
            }
        ),
        "{err:?}"
    );
    // The device itself is still open (the error is about the lines, not a lost port).
    assert!(dev.is_open());

    // Exclusive: a second open of the same port is refused as busy, with a hint.
    let err = SerialDevice::open(&a).unwrap_err();
    assert!(
        matches!(err, SerialError::Device(DeviceError::Busy { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("fuser"), "{err}");
}
