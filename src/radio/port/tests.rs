//! Virtual-time tests of the radio port state machine.

use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn frame(v: f32) -> Vec<f32> {
    vec![v; FRAME_SAMPLES]
}

fn cfg() -> PortConfig {
    PortConfig {
        tx_delay: ms(150),
        hang_time: ms(500),
        tx_timeout: ms(10_000),
        squelch_ignore_after_unkey: ms(300),
        squelch_tail: ms(100),
        rx_prebuffer: ms(1000),
        courtesy_tone: None,
        limiter_threshold: None,
    }
}

fn played(actions: &[Action]) -> usize {
    actions
        .iter()
        .map(|a| match a {
            Action::Play(v) => v.len(),
            _ => 0,
        })
        .sum()
}

fn sent(actions: &[Action]) -> Vec<Vec<f32>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

fn has(actions: &[Action], want: &Action) -> bool {
    actions.iter().any(|a| a == want)
}

#[test]
fn tx_delay_buffers_audio_and_loses_nothing() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    let a = p.channel_audio(t0, &frame(0.1));
    assert_eq!(a, vec![Action::Key]);
    assert!(p.is_keyed());
    assert_eq!(p.next_deadline(), Some(t0 + ms(150)));
    let mut all = Vec::new();
    // Frames keep arriving every 20 ms during the TX delay: buffered, not played.
    for i in 1..=7u64 {
        let a = p.channel_audio(t0 + ms(20 * i), &frame(0.1));
        assert_eq!(played(&a), 0, "played during TX delay at {} ms", 20 * i);
        all.extend(a);
    }
    assert!(p.tick(t0 + ms(149)).is_empty());
    let a = p.tick(t0 + ms(150));
    // Everything received so far (8 frames) is played at once at the end of the TX delay.
    assert_eq!(played(&a), 8 * FRAME_SAMPLES);
    // Later frames are played at once.
    let a = p.channel_audio(t0 + ms(160), &frame(0.1));
    assert_eq!(played(&a), FRAME_SAMPLES);
}

#[test]
fn zero_tx_delay_plays_at_once() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(PortConfig {
        tx_delay: Duration::ZERO,
        ..cfg()
    });
    let a = p.channel_audio(t0, &frame(0.1));
    assert_eq!(a[0], Action::Key);
    assert_eq!(played(&a), FRAME_SAMPLES);
}

#[test]
fn hang_time_counts_from_the_end_of_played_audio() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    p.channel_audio(t0, &frame(0.1));
    p.tick(t0 + ms(150)); // plays 20 ms: audio ends at 170 ms
    for i in 1..5u64 {
        p.channel_audio(t0 + ms(150 + 20 * i), &frame(0.1));
    }
    // Last frame at 230 ms; queued audio ends at 170 + 4*20 = 250 ms; unkey at 750 ms.
    assert_eq!(p.next_deadline(), Some(t0 + ms(750)));
    assert!(p.tick(t0 + ms(749)).is_empty());
    assert!(p.is_keyed());
    let a = p.tick(t0 + ms(750));
    assert_eq!(a, vec![Action::Unkey(UnkeyReason::HangTimeOver)]);
    assert!(!p.is_keyed());
    // Voice during the hang time continues without a new key-up or TX delay.
    let mut p = RadioPort::new(cfg());
    p.channel_audio(t0, &frame(0.1));
    p.tick(t0 + ms(150));
    let a = p.channel_audio(t0 + ms(500), &frame(0.2));
    assert!(!has(&a, &Action::Key));
    assert_eq!(played(&a), FRAME_SAMPLES);
}

#[test]
fn time_out_unkeys_logs_and_locks_out_until_idle() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(PortConfig {
        tx_timeout: ms(1000),
        ..cfg()
    });
    p.channel_audio(t0, &frame(0.1));
    let mut t = t0;
    let mut timed_out = None;
    for i in 1..100u64 {
        t = t0 + ms(20 * i);
        if let Some(d) = p.next_deadline() {
            if d <= t {
                let a = p.tick(d);
                if has(&a, &Action::Unkey(UnkeyReason::TimedOut)) {
                    assert!(a.iter().any(|x| matches!(x, Action::Log(PortEvent::TxTimedOut { keyed_for }) if *keyed_for == ms(1000))));
                    timed_out = Some(d);
                }
            }
        }
        let a = p.channel_audio(t, &frame(0.1));
        if timed_out.is_some() {
            assert!(!has(&a, &Action::Key), "re-keyed during lockout");
            assert_eq!(played(&a), 0);
        }
    }
    assert_eq!(timed_out, Some(t0 + ms(1000)));
    assert!(p.is_locked_out());
    let a = p.channel_idle(t + ms(1));
    assert!(has(&a, &Action::Log(PortEvent::LockoutEnded)));
    let a = p.channel_audio(t + ms(2), &frame(0.1));
    assert_eq!(a, vec![Action::Key]);
}

#[test]
fn never_keys_while_receiving() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    let a = p.squelch(t0, true);
    assert_eq!(a, vec![Action::RequestFloor]);
    let a = p.channel_audio(t0 + ms(10), &frame(0.1));
    assert_eq!(a, vec![Action::Log(PortEvent::DroppedWhileReceiving)]);
    let a = p.channel_audio(t0 + ms(30), &frame(0.1));
    assert!(a.is_empty(), "logged once per over: {a:?}");
    // Even after a deny the radio is still receiving.
    p.floor_denied(t0 + ms(40), "FLOOR_BUSY");
    assert!(!has(
        &p.channel_audio(t0 + ms(50), &frame(0.1)),
        &Action::Key
    ));
    // Squelch closes: channel voice keys again.
    p.squelch(t0 + ms(60), false);
    assert_eq!(p.channel_audio(t0 + ms(70), &frame(0.1)), vec![Action::Key]);
}

#[test]
fn squelch_is_ignored_while_keyed_and_after_unkey() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    p.channel_audio(t0, &frame(0.1));
    p.tick(t0 + ms(150));
    // The radio's own COS twitching while transmitting is ignored.
    assert!(p.squelch(t0 + ms(200), true).is_empty());
    assert!(p.squelch(t0 + ms(210), false).is_empty());
    let a = p.tick(t0 + ms(670)); // 170 + 500
    assert_eq!(a, vec![Action::Unkey(UnkeyReason::HangTimeOver)]);
    // Squelch opens 100 ms after unkey (the radio's tail): ignored for 300 ms.
    assert!(p.squelch(t0 + ms(770), true).is_empty());
    assert_eq!(p.next_deadline(), Some(t0 + ms(970)));
    assert!(p.tick(t0 + ms(969)).is_empty());
    // Still open when the window ends: a real signal, so the floor is requested.
    assert_eq!(p.tick(t0 + ms(970)), vec![Action::RequestFloor]);
    // A squelch blip that closes within the window never requests the floor.
    let mut p = RadioPort::new(cfg());
    p.channel_audio(t0, &frame(0.1));
    p.tick(t0 + ms(150));
    p.tick(t0 + ms(670));
    assert!(p.squelch(t0 + ms(700), true).is_empty());
    assert!(p.squelch(t0 + ms(750), false).is_empty());
    assert!(p.tick(t0 + ms(2000)).is_empty());
}

#[test]
fn squelch_tail_is_dropped() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    assert_eq!(p.squelch(t0, true), vec![Action::RequestFloor]);
    let mut acts = p.floor_granted(t0 + ms(1));
    // 500 ms of audio (25 frames, each frame numbered by its value).
    for i in 0..25u64 {
        acts.extend(p.captured_audio(t0 + ms(20 * (i + 1)), &frame(i as f32)));
    }
    let mid = sent(&acts);
    // Sending lags by the tail: 100 ms (5 frames) held back.
    assert_eq!(mid.len(), 20);
    let a = p.squelch(t0 + ms(520), false);
    assert!(has(&a, &Action::ReleaseFloor));
    let frames: Vec<Vec<f32>> = mid.into_iter().chain(sent(&a)).collect();
    // Exactly the last 100 ms were dropped: frames 0..20 were sent, 20..25 were not.
    assert_eq!(frames.len(), 20);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.len(), FRAME_SAMPLES);
        assert!(f.iter().all(|&s| s == i as f32), "frame {i}");
    }
}

#[test]
fn audio_before_the_grant_is_sent_after_it() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(PortConfig {
        squelch_tail: Duration::ZERO,
        ..cfg()
    });
    p.squelch(t0, true);
    assert!(sent(&p.captured_audio(t0 + ms(20), &frame(1.0))).is_empty());
    assert!(sent(&p.captured_audio(t0 + ms(40), &frame(2.0))).is_empty());
    let a = p.floor_granted(t0 + ms(45));
    assert_eq!(sent(&a), vec![frame(1.0), frame(2.0)]);
    assert_eq!(
        sent(&p.captured_audio(t0 + ms(60), &frame(3.0))),
        vec![frame(3.0)]
    );
}

#[test]
fn denied_drops_and_logs_revoked_stops() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(PortConfig {
        squelch_tail: Duration::ZERO,
        ..cfg()
    });
    p.squelch(t0, true);
    let a = p.floor_denied(t0 + ms(5), "FLOOR_BUSY");
    assert_eq!(
        a,
        vec![Action::Log(PortEvent::FloorDenied {
            reason: "FLOOR_BUSY".into()
        })]
    );
    assert!(sent(&p.captured_audio(t0 + ms(20), &frame(1.0))).is_empty());
    // Squelch close after a deny releases nothing (the floor was never granted).
    assert!(!has(&p.squelch(t0 + ms(30), false), &Action::ReleaseFloor));
    // Next over: granted, then revoked.
    assert_eq!(p.squelch(t0 + ms(40), true), vec![Action::RequestFloor]);
    p.floor_granted(t0 + ms(41));
    assert_eq!(sent(&p.captured_audio(t0 + ms(60), &frame(1.0))).len(), 1);
    assert_eq!(
        p.floor_revoked(t0 + ms(61)),
        vec![Action::Log(PortEvent::FloorRevoked)]
    );
    assert!(sent(&p.captured_audio(t0 + ms(80), &frame(1.0))).is_empty());
    // Does not re-request while the squelch stays open.
    assert!(!has(&p.tick(t0 + ms(500)), &Action::RequestFloor));
}

#[test]
fn late_grant_after_squelch_close_is_given_back() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    p.squelch(t0, true);
    assert_eq!(p.squelch(t0 + ms(10), false), vec![Action::ReleaseFloor]);
    assert_eq!(p.floor_granted(t0 + ms(20)), vec![Action::ReleaseFloor]);
}

#[test]
fn courtesy_tone_on_channel_idle() {
    let t0 = Instant::now();
    let tone = CourtesyTone::default();
    let mut p = RadioPort::new(PortConfig {
        courtesy_tone: Some(tone),
        ..cfg()
    });
    p.channel_audio(t0, &frame(0.1));
    p.tick(t0 + ms(150));
    let a = p.channel_idle(t0 + ms(180));
    assert_eq!(played(&a), 4800);
    // The hang time starts after the tone: audio ended at 170, tone to 280, unkey at 780.
    assert_eq!(p.next_deadline(), Some(t0 + ms(780)));
}

#[test]
fn shutdown_unkeys_and_releases() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(cfg());
    p.channel_audio(t0, &frame(0.1));
    assert_eq!(
        p.shutdown(t0 + ms(10)),
        vec![Action::Unkey(UnkeyReason::Shutdown)]
    );
    assert!(!p.is_keyed());
    p.squelch(t0 + ms(400), true);
    p.floor_granted(t0 + ms(401));
    assert_eq!(p.shutdown(t0 + ms(402)), vec![Action::ReleaseFloor]);
}

#[test]
fn limiter_bounds_the_played_audio() {
    let t0 = Instant::now();
    let mut p = RadioPort::new(PortConfig {
        limiter_threshold: Some(0.5),
        tx_delay: Duration::ZERO,
        ..cfg()
    });
    let loud: Vec<f32> = (0..FRAME_SAMPLES)
        .map(|i| if i % 2 == 0 { 1.5 } else { -0.9 })
        .collect();
    let a = p.channel_audio(t0, &loud);
    for act in a {
        if let Action::Play(v) = act {
            assert!(v.iter().all(|s| s.abs() <= 0.5 + 1e-6));
        }
    }
    // Quiet audio passes unchanged once the gain has recovered.
    let mut l = Limiter::new(0.5);
    let mut quiet = vec![0.2f32; 100];
    l.process(&mut quiet);
    assert!(quiet.iter().all(|&s| (s - 0.2).abs() < 1e-6));
}

#[derive(Debug, Clone)]
enum Ev {
    Voice,
    Squelch(bool),
    Captured,
    Granted,
    Denied,
    Revoked,
    Idle,
    Tick,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => Just(Ev::Voice),
        2 => any::<bool>().prop_map(Ev::Squelch),
        2 => Just(Ev::Captured),
        1 => Just(Ev::Granted),
        1 => Just(Ev::Denied),
        1 => Just(Ev::Revoked),
        1 => Just(Ev::Idle),
        1 => Just(Ev::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Driven like the real driver (timers fired at their deadlines), the radio is never keyed
    /// while receiving and never keyed for longer than the TOT.
    #[test]
    fn never_keyed_while_receiving_nor_past_tot(
        steps in prop::collection::vec((0u64..400, ev()), 1..300),
        tot_ms in 200u64..3000,
        tx_delay_ms in 0u64..300,
        hang_ms in 0u64..1000,
        ignore_ms in 0u64..500,
    ) {
        let tot = ms(tot_ms);
        let mut p = RadioPort::new(PortConfig {
            tx_delay: ms(tx_delay_ms),
            hang_time: ms(hang_ms),
            tx_timeout: tot,
            squelch_ignore_after_unkey: ms(ignore_ms),
            ..cfg()
        });
        let t0 = Instant::now();
        let mut now = t0;
        let mut keyed_since: Option<Instant> = None;
        let check = |p: &RadioPort, at: Instant, acts: &[Action], keyed_since: &mut Option<Instant>| -> Result<(), TestCaseError> {
            for a in acts {
                match a {
                    Action::Key => {
                        prop_assert!(keyed_since.is_none(), "double key");
                        prop_assert!(!p.is_receiving(), "keyed while receiving");
                        *keyed_since = Some(at);
                    }
                    Action::Unkey(_) => {
                        prop_assert!(keyed_since.is_some(), "unkey while unkeyed");
                        *keyed_since = None;
                    }
                    Action::Send(f) => prop_assert_eq!(f.len(), FRAME_SAMPLES),
                    _ => {}
                }
            }
            prop_assert_eq!(keyed_since.is_some(), p.is_keyed());
            if let Some(s) = keyed_since {
                prop_assert!(!p.is_receiving(), "keyed while receiving");
                prop_assert!(at.duration_since(*s) < tot, "keyed past TOT");
            }
            Ok(())
        };
        for (dt, e) in steps {
            let target = now + ms(dt);
            while let Some(d) = p.next_deadline() {
                if d > target { break; }
                let acts = p.tick(d);
                check(&p, d, &acts, &mut keyed_since)?;
            }
            now = target;
            let acts = match e {
                Ev::Voice => p.channel_audio(now, &frame(0.3)),
                Ev::Squelch(o) => p.squelch(now, o),
                Ev::Captured => p.captured_audio(now, &frame(0.2)),
                Ev::Granted => p.floor_granted(now),
                Ev::Denied => p.floor_denied(now, "busy"),
                Ev::Revoked => p.floor_revoked(now),
                Ev::Idle => p.channel_idle(now),
                Ev::Tick => p.tick(now),
            };
            check(&p, now, &acts, &mut keyed_since)?;
        }
    }
}
