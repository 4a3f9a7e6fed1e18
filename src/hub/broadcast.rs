//! Emergency broadcast (spec note 003): a DISPATCH user talks to every channel of their event
//! at once, guarded by a hold time the hub measures between `broadcast.arm` and
//! `broadcast.start`. One broadcast per event at a time: Dispatch never pre-empts Dispatch.
//! A broadcast is listed exactly while it holds the floor of each of its channels: whatever
//! takes one away (release, leave, time-out timer, disconnect) ends the whole broadcast and
//! everyone in the event is told `broadcast.stopped`.

use super::{BroadcastState, ConnId, Hub, HubError, Notification, RemoteBroadcast, TalkerRef};
use crate::audit::Action;
use crate::floor::{Priority, Talker};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The result of a started broadcast (`broadcast.start` reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastStart {
    /// Every channel of the event the broadcast holds, sorted.
    pub channels: Vec<String>,
    /// Channels joined only for the broadcast (left again when it stops), sorted.
    pub temporary: Vec<String>,
}

/// An active broadcast as late joiners are told (`broadcast.started` params).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BroadcastInfo {
    /// The broadcasting Dispatch user.
    pub by: TalkerRef,
    /// Its channels.
    pub channels: Vec<String>,
}

impl Hub {
    /// `broadcast.arm`: the broadcast button went down at `now` (ignored for a participant
    /// that is not registered).
    pub fn broadcast_arm(&mut self, id: ConnId, now: Instant) {
        if self.sessions.contains_key(&id) {
            self.armed.insert(id, now);
        }
    }

    /// `broadcast.start`: accepted only `hold` or more after `broadcast.arm`, and only while
    /// nobody else broadcasts in the event. Revokes every talker of the event's channels
    /// (`event_channels`, plus the event's channels the hub knows), joins the broadcaster
    /// temporarily to the ones it was not in, grants it every floor and tells everyone in the
    /// event (`broadcast.started`). Starting again while broadcasting returns the broadcast.
    ///
    /// # Errors
    /// [`HubError::BroadcastNotArmed`] when not armed; [`HubError::HoldTooShort`] when armed
    /// less than `hold` ago (the arm is consumed either way: press again);
    /// [`HubError::BroadcastActive`] while another broadcast of the event is on;
    /// [`HubError::NotRegistered`].
    pub fn broadcast_start(
        &mut self,
        id: ConnId,
        event_channels: &[String],
        hold: Duration,
        now: Instant,
    ) -> Result<BroadcastStart, HubError> {
        self.broadcast_start_as(id, event_channels, hold, None, now)
    }

    /// [`Hub::broadcast_start`] with the broadcaster shown as `shown` (a linked site's
    /// Dispatch user, "Dan @ north", issue 16; the site measured the hold, so its link
    /// session arms and starts with a zero `hold`).
    ///
    /// # Errors
    /// As [`Hub::broadcast_start`].
    pub fn broadcast_start_as(
        &mut self,
        id: ConnId,
        event_channels: &[String],
        hold: Duration,
        shown: Option<String>,
        now: Instant,
    ) -> Result<BroadcastStart, HubError> {
        let armed_at = self.armed.remove(&id).ok_or(HubError::BroadcastNotArmed)?;
        let held = now.saturating_duration_since(armed_at);
        if held < hold {
            let e = self
                .entry_for(id, Action::BroadcastStart)
                .outcome("hold_too_short")
                .details(json!({"heldMs": super::ms(held)}));
            self.audit(e);
            return Err(HubError::HoldTooShort {
                held_ms: super::ms(held),
                hold_ms: super::ms(hold),
            });
        }
        if let Some(b) = self.broadcasts.get(&id) {
            return Ok(BroadcastStart {
                channels: b.channels.clone(),
                temporary: b.temporary.clone(),
            });
        }
        let info = self
            .registry
            .get(id)
            .ok_or(HubError::NotRegistered)?
            .clone();
        if let Some(other) = self
            .broadcasts
            .iter()
            .filter(|(_, b)| b.event == info.event)
            .map(|(o, _)| *o)
            .min()
        {
            let by = self.participant_ref(other);
            let e = self
                .entry_for(id, Action::BroadcastStart)
                .outcome("broadcast_active")
                .details(json!({"by": by.user_id}));
            self.audit(e);
            return Err(HubError::BroadcastActive { by });
        }
        let mut channels: BTreeSet<String> = event_channels.iter().cloned().collect();
        channels.extend(
            self.channels
                .iter()
                .filter(|(_, c)| c.event == info.event)
                .map(|(k, _)| k.clone()),
        );
        let talker = Talker {
            id,
            name: shown.clone().unwrap_or_else(|| info.name.clone()),
            priority: Priority::PreEmptive,
        };
        let mut temporary = Vec::new();
        for ch in &channels {
            let joined = self
                .sessions
                .get(&id)
                .is_some_and(|s| s.joined.contains_key(ch));
            if !joined {
                self.add_member(id, ch, &info.event, None);
                temporary.push(ch.clone());
            }
            let events = match self.channels.get_mut(ch) {
                Some(c) => c.floor.emergency_grant(talker.clone(), now),
                None => Vec::new(),
            };
            self.emergency_granting = Some(id);
            self.apply_floor_events(ch, events, now);
            self.emergency_granting = None;
        }
        // A floor can be lost while the others are taken (a pending permission removal of one
        // of the broadcaster's own channels happens when its expired grant is revoked): the
        // broadcast is what it holds.
        let holds = |h: &Hub, c: &String| {
            h.channels
                .get(c)
                .and_then(|c| c.floor.holder())
                .is_some_and(|t| t.id == id)
        };
        let channels: Vec<String> = channels.into_iter().filter(|c| holds(self, c)).collect();
        let (temporary, lost): (Vec<String>, Vec<String>) =
            temporary.into_iter().partition(|c| holds(self, c));
        for c in lost {
            let _ = self.leave_inner(id, &c, now);
        }
        let e = self
            .entry_for(id, Action::BroadcastStart)
            .details(json!({"channels": channels, "temporary": temporary}));
        self.audit(e);
        tracing::warn!(conn = id, user = %info.user_id.escape_debug(), channels = channels.len(),
                       "emergency broadcast started");
        self.broadcasts.insert(
            id,
            BroadcastState {
                event: info.event.clone(),
                channels: channels.clone(),
                temporary: temporary.clone(),
                started: now,
                shown,
            },
        );
        let to = self.registry.by_event(&info.event);
        let by = self.broadcaster_ref(id);
        self.emit(
            to,
            Notification::BroadcastStarted {
                by,
                channels: channels.clone(),
            },
        );
        // A floor lost while the broadcast was being set up (none can be: it holds them all).
        self.ending.retain(|(b, _)| *b != id);
        Ok(BroadcastStart {
            channels,
            temporary,
        })
    }

    /// Stops `id`'s broadcast: releases its floors, leaves only the temporary channels and
    /// tells everyone in the event (`broadcast.stopped` with `reason`). Returns whether a
    /// broadcast was active.
    pub fn broadcast_stop(&mut self, id: ConnId, reason: &str, now: Instant) -> bool {
        let by = self.broadcaster_ref(id);
        let Some(b) = self.broadcasts.remove(&id) else {
            return false;
        };
        self.ending.retain(|(o, _)| *o != id);
        for ch in &b.channels {
            if let Some(c) = self.channels.get_mut(ch) {
                let events = c.floor.release(id, now);
                self.apply_floor_events(ch, events, now);
            }
        }
        for ch in &b.temporary {
            let _ = self.leave_inner(id, ch, now);
        }
        let e = self
            .entry_for(id, Action::BroadcastStop)
            .outcome(reason)
            .details(
                json!({"durationMs": super::ms(now.saturating_duration_since(b.started)),
                           "left": b.temporary}),
            );
        self.audit(e);
        tracing::warn!(conn = id, reason, "emergency broadcast stopped");
        let to = self.registry.by_event(&b.event);
        self.emit(
            to,
            Notification::BroadcastStopped {
                by,
                reason: reason.to_string(),
            },
        );
        true
    }

    /// Hook from the floor events: `id` lost the floor of `channel`. If that is one of its
    /// broadcast's channels, the broadcast ends when the command settles.
    pub(super) fn broadcast_floor_lost(&mut self, id: ConnId, channel: &str, reason: &'static str) {
        if self
            .broadcasts
            .get(&id)
            .is_some_and(|b| b.channels.iter().any(|c| c == channel))
            && !self.ending.iter().any(|(o, _)| *o == id)
        {
            self.ending.push((id, reason));
        }
    }

    /// Every broadcast active in `event`, for a participant that connects while one is on (it
    /// would otherwise see no banner until the next one).
    pub fn active_broadcasts(&self, event: &str) -> Vec<BroadcastInfo> {
        let mut ids: Vec<ConnId> = self
            .broadcasts
            .iter()
            .filter(|(_, b)| b.event == event)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let local = ids.into_iter().filter_map(|id| {
            self.broadcasts.get(&id).map(|b| BroadcastInfo {
                by: self.broadcaster_ref(id),
                channels: b.channels.clone(),
            })
        });
        let remote = self.remote_broadcasts.get(event).map(|r| BroadcastInfo {
            by: r.by.clone(),
            channels: r.channels.clone(),
        });
        local.chain(remote).collect()
    }

    /// `{connId, userId, name}` of broadcaster `id`, named as its broadcast shows it.
    fn broadcaster_ref(&self, id: ConnId) -> TalkerRef {
        match self.broadcasts.get(&id).and_then(|b| b.shown.as_deref()) {
            Some(name) => self.talker_ref(id, name),
            None => self.participant_ref(id),
        }
    }

    /// The upstream of a linked channel reported through link participant `link` that an
    /// emergency broadcast by `by` (named as shown here, "Dan @ central") started on its
    /// `channels` (issue 16). The first report for the link's event tells the event's
    /// sessions `broadcast.started`; later ones (the event's other linked channels) are
    /// counted. Ignored while a broadcast of this site's holds the event (one of ours gone
    /// up comes back from the upstream) and for an unregistered `link`. The floors come
    /// with the upstream's `floor.taken` ([`Hub::link_grant`] with `emergency`).
    pub fn link_broadcast_started(&mut self, link: ConnId, by: TalkerRef, channels: Vec<String>) {
        let Some(event) = self.registry.get(link).map(|i| i.event.clone()) else {
            return;
        };
        if self.broadcasts.values().any(|b| b.event == event) {
            return;
        }
        if let Some(r) = self.remote_broadcasts.get_mut(&event) {
            r.links.insert(link);
            return;
        }
        tracing::warn!(conn = link, by = %by.name.escape_debug(), "emergency broadcast at the upstream");
        self.remote_broadcasts.insert(
            event.clone(),
            RemoteBroadcast {
                by: by.clone(),
                channels: channels.clone(),
                links: [link].into(),
            },
        );
        let to = self.registry.by_event(&event);
        self.emit(to, Notification::BroadcastStarted { by, channels });
    }

    /// Link participant `link` reported the end of the upstream's broadcast (or its link
    /// went down, `reason` "link down"). When no link of the event reports it any more, the
    /// event's sessions are told `broadcast.stopped` with `reason`. No-op if `link` reported
    /// none.
    pub fn link_broadcast_stopped(&mut self, link: ConnId, reason: &str) {
        let Some(event) = self.registry.get(link).map(|i| i.event.clone()) else {
            return;
        };
        let Some(r) = self.remote_broadcasts.get_mut(&event) else {
            return;
        };
        if !r.links.remove(&link) || !r.links.is_empty() {
            return;
        }
        let Some(r) = self.remote_broadcasts.remove(&event) else {
            return;
        };
        let to = self.registry.by_event(&event);
        self.emit(
            to,
            Notification::BroadcastStopped {
                by: r.by,
                reason: reason.to_string(),
            },
        );
    }

    /// Whether `id` is broadcasting.
    pub fn is_broadcasting(&self, id: ConnId) -> bool {
        self.broadcasts.contains_key(&id)
    }

    /// Ids of the participants broadcasting now, ascending.
    pub fn broadcasters(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self.broadcasts.keys().copied().collect();
        v.sort_unstable();
        v
    }
}
