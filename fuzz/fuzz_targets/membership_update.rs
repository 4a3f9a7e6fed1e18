//! The permission sync's parser of the control plane's membership updates
//! (`permissions::redis_source::parse_update`), fed one pub/sub payload at a time.
//!
//! Checks beyond "no panic": an accepted update keeps the documented bounds (ids 1..=256
//! bytes without control characters, at most 1,024 channel ids, sorted, no duplicates).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiogate::permissions::redis_source::{parse_update, Action, MAX_CHANNELS, MAX_ID_BYTES};

fn check_id(s: &str) {
    assert!(
        !s.is_empty() && s.len() <= MAX_ID_BYTES,
        "id length {}",
        s.len()
    );
    assert!(
        !s.chars().any(char::is_control),
        "control character in {s:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(u) = parse_update(data) else {
        return;
    };
    check_id(&u.event_id);
    check_id(&u.user_id);
    if let Action::SetUserChannels(chs) = &u.action {
        assert!(chs.len() <= MAX_CHANNELS);
        for c in chs {
            check_id(c);
        }
        assert!(chs.windows(2).all(|w| w[0] < w[1]), "not sorted and unique");
    }
});
