//! The systemd notify protocol (sd_notify(3)) as the unit's `Type=notify` and `WatchdogSec=`
//! use it (issue 7), with this test in the service manager's place: a Unix datagram socket in
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC` set, as systemd sets them for the real binary.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, WAIT};
use std::time::Duration;
use tokio::net::UnixDatagram;

/// Receives the next notification datagram (fails the test after `WAIT`).
async fn next(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, sock.recv(&mut buf))
        .await
        .expect("no notification from the gateway within WAIT")
        .expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn ready_when_serving_watchdog_pings_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let path = sock_dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    // 400 ms: the gateway pings every 200 ms.
    let mut gw = Gateway::start_in_env(
        dir,
        "",
        &[
            ("NOTIFY_SOCKET", path.display().to_string()),
            ("WATCHDOG_USEC", "400000".into()),
        ],
    );

    // READY=1 comes once the listener serves: its status names the address, and /healthz
    // answers.
    let first = next(&sock).await;
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    let status = format!("STATUS=serving on {}", gw.addr);
    assert!(
        first.lines().any(|l| l == status),
        "{first:?} lacks {status}"
    );
    let (code, _) = gw.http_get("/healthz").await;
    assert_eq!(code, 200);

    // Watchdog pings keep coming at half the interval while the gateway is healthy.
    let t0 = std::time::Instant::now();
    let mut pings = 0;
    while pings < 5 {
        let m = next(&sock).await;
        assert!(!m.contains("READY=1"), "READY sent twice: {m:?}");
        if m.lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "5 pings in {took:?}: faster than every 200 ms"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    gw.sigterm();
    loop {
        let m = next(&sock).await;
        if m.lines().any(|l| l == "STOPPING=1") {
            break;
        }
        assert!(m.contains("WATCHDOG=1"), "unexpected notification {m:?}");
    }
    let status = gw.wait_exit(WAIT).expect("gateway exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}
