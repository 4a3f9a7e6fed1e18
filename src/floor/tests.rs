//! Unit tests (virtual time) and a property test for [`super::Floor`].

use std::collections::HashSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn talker(id: ParticipantId, priority: Priority) -> Talker {
    let name = match priority {
        Priority::Normal => format!("user{id}"),
        Priority::PreEmptive => format!("disp{id}"),
    };
    Talker { id, name, priority }
}

fn general(id: ParticipantId) -> Talker {
    talker(id, Priority::Normal)
}

fn dispatch(id: ParticipantId) -> Talker {
    talker(id, Priority::PreEmptive)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn floor() -> Floor {
    Floor::new(FloorConfig::default())
}

const TOT: Duration = Duration::from_secs(60);

#[test]
fn default_config_is_60_s() {
    assert_eq!(FloorConfig::default().time_out_timer, TOT);
    let f = floor();
    assert_eq!(f.state(), FloorState::Idle);
    assert_eq!(f.holder(), None);
    assert_eq!(f.next_deadline(), None);
}

#[test]
fn request_on_idle_floor_is_granted_with_tot() {
    let t0 = Instant::now();
    let mut f = floor();
    let ev = f.request(general(1), t0);
    assert_eq!(
        ev,
        vec![FloorEvent::Granted {
            to: general(1),
            expires_at: t0 + TOT
        }]
    );
    assert_eq!(f.holder(), Some(&general(1)));
    assert!(f.is_holder(1));
    assert_eq!(
        f.state(),
        FloorState::Taken {
            holder: 1,
            granted_at: t0,
            expires_at: t0 + TOT
        }
    );
    assert_eq!(f.next_deadline(), Some(t0 + TOT));
}

#[test]
fn custom_tot_is_used() {
    let t0 = Instant::now();
    let mut f = Floor::new(FloorConfig {
        time_out_timer: Duration::from_secs(5),
        end_of_media_timer: None,
    });
    f.request(general(1), t0);
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(f.config().time_out_timer, Duration::from_secs(5));
}

#[test]
fn re_request_by_holder_keeps_original_expiry() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let ev = f.request(general(1), t0 + ms(10_000));
    assert_eq!(
        ev,
        vec![FloorEvent::Granted {
            to: general(1),
            expires_at: t0 + TOT
        }]
    );
    assert_eq!(f.next_deadline(), Some(t0 + TOT));
    match f.state() {
        FloorState::Taken { granted_at, .. } => assert_eq!(granted_at, t0),
        FloorState::Idle => panic!("floor should be taken"),
    }
}

#[test]
fn normal_request_while_normal_holds_is_busy() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let ev = f.request(general(2), t0 + ms(1));
    let reason = DenyReason::Busy { holder: general(1) };
    assert_eq!(
        ev,
        vec![FloorEvent::Denied {
            to: 2,
            reason: reason.clone()
        }]
    );
    assert_eq!(reason.message(), "Floor taken by user1");
    assert_eq!(reason.holder(), &general(1));
    assert!(f.is_holder(1));
}

#[test]
fn dispatch_pre_empts_general() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let now = t0 + ms(30_000);
    let ev = f.request(dispatch(9), now);
    assert_eq!(
        ev,
        vec![
            FloorEvent::Revoked {
                from: general(1),
                reason: RevokeReason::PreEmpted { by: dispatch(9) }
            },
            FloorEvent::Granted {
                to: dispatch(9),
                expires_at: now + TOT
            },
        ]
    );
    assert_eq!(f.holder(), Some(&dispatch(9)));
    assert_eq!(
        RevokeReason::PreEmpted { by: dispatch(9) }.message(),
        "Dispatch disp9 has priority"
    );
}

#[test]
fn pre_empted_talker_must_press_again_and_is_denied() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    f.request(dispatch(9), t0 + ms(1));
    let ev = f.request(general(1), t0 + ms(2));
    assert_eq!(
        ev,
        vec![FloorEvent::Denied {
            to: 1,
            reason: DenyReason::DispatchHolds {
                holder: dispatch(9)
            }
        }]
    );
    // After Dispatch releases, the old talker is not resumed automatically.
    let ev = f.release(9, t0 + ms(3));
    assert_eq!(
        ev,
        vec![FloorEvent::Released { by: dispatch(9) }, FloorEvent::Idle]
    );
    assert_eq!(f.holder(), None);
}

#[test]
fn dispatch_does_not_pre_empt_dispatch() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(dispatch(1), t0);
    let ev = f.request(dispatch(2), t0 + ms(1));
    let reason = DenyReason::DispatchHolds {
        holder: dispatch(1),
    };
    assert_eq!(
        ev,
        vec![FloorEvent::Denied {
            to: 2,
            reason: reason.clone()
        }]
    );
    assert_eq!(reason.message(), "Dispatch disp1 is talking");
    assert!(f.is_holder(1));
}

#[test]
fn admin_has_normal_priority() {
    // ADMIN maps to Priority::Normal: it neither pre-empts nor is protected.
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let admin = Talker {
        id: 7,
        name: "admin".into(),
        priority: Priority::Normal,
    };
    let ev = f.request(admin.clone(), t0 + ms(1));
    assert!(matches!(
        ev.as_slice(),
        [FloorEvent::Denied {
            to: 7,
            reason: DenyReason::Busy { .. }
        }]
    ));
    f.release(1, t0 + ms(2));
    f.request(admin, t0 + ms(3));
    let ev = f.request(dispatch(9), t0 + ms(4));
    assert!(matches!(
        ev.as_slice(),
        [
            FloorEvent::Revoked {
                reason: RevokeReason::PreEmpted { .. },
                ..
            },
            FloorEvent::Granted { .. }
        ]
    ));
}

#[test]
fn holder_upgrading_priority_keeps_expiry() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let ev = f.request(talker(1, Priority::PreEmptive), t0 + ms(5));
    assert_eq!(
        ev,
        vec![FloorEvent::Granted {
            to: talker(1, Priority::PreEmptive),
            expires_at: t0 + TOT
        }]
    );
    assert_eq!(f.holder().map(|t| t.priority), Some(Priority::PreEmptive));
}

#[test]
fn release_by_holder_frees_floor() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let ev = f.release(1, t0 + ms(500));
    assert_eq!(
        ev,
        vec![FloorEvent::Released { by: general(1) }, FloorEvent::Idle]
    );
    assert_eq!(f.state(), FloorState::Idle);
    assert_eq!(f.next_deadline(), None);
    // Another talker can now take it.
    assert!(matches!(
        f.request(general(2), t0 + ms(600)).as_slice(),
        [FloorEvent::Granted { .. }]
    ));
}

#[test]
fn release_by_non_holder_is_noop() {
    let t0 = Instant::now();
    let mut f = floor();
    assert!(f.release(1, t0).is_empty());
    f.request(general(1), t0);
    assert!(f.release(2, t0 + ms(1)).is_empty());
    assert!(f.is_holder(1));
}

#[test]
fn remove_holder_frees_floor() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(dispatch(3), t0);
    let ev = f.remove_participant(3, t0 + ms(1));
    assert_eq!(
        ev,
        vec![FloorEvent::Released { by: dispatch(3) }, FloorEvent::Idle]
    );
    assert_eq!(f.holder(), None);
}

#[test]
fn remove_other_is_noop() {
    let t0 = Instant::now();
    let mut f = floor();
    assert!(f.remove_participant(4, t0).is_empty());
    f.request(general(1), t0);
    assert!(f.remove_participant(4, t0 + ms(1)).is_empty());
    assert!(f.is_holder(1));
}

#[test]
fn tick_before_expiry_does_nothing() {
    let t0 = Instant::now();
    let mut f = floor();
    assert!(f.tick(t0).is_empty());
    f.request(general(1), t0);
    assert!(f.tick(t0 + TOT - ms(1)).is_empty());
    assert!(f.is_holder(1));
}

#[test]
fn tick_at_expiry_revokes() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let ev = f.tick(t0 + TOT);
    assert_eq!(
        ev,
        vec![
            FloorEvent::Revoked {
                from: general(1),
                reason: RevokeReason::TimeOut
            },
            FloorEvent::Idle
        ]
    );
    assert_eq!(f.holder(), None);
    assert!(f.tick(t0 + TOT + ms(1)).is_empty());
}

#[test]
fn re_grant_does_not_extend_tot() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    f.request(general(1), t0 + ms(59_000));
    let ev = f.tick(t0 + TOT);
    assert!(matches!(
        ev.as_slice(),
        [
            FloorEvent::Revoked {
                reason: RevokeReason::TimeOut,
                ..
            },
            FloorEvent::Idle
        ]
    ));
}

#[test]
fn late_tick_is_applied_by_request() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let now = t0 + ms(61_000);
    let ev = f.request(general(2), now);
    assert_eq!(
        ev,
        vec![
            FloorEvent::Revoked {
                from: general(1),
                reason: RevokeReason::TimeOut
            },
            FloorEvent::Granted {
                to: general(2),
                expires_at: now + TOT
            }
        ]
    );
}

#[test]
fn holder_re_request_after_expiry_gets_new_grant() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let now = t0 + TOT;
    let ev = f.request(general(1), now);
    assert_eq!(
        ev,
        vec![
            FloorEvent::Revoked {
                from: general(1),
                reason: RevokeReason::TimeOut
            },
            FloorEvent::Granted {
                to: general(1),
                expires_at: now + TOT
            }
        ]
    );
}

#[test]
fn late_tick_is_applied_by_release_and_remove() {
    let t0 = Instant::now();
    let mut f = floor();
    f.request(general(1), t0);
    let timed_out = vec![
        FloorEvent::Revoked {
            from: general(1),
            reason: RevokeReason::TimeOut,
        },
        FloorEvent::Idle,
    ];
    assert_eq!(f.release(1, t0 + TOT), timed_out);
    f.request(general(1), t0 + TOT);
    assert_eq!(f.remove_participant(5, t0 + TOT + TOT), timed_out);
    assert_eq!(f.holder(), None);
}

#[test]
fn revoke_messages() {
    assert_eq!(RevokeReason::TimeOut.message(), "Time-out timer expired");
    assert_eq!(
        RevokeReason::TimeOut.message_with_limit(TOT),
        "Time-out timer expired after 60 s"
    );
    assert_eq!(
        RevokeReason::PreEmpted { by: dispatch(2) }.message_with_limit(TOT),
        "Dispatch disp2 has priority"
    );
}

#[test]
fn huge_tot_does_not_panic() {
    let t0 = Instant::now();
    let mut f = Floor::new(FloorConfig {
        time_out_timer: Duration::MAX,
        end_of_media_timer: None,
    });
    let ev = f.request(general(1), t0);
    assert!(matches!(ev.as_slice(), [FloorEvent::Granted { .. }]));
    assert!(f.next_deadline().is_some_and(|d| d > t0));
}

// ---------------------------------------------------------------- property test

#[derive(Debug, Clone)]
enum Op {
    Request(ParticipantId, Priority),
    /// Emergency broadcast override.
    Emergency(ParticipantId),
    Release(ParticipantId),
    Remove(ParticipantId),
    /// Advance the virtual clock by this many ms, then tick.
    Tick(u64),
}

/// Clock step before each operation, in ms; whole seconds half the time so that `now`
/// often lands exactly on an expiry (the TOT is whole seconds).
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![0..3_000u64, (0..3u64).prop_map(|s| s * 1000)]
}

fn op() -> impl Strategy<Value = Op> {
    let prio = prop_oneof![Just(Priority::Normal), Just(Priority::PreEmptive)];
    prop_oneof![
        4 => (0..5u64, prio).prop_map(|(id, p)| Op::Request(id, p)),
        1 => (0..5u64).prop_map(Op::Emergency),
        2 => (0..5u64).prop_map(Op::Release),
        1 => (0..5u64).prop_map(Op::Remove),
        2 => prop_oneof![0..90_000u64, (0..90u64).prop_map(|s| s * 1000)].prop_map(Op::Tick),
    ]
}

/// Walks an event stream and checks it never shows two talkers at once: a `Granted` only
/// when nobody holds the floor or the holder is the grantee; `Revoked`/`Released` only of
/// the holder; `Idle` only last and when nobody holds it.
fn replay(mut holder: Option<ParticipantId>, events: &[FloorEvent]) -> Option<ParticipantId> {
    for (i, e) in events.iter().enumerate() {
        match e {
            FloorEvent::Granted { to, .. } => {
                assert!(
                    holder.is_none() || holder == Some(to.id),
                    "grant to {} while {:?} holds: {events:?}",
                    to.id,
                    holder
                );
                holder = Some(to.id);
            }
            FloorEvent::Revoked { from, .. } => {
                assert_eq!(holder, Some(from.id), "{events:?}");
                holder = None;
            }
            FloorEvent::Released { by } => {
                assert_eq!(holder, Some(by.id), "{events:?}");
                holder = None;
            }
            FloorEvent::Idle => {
                assert_eq!(holder, None, "{events:?}");
                assert_eq!(i + 1, events.len(), "Idle must be last: {events:?}");
            }
            FloorEvent::Denied { to, reason } => {
                assert_eq!(holder, Some(reason.holder().id), "{events:?}");
                assert_ne!(holder, Some(*to), "{events:?}");
            }
        }
    }
    holder
}

proptest! {
    #[test]
    fn floor_invariants(tot_s in 1..120u64, ops in proptest::collection::vec((op(), step()), 1..200)) {
        let tot = Duration::from_secs(tot_s);
        let mut f = Floor::new(FloorConfig {
            time_out_timer: tot,
            end_of_media_timer: None,
        });
        let mut now = Instant::now();
        let mut seen_holder: Option<ParticipantId> = None;
        let mut removed: HashSet<ParticipantId> = HashSet::new();

        for (op, step_ms) in ops {
            now += Duration::from_millis(step_ms);
            let before = f.state();
            let events = match op {
                Op::Request(id, p) => {
                    removed.remove(&id);
                    f.request(talker(id, p), now)
                }
                Op::Emergency(id) => {
                    removed.remove(&id);
                    f.emergency_grant(talker(id, Priority::PreEmptive), now)
                }
                Op::Release(id) => f.release(id, now),
                Op::Remove(id) => {
                    removed.insert(id);
                    f.remove_participant(id, now)
                }
                Op::Tick(adv) => {
                    now += Duration::from_millis(adv);
                    f.tick(now)
                }
            };

            // Event stream shows at most one holder and ends where the floor is.
            seen_holder = replay(seen_holder, &events);
            prop_assert_eq!(seen_holder, f.holder().map(|t| t.id));

            // No operation leaves an expired grant in place.
            if let FloorState::Taken { expires_at, granted_at, .. } = f.state() {
                prop_assert!(expires_at > now);
                prop_assert!(granted_at <= now);
                prop_assert_eq!(f.next_deadline(), Some(expires_at));
            } else {
                prop_assert_eq!(f.next_deadline(), None);
            }

            // A removed participant (who has not requested since) never holds the floor.
            if let Some(h) = f.holder() {
                prop_assert!(!removed.contains(&h.id), "removed {} holds", h.id);
            }

            // Grants: new ones last exactly the TOT, re-grants keep the expiry.
            for e in &events {
                if let FloorEvent::Granted { to, expires_at } = e {
                    match before {
                        FloorState::Taken { holder, expires_at: old, .. }
                            if holder == to.id && old > now && !matches!(op, Op::Emergency(_)) =>
                        {
                            prop_assert_eq!(*expires_at, old);
                        }
                        _ => prop_assert_eq!(*expires_at, now + tot),
                    }
                }
            }

            match op {
                // A pre-emptive request always ends with a pre-emptive holder.
                Op::Request(id, Priority::PreEmptive) => {
                    let h = f.holder();
                    prop_assert_eq!(h.map(|t| t.priority), Some(Priority::PreEmptive));
                    let granted = events.iter().any(|e| matches!(e, FloorEvent::Granted { .. }));
                    prop_assert_eq!(granted, h.map(|t| t.id) == Some(id));
                }
                // Every request is answered by exactly one grant or deny.
                Op::Request(id, Priority::Normal) => {
                    let answers = events
                        .iter()
                        .filter(|e| matches!(e, FloorEvent::Granted { to, .. } if to.id == id)
                            || matches!(e, FloorEvent::Denied { to, .. } if *to == id))
                        .count();
                    prop_assert_eq!(answers, 1);
                }
                // An emergency grant always ends with the broadcaster holding the floor.
                Op::Emergency(id) => prop_assert!(f.is_holder(id)),
                Op::Release(id) | Op::Remove(id) => prop_assert!(!f.is_holder(id)),
                Op::Tick(_) => {}
            }
        }
    }
}

#[test]
fn emergency_grant_overrides_dispatch_and_general() {
    let t0 = Instant::now();
    let mut f = Floor::new(FloorConfig::default());
    f.request(talker(1, Priority::PreEmptive), t0);
    let ev = f.emergency_grant(talker(2, Priority::PreEmptive), t0);
    assert!(
        matches!(&ev[0], FloorEvent::Revoked { from, reason: RevokeReason::Emergency { by } }
        if from.id == 1 && by.id == 2)
    );
    assert!(matches!(&ev[1], FloorEvent::Granted { to, .. } if to.id == 2));
    assert_eq!(
        RevokeReason::Emergency {
            by: talker(2, Priority::PreEmptive)
        }
        .message(),
        "Emergency broadcast by Dispatch disp2"
    );
}

#[test]
fn end_of_media_timer_revokes_a_silent_holder_at_tick_only() {
    let t0 = Instant::now();
    let t1 = Duration::from_secs(4);
    let mut f = Floor::new(FloorConfig {
        time_out_timer: Duration::from_secs(60),
        end_of_media_timer: Some(t1),
    });
    f.request(general(1), t0);
    // Not armed (no media path): only the time-out timer is due.
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(60)));
    f.arm_end_of_media(1, t0);
    assert_eq!(f.next_deadline(), Some(t0 + t1));
    // Media at t0+3 s restarts T1; a stale report (before the grant) never shortens it.
    f.arm_end_of_media(1, t0 + Duration::from_secs(3));
    f.arm_end_of_media(1, t0 - Duration::from_secs(10));
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(7)));
    assert!(f.tick(t0 + Duration::from_millis(6999)).is_empty());
    // A command after the deadline does not apply T1 (only tick does, with fresh media).
    let ev = f.request(general(2), t0 + Duration::from_secs(8));
    assert!(
        matches!(ev.as_slice(), [FloorEvent::Denied { .. }]),
        "{ev:?}"
    );
    let ev = f.tick(t0 + Duration::from_secs(8));
    assert!(
        matches!(
            ev.as_slice(),
            [FloorEvent::Revoked { from, reason: RevokeReason::MediaTimeout }, FloorEvent::Idle] if from.id == 1
        ),
        "{ev:?}"
    );
    assert_eq!(f.state(), FloorState::Idle);
}

#[test]
fn end_of_media_timer_is_per_grant_and_off_when_unset() {
    let t0 = Instant::now();
    let mut f = Floor::new(FloorConfig {
        time_out_timer: Duration::from_secs(60),
        end_of_media_timer: Some(Duration::from_secs(4)),
    });
    f.request(general(1), t0);
    // Arming somebody who does not hold the floor does nothing.
    f.arm_end_of_media(2, t0);
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(60)));
    f.arm_end_of_media(1, t0);
    f.release(1, t0 + Duration::from_secs(1));
    // A new grant starts unarmed.
    f.request(general(2), t0 + Duration::from_secs(2));
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(62)));
    let mut off = Floor::new(FloorConfig {
        time_out_timer: Duration::from_secs(60),
        end_of_media_timer: None,
    });
    off.request(general(1), t0);
    off.arm_end_of_media(1, t0);
    assert_eq!(off.next_deadline(), Some(t0 + Duration::from_secs(60)));
}
