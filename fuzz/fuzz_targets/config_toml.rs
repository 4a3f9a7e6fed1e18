//! Configuration parsing and validation (`config::Config::from_toml`), fed one TOML file.
//!
//! Checks beyond "no panic": an accepted configuration validates again, and its derived
//! values (timers, the redacted Redis URL) can be computed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiogate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::from_toml(text) else {
        return;
    };
    cfg.validate()
        .expect("an accepted configuration validates again");
    let _ = cfg.time_out_timer();
    let _ = cfg.redis.redacted_url();
    let _ = cfg.redis.refresh_interval();
    let _ = cfg.redis.connect_timeout();
    let _ = cfg.redis.response_timeout();
});
