//! CAT PTT against a real hamlib rigctld (dummy rig, `-m 1 -P RIG`) started by the test.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{free_port, require, spawn_rigctld, wait_for, Peer};
use radiogate_hal::cat::RigctldPtt;
use radiogate_hal::reconnect::{Backoff, ReconnectingPtt};
use radiogate_hal::{DeviceState, PttOutput};

fn start_rigctld(port: u16) -> Peer {
    require("rigctld", "libhamlib-utils");
    Peer(spawn_rigctld(port))
}

/// Reads the dummy rig's PTT with `t` on its own connection (without keying or unkeying).
fn rig_ptt(addr: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect rigctld");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"t\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    match line.trim() {
        "0" => false,
        "1" => true,
        other => panic!("unexpected answer to t: {other:?}"),
    }
}

fn connect(addr: &str) -> RigctldPtt {
    wait_for(Duration::from_secs(10), || RigctldPtt::connect(addr).ok())
        .expect("rigctld did not come up within 10 s")
}

#[test]
fn keys_and_reads_back_through_rigctld() {
    let port = free_port();
    let _rig = start_rigctld(port);
    let addr = format!("127.0.0.1:{port}");
    let mut ptt = connect(&addr);
    assert!(!ptt.read_keyed().unwrap());
    ptt.set_keyed(true).unwrap();
    assert!(ptt.is_keyed());
    assert!(
        ptt.read_keyed().unwrap(),
        "rigctld reports PTT off after T 1"
    );
    ptt.set_keyed(false).unwrap();
    assert!(!ptt.read_keyed().unwrap());

    // Fail-safe: dropping a keyed output unkeys the radio (checked on a second connection).
    ptt.set_keyed(true).unwrap();
    assert!(rig_ptt(&addr));
    drop(ptt);
    assert!(!rig_ptt(&addr), "radio left keyed after drop");
}

#[test]
fn lost_rigctld_is_reconnected() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let a2 = addr.clone();
    let mut ptt = ReconnectingPtt::new(
        format!("rigctld {addr}"),
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        move || RigctldPtt::connect(&a2),
    );
    // Not running yet: a typed error that says what to fix.
    let e = ptt.set_keyed(true).unwrap_err();
    assert!(e.to_string().contains("is rigctld running"), "{e}");
    assert!(matches!(ptt.state(), DeviceState::Down { .. }));

    let rig = start_rigctld(port);
    wait_for(Duration::from_secs(10), || {
        ptt.poll(std::time::Instant::now()).ok()
    })
    .expect("reconnected");
    assert!(
        ptt.is_keyed(),
        "wanted key state re-applied after reconnect"
    );
    assert!(rig_ptt(&addr));

    // rigctld dies and comes back: the wrapper notices on the next command and recovers.
    drop(rig);
    let _ = ptt.set_keyed(false);
    let _rig = start_rigctld(port);
    wait_for(Duration::from_secs(10), || {
        ptt.set_keyed(false).ok()?;
        ptt.set_keyed(true).ok()
    })
    .expect("reconnected after rigctld restart");
    assert!(rig_ptt(&addr));
    ptt.set_keyed(false).unwrap();
    assert!(!rig_ptt(&addr));
}
