//! `/healthz` reports "degraded" (still HTTP 200) with the reason when a radio device is down
//! (issue 13): a technician sees it without reading the log.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Gateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radio_whose_ptt_device_is_missing_makes_healthz_degraded() {
    let gw = Gateway::start(
        "[[radio]]\nname = \"gate\"\nuser_id = \"radio-gate\"\ndisplay_name = \"Radio gate\"\n\
         event = \"ev1\"\nchannel = \"c1\"\n\
         [radio.ptt]\ntype = \"serial\"\ndevice = \"/dev/radiogate-test-no-such-adapter\"\nline = \"RTS\"\n\
         [radio.squelch]\ntype = \"sim\"\ndebounce_ms = 0\n[radio.audio]\ntype = \"sim\"\n",
    );
    // The device error is logged when the port first tries to open it.
    assert!(tokio::task::block_in_place(|| gw.logged("device error")));
    // The port publishes its device states on its next step, a few ms later: poll /healthz
    // (it has no push) at most 100 times.
    let mut every = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        every.tick().await;
        let (status, body) = gw.http_get("/healthz").await;
        assert_eq!(status, 200, "{body}");
        health = serde_json::from_str(&body).unwrap();
        if health["status"] == "degraded" {
            break;
        }
    }
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons: Vec<&str> = health["degraded"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(reasons.contains(&"radio device down"), "{health}");
}
