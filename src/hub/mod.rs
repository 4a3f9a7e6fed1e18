//! PURE. The hub: channels, their members and floors, emergency broadcasts, pending
//! permission removals, the connection registry and the route table, as one sans-IO state
//! machine.
//!
//! Every command takes `now` as a value and returns its result; what must happen outside
//! (notifications, closes, audit entries) is queued as typed [`Output`]s that the shell takes
//! with [`Hub::take_outputs`]; whether the routes changed is [`Hub::take_routes_dirty`]; when
//! the next timer is due is [`Hub::next_deadline`]. No tokio, no channels, no JSON rendering,
//! no clock reads: tests drive it with virtual time (`tests.rs`, `proptests.rs`).
//!
//! Ownership: one lock guards the hub (`crate::switchboard`), with no I/O inside it: a
//! command takes microseconds, and its outputs are pushed onto in-memory queues (session
//! outbound queues, the audit queue) before the lock is released, which keeps each session's
//! notifications in decision order. A task owning the hub behind a command channel would add
//! a task hop and an allocation to every floor request, and the floor-request latency target
//! (p99 < 1 ms with 500 sessions) is met with the lock. The media path never takes this lock:
//! it reads the published route table.
//!
//! Rules: spec notes 000 (limits, join rules), 002 (permission changes), 003 (Dispatch
//! pre-emption, emergency broadcast), floor control in [`crate::floor`] (3GPP TS 24.380 terms).

mod broadcast;
mod error;
mod output;
mod permissions;
pub mod registry;
mod routes;
mod status;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use broadcast::{BroadcastInfo, BroadcastStart};
pub use error::HubError;
pub use output::{Notification, Output, RevokeCode, SpurtEvent, TalkerRef};
pub use permissions::PermissionOutcome;
pub use registry::{ConnId, ConnectionInfo, Registry};
pub use routes::{Route, RouteSet};
pub use status::{arrange, ChannelEntry, ChannelStatus, ConnectionRow, HubStatus};

use crate::access::role::Role;
use crate::audit::{Action, Entry};
use crate::floor::{Floor, FloorConfig, FloorEvent, Priority, RevokeReason, Talker};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Channel limits (spec note 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Channels one participant may be in at once (ADMIN bypasses). Default 10.
    pub max_channels_per_user: usize,
    /// Members one channel may have. Default 100.
    pub max_users_per_channel: usize,
}

/// Per-participant state.
#[derive(Debug, Clone)]
struct SessionState {
    /// Channels this participant may join (from the permission store).
    permitted: BTreeSet<String>,
    /// Joined channels and the downlink slot each is heard on (`None`: no free slot, or a
    /// temporary broadcast join).
    joined: BTreeMap<String, Option<usize>>,
    /// Number of downlink slots the participant has.
    slot_count: usize,
    /// Whether it has a media path (a WebRTC peer): then the end-of-media timer runs for its
    /// grants.
    media_uplink: bool,
}

/// One channel: its event, members and floor.
#[derive(Debug, Clone)]
struct ChannelState {
    event: String,
    members: BTreeSet<ConnId>,
    floor: Floor,
    /// Number of the current (or last) floor grant: identifies talk spurts for the SFU.
    grant: u64,
    /// The current talker and when its talk began (re-grants to it keep the start): the
    /// talk duration in the `FLOOR_RELEASED` / `FLOOR_REVOKED` audit entries.
    talk_since: Option<(ConnId, Instant)>,
}

/// Floor counters since start (status, metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubCounters {
    /// Floors granted.
    pub floors_granted: u64,
    /// Floor requests denied.
    pub floors_denied: u64,
    /// Floors revoked (time-out timer, pre-emption, emergency).
    pub floors_revoked: u64,
}

/// What a successful join returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Downlink slot (index of the transceiver) this channel is heard on, if any.
    pub slot: Option<usize>,
    /// The current floor holder, if any (late entry).
    pub talker: Option<TalkerRef>,
    /// Number of members after the join.
    pub members: usize,
}

/// What [`Hub::floor_request_site`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteDecision {
    /// Decided here: granted, the time-out timer's duration, ms.
    Decided(u64),
    /// The channel is linked: ask its upstream through link participant `link`, then apply
    /// the grant with [`Hub::link_grant`].
    AskUpstream {
        /// The channel's link participant.
        link: ConnId,
    },
}

/// An active emergency broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BroadcastState {
    event: String,
    channels: Vec<String>,
    temporary: Vec<String>,
    started: Instant,
    /// The broadcaster as shown (a linked site's Dispatch user, "Dan @ north"), else its name.
    shown: Option<String>,
}

/// An emergency broadcast at the upstream of this site's linked channels, as the site shows
/// it (issue 16): who, the upstream's channels, and the link participants that reported it
/// (one per linked channel of the event; it ends when the last reports its end).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteBroadcast {
    by: TalkerRef,
    channels: Vec<String>,
    links: std::collections::BTreeSet<ConnId>,
}

/// The hub. See the module docs.
#[derive(Debug, Clone)]
pub struct Hub {
    limits: Limits,
    floor_cfg: FloorConfig,
    registry: Registry,
    sessions: HashMap<ConnId, SessionState>,
    channels: HashMap<String, ChannelState>,
    counters: HubCounters,
    grants: u64,
    broadcasts: HashMap<ConnId, BroadcastState>,
    /// When each DISPATCH participant armed an emergency broadcast (`broadcast.arm`).
    armed: HashMap<ConnId, Instant>,
    /// Broadcasters that lost a floor of their broadcast: stopped when the command settles.
    ending: Vec<(ConnId, &'static str)>,
    /// The participant whose emergency broadcast is granting floors right now (its spurts
    /// are marked emergency).
    emergency_granting: Option<ConnId>,
    /// The participant being unregistered (its spurts end with `"disconnect"`).
    leaving: Option<ConnId>,
    pending: permissions::PendingRemovals,
    out: Vec<Output>,
    routes_dirty: bool,
    /// Channels linked to an upstream gateway (issue 16) and the link participant that
    /// stands for the upstream in each: their floors are decided there.
    linked: HashMap<String, ConnId>,
    /// Emergency broadcasts at the upstream, by event (issue 16).
    remote_broadcasts: HashMap<String, RemoteBroadcast>,
    /// Channels this gateway links (issue 16), linked now (in `linked`) or site only.
    link_channels: BTreeSet<String>,
}

impl Hub {
    /// An empty hub with the configured limits and time-out timer.
    pub fn new(limits: Limits, floor_cfg: FloorConfig) -> Self {
        Self {
            limits,
            floor_cfg,
            registry: Registry::default(),
            sessions: HashMap::new(),
            channels: HashMap::new(),
            counters: HubCounters::default(),
            grants: 0,
            broadcasts: HashMap::new(),
            armed: HashMap::new(),
            ending: Vec::new(),
            emergency_granting: None,
            leaving: None,
            pending: Default::default(),
            out: Vec::new(),
            routes_dirty: false,
            linked: HashMap::new(),
            remote_broadcasts: HashMap::new(),
            link_channels: BTreeSet::new(),
        }
    }

    /// The outputs queued since the last call, in decision order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Whether the route set may have changed since the last call (then the shell republishes
    /// [`Hub::routes`]).
    pub fn take_routes_dirty(&mut self) -> bool {
        std::mem::take(&mut self.routes_dirty)
    }

    /// The connection registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Floor counters since start.
    pub fn counters(&self) -> HubCounters {
        self.counters
    }

    /// Number of channels with at least one member.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Number of floors currently taken.
    pub fn floors_taken(&self) -> usize {
        self.channels
            .values()
            .filter(|c| c.floor.holder().is_some())
            .count()
    }

    /// The earliest time-out timer deadline of any floor; call [`Hub::tick`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter_map(|c| c.floor.next_deadline())
            .min()
    }

    fn emit(&mut self, to: Vec<ConnId>, note: Notification) {
        if !to.is_empty() {
            self.out.push(Output::Notify { to, note });
        }
    }

    fn audit(&mut self, entry: Entry) {
        self.out.push(Output::Audit(entry));
    }

    /// An audit entry (unstamped) with `conn`'s user, role and event filled in.
    fn entry_for(&self, conn: ConnId, action: Action) -> Entry {
        match self.registry.get(conn) {
            Some(i) => Entry::unstamped(i.user_id.clone(), action).who(i.role, i.event.clone()),
            None => Entry::unstamped(format!("conn:{conn}"), action),
        }
    }

    fn talker_ref(&self, id: ConnId, name: &str) -> TalkerRef {
        TalkerRef {
            conn_id: id,
            user_id: self
                .registry
                .get(id)
                .map(|i| i.user_id.clone())
                .unwrap_or_default(),
            name: name.to_string(),
        }
    }

    /// `{connId, userId, name}` of a registered participant (empty strings once it left).
    fn participant_ref(&self, id: ConnId) -> TalkerRef {
        let (user_id, name) = self
            .registry
            .get(id)
            .map(|i| (i.user_id.clone(), i.name.clone()))
            .unwrap_or_default();
        TalkerRef {
            conn_id: id,
            user_id,
            name,
        }
    }

    /// Registers a participant with its permitted channels and number of downlink slots.
    /// Registering an id again replaces its info and keeps its channels.
    pub fn register(&mut self, info: ConnectionInfo, permitted: Vec<String>, slot_count: usize) {
        let id = info.conn_id;
        self.registry.add(info);
        let s = self.sessions.entry(id).or_insert_with(|| SessionState {
            permitted: BTreeSet::new(),
            joined: BTreeMap::new(),
            slot_count,
            media_uplink: false,
        });
        s.permitted = permitted.into_iter().collect();
        s.slot_count = slot_count;
    }

    /// Whether `id` has a media path (a WebRTC peer connection): the end-of-RTP-media timer
    /// (TS 24.380 T1) runs for its grants from then on. Participants without one (radio ports,
    /// consoles, signaling-only clients) are never revoked for silence.
    pub fn set_media_uplink(&mut self, id: ConnId, on: bool) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.media_uplink = on;
        }
    }

    /// Uplink RTP from `id` was last seen at `at`: restarts the end-of-media timer of every
    /// floor it holds. The shell reports this before [`Hub::tick`].
    pub fn uplink_media(&mut self, id: ConnId, at: Instant) {
        let Some(s) = self.sessions.get(&id).filter(|s| s.media_uplink) else {
            return;
        };
        for name in s.joined.keys() {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.floor.arm_end_of_media(id, at);
            }
        }
    }

    /// Removes a participant: stops its broadcast, leaves every channel (releasing floors it
    /// holds), forgets its pending removals and drops it from the registry. Returns its info
    /// if it was registered.
    pub fn unregister(&mut self, id: ConnId, now: Instant) -> Option<ConnectionInfo> {
        self.leaving = Some(id);
        let info = self.unregister_inner(id, now);
        self.leaving = None;
        info
    }

    fn unregister_inner(&mut self, id: ConnId, now: Instant) -> Option<ConnectionInfo> {
        self.armed.remove(&id);
        if self.broadcasts.contains_key(&id) {
            self.broadcast_stop(id, "disconnected", now);
        }
        self.link_broadcast_stopped(id, "link down");
        let joined: Vec<String> = self
            .sessions
            .get(&id)
            .map(|s| s.joined.keys().cloned().collect())
            .unwrap_or_default();
        for ch in joined {
            let _ = self.leave_inner(id, &ch, now);
        }
        self.sessions.remove(&id);
        self.pending.forget(id);
        self.settle(now);
        self.registry.remove(id)
    }

    /// Whether `id` may hear `channel` (of `channel_event`, the event the permission store
    /// associates with it, or `None` if unknown): the rule [`Hub::join`] applies (spec note
    /// 000), also for recordings (issue 14). Permitted, or ADMIN and the channel is of its
    /// own event; and the channel (as the store and the hub know it) is of that event.
    pub fn may_hear(&self, id: ConnId, channel: &str, channel_event: Option<&str>) -> bool {
        let (Some(info), Some(s)) = (self.registry.get(id), self.sessions.get(&id)) else {
            return false;
        };
        let event = info.event.as_str();
        let permitted = s.permitted.contains(channel)
            || (info.role == Role::Admin && channel_event == Some(event));
        let event_ok = channel_event.is_none_or(|e| e == event)
            && self.channels.get(channel).is_none_or(|c| c.event == event);
        permitted && event_ok
    }

    /// Joins `channel` (of `channel_event`, the event the permission store associates with it,
    /// or `None` if unknown).
    ///
    /// Checks, in order (spec note 000): permitted (ADMIN: any channel of its own event), the
    /// channel belongs to the participant's event, the per-user limit (ADMIN bypasses), the
    /// per-channel limit. Joining a channel already joined succeeds and changes nothing.
    ///
    /// # Errors
    /// [`HubError::NotRegistered`], [`HubError::PermissionDenied`],
    /// [`HubError::TooManyChannels`], [`HubError::ChannelFull`].
    pub fn join(
        &mut self,
        id: ConnId,
        channel: &str,
        channel_event: Option<&str>,
    ) -> Result<Joined, HubError> {
        let info = self.registry.get(id).ok_or(HubError::NotRegistered)?;
        let (role, event) = (info.role, info.event.clone());
        let s = self.sessions.get(&id).ok_or(HubError::NotRegistered)?;
        if let Some(slot) = s.joined.get(channel) {
            let slot = *slot;
            return Ok(self.joined_result(channel, slot));
        }
        if !self.may_hear(id, channel, channel_event) {
            return Err(HubError::PermissionDenied {
                channel: channel.into(),
            });
        }
        if role != Role::Admin && s.joined.len() >= self.limits.max_channels_per_user {
            return Err(HubError::TooManyChannels {
                joined: s.joined.len(),
                limit: self.limits.max_channels_per_user,
            });
        }
        let members = self.channels.get(channel).map_or(0, |c| c.members.len());
        if members >= self.limits.max_users_per_channel {
            return Err(HubError::ChannelFull {
                channel: channel.into(),
                limit: self.limits.max_users_per_channel,
            });
        }
        let used: BTreeSet<usize> = s.joined.values().flatten().copied().collect();
        let slot = (0..s.slot_count).find(|i| !used.contains(i));
        self.add_member(id, channel, &event, slot);
        Ok(self.joined_result(channel, slot))
    }

    fn add_member(&mut self, id: ConnId, channel: &str, event: &str, slot: Option<usize>) {
        let floor_cfg = self.floor_cfg;
        let ch = self
            .channels
            .entry(channel.to_string())
            .or_insert_with(|| ChannelState {
                event: event.to_string(),
                members: BTreeSet::new(),
                floor: Floor::new(floor_cfg),
                grant: 0,
                talk_since: None,
            });
        ch.members.insert(id);
        if ch.floor.holder().is_some() {
            self.routes_dirty = true;
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            s.joined.insert(channel.to_string(), slot);
        }
    }

    fn joined_result(&self, channel: &str, slot: Option<usize>) -> Joined {
        let ch = self.channels.get(channel);
        Joined {
            slot,
            talker: ch
                .and_then(|c| c.floor.holder())
                .map(|t| self.talker_ref(t.id, &t.name)),
            members: ch.map_or(0, |c| c.members.len()),
        }
    }

    /// Leaves a channel, releasing its floor if held (members are told `floor.idle`).
    ///
    /// # Errors
    /// [`HubError::NotAMember`] if not joined.
    pub fn leave(&mut self, id: ConnId, channel: &str, now: Instant) -> Result<(), HubError> {
        let r = self.leave_inner(id, channel, now);
        self.settle(now);
        r
    }

    fn leave_inner(&mut self, id: ConnId, channel: &str, now: Instant) -> Result<(), HubError> {
        let joined = self
            .sessions
            .get_mut(&id)
            .map(|s| s.joined.remove(channel).is_some())
            .unwrap_or(false);
        if !joined {
            return Err(not_a_member(channel));
        }
        let events = match self.channels.get_mut(channel) {
            Some(ch) => {
                ch.members.remove(&id);
                ch.floor.remove_participant(id, now)
            }
            None => Vec::new(),
        };
        self.routes_dirty = true;
        self.apply_floor_events(channel, events, now);
        if self
            .channels
            .get(channel)
            .is_some_and(|c| c.members.is_empty())
        {
            self.channels.remove(channel);
        }
        Ok(())
    }

    /// Floor request (TS 24.380), with pre-emptive priority for Dispatch (spec note 003).
    /// Returns the grant's remaining duration (time-out timer), ms.
    ///
    /// # Errors
    /// [`HubError::NotRegistered`]; [`HubError::NotAMember`] if not joined;
    /// [`HubError::FloorBusy`] (floor deny) with the holder if someone else holds the floor.
    pub fn floor_request(
        &mut self,
        id: ConnId,
        channel: &str,
        priority: Priority,
        now: Instant,
    ) -> Result<u64, HubError> {
        self.floor_request_as(id, channel, priority, None, now)
    }

    /// [`Hub::floor_request`] with the talker shown as `name` instead of the participant's
    /// own name: a linked site's session asking on behalf of one of its talkers
    /// (`"Ana @ north-gate"`, issue 16).
    ///
    /// # Errors
    /// As [`Hub::floor_request`]; [`HubError::Linked`] when the channel is linked to an
    /// upstream and `id` is not its link participant (the floor is decided upstream: see
    /// [`Hub::link_grant`]).
    pub fn floor_request_as(
        &mut self,
        id: ConnId,
        channel: &str,
        priority: Priority,
        name: Option<String>,
        now: Instant,
    ) -> Result<u64, HubError> {
        self.registry.get(id).ok_or(HubError::NotRegistered)?;
        if self.linked.get(channel).is_some_and(|l| *l != id) {
            return Err(HubError::Linked {
                channel: channel.into(),
            });
        }
        let talker = self.member_talker(id, channel, priority, name)?;
        self.arbitrate(talker, channel, now)
    }

    /// A floor request at a site (issue 16): on a channel that is not linked, decided here
    /// ([`SiteDecision::Decided`], as [`Hub::floor_request_as`]); on a linked one the upstream
    /// decides ([`SiteDecision::AskUpstream`]), except that a local talker holding the floor
    /// is arbitrated here first (the upstream sees this site's talkers as one participant): a
    /// request that cannot pre-empt it is denied here, one that does is granted here and
    /// still goes up.
    ///
    /// # Errors
    /// As [`Hub::floor_request_as`]; [`HubError::FloorBusy`] when a local holder is not
    /// pre-empted.
    pub fn floor_request_site(
        &mut self,
        id: ConnId,
        channel: &str,
        priority: Priority,
        name: Option<String>,
        now: Instant,
    ) -> Result<SiteDecision, HubError> {
        let Some(link) = self.linked(channel) else {
            return self
                .floor_request_as(id, channel, priority, name, now)
                .map(SiteDecision::Decided);
        };
        let talker = self.member_talker(id, channel, priority, name)?;
        if self
            .floor_holder(channel)
            .is_some_and(|h| h != link && h != id)
        {
            self.arbitrate(talker, channel, now)?;
        }
        Ok(SiteDecision::AskUpstream { link })
    }

    /// `id` as a talker on `channel` (shown as `name`, else its own name).
    ///
    /// # Errors
    /// [`HubError::NotRegistered`]; [`HubError::NotAMember`] if `id` has not joined.
    fn member_talker(
        &self,
        id: ConnId,
        channel: &str,
        priority: Priority,
        name: Option<String>,
    ) -> Result<Talker, HubError> {
        let info = self.registry.get(id).ok_or(HubError::NotRegistered)?;
        if !self
            .channels
            .get(channel)
            .is_some_and(|c| c.members.contains(&id))
        {
            return Err(not_a_member(channel));
        }
        Ok(Talker {
            id,
            name: name.unwrap_or_else(|| info.name.clone()),
            priority,
        })
    }

    /// Floor control's decision on `talker`'s request (a member of `channel`): the grant's
    /// remaining duration, ms, or the floor deny (counted and audited).
    fn arbitrate(&mut self, talker: Talker, channel: &str, now: Instant) -> Result<u64, HubError> {
        let id = talker.id;
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| not_a_member(channel))?;
        let events = ch.floor.request(talker, now);
        let mut outcome = Err(HubError::NotRegistered);
        for ev in &events {
            match ev {
                FloorEvent::Granted { to, expires_at } if to.id == id => {
                    outcome = Ok(ms(expires_at.saturating_duration_since(now)));
                }
                FloorEvent::Denied { to, reason } if *to == id => {
                    self.counters.floors_denied += 1;
                    let holder = reason.holder();
                    let e = self
                        .entry_for(id, Action::FloorDenied)
                        .target(channel)
                        .outcome("denied")
                        .details(serde_json::json!({"holder": holder.name}));
                    self.audit(e);
                    outcome = Err(HubError::FloorBusy {
                        channel: channel.into(),
                        holder: self.talker_ref(holder.id, &holder.name),
                        message: reason.message(),
                    });
                }
                _ => {}
            }
        }
        self.apply_floor_events(channel, events, now);
        self.settle(now);
        outcome
    }

    /// Floor release by the holder; a release by a non-holder is accepted and changes nothing.
    ///
    /// # Errors
    /// [`HubError::NotAMember`] if not joined.
    pub fn floor_release(
        &mut self,
        id: ConnId,
        channel: &str,
        now: Instant,
    ) -> Result<(), HubError> {
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|c| c.members.contains(&id))
            .ok_or_else(|| not_a_member(channel))?;
        let events = ch.floor.release(id, now);
        self.apply_floor_events(channel, events, now);
        self.settle(now);
        Ok(())
    }

    /// Links `channel` to an upstream gateway through participant `link` (issue 16), or
    /// unlinks it (`None`: island mode, site-only floors). While linked, floor requests of
    /// other participants are refused with [`HubError::Linked`]: the link's shell asks the
    /// upstream and applies its decisions with [`Hub::link_grant`] and [`Hub::link_revoke`].
    /// The shell links a channel only while its floor is idle (a talk in progress is never
    /// cut by a relink).
    pub fn set_linked(&mut self, channel: &str, link: Option<ConnId>) {
        let before = self.link_state(channel);
        match link {
            Some(l) => {
                self.linked.insert(channel.to_string(), l);
            }
            None => {
                self.linked.remove(channel);
            }
        }
        self.link_channels.insert(channel.to_string());
        let now = self.link_state(channel);
        if let (Some(link), true) = (now, now != before) {
            let to = self
                .channels
                .get(channel)
                .map(|c| c.members.iter().copied().collect())
                .unwrap_or_default();
            self.emit(
                to,
                Notification::ChannelLink {
                    channel: channel.to_string(),
                    link,
                },
            );
        }
    }

    /// A channel's link state as clients are told (`channel.list` `link`, `channel.link`):
    /// `"linked"`, `"site only"`, or `None` for a channel this gateway does not link.
    pub fn link_state(&self, channel: &str) -> Option<&'static str> {
        if !self.link_channels.contains(channel) {
            None
        } else if self.linked.contains_key(channel) {
            Some("linked")
        } else {
            Some("site only")
        }
    }

    /// The link participant of `channel` when it is linked.
    pub fn linked(&self, channel: &str) -> Option<ConnId> {
        self.linked.get(channel).copied()
    }

    /// The current floor holder of `channel`, if any.
    pub fn floor_holder(&self, channel: &str) -> Option<ConnId> {
        self.channels
            .get(channel)
            .and_then(|c| c.floor.holder())
            .map(|t| t.id)
    }

    /// The current floor holder of `channel` and its name as shown ("Ana @ north" for a
    /// linked site's talker), if any.
    pub fn floor_talker(&self, channel: &str) -> Option<(ConnId, String)> {
        self.channels
            .get(channel)
            .and_then(|c| c.floor.holder())
            .map(|t| (t.id, t.name.clone()))
    }

    /// Applies a grant the upstream of a linked channel decided (issue 16): `id` (a local
    /// talker the upstream granted, or the link participant for a talker elsewhere, shown as
    /// `name`) takes the floor; a different holder is revoked as pre-empted by it (by an
    /// emergency broadcast when `emergency`). Returns the time-out timer's duration, ms.
    ///
    /// # Errors
    /// [`HubError::NotRegistered`]; [`HubError::NotAMember`] if `id` has not joined.
    pub fn link_grant(
        &mut self,
        id: ConnId,
        channel: &str,
        priority: Priority,
        name: Option<String>,
        emergency: bool,
        now: Instant,
    ) -> Result<u64, HubError> {
        let talker = self.member_talker(id, channel, priority, name)?;
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| not_a_member(channel))?;
        let events = ch.floor.decided_grant(talker, emergency, now);
        let expires = events.iter().find_map(|e| match e {
            FloorEvent::Granted { to, expires_at } if to.id == id => {
                Some(ms(expires_at.saturating_duration_since(now)))
            }
            _ => None,
        });
        self.emergency_granting = emergency.then_some(id);
        self.apply_floor_events(channel, events, now);
        self.emergency_granting = None;
        self.settle(now);
        Ok(expires.unwrap_or(0))
    }

    /// Applies a revoke the upstream of a linked channel decided (its time-out or
    /// end-of-media timer, issue 16): the holder loses the floor with `reason` and the
    /// channel goes idle. No-op on an idle floor.
    pub fn link_revoke(&mut self, channel: &str, reason: RevokeReason, now: Instant) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let events = ch.floor.decided_revoke(reason, now);
        self.apply_floor_events(channel, events, now);
        self.settle(now);
    }

    /// Runs every floor's time-out timer that is due at `now`; returns the next deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        let mut due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.floor.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for name in due {
            if let Some(ch) = self.channels.get_mut(&name) {
                let events = ch.floor.tick(now);
                self.apply_floor_events(&name, events, now);
            }
        }
        self.settle(now);
        self.next_deadline()
    }

    /// How long `talker`'s talk on `channel` lasted until `now`, ms (it ended); `None` if
    /// its start is unknown.
    fn talk_ended(&mut self, channel: &str, talker: ConnId, now: Instant) -> Option<u64> {
        let c = self.channels.get_mut(channel)?;
        match c.talk_since {
            Some((h, since)) if h == talker => {
                c.talk_since = None;
                Some(ms(now.saturating_duration_since(since)))
            }
            _ => None,
        }
    }

    fn spurt_started(&mut self, talker: ConnId, channel: &str) {
        let Some(info) = self.registry.get(talker) else {
            return;
        };
        let event = self
            .channels
            .get(channel)
            .map_or_else(|| info.event.clone(), |c| c.event.clone());
        let e = SpurtEvent::Start {
            talker,
            channel: channel.to_string(),
            event,
            user_id: info.user_id.clone(),
            name: info.name.clone(),
            role: info.role,
            emergency: self.emergency_granting == Some(talker),
        };
        self.out.push(Output::Spurt(e));
    }

    fn spurt_ended(&mut self, talker: ConnId, channel: &str, reason: &str) {
        self.out.push(Output::Spurt(SpurtEvent::End {
            talker,
            channel: channel.to_string(),
            reason: reason.to_string(),
        }));
    }

    /// Stops the broadcasts that lost a floor during the command just handled.
    fn settle(&mut self, now: Instant) {
        while let Some((id, reason)) = self.ending.pop() {
            if self.broadcasts.contains_key(&id) {
                self.broadcast_stop(id, reason, now);
            }
        }
    }

    /// Turns floor events into notifications, audit entries and counters. Denials are
    /// answered by the caller's reply, not notified.
    fn apply_floor_events(&mut self, channel: &str, events: Vec<FloorEvent>, now: Instant) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        let members: Vec<ConnId> = ch.members.iter().copied().collect();
        let mut ended: Vec<ConnId> = Vec::new();
        for ev in events {
            match ev {
                FloorEvent::Granted { to, expires_at } => {
                    self.counters.floors_granted += 1;
                    self.routes_dirty = true;
                    let mut e = self.entry_for(to.id, Action::FloorGranted).target(channel);
                    if self.registry.get(to.id).is_some_and(|i| i.name != to.name) {
                        // A linked site's talker ("Ana @ north") or one elsewhere: the audit
                        // names who talks, and so the site (issue 16).
                        e = e.details(serde_json::json!({"talker": to.name}));
                    }
                    self.audit(e);
                    self.grants += 1;
                    let media = self.sessions.get(&to.id).is_some_and(|s| s.media_uplink);
                    let mut new_spurt = false;
                    if let Some(c) = self.channels.get_mut(channel) {
                        c.grant = self.grants;
                        if c.talk_since.is_none_or(|(h, _)| h != to.id) {
                            c.talk_since = Some((to.id, now));
                            new_spurt = true;
                        }
                        if media {
                            c.floor.arm_end_of_media(to.id, now);
                        }
                    }
                    if new_spurt {
                        self.spurt_started(to.id, channel);
                    }
                    let talker = self.talker_ref(to.id, &to.name);
                    let emergency = self.emergency_granting == Some(to.id);
                    self.emit(
                        vec![to.id],
                        Notification::FloorGranted {
                            channel: channel.into(),
                            expires_in_ms: ms(expires_at.saturating_duration_since(now)),
                        },
                    );
                    let others = members.iter().copied().filter(|m| *m != to.id).collect();
                    self.emit(
                        others,
                        Notification::FloorTaken {
                            channel: channel.into(),
                            talker,
                            emergency,
                        },
                    );
                }
                FloorEvent::Revoked { from, reason } => {
                    ended.push(from.id);
                    self.routes_dirty = true;
                    self.counters.floors_revoked += 1;
                    let why = match reason {
                        RevokeReason::TimeOut => "time-out timer",
                        RevokeReason::MediaTimeout => "no audio (end-of-media timer)",
                        _ => "floor revoked",
                    };
                    self.broadcast_floor_lost(from.id, channel, why);
                    let code = RevokeCode::of(&reason);
                    let (message, action) = match &reason {
                        RevokeReason::TimeOut => (
                            reason.message_with_limit(self.floor_cfg.time_out_timer),
                            Action::FloorRevoked,
                        ),
                        RevokeReason::PreEmpted { .. } => {
                            (reason.message(), Action::FloorPreempted)
                        }
                        RevokeReason::Emergency { .. } | RevokeReason::MediaTimeout => {
                            (reason.message(), Action::FloorRevoked)
                        }
                    };
                    let talk_ms = self.talk_ended(channel, from.id, now);
                    if talk_ms.is_some() {
                        self.spurt_ended(from.id, channel, code.as_str());
                    }
                    let e = self
                        .entry_for(from.id, action)
                        .target(channel)
                        .outcome(code.as_str())
                        .details(serde_json::json!({"message": message, "durationMs": talk_ms}));
                    self.audit(e);
                    tracing::info!(
                        channel = %channel.escape_debug(),
                        conn = from.id,
                        reason = code.as_str(),
                        "floor revoke"
                    );
                    self.emit(
                        vec![from.id],
                        Notification::FloorRevoke {
                            channel: channel.into(),
                            reason: code,
                            message,
                        },
                    );
                }
                FloorEvent::Idle => {
                    self.emit(
                        members.clone(),
                        Notification::FloorIdle {
                            channel: channel.into(),
                        },
                    );
                }
                FloorEvent::Released { by } => {
                    self.routes_dirty = true;
                    self.broadcast_floor_lost(by.id, channel, "floor released");
                    let talk_ms = self.talk_ended(channel, by.id, now);
                    if talk_ms.is_some() {
                        let how = if self.leaving == Some(by.id) {
                            "disconnect"
                        } else {
                            "release"
                        };
                        self.spurt_ended(by.id, channel, how);
                    }
                    let e = self
                        .entry_for(by.id, Action::FloorReleased)
                        .target(channel)
                        .details(serde_json::json!({"durationMs": talk_ms}));
                    self.audit(e);
                    ended.push(by.id);
                }
                FloorEvent::Denied { .. } => {}
            }
        }
        self.apply_pending_removals(channel, &ended, now);
    }

    /// Shutdown: releases every floor (members told `floor.idle`), stops broadcasts and asks
    /// every participant to close with `code` and `reason`.
    pub fn close_all(&mut self, code: u16, reason: &str, now: Instant) {
        let broadcasters: Vec<ConnId> = self.broadcasts.keys().copied().collect();
        for id in broadcasters {
            self.broadcast_stop(id, "server shutting down", now);
        }
        let mut holders: Vec<(String, ConnId)> = self
            .channels
            .iter()
            .filter_map(|(k, c)| c.floor.holder().map(|t| (k.clone(), t.id)))
            .collect();
        holders.sort();
        for (ch, id) in holders {
            let _ = self.floor_release(id, &ch, now);
        }
        for info in self.registry.all() {
            self.out.push(Output::Close {
                to: info.conn_id,
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// Asks each of `ids` that is registered to close with `code` and `reason`, and removes it
    /// at once (its floors released, its broadcast stopped, its channels left), so that what
    /// the admin sees next no longer lists it; returns how many were registered.
    pub fn force_disconnect(
        &mut self,
        ids: &[ConnId],
        code: u16,
        reason: &str,
        now: Instant,
    ) -> usize {
        let mut n = 0;
        for id in ids {
            if self.registry.get(*id).is_some() {
                self.out.push(Output::Close {
                    to: *id,
                    code,
                    reason: reason.to_string(),
                });
                self.unregister(*id, now);
                n += 1;
            }
        }
        n
    }

    /// The channels whose floor each talker holds, sorted (one per talker, several during an
    /// emergency broadcast).
    pub fn talker_channels(&self) -> BTreeMap<ConnId, Vec<String>> {
        let mut m: BTreeMap<ConnId, Vec<String>> = BTreeMap::new();
        for (name, ch) in &self.channels {
            if let Some(t) = ch.floor.holder() {
                m.entry(t.id).or_default().push(name.clone());
            }
        }
        for chs in m.values_mut() {
            chs.sort();
        }
        m
    }

    /// Channels with members: `(channel id, event, members, whether the floor is taken)`,
    /// sorted by id (`/metrics`).
    pub fn channel_gauges(&self) -> Vec<(String, String, usize, bool)> {
        let mut v: Vec<_> = self
            .channels
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    c.event.clone(),
                    c.members.len(),
                    c.floor.holder().is_some(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Who hears whom now: every other member of each channel whose floor is granted, on that
    /// member's slot for the channel (members without a slot hear nothing).
    pub fn routes(&self) -> RouteSet {
        let mut set = RouteSet::new();
        for (name, ch) in &self.channels {
            let Some(holder) = ch.floor.holder().map(|t| t.id) else {
                continue;
            };
            set.entry(holder).or_default();
            for m in ch.members.iter().filter(|m| **m != holder) {
                let slot = self
                    .sessions
                    .get(m)
                    .and_then(|s| s.joined.get(name).copied().flatten());
                if let Some(slot) = slot {
                    set.entry(holder).or_default().push(Route {
                        listener: *m,
                        slot,
                        grant: ch.grant,
                    });
                }
            }
        }
        for v in set.values_mut() {
            v.sort();
        }
        set
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn not_a_member(channel: &str) -> HubError {
    HubError::NotAMember {
        channel: channel.into(),
    }
}
