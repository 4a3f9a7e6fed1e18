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

/// `/healthz` says "degraded" while the state disk has less free space than
/// `state.min_free_bytes` (here: more than any disk has), "ok" with the default.
#[tokio::test]
async fn a_nearly_full_state_disk_makes_healthz_degraded() {
    let full = Gateway::start("[state]\nmin_free_bytes = 18446744073709551615\n");
    let (status, body) = full.http_get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(
        h["degraded"],
        serde_json::json!(["state disk nearly full"]),
        "{h}"
    );
    assert!(h["stateDisk"]["freeBytes"].as_u64().unwrap() > 0, "{h}");
    let (_, metrics) = full.http_get("/metrics").await;
    assert!(
        metrics.contains("radiogate_state_disk_free_bytes "),
        "{metrics}"
    );

    let fine = Gateway::start("");
    let h: serde_json::Value = serde_json::from_str(&fine.http_get("/healthz").await.1).unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["stateDisk"]["minFreeBytes"], 64 * 1024 * 1024);
}
