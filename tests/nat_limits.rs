//! Limits that fit a NAT (issue 13), against the real binary with the shipped `[limits]`
//! defaults: every client here connects from 127.0.0.1, like a site's phones behind one
//! travel router.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{connect, token, Gateway, DEFAULT_LIMITS};
use futures_util::future::join_all;
use radiogate::access::role::Role;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_valid_token_still_connects_after_11_failures_from_its_address() {
    let gw = Gateway::start(DEFAULT_LIMITS);
    // limits.auth_failures = 10: the 11th failure starts the delay for failed attempts.
    for i in 0..11 {
        let (status, body) = connect(&gw, "an.old.link").await.err().unwrap();
        assert_eq!(status, 401, "attempt {i}: {body}");
    }
    let ok = connect(&gw, &token("phone-1", Role::General, "ev1", &["c1"])).await;
    assert!(ok.is_ok(), "a valid token is not slowed: {:?}", ok.err());
}

#[tokio::test]
async fn two_hundred_phones_behind_one_address_reconnect_after_a_restart() {
    const PHONES: usize = 200;
    let gw = Gateway::start(DEFAULT_LIMITS);
    let tokens: Vec<String> = (0..PHONES)
        .map(|i| token(&format!("phone-{i}"), Role::General, "ev1", &["c1"]))
        .collect();
    let first = join_all(tokens.iter().map(|t| connect(&gw, t))).await;
    let refused: Vec<_> = first.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(refused.is_empty(), "first connects refused: {refused:?}");
    drop(first);

    // The blip: the gateway restarts (same state), every phone reconnects at once.
    let gw = gw.restart();
    let t0 = Instant::now();
    let again = join_all(tokens.iter().map(|t| connect(&gw, t))).await;
    let elapsed = t0.elapsed();
    let refused: Vec<_> = again.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(refused.is_empty(), "reconnects refused: {refused:?}");
    eprintln!("{PHONES} reconnects from one address in {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "{PHONES} reconnects took {elapsed:?} (issue 13: within 10 s)"
    );
}
