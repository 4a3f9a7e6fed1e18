//! Random sequences of hub commands in virtual time, with the hub's invariants checked after
//! every step (issue 11): at most one talker per channel, holders are members; the route set
//! is exactly "every other member of each channel whose floor is granted, heard on that
//! member's slot" and changes only when the hub says so; no state refers to a participant that
//! is gone; a broadcast is listed if and only if it holds the floors of all its channels;
//! the end-of-media timer never leaves a floor past its deadline after a tick.

use super::tests::{add, hub};
use super::*;
use crate::floor::Priority;
use proptest::prelude::*;
use std::time::Duration;

const IDS: u64 = 6;
const CHANNELS: [&str; 3] = ["a", "b", "c"];
const HOLD: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
enum Op {
    Register(u64),
    Unregister(u64),
    Kick(u64),
    Join(u64, usize),
    Leave(u64, usize),
    Request(u64, usize),
    PriorityRequest(u64, usize),
    Release(u64, usize),
    Arm(u64),
    Start(u64),
    Stop(u64),
    Permit(u64, Vec<bool>),
    Advance(u64),
    Tick,
    /// A media path comes up or goes (the end-of-media timer applies to its grants).
    Media(u64, bool),
    /// Uplink RTP from a participant seen now.
    Uplink(u64),
}

fn role(id: u64) -> Role {
    match id {
        1 | 2 => Role::Dispatch,
        3 => Role::Admin,
        _ => Role::General,
    }
}

fn user(id: u64) -> String {
    // ids 5 and 6 are the same user on two devices
    format!("u{}", id.min(5))
}

fn op() -> impl Strategy<Value = Op> {
    let id = 1..=IDS;
    let ch = 0..CHANNELS.len();
    prop_oneof![
        2 => id.clone().prop_map(Op::Register),
        1 => id.clone().prop_map(Op::Unregister),
        1 => id.clone().prop_map(Op::Kick),
        4 => (id.clone(), ch.clone()).prop_map(|(i, c)| Op::Join(i, c)),
        1 => (id.clone(), ch.clone()).prop_map(|(i, c)| Op::Leave(i, c)),
        4 => (id.clone(), ch.clone()).prop_map(|(i, c)| Op::Request(i, c)),
        2 => (1..=2u64, ch.clone()).prop_map(|(i, c)| Op::PriorityRequest(i, c)),
        3 => (id.clone(), ch.clone()).prop_map(|(i, c)| Op::Release(i, c)),
        1 => (1..=2u64).prop_map(Op::Arm),
        2 => (1..=2u64).prop_map(Op::Start),
        1 => (1..=2u64).prop_map(Op::Stop),
        2 => (id.clone(), proptest::collection::vec(any::<bool>(), CHANNELS.len()))
            .prop_map(|(i, v)| Op::Permit(i, v)),
        3 => (0..40_000u64).prop_map(Op::Advance),
        2 => Just(Op::Tick),
        1 => (id.clone(), any::<bool>()).prop_map(|(i, on)| Op::Media(i, on)),
        3 => id.clone().prop_map(Op::Uplink),
    ]
}

fn apply(h: &mut Hub, now: &mut Instant, op: &Op) {
    let ch = |c: &usize| CHANNELS[*c];
    let t = *now;
    match op {
        Op::Register(id) => {
            if h.registry.get(*id).is_none() {
                add(h, *id, &user(*id), role(*id), &["a", "b"]);
            }
        }
        Op::Unregister(id) => {
            h.unregister(*id, t);
        }
        Op::Kick(id) => {
            h.force_disconnect(&[*id], 4003, "kicked", t);
        }
        Op::Join(id, c) => {
            let _ = h.join(*id, ch(c), Some("ev"));
        }
        Op::Leave(id, c) => {
            let _ = h.leave(*id, ch(c), t);
        }
        Op::Request(id, c) => {
            let _ = h.floor_request(*id, ch(c), Priority::Normal, t);
        }
        Op::PriorityRequest(id, c) => {
            let _ = h.floor_request(*id, ch(c), Priority::PreEmptive, t);
        }
        Op::Release(id, c) => {
            let _ = h.floor_release(*id, ch(c), t);
        }
        Op::Arm(id) => h.broadcast_arm(*id, t),
        Op::Start(id) => {
            let _ = h.broadcast_start(*id, &["a".into(), "c".into()], HOLD, t);
        }
        Op::Stop(id) => {
            h.broadcast_stop(*id, "stopped", t);
        }
        Op::Permit(id, which) => {
            let chans: Vec<String> = CHANNELS
                .iter()
                .zip(which)
                .filter(|(_, w)| **w)
                .map(|(c, _)| c.to_string())
                .collect();
            h.apply_permissions("ev", &user(*id), &chans, t);
        }
        Op::Advance(ms) => *now += Duration::from_millis(*ms),
        Op::Tick => {
            h.tick(t);
        }
        Op::Media(id, on) => h.set_media_uplink(*id, *on),
        Op::Uplink(id) => h.uplink_media(*id, t),
    }
}

/// The routes as the rule states them, computed from the participants' side (their joined
/// channels and slots) rather than the channels' member lists that [`Hub::routes`] walks.
fn expected_routes(h: &Hub) -> RouteSet {
    let mut set = RouteSet::new();
    for ch in h.channels.values() {
        if let Some(t) = ch.floor.holder() {
            set.entry(t.id).or_default();
        }
    }
    for (id, s) in &h.sessions {
        for (name, slot) in &s.joined {
            let (Some(slot), Some(ch)) = (slot, h.channels.get(name)) else {
                continue;
            };
            match ch.floor.holder() {
                Some(t) if t.id != *id => set.entry(t.id).or_default().push(Route {
                    listener: *id,
                    slot: *slot,
                    grant: ch.grant,
                }),
                _ => {}
            }
        }
    }
    for v in set.values_mut() {
        v.sort();
    }
    set
}

/// Talk spurts open according to the outputs so far: (talker, channel).
type OpenSpurts = std::collections::BTreeSet<(ConnId, String)>;

fn check(
    h: &mut Hub,
    last_routes: &mut RouteSet,
    open: &mut OpenSpurts,
) -> Result<(), TestCaseError> {
    // registry and sessions agree
    for id in h.sessions.keys() {
        prop_assert!(h.registry.get(*id).is_some(), "session {id} not registered");
    }
    prop_assert_eq!(h.sessions.len(), h.registry.len());
    for (name, ch) in &h.channels {
        prop_assert!(!ch.members.is_empty(), "empty channel {} kept", name);
        for m in &ch.members {
            let joined = h
                .sessions
                .get(m)
                .is_some_and(|s| s.joined.contains_key(name));
            prop_assert!(joined, "member {} of {} is gone or not joined", m, name);
        }
        // one talker per channel, and a member
        if let Some(t) = ch.floor.holder() {
            prop_assert!(
                ch.members.contains(&t.id),
                "holder {} not in {}",
                t.id,
                name
            );
        }
    }
    for (id, s) in &h.sessions {
        for (name, slot) in &s.joined {
            let member = h.channels.get(name).is_some_and(|c| c.members.contains(id));
            prop_assert!(member, "{} joined {} but is not a member", id, name);
            if let Some(slot) = slot {
                prop_assert!(*slot < s.slot_count);
                let dup = s.joined.values().filter(|o| **o == Some(*slot)).count();
                prop_assert_eq!(dup, 1, "slot {} used twice by {}", slot, id);
            }
        }
    }
    for id in h.armed.keys().chain(h.pending.0.keys()) {
        prop_assert!(h.sessions.contains_key(id), "state of gone {}", id);
    }
    // a broadcast is listed iff it holds all its floors; one per event
    prop_assert!(h.ending.is_empty());
    prop_assert!(h.broadcasts.len() <= 1, "two broadcasts in one event");
    for (id, b) in &h.broadcasts {
        prop_assert!(h.sessions.contains_key(id));
        for name in &b.channels {
            let held = h
                .channels
                .get(name)
                .and_then(|c| c.floor.holder())
                .is_some_and(|t| t.id == *id);
            prop_assert!(
                held,
                "broadcast of {} listed without the floor of {}",
                id,
                name
            );
        }
    }
    prop_assert_eq!(h.status().broadcasts.len(), h.broadcasts.len());
    // the route set is exactly the rule, and changes only when flagged
    let routes = h.routes();
    prop_assert_eq!(&routes, &expected_routes(h));
    let dirty = h.take_routes_dirty();
    if !dirty {
        prop_assert_eq!(
            &routes,
            &*last_routes,
            "routes changed without the dirty flag"
        );
    }
    *last_routes = routes;
    // talk spurts (issue 14): every start is followed by its end before the next start on
    // that channel, and the open spurts are exactly the floors held
    for o in h.take_outputs() {
        match o {
            Output::Spurt(SpurtEvent::Start {
                talker, channel, ..
            }) => {
                prop_assert!(
                    !open.iter().any(|(_, c)| *c == channel),
                    "a spurt starts on {} while another is open",
                    channel
                );
                open.insert((talker, channel));
            }
            Output::Spurt(SpurtEvent::End {
                talker, channel, ..
            }) => {
                prop_assert!(open.remove(&(talker, channel.clone())), "end without start");
            }
            _ => {}
        }
    }
    let held: OpenSpurts = h
        .channels
        .iter()
        .filter_map(|(c, st)| st.floor.holder().map(|t| (t.id, c.clone())))
        .collect();
    prop_assert_eq!(&*open, &held);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hub_invariants_hold_after_every_step(ops in proptest::collection::vec(op(), 1..120)) {
        let mut h = hub();
        let mut now = Instant::now();
        let mut last = RouteSet::new();
        let mut open = OpenSpurts::new();
        for op in &ops {
            apply(&mut h, &mut now, op);
            if matches!(op, Op::Tick) {
                // no timer (time-out or end-of-media) is left due after a tick
                prop_assert!(h.next_deadline().is_none_or(|d| d > now));
            }
            check(&mut h, &mut last, &mut open)?;
        }
        // everyone leaves: nothing is left behind
        for id in 1..=IDS {
            h.unregister(id, now);
        }
        prop_assert!(h.channels.is_empty());
        prop_assert!(h.broadcasts.is_empty());
        prop_assert!(h.routes().is_empty());
        prop_assert!(h.sessions.is_empty() && h.registry.is_empty());
        let mut last = RouteSet::new();
        check(&mut h, &mut last, &mut open)?;
        prop_assert!(open.is_empty(), "spurts left open: {:?}", open);
    }
}
