//! Permission changes applied to live participants (spec notes 000 and 002).
//!
//! A change of a user's permitted channels is pushed to every session of that user in that
//! event as `permission.update {added, removed, channels, pending}`. A removed channel the
//! session has joined is left at once (`channel.removed`), unless the session holds the floor
//! there: then the removal is pending (listed in `pending`) until the floor is released or
//! revoked, and happens then (`channel.removed`, `deferred: true`). ADMIN sessions are not
//! made to leave (their role lets them join any channel of their event).

use super::{ConnId, Hub, Notification};
use crate::access::role::Role;
use crate::audit::Action;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Channels whose removal waits for the participant's floor to end, per participant.
#[derive(Debug, Default, Clone)]
pub(super) struct PendingRemovals(pub(super) HashMap<ConnId, BTreeSet<String>>);

impl PendingRemovals {
    /// Forgets a participant's pending removals (it is gone).
    pub(super) fn forget(&mut self, id: ConnId) {
        self.0.remove(&id);
    }
}

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
    /// Users with at least one participant, as `(event, user)`, sorted and deduplicated.
    pub fn connected_users(&self) -> Vec<(String, String)> {
        let set: BTreeSet<(String, String)> = self
            .registry
            .all()
            .into_iter()
            .map(|i| (i.event, i.user_id))
            .collect();
        set.into_iter().collect()
    }

    /// The channels a participant may use now (its permitted set), sorted.
    pub fn permitted(&self, id: ConnId) -> Vec<String> {
        self.sessions
            .get(&id)
            .map(|s| s.permitted.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The channels whose removal is pending for a participant, sorted.
    pub fn pending_removals(&self, id: ConnId) -> Vec<String> {
        self.pending
            .0
            .get(&id)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes `channels` the permitted channels of every participant of `user` in `event` and
    /// notifies each whose permitted set or pending removals changed.
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
            tracing::info!(conn = id, user = %user.escape_debug(), event = %event.escape_debug(),
                           ?added, ?removed, ?pending, "permission update");
            let pending_list: Vec<String> = pending.iter().cloned().collect();
            let e = self
                .entry_for(id, Action::PermissionChange)
                .details(json!({"added": added, "removed": removed, "pending": pending_list}));
            self.audit(e);
            self.emit(
                vec![id],
                Notification::PermissionUpdate {
                    added,
                    removed,
                    channels: new.iter().cloned().collect(),
                    pending: pending_list,
                },
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
        self.settle(now);
        out
    }

    /// Hook from the floor paths: `holders` released or lost the floor of `channel`; a
    /// pending removal of that channel for them happens now.
    pub(super) fn apply_pending_removals(
        &mut self,
        channel: &str,
        holders: &[ConnId],
        now: Instant,
    ) {
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
                self.remove_from_channel(*id, channel, true, now);
            }
        }
    }

    /// Makes a participant leave a channel it lost permission for and tells it
    /// (`channel.removed`). Returns whether it was a member.
    fn remove_from_channel(
        &mut self,
        id: ConnId,
        channel: &str,
        deferred: bool,
        now: Instant,
    ) -> bool {
        if self.leave_inner(id, channel, now).is_err() {
            return false;
        }
        tracing::info!(conn = id, channel = %channel.escape_debug(), deferred,
                       "channel removed: permission withdrawn");
        self.emit(
            vec![id],
            Notification::ChannelRemoved {
                channel: channel.into(),
                deferred,
            },
        );
        true
    }
}
