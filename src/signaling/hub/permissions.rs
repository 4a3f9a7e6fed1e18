//! Permission changes applied to live sessions (issue 5, spec notes 000 and 002).
//!
//! A change of a user's permitted channels is pushed to every session of that user in that
//! event as `permission.update {added, removed, channels, pending}`. A removed channel the
//! session has joined is left at once (`channel.removed`), unless the session holds the floor
//! there: then the removal is pending (listed in `pending`) until the floor is released or
//! revoked, and happens then (`channel.removed`). ADMIN sessions are not made to leave (their
//! role lets them join any channel of their event).

use super::{Hub, Outbound};
use crate::access::role::Role;
use crate::signaling::protocol::notification_frame;
use crate::signaling::registry::ConnId;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Channels whose removal waits for the session's floor to end, per session.
#[derive(Debug, Default)]
pub(super) struct PendingRemovals(HashMap<ConnId, BTreeSet<String>>);

/// What applying one user's permissions did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PermissionOutcome {
    /// Sessions that were sent a `permission.update`.
    pub sessions_told: usize,
    /// Channels left at once (sum over sessions).
    pub left: usize,
    /// Channels whose removal is pending (sum over sessions).
    pub pending: usize,
}

impl Hub {
    /// Users with at least one session, as `(event, user)`, sorted and deduplicated.
    pub fn connected_users(&self) -> Vec<(String, String)> {
        let set: BTreeSet<(String, String)> = self
            .registry
            .all()
            .into_iter()
            .map(|i| (i.event, i.user_id))
            .collect();
        set.into_iter().collect()
    }

    /// The channels a session may use now (its permitted set), sorted.
    pub fn permitted(&self, id: ConnId) -> Vec<String> {
        self.sessions
            .get(&id)
            .map(|s| s.permitted.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The channels whose removal is pending for a session, sorted.
    pub fn pending_removals(&self, id: ConnId) -> Vec<String> {
        self.pending
            .0
            .get(&id)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes `channels` the permitted channels of every session of `user` in `event` and
    /// notifies each session whose permitted set or pending removals changed.
    pub fn apply_permissions(
        &mut self,
        event: &str,
        user: &str,
        channels: &[String],
        now: Instant,
    ) -> PermissionOutcome {
        let new: BTreeSet<String> = channels.iter().cloned().collect();
        let mut out = PermissionOutcome::default();
        let ids: Vec<(ConnId, Role)> = self
            .registry
            .by_user(user)
            .into_iter()
            .filter_map(|id| self.registry.get(id).map(|i| (id, i.role, i.event.clone())))
            .filter(|(_, _, ev)| ev == event)
            .map(|(id, role, _)| (id, role))
            .collect();
        for (id, role) in ids {
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let added: Vec<String> = new.difference(&s.permitted).cloned().collect();
            let removed: Vec<String> = s.permitted.difference(&new).cloned().collect();
            let before = self.pending.0.get(&id).cloned().unwrap_or_default();
            // a pending removal is cancelled when the channel is permitted again
            let mut pending: BTreeSet<String> = before
                .iter()
                .filter(|c| !new.contains(*c))
                .cloned()
                .collect();
            let mut to_leave = Vec::new();
            for ch in &removed {
                if !s.joined.contains_key(ch) || role == Role::Admin {
                    continue;
                }
                let holds = self.channels.get(ch).is_some_and(|c| c.floor.is_holder(id));
                if holds {
                    pending.insert(ch.clone());
                } else {
                    to_leave.push(ch.clone());
                }
            }
            if added.is_empty() && removed.is_empty() && pending == before {
                continue;
            }
            if let Some(s) = self.sessions.get_mut(&id) {
                s.permitted = new.clone();
            }
            tracing::info!(conn = id, user, event, ?added, ?removed, pending = ?pending,
                           "permission update");
            self.audit(
                self.entry_for(id, crate::audit::Action::PermissionChange)
                    .details(json!({"added": added, "removed": removed,
                                    "pending": pending.iter().collect::<Vec<_>>()})),
            );
            self.send(
                id,
                Outbound::Frame(notification_frame(
                    "permission.update",
                    json!({"added": added, "removed": removed,
                           "channels": new.iter().collect::<Vec<_>>(),
                           "pending": pending.iter().collect::<Vec<_>>()}),
                )),
            );
            out.sessions_told += 1;
            out.pending += pending.len();
            if pending.is_empty() {
                self.pending.0.remove(&id);
            } else {
                self.pending.0.insert(id, pending);
            }
            for ch in to_leave {
                if self.remove_from_channel(id, &ch, false, now) {
                    out.left += 1;
                }
            }
        }
        out
    }

    /// Hook from the floor paths: `holders` released or lost the floor of `channel`; a
    /// pending removal of that channel for them happens now.
    pub(super) fn apply_pending_removals(&mut self, channel: &str, holders: &[ConnId]) {
        for id in holders {
            let due = self
                .pending
                .0
                .get_mut(id)
                .is_some_and(|p| p.remove(channel));
            if !due {
                continue;
            }
            if self.pending.0.get(id).is_some_and(BTreeSet::is_empty) {
                self.pending.0.remove(id);
            }
            // Still permitted again? (apply_permissions cancels that case; be safe.)
            let permitted = self
                .sessions
                .get(id)
                .is_some_and(|s| s.permitted.contains(channel));
            if !permitted {
                self.remove_from_channel(*id, channel, true, Instant::now());
            }
        }
    }

    /// Forgets a session's pending removals (it is gone).
    pub(super) fn forget_pending(&mut self, id: ConnId) {
        self.pending.0.remove(&id);
    }

    /// Makes a session leave a channel it lost permission for and tells it
    /// (`channel.removed`). Returns whether it was a member.
    fn remove_from_channel(
        &mut self,
        id: ConnId,
        channel: &str,
        deferred: bool,
        now: Instant,
    ) -> bool {
        if self.leave(id, channel, now).is_err() {
            return false;
        }
        tracing::info!(
            conn = id,
            channel,
            deferred,
            "channel removed: permission withdrawn"
        );
        self.send(
            id,
            Outbound::Frame(notification_frame(
                "channel.removed",
                json!({"channelId": channel, "reason": "PERMISSION_REVOKED",
                       "deferred": deferred,
                       "message": format!("permission for channel {channel} was withdrawn")}),
            )),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelLimits;
    use crate::floor::FloorConfig;
    use crate::signaling::registry::ConnectionInfo;
    use serde_json::Value;
    use std::time::Duration;
    use tokio::sync::mpsc;

    type Rx = mpsc::UnboundedReceiver<Outbound>;

    fn hub() -> Hub {
        Hub::new(
            ChannelLimits::default(),
            FloorConfig {
                time_out_timer: Duration::from_secs(60),
            },
        )
    }

    fn add(hub: &mut Hub, id: ConnId, user: &str, role: Role, permitted: &[&str]) -> Rx {
        let (tx, rx) = mpsc::unbounded_channel();
        let info = ConnectionInfo {
            conn_id: id,
            user_id: user.into(),
            name: user.into(),
            device_id: None,
            role,
            event: "ev".into(),
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            connected_at_ms: 0,
        };
        hub.register(
            info,
            permitted.iter().map(|s| s.to_string()).collect(),
            4,
            tx,
        );
        rx
    }

    fn frames(rx: &mut Rx) -> Vec<Value> {
        let mut v = Vec::new();
        while let Ok(Outbound::Frame(f)) = rx.try_recv() {
            v.push(serde_json::from_str(&f).unwrap());
        }
        v
    }

    fn of(frames: &[Value], method: &str) -> Vec<Value> {
        frames
            .iter()
            .filter(|f| f["method"] == method)
            .map(|f| f["params"].clone())
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn removal_waits_for_the_floor_and_can_be_cancelled() {
        let now = Instant::now();
        let mut h = hub();
        let mut rx = add(&mut h, 1, "al", Role::General, &["a", "b"]);
        h.join(1, "a", Some("ev")).unwrap();
        h.join(1, "b", Some("ev")).unwrap();
        h.floor_request(1, "a", crate::floor::Priority::Normal, now)
            .unwrap();
        frames(&mut rx);
        // lose both: b is left at once, a (floor held) is pending
        let out = h.apply_permissions("ev", "al", &[], now);
        assert_eq!((out.sessions_told, out.left, out.pending), (1, 1, 1));
        let f = frames(&mut rx);
        let up = &of(&f, "permission.update")[0];
        assert_eq!(up["removed"], serde_json::json!(["a", "b"]));
        assert_eq!(up["pending"], serde_json::json!(["a"]));
        assert_eq!(of(&f, "channel.removed")[0]["channelId"], "b");
        assert_eq!(h.pending_removals(1), s(&["a"]));
        // same list again: nothing to tell
        assert_eq!(h.apply_permissions("ev", "al", &[], now).sessions_told, 0);
        // permitted again before the release: the pending removal is cancelled
        let out = h.apply_permissions("ev", "al", &s(&["a"]), now);
        assert_eq!(out.sessions_told, 1);
        assert!(h.pending_removals(1).is_empty());
        h.floor_release(1, "a", now).unwrap();
        assert!(of(&frames(&mut rx), "channel.removed").is_empty());
        // removed again while talking, then the time-out timer revokes: removed then
        h.floor_request(1, "a", crate::floor::Priority::Normal, now)
            .unwrap();
        h.apply_permissions("ev", "al", &[], now);
        frames(&mut rx);
        h.tick(now + Duration::from_secs(61));
        let f = frames(&mut rx);
        assert_eq!(of(&f, "floor.revoke").len(), 1);
        let rm = &of(&f, "channel.removed")[0];
        assert_eq!(
            (rm["channelId"].as_str(), rm["deferred"].as_bool()),
            (Some("a"), Some(true))
        );
        assert!(h.leave(1, "a", now).is_err(), "no longer a member");
    }

    #[test]
    fn other_events_and_admins() {
        let now = Instant::now();
        let mut h = hub();
        let mut admin = add(&mut h, 1, "ad", Role::Admin, &["a"]);
        h.join(1, "a", Some("ev")).unwrap();
        frames(&mut admin);
        h.apply_permissions("ev", "ad", &[], now);
        let f = frames(&mut admin);
        assert_eq!(of(&f, "permission.update").len(), 1);
        assert!(
            of(&f, "channel.removed").is_empty(),
            "ADMIN is not made to leave"
        );
        // an update for another event does not touch the session
        assert_eq!(
            h.apply_permissions("ev2", "ad", &s(&["z"]), now)
                .sessions_told,
            0
        );
        assert!(h.permitted(1).is_empty());
        assert_eq!(
            h.connected_users(),
            vec![("ev".to_string(), "ad".to_string())]
        );
        // a gone session's pending state is forgotten
        h.unregister(1, now);
        assert!(h.pending_removals(1).is_empty());
    }
}
