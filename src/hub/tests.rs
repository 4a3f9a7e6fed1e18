//! Hub decisions with virtual time: no clock, no tasks, no sockets.

use super::*;
use crate::floor::Priority;
use std::time::Duration;

const TOT: Duration = Duration::from_secs(60);
const HOLD: Duration = Duration::from_secs(2);
const T1: Duration = Duration::from_secs(4);

pub(super) fn hub() -> Hub {
    Hub::new(
        Limits {
            max_channels_per_user: 10,
            max_users_per_channel: 100,
        },
        FloorConfig {
            time_out_timer: TOT,
            end_of_media_timer: Some(T1),
        },
    )
}

pub(super) fn add(hub: &mut Hub, id: ConnId, user: &str, role: Role, permitted: &[&str]) {
    let info = ConnectionInfo {
        conn_id: id,
        user_id: user.into(),
        name: user.to_uppercase(),
        device_id: None,
        role,
        event: "ev".into(),
        remote_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        connected_at_ms: 0,
    };
    hub.register(info, permitted.iter().map(|s| s.to_string()).collect(), 4);
}

/// Notifications for `id` among `outs`, in order.
fn notes_for(outs: &[Output], id: ConnId) -> Vec<Notification> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Notify { to, note } if to.contains(&id) => Some(note.clone()),
            _ => None,
        })
        .collect()
}

fn methods(notes: &[Notification]) -> Vec<&'static str> {
    notes.iter().map(Notification::method).collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn floor_grant_tells_the_holder_and_the_others_and_routes_the_holder() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    assert_eq!(h.join(1, "a", Some("ev")).unwrap().slot, Some(0));
    h.join(2, "a", Some("ev")).unwrap();
    h.take_outputs();
    assert_eq!(
        h.floor_request(1, "a", Priority::Normal, t0).unwrap(),
        60_000
    );
    let outs = h.take_outputs();
    assert_eq!(methods(&notes_for(&outs, 1)), ["floor.granted"]);
    match &notes_for(&outs, 2)[..] {
        [Notification::FloorTaken { talker, .. }] => assert_eq!(talker.user_id, "al"),
        other => panic!("{other:?}"),
    }
    assert!(h.take_routes_dirty());
    let routes = h.routes();
    assert_eq!(
        routes[&1].iter().map(|r| r.listener).collect::<Vec<_>>(),
        [2]
    );
    // a second talker is denied, with the holder named
    match h.floor_request(2, "a", Priority::Normal, t0 + Duration::from_secs(1)) {
        Err(HubError::FloorBusy { holder, .. }) => assert_eq!(holder.conn_id, 1),
        other => panic!("{other:?}"),
    }
    // the time-out timer, in virtual time
    assert_eq!(h.next_deadline(), Some(t0 + TOT));
    assert_eq!(h.tick(t0 + TOT - Duration::from_millis(1)), Some(t0 + TOT));
    h.take_outputs();
    assert_eq!(h.tick(t0 + TOT), None);
    let outs = h.take_outputs();
    match &notes_for(&outs, 1)[..] {
        [Notification::FloorRevoke {
            reason: RevokeCode::TimeOut,
            message,
            ..
        }, Notification::FloorIdle { .. }] => {
            assert_eq!(message, "Time-out timer expired after 60 s")
        }
        other => panic!("{other:?}"),
    }
    assert!(h.routes().is_empty());
}

#[test]
fn dispatch_pre_empts_general_but_never_dispatch() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "gen", Role::General, &["a"]);
    add(&mut h, 2, "dis", Role::Dispatch, &["a"]);
    add(&mut h, 3, "dat", Role::Dispatch, &["a"]);
    for id in 1..=3 {
        h.join(id, "a", Some("ev")).unwrap();
    }
    h.floor_request(1, "a", Priority::Normal, t0).unwrap();
    h.take_outputs();
    h.floor_request(2, "a", Priority::PreEmptive, t0).unwrap();
    let outs = h.take_outputs();
    match &notes_for(&outs, 1)[..] {
        [Notification::FloorRevoke {
            reason: RevokeCode::PreEmpted,
            message,
            ..
        }, Notification::FloorTaken { .. }] => assert_eq!(message, "Dispatch DIS has priority"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.floor_request(3, "a", Priority::PreEmptive, t0),
        Err(HubError::FloorBusy { .. })
    ));
}

#[test]
fn join_rules_and_limits() {
    let mut h = Hub::new(
        Limits {
            max_channels_per_user: 1,
            max_users_per_channel: 2,
        },
        FloorConfig::default(),
    );
    add(&mut h, 1, "al", Role::General, &["a", "b"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    add(&mut h, 3, "cy", Role::General, &["a"]);
    add(&mut h, 9, "ad", Role::Admin, &[]);
    assert!(matches!(
        h.join(1, "z", Some("ev")),
        Err(HubError::PermissionDenied { .. })
    ));
    assert!(matches!(
        h.join(1, "a", Some("other-event")),
        Err(HubError::PermissionDenied { .. })
    ));
    h.join(1, "a", Some("ev")).unwrap();
    assert_eq!(h.join(1, "a", Some("ev")).unwrap().members, 1, "idempotent");
    assert!(matches!(
        h.join(1, "b", Some("ev")),
        Err(HubError::TooManyChannels { limit: 1, .. })
    ));
    h.join(2, "a", Some("ev")).unwrap();
    assert!(matches!(
        h.join(3, "a", Some("ev")),
        Err(HubError::ChannelFull { limit: 2, .. })
    ));
    // ADMIN: any channel of its event, past the per-user limit, not past the channel limit
    h.join(9, "b", Some("ev")).unwrap();
    h.join(9, "c", Some("ev")).unwrap();
    assert!(matches!(
        h.join(9, "a", Some("ev")),
        Err(HubError::ChannelFull { .. })
    ));
    assert!(matches!(
        h.leave(3, "a", Instant::now()),
        Err(HubError::NotAMember { .. })
    ));
}

/// The bug of issue 11: two dispatchers broadcast in turn.
#[test]
fn a_second_broadcast_is_refused_while_the_first_is_on() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "d1", Role::Dispatch, &["a"]);
    add(&mut h, 2, "d2", Role::Dispatch, &["b"]);
    add(&mut h, 3, "gen", Role::General, &["a", "b"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.join(2, "b", Some("ev")).unwrap();
    h.join(3, "a", Some("ev")).unwrap();
    h.join(3, "b", Some("ev")).unwrap();
    h.broadcast_arm(1, t0);
    h.broadcast_arm(2, t0);
    let t2 = t0 + HOLD;
    let started = h.broadcast_start(1, &s(&["a", "b"]), HOLD, t2).unwrap();
    assert_eq!(started.channels, s(&["a", "b"]));
    assert_eq!(started.temporary, s(&["b"]));
    h.take_outputs();
    match h.broadcast_start(2, &s(&["a", "b"]), HOLD, t2) {
        Err(HubError::BroadcastActive { by }) => assert_eq!(by.user_id, "d1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.broadcasters(), [1]);
    assert_eq!(h.active_broadcasts("ev").len(), 1);
    // the first still holds both floors and is heard on both
    let routes = h.routes();
    assert_eq!(routes[&1].len(), 3, "gen on a and b, d2 on b");
    assert!(h.broadcast_stop(1, "stopped", t2));
    let outs = h.take_outputs();
    assert!(methods(&notes_for(&outs, 3)).contains(&"broadcast.stopped"));
    assert!(h.active_broadcasts("ev").is_empty());
    assert_eq!(h.status().broadcasts, Vec::<ConnId>::new());
    assert!(h.routes().is_empty());
}

#[test]
fn losing_any_broadcast_floor_ends_the_broadcast_everywhere() {
    let t0 = Instant::now();
    for how in ["leave", "release", "time-out", "disconnect"] {
        let mut h = hub();
        add(&mut h, 1, "d1", Role::Dispatch, &["a"]);
        add(&mut h, 3, "gen", Role::General, &["a", "b"]);
        h.join(1, "a", Some("ev")).unwrap();
        h.join(3, "a", Some("ev")).unwrap();
        h.join(3, "b", Some("ev")).unwrap();
        h.broadcast_arm(1, t0);
        h.broadcast_start(1, &s(&["a", "b"]), HOLD, t0 + HOLD)
            .unwrap();
        h.take_outputs();
        let t = t0 + HOLD + Duration::from_secs(1);
        match how {
            "leave" => h.leave(1, "a", t).unwrap(),
            "release" => h.floor_release(1, "b", t).unwrap(),
            "time-out" => {
                h.tick(t0 + HOLD + TOT);
            }
            _ => {
                h.unregister(1, t);
            }
        }
        let outs = h.take_outputs();
        let stopped: Vec<_> = notes_for(&outs, 3)
            .into_iter()
            .filter(|n| matches!(n, Notification::BroadcastStopped { .. }))
            .collect();
        assert_eq!(stopped.len(), 1, "{how}: {outs:?}");
        assert!(h.broadcasters().is_empty(), "{how}");
        assert_eq!(h.floors_taken(), 0, "{how}");
        assert!(h.routes().is_empty(), "{how}");
        if how != "disconnect" {
            // the temporary join (b) is undone, the permanent one (a) kept unless left
            assert!(h.leave(1, "b", t).is_err(), "{how}");
        }
    }
}

#[test]
fn removal_waits_for_the_floor_and_can_be_cancelled() {
    let now = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a", "b"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.join(1, "b", Some("ev")).unwrap();
    h.floor_request(1, "a", Priority::Normal, now).unwrap();
    h.take_outputs();
    // lose both: b is left at once, a (floor held) is pending
    let out = h.apply_permissions("ev", "al", &[], now);
    assert_eq!((out.sessions_told, out.left, out.pending), (1, 1, 1));
    let notes = notes_for(&h.take_outputs(), 1);
    match &notes[..] {
        [Notification::PermissionUpdate {
            removed, pending, ..
        }, Notification::ChannelRemoved {
            channel,
            deferred: false,
        }] => {
            assert_eq!(removed, &s(&["a", "b"]));
            assert_eq!(pending, &s(&["a"]));
            assert_eq!(channel, "b");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.pending_removals(1), s(&["a"]));
    // same list again: nothing to tell
    assert_eq!(h.apply_permissions("ev", "al", &[], now).sessions_told, 0);
    // permitted again before the release: the pending removal is cancelled
    assert_eq!(
        h.apply_permissions("ev", "al", &s(&["a"]), now)
            .sessions_told,
        1
    );
    assert!(h.pending_removals(1).is_empty());
    h.floor_release(1, "a", now).unwrap();
    assert!(!methods(&notes_for(&h.take_outputs(), 1)).contains(&"channel.removed"));
    // removed again while talking, then the time-out timer revokes: removed then
    h.floor_request(1, "a", Priority::Normal, now).unwrap();
    h.apply_permissions("ev", "al", &[], now);
    h.take_outputs();
    h.tick(now + TOT + Duration::from_secs(1));
    let notes = notes_for(&h.take_outputs(), 1);
    assert!(matches!(
        notes.last(),
        Some(Notification::ChannelRemoved { deferred: true, .. })
    ));
    assert!(h.leave(1, "a", now).is_err(), "no longer a member");
}

#[test]
fn admins_are_not_made_to_leave_and_other_events_are_untouched() {
    let now = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "ad", Role::Admin, &["a"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.apply_permissions("ev", "ad", &[], now);
    let notes = notes_for(&h.take_outputs(), 1);
    assert_eq!(methods(&notes), ["permission.update"]);
    assert_eq!(
        h.apply_permissions("ev2", "ad", &s(&["z"]), now)
            .sessions_told,
        0
    );
    assert_eq!(
        h.connected_users(),
        vec![("ev".to_string(), "ad".to_string())]
    );
    h.unregister(1, now);
    assert!(h.pending_removals(1).is_empty());
    assert!(h.registry().is_empty());
}

#[test]
fn late_entry_names_the_talker_and_routes_the_newcomer() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.floor_request(1, "a", Priority::Normal, t0).unwrap();
    h.take_routes_dirty();
    let j = h.join(2, "a", Some("ev")).unwrap();
    assert_eq!(j.talker.map(|t| t.conn_id), Some(1));
    assert!(h.take_routes_dirty());
    assert_eq!(h.routes()[&1][0].listener, 2);
}

#[test]
fn close_all_releases_floors_stops_broadcasts_and_closes_everyone() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "d1", Role::Dispatch, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.join(2, "a", Some("ev")).unwrap();
    h.broadcast_arm(1, t0);
    h.broadcast_start(1, &[], HOLD, t0 + HOLD).unwrap();
    h.take_outputs();
    h.close_all(1001, "server shutting down", t0 + HOLD);
    let outs = h.take_outputs();
    let closes = outs
        .iter()
        .filter(|o| matches!(o, Output::Close { code: 1001, .. }))
        .count();
    assert_eq!(closes, 2);
    assert!(methods(&notes_for(&outs, 2)).contains(&"broadcast.stopped"));
    assert_eq!(h.floors_taken(), 0);
}

#[test]
fn the_broadcast_hold_guard_is_measured_between_arm_and_start() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "d1", Role::Dispatch, &["a"]);
    h.join(1, "a", Some("ev")).unwrap();
    assert!(matches!(
        h.broadcast_start(1, &[], HOLD, t0),
        Err(HubError::BroadcastNotArmed)
    ));
    h.broadcast_arm(1, t0);
    match h.broadcast_start(1, &[], HOLD, t0 + Duration::from_millis(1500)) {
        Err(HubError::HoldTooShort { held_ms, hold_ms }) => {
            assert_eq!((held_ms, hold_ms), (1500, 2000))
        }
        other => panic!("{other:?}"),
    }
    // the arm was consumed: press again
    assert!(matches!(
        h.broadcast_start(1, &[], HOLD, t0 + HOLD),
        Err(HubError::BroadcastNotArmed)
    ));
    h.broadcast_arm(1, t0 + HOLD);
    assert_eq!(
        h.broadcast_start(1, &[], HOLD, t0 + HOLD + HOLD)
            .unwrap()
            .channels,
        s(&["a"])
    );
    assert_eq!(h.active_broadcasts("ev")[0].by.user_id, "d1");
    assert!(h.active_broadcasts("other").is_empty());
}

#[test]
fn a_forced_disconnect_closes_and_removes_at_once() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.join(2, "a", Some("ev")).unwrap();
    h.floor_request(1, "a", Priority::Normal, t0).unwrap();
    h.take_outputs();
    assert_eq!(h.force_disconnect(&[1, 9], 4003, "shift over", t0), 1);
    let outs = h.take_outputs();
    assert!(outs.contains(&Output::Close {
        to: 1,
        code: 4003,
        reason: "shift over".into()
    }));
    assert_eq!(methods(&notes_for(&outs, 2)), ["floor.idle"]);
    assert_eq!(h.status().connections, 1, "gone from the status at once");
    assert!(h.routes().is_empty());
}

#[test]
fn a_talker_whose_uplink_stops_is_revoked_by_the_end_of_media_timer() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    add(&mut h, 3, "radio", Role::General, &["a"]);
    for id in [1, 2, 3] {
        h.join(id, "a", Some("ev")).unwrap();
    }
    h.set_media_uplink(1, true);
    h.floor_request(1, "a", Priority::Normal, t0).unwrap();
    assert_eq!(h.next_deadline(), Some(t0 + T1));
    // Uplink RTP seen at t0+3 s moves T1 on; nothing happens before it expires.
    h.uplink_media(1, t0 + Duration::from_secs(3));
    assert_eq!(
        h.tick(t0 + Duration::from_secs(6)),
        Some(t0 + Duration::from_secs(7))
    );
    h.take_outputs();
    h.tick(t0 + Duration::from_secs(7));
    let outs = h.take_outputs();
    match &notes_for(&outs, 1)[..] {
        [Notification::FloorRevoke { reason, .. }, Notification::FloorIdle { .. }] => {
            assert_eq!(reason.as_str(), "MEDIA_TIMEOUT")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(methods(&notes_for(&outs, 2)), ["floor.idle"]);
    assert!(h.routes().is_empty());
    // A participant without a media path (a radio port) is never revoked for silence.
    h.floor_request(3, "a", Priority::Normal, t0 + Duration::from_secs(8))
        .unwrap();
    h.uplink_media(3, t0 + Duration::from_secs(8));
    assert_eq!(h.next_deadline(), Some(t0 + Duration::from_secs(8) + TOT));
    h.tick(t0 + Duration::from_secs(30));
    assert!(h.routes().contains_key(&3));
}

#[test]
fn floor_released_and_revoked_audit_entries_carry_the_talk_duration() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    h.join(1, "a", Some("ev")).unwrap();
    h.join(2, "a", Some("ev")).unwrap();
    h.floor_request(1, "a", Priority::Normal, t0).unwrap();
    // A re-grant to the same talker keeps the start.
    h.floor_request(1, "a", Priority::Normal, t0 + Duration::from_secs(1))
        .unwrap();
    h.take_outputs();
    h.floor_release(1, "a", t0 + Duration::from_millis(2500))
        .unwrap();
    let audits: Vec<Entry> = h
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Audit(e) => Some(e),
            _ => None,
        })
        .collect();
    let released = audits
        .iter()
        .find(|e| e.action == Action::FloorReleased)
        .expect("FLOOR_RELEASED");
    assert_eq!(released.details["durationMs"], 2500);
    // The time-out timer's revoke carries it too.
    h.floor_request(2, "a", Priority::Normal, t0 + Duration::from_secs(3))
        .unwrap();
    h.take_outputs();
    h.tick(t0 + Duration::from_secs(3) + TOT);
    let revoked = h
        .take_outputs()
        .into_iter()
        .find_map(|o| match o {
            Output::Audit(e) if e.action == Action::FloorRevoked => Some(e),
            _ => None,
        })
        .expect("FLOOR_REVOKED");
    assert_eq!(revoked.details["durationMs"], 60_000);
}

/// The spurt boundaries among `outs`, as `("start"|END REASON, talker, channel, emergency)`.
fn spurts(outs: &[Output]) -> Vec<(String, ConnId, String, bool)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Spurt(SpurtEvent::Start {
                talker,
                channel,
                emergency,
                ..
            }) => Some(("start".to_string(), *talker, channel.clone(), *emergency)),
            Output::Spurt(SpurtEvent::End {
                talker,
                channel,
                reason,
            }) => Some((reason.clone(), *talker, channel.clone(), false)),
            _ => None,
        })
        .collect()
}

/// Issue 14: each talk spurt starts at its grant (a repeated grant is not a new spurt) and ends
/// with how it ended: release, revoke code, disconnect; an emergency broadcast's spurts are
/// marked on every channel it reached.
#[test]
fn talk_spurts_start_at_the_grant_and_end_with_how() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "al", Role::General, &["a"]);
    add(&mut h, 2, "bo", Role::General, &["a"]);
    add(&mut h, 3, "di", Role::Dispatch, &["a", "b"]);
    for (id, ch) in [(1, "a"), (2, "a"), (3, "a")] {
        h.join(id, ch, Some("ev")).unwrap();
    }
    h.take_outputs();
    h.floor_request(1, "a", Priority::Normal, t0).unwrap();
    h.floor_request(1, "a", Priority::Normal, t0).unwrap(); // the holder again: same spurt
    let outs = h.take_outputs();
    assert_eq!(spurts(&outs), vec![("start".into(), 1, "a".into(), false)]);
    match outs.iter().find(|o| matches!(o, Output::Spurt(_))) {
        Some(Output::Spurt(SpurtEvent::Start {
            user_id,
            name,
            role,
            event,
            ..
        })) => assert_eq!(
            (user_id.as_str(), name.as_str(), *role, event.as_str()),
            ("al", "AL", Role::General, "ev")
        ),
        other => panic!("{other:?}"),
    }
    h.floor_release(1, "a", t0).unwrap();
    assert_eq!(
        spurts(&h.take_outputs()),
        vec![("release".into(), 1, "a".into(), false)]
    );
    // Pre-empted by Dispatch priority talk: the revoke code, then Dispatch's spurt.
    h.floor_request(2, "a", Priority::Normal, t0).unwrap();
    h.take_outputs();
    h.floor_request(3, "a", Priority::PreEmptive, t0).unwrap();
    assert_eq!(
        spurts(&h.take_outputs()),
        vec![
            ("PRE_EMPTED".into(), 2, "a".into(), false),
            ("start".into(), 3, "a".into(), false)
        ]
    );
    // The time-out timer.
    h.tick(t0 + TOT);
    assert_eq!(
        spurts(&h.take_outputs()),
        vec![("TIME_OUT".into(), 3, "a".into(), false)]
    );
    // A talker that disconnects.
    h.floor_request(2, "a", Priority::Normal, t0 + TOT).unwrap();
    h.take_outputs();
    h.unregister(2, t0 + TOT);
    assert_eq!(
        spurts(&h.take_outputs()),
        vec![("disconnect".into(), 2, "a".into(), false)]
    );
    // An emergency broadcast: one start per channel reached, marked emergency.
    let t1 = t0 + TOT;
    h.broadcast_arm(3, t1);
    h.broadcast_start(3, &s(&["a", "b"]), HOLD, t1 + HOLD)
        .unwrap();
    let got = spurts(&h.take_outputs());
    assert_eq!(
        got,
        vec![
            ("start".into(), 3, "a".into(), true),
            ("start".into(), 3, "b".into(), true)
        ]
    );
    h.broadcast_stop(3, "stopped", t1 + HOLD);
    let ends: Vec<String> = spurts(&h.take_outputs())
        .into_iter()
        .map(|(r, _, c, _)| format!("{r}:{c}"))
        .collect();
    assert_eq!(ends, vec!["release:a", "release:b"]);
}

#[test]
fn a_linked_channel_follows_the_upstream_and_is_local_when_unlinked() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "ana", Role::General, &["ops"]);
    add(&mut h, 2, "ben", Role::General, &["ops"]);
    add(&mut h, 9, "link", Role::General, &["ops"]);
    for id in [1, 2, 9] {
        h.join(id, "ops", Some("ev")).unwrap();
    }
    h.take_outputs();
    assert_eq!(h.channel_list(1, &[])[0].link, None);
    h.set_linked("ops", Some(9));
    assert_eq!(h.linked("ops"), Some(9));
    // Members are told, and channel.list says so.
    let outs = h.take_outputs();
    assert!(matches!(
        &notes_for(&outs, 1)[..],
        [Notification::ChannelLink { link: "linked", .. }]
    ));
    assert_eq!(h.channel_list(1, &[])[0].link, Some("linked"));
    // Local arbitration is refused: the upstream decides.
    assert_eq!(
        h.floor_request(1, "ops", Priority::Normal, t0),
        Err(HubError::Linked {
            channel: "ops".into()
        })
    );
    // The upstream's floor.taken for a talker elsewhere: the link participant, named.
    h.take_outputs();
    h.link_grant(
        9,
        "ops",
        Priority::Normal,
        Some("Cat @ south".into()),
        false,
        t0,
    )
    .unwrap();
    let outs = h.take_outputs();
    match &notes_for(&outs, 1)[..] {
        [Notification::FloorTaken { talker, .. }] => assert_eq!(talker.name, "Cat @ south"),
        other => panic!("{other:?}"),
    }
    // The audit names the talker elsewhere, and so its site.
    let granted: Vec<&crate::audit::Entry> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Audit(e) if e.action == crate::audit::Action::FloorGranted => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].details["talker"], "Cat @ south");
    // The upstream granted ana: she takes it from the link participant.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        h.link_grant(1, "ops", Priority::Normal, None, false, t1),
        Ok(ms(TOT))
    );
    assert_eq!(h.floor_holder("ops"), Some(1));
    // The upstream's time-out revokes her; the channel is idle.
    h.take_outputs();
    h.link_revoke("ops", RevokeReason::TimeOut, t1);
    let outs = h.take_outputs();
    assert_eq!(
        methods(&notes_for(&outs, 1)),
        ["floor.revoke", "floor.idle"]
    );
    assert_eq!(h.floor_holder("ops"), None);
    // An emergency elsewhere revokes a local holder as EMERGENCY.
    h.link_grant(2, "ops", Priority::Normal, None, false, t1)
        .unwrap();
    h.take_outputs();
    h.link_grant(
        9,
        "ops",
        Priority::PreEmptive,
        Some("Dora @ central".into()),
        true,
        t1,
    )
    .unwrap();
    let outs = h.take_outputs();
    assert!(matches!(
        &notes_for(&outs, 2)[..],
        [
            Notification::FloorRevoke {
                reason: RevokeCode::Emergency,
                ..
            },
            Notification::FloorTaken {
                emergency: true,
                ..
            }
        ]
    ));
    h.floor_release(9, "ops", t1).unwrap();
    // Unlinked (island mode): local floors again, and members see "site only".
    h.take_outputs();
    h.set_linked("ops", None);
    let outs = h.take_outputs();
    assert!(matches!(
        &notes_for(&outs, 2)[..],
        [Notification::ChannelLink {
            link: "site only",
            ..
        }]
    ));
    assert_eq!(h.channel_list(2, &[])[0].link, Some("site only"));
    assert!(h.floor_request(1, "ops", Priority::Normal, t1).is_ok());
    assert_eq!(
        h.floor_request(2, "ops", Priority::Normal, t1),
        Err(HubError::FloorBusy {
            channel: "ops".into(),
            holder: h.talker_ref(1, "ANA"),
            message: "Floor taken by ANA".into()
        })
    );
}

#[test]
fn a_site_asks_its_upstream_unless_a_local_talker_decides_it_here() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "ana", Role::General, &["ops"]);
    add(&mut h, 2, "ben", Role::General, &["ops"]);
    add(&mut h, 3, "dis", Role::Dispatch, &["ops"]);
    add(&mut h, 4, "out", Role::General, &["ops"]);
    add(&mut h, 9, "link", Role::General, &["ops"]);
    for id in [1, 2, 3, 9] {
        h.join(id, "ops", Some("ev")).unwrap();
    }
    // Not linked: decided here.
    assert_eq!(
        h.floor_request_site(1, "ops", Priority::Normal, None, t0),
        Ok(SiteDecision::Decided(ms(TOT)))
    );
    h.floor_release(1, "ops", t0).unwrap();
    h.set_linked("ops", Some(9));
    // Idle, or held by a talker elsewhere (the link participant): the upstream decides.
    let ask = Ok(SiteDecision::AskUpstream { link: 9 });
    assert_eq!(
        h.floor_request_site(1, "ops", Priority::Normal, None, t0),
        ask
    );
    h.link_grant(
        9,
        "ops",
        Priority::Normal,
        Some("Cat @ south".into()),
        false,
        t0,
    )
    .unwrap();
    assert_eq!(
        h.floor_request_site(1, "ops", Priority::Normal, None, t0),
        ask
    );
    // A non-member is refused before anything goes up.
    assert_eq!(
        h.floor_request_site(4, "ops", Priority::Normal, None, t0),
        Err(not_a_member("ops"))
    );
    // A local holder: a plain request is denied here, a dispatcher pre-empts here and still
    // goes up.
    h.link_grant(1, "ops", Priority::Normal, None, false, t0)
        .unwrap();
    assert!(matches!(
        h.floor_request_site(2, "ops", Priority::Normal, None, t0),
        Err(HubError::FloorBusy { .. })
    ));
    assert_eq!(
        h.floor_request_site(3, "ops", Priority::PreEmptive, None, t0),
        ask
    );
    assert_eq!(h.floor_holder("ops"), Some(3));
}

#[test]
fn an_upstream_broadcast_is_shown_once_per_event_and_ends_with_its_last_link() {
    let t0 = Instant::now();
    let mut h = hub();
    add(&mut h, 1, "ana", Role::General, &["ops"]);
    add(&mut h, 3, "dan", Role::Dispatch, &["ops", "gate"]);
    add(&mut h, 8, "link-ops", Role::General, &["ops"]);
    add(&mut h, 9, "link-gate", Role::General, &["gate"]);
    h.join(1, "ops", Some("ev")).unwrap();
    h.join(8, "ops", Some("ev")).unwrap();
    h.join(9, "gate", Some("ev")).unwrap();
    let by = |h: &Hub, id| h.talker_ref(id, "Dora @ central");
    h.take_outputs();
    // Both linked channels report the upstream's broadcast: the event is told once.
    h.link_broadcast_started(8, by(&h, 8), s(&["gate", "ops"]));
    h.link_broadcast_started(9, by(&h, 9), s(&["gate", "ops"]));
    let outs = h.take_outputs();
    assert_eq!(methods(&notes_for(&outs, 1)), ["broadcast.started"]);
    let active = h.active_broadcasts("ev");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].by.name, "Dora @ central");
    // One link reports the end: still on; the last one ends it for the event.
    h.link_broadcast_stopped(8, "stopped");
    assert!(h.take_outputs().is_empty());
    h.link_broadcast_stopped(9, "stopped");
    let outs = h.take_outputs();
    match &notes_for(&outs, 1)[..] {
        [Notification::BroadcastStopped { by, reason }] => {
            assert_eq!(
                (by.name.as_str(), reason.as_str()),
                ("Dora @ central", "stopped")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(h.active_broadcasts("ev").is_empty());
    // A link that goes away (unregistered) ends what it reported.
    h.link_broadcast_started(8, by(&h, 8), s(&["ops"]));
    h.take_outputs();
    h.unregister(8, t0);
    let outs = h.take_outputs();
    assert!(methods(&notes_for(&outs, 1)).contains(&"broadcast.stopped"));
    // This site's own broadcast, come back from the upstream, is not shown twice.
    h.broadcast_arm(3, t0);
    h.broadcast_start_as(3, &s(&["ops"]), HOLD, None, t0 + HOLD)
        .unwrap();
    h.take_outputs();
    h.link_broadcast_started(9, by(&h, 9), s(&["ops"]));
    assert!(h.take_outputs().is_empty());
    assert_eq!(h.active_broadcasts("ev").len(), 1);
}
