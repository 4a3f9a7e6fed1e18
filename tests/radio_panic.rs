//! The panic hook: a panic anywhere in the gateway process makes every radio port unkey at
//! once (its own file: the hook is process-wide and would disturb other tests' ports).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::radio::{wait_until, InProcess};
use common::rtc_client::{encode_opus, speech_pcm, RtcClient};
use common::token;
use radiogate::access::role::Role;
use radiogate::radio::devices::sim_handles;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_elsewhere_unkeys_the_radio() {
    let gw = InProcess::start(
        "[[radio]]\nname = \"p1\"\nuser_id = \"radio-p1\"\ndisplay_name = \"P\"\nevent = \"ev1\"\n\
         channel = \"c1\"\ntx_delay_ms = 0\nhang_time_ms = 10000\n\
         [radio.ptt]\ntype = \"sim\"\n[radio.audio]\ntype = \"sim\"\n",
    )
    .await;
    assert!(wait_until(Duration::from_secs(5), || gw.port("p1").joined).await);
    let ptt = sim_handles("p1").unwrap().ptt.unwrap();
    let mut ws = gw
        .connect(&token("alice", Role::General, "ev1", &["c1"]))
        .await;
    let mut alice = RtcClient::join(&mut ws, "c1").await;
    ws.call("floor.request", json!({"channelId": "c1"}))
        .await
        .expect("granted");
    let frames = encode_opus(&speech_pcm());
    alice.talk(&frames[..10]).await;
    assert!(wait_until(Duration::from_secs(2), || ptt.is_keyed()).await);
    // Keyed for 10 s of hang time unless something unkeys it: a panic in another thread.
    let t = std::thread::spawn(|| panic!("simulated bug elsewhere in the gateway"));
    assert!(t.join().is_err());
    assert!(
        wait_until(Duration::from_millis(500), || !ptt.is_keyed()).await,
        "the panic hook unkeyed the radio"
    );
    assert!(!gw.port("p1").keyed);
    // The port keeps working: new channel voice keys it again.
    alice.talk(&frames[10..20]).await;
    assert!(wait_until(Duration::from_secs(2), || ptt.is_keyed()).await);
    gw.shutdown().await;
    assert!(!ptt.is_keyed());
}
