//! Emergency broadcast (spec note 003): a DISPATCH user talks to every channel of their event
//! at once, guarded by a hold time the server measures between `broadcast.arm` and
//! `broadcast.start`.

use super::{Hub, SessionState};
use crate::audit::Action;
use crate::floor::{Floor, Priority, Talker};
use crate::signaling::protocol::{notification_frame, ErrorCode, RpcError};
use crate::signaling::registry::{ConnId, Outbound};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// An active emergency broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastState {
    /// The broadcaster's event.
    pub event: String,
    /// Every channel the broadcast holds the floor on.
    pub channels: Vec<String>,
    /// Channels joined only for the broadcast (left again when it stops).
    pub temporary: Vec<String>,
    /// When it started.
    pub started: Instant,
}

impl Hub {
    /// `broadcast.arm`: the broadcast button went down at `now`. Returns the hold required.
    pub fn broadcast_arm(&mut self, id: ConnId, hold: Duration, now: Instant) -> Value {
        self.armed.insert(id, now);
        json!({"armed": true, "holdMs": hold.as_millis() as u64})
    }

    /// `broadcast.start`: accepted only `hold` or more after `broadcast.arm`. Revokes every
    /// talker of the event's channels (`event_channels`, plus the event's channels the hub
    /// knows), joins the broadcaster temporarily to the ones it was not in, grants it every
    /// floor and tells everyone in the event (`broadcast.started`).
    ///
    /// # Errors
    /// [`ErrorCode::BroadcastRefused`] when not armed, or armed less than `hold` ago (the arm is
    /// consumed either way: press again).
    pub fn broadcast_start(
        &mut self,
        id: ConnId,
        event_channels: &[String],
        hold: Duration,
        now: Instant,
    ) -> Result<Value, RpcError> {
        let Some(armed_at) = self.armed.remove(&id) else {
            return Err(RpcError::new(
                ErrorCode::BroadcastRefused,
                "emergency broadcast not armed: send broadcast.arm when the button goes down",
            ));
        };
        let held = now.saturating_duration_since(armed_at);
        if held < hold {
            self.audit(
                self.entry_for(id, Action::BroadcastStart)
                    .outcome("hold_too_short")
                    .details(json!({"heldMs": held.as_millis() as u64})),
            );
            return Err(RpcError::new(
                ErrorCode::BroadcastRefused,
                format!(
                    "emergency broadcast needs a {} ms hold (held {} ms)",
                    hold.as_millis(),
                    held.as_millis()
                ),
            )
            .with_data(
                json!({"heldMs": held.as_millis() as u64, "holdMs": hold.as_millis() as u64}),
            ));
        }
        if let Some(b) = self.broadcasts.get(&id) {
            return Ok(json!({"channels": b.channels}));
        }
        let info = self
            .registry
            .get(id)
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "session not registered"))?
            .clone();
        let mut channels: BTreeSet<String> = event_channels.iter().cloned().collect();
        channels.extend(
            self.channels
                .iter()
                .filter(|(_, c)| c.event == info.event)
                .map(|(k, _)| k.clone()),
        );
        let talker = Talker {
            id,
            name: info.name.clone(),
            priority: Priority::PreEmptive,
        };
        let mut temporary = Vec::new();
        let floor_cfg = self.floor_cfg;
        for ch in &channels {
            let joined = self
                .sessions
                .get(&id)
                .is_some_and(|s: &SessionState| s.joined.contains_key(ch));
            if !joined {
                let state =
                    self.channels
                        .entry(ch.clone())
                        .or_insert_with(|| super::ChannelState {
                            event: info.event.clone(),
                            members: BTreeSet::new(),
                            floor: Floor::new(floor_cfg),
                            grant: 0,
                        });
                state.members.insert(id);
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.joined.insert(ch.clone(), None);
                }
                temporary.push(ch.clone());
            }
            let events = match self.channels.get_mut(ch) {
                Some(c) => c.floor.emergency_grant(talker.clone(), now),
                None => Vec::new(),
            };
            self.apply_floor_events(ch, events);
        }
        let channels: Vec<String> = channels.into_iter().collect();
        self.audit(
            self.entry_for(id, Action::BroadcastStart)
                .details(json!({"channels": channels, "temporary": temporary})),
        );
        tracing::warn!(conn = id, user = %info.user_id, channels = channels.len(),
                       "emergency broadcast started");
        self.notify_event(
            &info.event,
            "broadcast.started",
            json!({"by": self.broadcaster(id),
                   "channels": channels}),
        );
        self.broadcasts.insert(
            id,
            BroadcastState {
                event: info.event.clone(),
                channels: channels.clone(),
                temporary: temporary.clone(),
                started: now,
            },
        );
        Ok(json!({"channels": channels, "temporary": temporary}))
    }

    /// Stops `id`'s broadcast: releases its floors, leaves only the temporary channels and
    /// tells everyone in the event (`broadcast.stopped` with `reason`). Returns whether a
    /// broadcast was active.
    pub fn broadcast_stop(&mut self, id: ConnId, reason: &str, now: Instant) -> bool {
        let Some(b) = self.broadcasts.remove(&id) else {
            return false;
        };
        for ch in &b.channels {
            if let Some(c) = self.channels.get_mut(ch) {
                let events = c.floor.release(id, now);
                self.apply_floor_events(ch, events);
            }
        }
        for ch in &b.temporary {
            let _ = self.leave(id, ch, now);
        }
        self.audit(
            self.entry_for(id, Action::BroadcastStop)
                .outcome(reason)
                .details(json!({"durationMs": now.saturating_duration_since(b.started).as_millis() as u64,
                               "left": b.temporary})),
        );
        tracing::warn!(conn = id, reason, "emergency broadcast stopped");
        self.notify_event(
            &b.event,
            "broadcast.stopped",
            json!({"by": self.broadcaster(id), "reason": reason}),
        );
        true
    }

    /// The `broadcast.started` params of every broadcast active in `event`, for a session
    /// that connects while one is on (it would otherwise see no banner until the next one).
    pub fn active_broadcasts(&self, event: &str) -> Vec<Value> {
        self.broadcasts
            .iter()
            .filter(|(_, b)| b.event == event)
            .map(|(id, b)| json!({"by": self.broadcaster(*id), "channels": b.channels}))
            .collect()
    }

    /// The `by` object of the broadcast notifications: `{connId, userId, name}` of `id`
    /// (empty strings once it left the registry).
    fn broadcaster(&self, id: ConnId) -> Value {
        let (user, name) = self
            .registry
            .get(id)
            .map(|i| (i.user_id.clone(), i.name.clone()))
            .unwrap_or_default();
        json!({"connId": id, "userId": user, "name": name})
    }

    /// Whether `id` is broadcasting.
    pub fn is_broadcasting(&self, id: ConnId) -> bool {
        self.broadcasts.contains_key(&id)
    }

    /// Sends a notification to every session of `event`.
    pub fn notify_event(&self, event: &str, method: &str, params: Value) {
        let frame = notification_frame(method, params);
        for info in self.registry.all().iter().filter(|i| i.event == event) {
            self.send(info.conn_id, Outbound::Frame(frame.clone()));
        }
    }
}
