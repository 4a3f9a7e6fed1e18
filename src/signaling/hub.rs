//! The hub: channels, their members and floors, and the connection registry, behind one lock.
//!
//! Every method is synchronous and short (no I/O, no await): callers hold the lock for
//! microseconds. Notifications are queued on the sessions' outbound channels; media is queued on
//! the listeners' downlink channels with `try_send` (a slow listener loses its own packets,
//! never anyone else's).

mod admin;
mod broadcast;

pub use broadcast::BroadcastState;

use super::protocol::{notification_frame, ErrorCode, RpcError};
use super::registry::{ConnId, ConnectionInfo, Outbound, OutboundTx, Registry};
use crate::access::role::Role;
use crate::audit::{Action, Audit, Entry};
use crate::config::ChannelLimits;
use crate::floor::{Floor, FloorConfig, FloorEvent, FloorState, Priority, RevokeReason, Talker};
use crate::sfu::{Downlink, MediaLink};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

mod permissions;
pub use permissions::PermissionOutcome;

/// Per-session state kept by the hub.
struct SessionState {
    /// Channels this user may join (from the permission store at connect).
    permitted: BTreeSet<String>,
    /// Joined channels and the downlink slot each is heard on (`None`: no free slot).
    joined: BTreeMap<String, Option<usize>>,
    /// The session's WebRTC link, once its offer was answered.
    media: Option<MediaLink>,
    /// Number of downlink slots the session's peer connection has.
    slot_count: usize,
}

/// One channel: its event, members and floor.
struct ChannelState {
    event: String,
    members: BTreeSet<ConnId>,
    floor: Floor,
    /// Number of the current (or last) floor grant, identifies talk spurts for the SFU.
    grant: u64,
}

/// Counters for status and benchmarks.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubCounters {
    /// Floors granted since start.
    pub floors_granted: u64,
    /// Floor requests denied since start.
    pub floors_denied: u64,
    /// Floors revoked (time-out timer, pre-emption) since start.
    pub floors_revoked: u64,
    /// RTP packets queued to listeners since start.
    pub packets_forwarded: u64,
    /// RTP payload bytes queued to listeners since start.
    pub bytes_forwarded: u64,
    /// RTP packets dropped because a listener's queue was full.
    pub packets_dropped: u64,
    /// RTP packets received from members not holding any floor (not forwarded).
    pub packets_unauthorised: u64,
}

/// What a successful join returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// Downlink slot (index of the transceiver) this channel is heard on, if any.
    pub slot: Option<usize>,
    /// Current floor holder's (connection id, user id, name), if any.
    pub talker: Option<(ConnId, String, String)>,
    /// Number of members after the join.
    pub members: usize,
}

/// Channels, members, floors and the registry.
pub struct Hub {
    limits: ChannelLimits,
    floor_cfg: FloorConfig,
    registry: Registry,
    sessions: HashMap<ConnId, SessionState>,
    channels: HashMap<String, ChannelState>,
    counters: HubCounters,
    grants: u64,
    audit: Option<Audit>,
    /// Active emergency broadcasts by broadcaster.
    broadcasts: HashMap<ConnId, BroadcastState>,
    /// When each DISPATCH session armed an emergency broadcast (`broadcast.arm`).
    armed: HashMap<ConnId, Instant>,
    /// Broadcasters whose floors the time-out timer revoked (stopped after the tick).
    tot_broadcasts: Vec<ConnId>,
    pending: permissions::PendingRemovals,
}

impl Hub {
    /// An empty hub with the configured limits and time-out timer.
    pub fn new(limits: ChannelLimits, floor_cfg: FloorConfig) -> Self {
        Self {
            limits,
            floor_cfg,
            registry: Registry::default(),
            sessions: HashMap::new(),
            channels: HashMap::new(),
            counters: HubCounters::default(),
            grants: 0,
            pending: Default::default(),
            audit: None,
            broadcasts: HashMap::new(),
            armed: HashMap::new(),
            tot_broadcasts: Vec::new(),
        }
    }

    /// Records floor and channel actions in `audit`.
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Queues an audit entry (never blocks).
    pub fn audit(&self, entry: Entry) {
        if let Some(a) = &self.audit {
            a.record(entry);
        }
    }

    /// An audit entry with `conn`'s user, role and event filled in.
    pub fn entry_for(&self, conn: ConnId, action: Action) -> Entry {
        match self.registry.get(conn) {
            Some(i) => Entry::new(i.user_id.clone(), action).who(i.role, i.event.clone()),
            None => Entry::new(format!("conn:{conn}"), action),
        }
    }

    /// The connection registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counters since start.
    pub fn counters(&self) -> HubCounters {
        self.counters
    }

    /// Registers a connection with its permitted channels and downlink slot count.
    pub fn register(
        &mut self,
        info: ConnectionInfo,
        permitted: Vec<String>,
        slot_count: usize,
        tx: OutboundTx,
    ) {
        let id = info.conn_id;
        self.registry.add(info, tx);
        self.sessions.insert(
            id,
            SessionState {
                permitted: permitted.into_iter().collect(),
                joined: BTreeMap::new(),
                media: None,
                slot_count,
            },
        );
    }

    /// Removes a connection: leaves every channel (releasing floors it holds) and drops it
    /// from the registry. Returns its info if it was registered.
    pub fn unregister(&mut self, id: ConnId, now: Instant) -> Option<ConnectionInfo> {
        self.armed.remove(&id);
        if self.broadcasts.contains_key(&id) {
            self.broadcast_stop(id, "disconnected", now);
        }
        let joined: Vec<String> = self
            .sessions
            .get(&id)
            .map(|s| s.joined.keys().cloned().collect())
            .unwrap_or_default();
        for ch in joined {
            let _ = self.leave(id, &ch, now);
        }
        self.sessions.remove(&id);
        self.forget_pending(id);
        self.registry.remove(id)
    }

    /// Queues a message for one connection.
    pub fn send(&self, id: ConnId, msg: Outbound) {
        self.registry.send(id, msg);
    }

    /// The channel list sent on connect (`channel.list` notification params).
    pub fn channel_list(&self, id: ConnId) -> Value {
        let Some(s) = self.sessions.get(&id) else {
            return json!({"channels": []});
        };
        let chans: Vec<Value> = s
            .permitted
            .iter()
            .map(|c| {
                let joined = s.joined.get(c);
                json!({"channelId": c, "joined": joined.is_some(),
                       "slot": joined.copied().flatten(),
                       "talker": self.talker_json(c)})
            })
            .collect();
        json!({"channels": chans})
    }

    fn talker_json(&self, channel: &str) -> Value {
        self.channels
            .get(channel)
            .and_then(|c| c.floor.holder())
            .map(|t| self.talker_value(t))
            .unwrap_or(Value::Null)
    }

    fn talker_value(&self, t: &Talker) -> Value {
        let user = self
            .registry
            .get(t.id)
            .map(|i| i.user_id.clone())
            .unwrap_or_default();
        json!({"connId": t.id, "userId": user, "name": t.name})
    }

    /// Joins `channel` (of `channel_event`, the event the permission store associates with it,
    /// or `None` if unknown).
    ///
    /// Checks, in order: permitted (ADMIN: any channel of its own event), the channel belongs
    /// to the user's event, the per-user limit (ADMIN bypasses), the per-channel limit. Joining
    /// a channel already joined succeeds and changes nothing.
    ///
    /// # Errors
    /// [`ErrorCode::PermissionDenied`], [`ErrorCode::TooManyChannels`],
    /// [`ErrorCode::ChannelFull`].
    pub fn join(
        &mut self,
        id: ConnId,
        channel: &str,
        channel_event: Option<&str>,
    ) -> Result<Joined, RpcError> {
        let info = self
            .registry
            .get(id)
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "session not registered"))?;
        let (role, event) = (info.role, info.event.clone());
        let s = self
            .sessions
            .get(&id)
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "session not registered"))?;
        if let Some(slot) = s.joined.get(channel) {
            let slot = *slot;
            return Ok(self.joined_result(channel, slot));
        }
        let permitted = s.permitted.contains(channel)
            || (role == Role::Admin && channel_event == Some(event.as_str()));
        let event_ok = channel_event.is_none_or(|e| e == event)
            && self.channels.get(channel).is_none_or(|c| c.event == event);
        if !permitted || !event_ok {
            return Err(RpcError::new(
                ErrorCode::PermissionDenied,
                format!("not permitted to use channel {channel}"),
            )
            .with_data(json!({"channelId": channel})));
        }
        if role != Role::Admin && s.joined.len() >= self.limits.max_channels_per_user {
            return Err(RpcError::new(
                ErrorCode::TooManyChannels,
                format!(
                    "already in {} channels (limit {})",
                    s.joined.len(),
                    self.limits.max_channels_per_user
                ),
            )
            .with_data(json!({"limit": self.limits.max_channels_per_user})));
        }
        let members = self.channels.get(channel).map_or(0, |c| c.members.len());
        if members >= self.limits.max_users_per_channel {
            return Err(RpcError::new(
                ErrorCode::ChannelFull,
                format!(
                    "channel {channel} is full ({} members)",
                    self.limits.max_users_per_channel
                ),
            )
            .with_data(json!({"channelId": channel, "limit": self.limits.max_users_per_channel})));
        }
        let used: BTreeSet<usize> = s.joined.values().flatten().copied().collect();
        let slot = (0..s.slot_count).find(|i| !used.contains(i));
        let floor_cfg = self.floor_cfg;
        let ch = self
            .channels
            .entry(channel.to_string())
            .or_insert_with(|| ChannelState {
                event: event.clone(),
                members: BTreeSet::new(),
                floor: Floor::new(floor_cfg),
                grant: 0,
            });
        ch.members.insert(id);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.joined.insert(channel.to_string(), slot);
        }
        Ok(self.joined_result(channel, slot))
    }

    fn joined_result(&self, channel: &str, slot: Option<usize>) -> Joined {
        let ch = self.channels.get(channel);
        Joined {
            slot,
            talker: ch.and_then(|c| c.floor.holder()).map(|t| {
                let user = self
                    .registry
                    .get(t.id)
                    .map(|i| i.user_id.clone())
                    .unwrap_or_default();
                (t.id, user, t.name.clone())
            }),
            members: ch.map_or(0, |c| c.members.len()),
        }
    }

    /// Leaves a channel, releasing its floor if held (members are told `floor.idle`).
    ///
    /// # Errors
    /// [`ErrorCode::NotAMember`] if not joined.
    pub fn leave(&mut self, id: ConnId, channel: &str, now: Instant) -> Result<(), RpcError> {
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
        self.apply_floor_events(channel, events);
        if self
            .channels
            .get(channel)
            .is_some_and(|c| c.members.is_empty())
        {
            self.channels.remove(channel);
        }
        Ok(())
    }

    /// Floor request. Returns the grant's remaining duration in milliseconds.
    ///
    /// # Errors
    /// [`ErrorCode::NotAMember`] if not joined; [`ErrorCode::FloorBusy`] (floor deny) with the
    /// holder in `data.talker` if someone else holds the floor.
    pub fn floor_request(
        &mut self,
        id: ConnId,
        channel: &str,
        priority: Priority,
        now: Instant,
    ) -> Result<u64, RpcError> {
        let info = self
            .registry
            .get(id)
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "session not registered"))?;
        let talker = Talker {
            id,
            name: info.name.clone(),
            priority,
        };
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|c| c.members.contains(&id))
            .ok_or_else(|| not_a_member(channel))?;
        let events = ch.floor.request(talker, now);
        let mut outcome = Err(RpcError::new(ErrorCode::Internal, "no floor decision"));
        for ev in &events {
            match ev {
                FloorEvent::Granted { to, expires_at } if to.id == id => {
                    outcome = Ok(expires_at.saturating_duration_since(now).as_millis() as u64);
                }
                FloorEvent::Denied { to, reason } if *to == id => {
                    self.counters.floors_denied += 1;
                    self.audit(
                        self.entry_for(id, Action::FloorDenied)
                            .target(channel)
                            .outcome("denied")
                            .details(json!({"holder": reason.holder().name})),
                    );
                    outcome = Err(RpcError::new(ErrorCode::FloorBusy, reason.message())
                        .with_data(json!({"channelId": channel,
                                          "talker": self.talker_value(reason.holder())})));
                }
                _ => {}
            }
        }
        self.apply_floor_events(channel, events);
        outcome
    }

    /// Floor release by the holder; a release by a non-holder is accepted and changes nothing.
    ///
    /// # Errors
    /// [`ErrorCode::NotAMember`] if not joined.
    pub fn floor_release(
        &mut self,
        id: ConnId,
        channel: &str,
        now: Instant,
    ) -> Result<(), RpcError> {
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|c| c.members.contains(&id))
            .ok_or_else(|| not_a_member(channel))?;
        let events = ch.floor.release(id, now);
        self.apply_floor_events(channel, events);
        Ok(())
    }

    /// Runs every floor's time-out timer; returns the earliest next deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.floor.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for name in due {
            if let Some(ch) = self.channels.get_mut(&name) {
                let events = ch.floor.tick(now);
                self.apply_floor_events(&name, events);
            }
        }
        for id in std::mem::take(&mut self.tot_broadcasts) {
            if self.broadcasts.contains_key(&id) {
                self.broadcast_stop(id, "time-out timer", now);
            }
        }
        self.channels
            .values()
            .filter_map(|c| c.floor.next_deadline())
            .min()
    }

    /// Notifies members of floor changes and counts them. Denials are answered by the
    /// caller's reply, not notified.
    fn apply_floor_events(&mut self, channel: &str, events: Vec<FloorEvent>) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        let members: Vec<ConnId> = ch.members.iter().copied().collect();
        let mut ended: Vec<ConnId> = Vec::new();
        for ev in events {
            match ev {
                FloorEvent::Granted { to, expires_at } => {
                    self.counters.floors_granted += 1;
                    self.audit(self.entry_for(to.id, Action::FloorGranted).target(channel));
                    self.grants += 1;
                    if let Some(c) = self.channels.get_mut(channel) {
                        c.grant = self.grants;
                    }
                    let talker = self.talker_value(&to);
                    let ms = expires_at
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64;
                    self.send(
                        to.id,
                        Outbound::Frame(notification_frame(
                            "floor.granted",
                            json!({"channelId": channel, "expiresInMs": ms}),
                        )),
                    );
                    let frame = notification_frame(
                        "floor.taken",
                        json!({"channelId": channel, "talker": talker}),
                    );
                    for m in members.iter().filter(|m| **m != to.id) {
                        self.send(*m, Outbound::Frame(frame.clone()));
                    }
                }
                FloorEvent::Revoked { from, reason } => {
                    ended.push(from.id);
                    self.counters.floors_revoked += 1;
                    let (code, msg, action) = match &reason {
                        RevokeReason::TimeOut => {
                            if self.broadcasts.contains_key(&from.id) {
                                self.tot_broadcasts.push(from.id);
                            }
                            (
                                "TIME_OUT",
                                reason.message_with_limit(self.floor_cfg.time_out_timer),
                                Action::FloorRevoked,
                            )
                        }
                        RevokeReason::PreEmpted { .. } => {
                            ("PRE_EMPTED", reason.message(), Action::FloorPreempted)
                        }
                        RevokeReason::Emergency { .. } => {
                            ("EMERGENCY", reason.message(), Action::FloorRevoked)
                        }
                    };
                    self.audit(
                        self.entry_for(from.id, action)
                            .target(channel)
                            .outcome(code)
                            .details(json!({"message": msg})),
                    );
                    tracing::info!(channel, conn = from.id, reason = code, "floor revoke");
                    self.send(
                        from.id,
                        Outbound::Frame(notification_frame(
                            "floor.revoke",
                            json!({"channelId": channel, "reason": code, "message": msg}),
                        )),
                    );
                }
                FloorEvent::Idle => {
                    let frame = notification_frame("floor.idle", json!({"channelId": channel}));
                    for m in &members {
                        self.send(*m, Outbound::Frame(frame.clone()));
                    }
                }
                FloorEvent::Released { by } => {
                    self.audit(self.entry_for(by.id, Action::FloorReleased).target(channel));
                    ended.push(by.id);
                }
                FloorEvent::Denied { .. } => {}
            }
        }
        self.apply_pending_removals(channel, &ended);
    }

    /// Attaches a session's WebRTC link (after its offer was answered).
    pub fn attach_media(&mut self, id: ConnId, link: MediaLink) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.media = Some(link);
        }
    }

    /// Detaches a session's WebRTC link (peer connection closed).
    pub fn detach_media(&mut self, id: ConnId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.media = None;
        }
    }

    /// Forwards one RTP packet from `from` to every other member of each channel where `from`
    /// holds the floor (floor granted), on that member's slot for the channel. Packets from a
    /// member holding no floor are counted and dropped. Returns the number of copies queued.
    pub fn forward(
        &mut self,
        from: ConnId,
        packet: &rtc::rtp::Packet,
        received_at: Instant,
    ) -> usize {
        let mut queued = 0usize;
        let mut held = false;
        for (name, ch) in &self.channels {
            if !matches!(ch.floor.state(), FloorState::Taken { holder, .. } if holder == from) {
                continue;
            }
            held = true;
            for m in ch.members.iter().filter(|m| **m != from) {
                let Some(s) = self.sessions.get(m) else {
                    continue;
                };
                let (Some(media), Some(Some(slot))) = (&s.media, s.joined.get(name)) else {
                    continue;
                };
                let d = Downlink {
                    slot: *slot,
                    grant: ch.grant,
                    packet: packet.clone(),
                    received_at,
                };
                if media.tx.try_send(d).is_ok() {
                    queued += 1;
                } else {
                    self.counters.packets_dropped += 1;
                }
            }
        }
        if !held {
            self.counters.packets_unauthorised += 1;
        }
        self.counters.packets_forwarded += queued as u64;
        self.counters.bytes_forwarded += (queued * packet.payload.len()) as u64;
        queued
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

    /// Shutdown: releases every floor (members told `floor.idle`) and asks every session to
    /// close with `code` and `reason`.
    pub fn close_all(&mut self, code: u16, reason: &str, now: Instant) {
        let holders: Vec<(String, ConnId)> = self
            .channels
            .iter()
            .filter_map(|(k, c)| c.floor.holder().map(|t| (k.clone(), t.id)))
            .collect();
        for (ch, id) in holders {
            let _ = self.floor_release(id, &ch, now);
        }
        for info in self.registry.all() {
            self.send(info.conn_id, Outbound::Close(code, reason.to_string()));
        }
    }
}

fn not_a_member(channel: &str) -> RpcError {
    RpcError::new(
        ErrorCode::NotAMember,
        format!("not a member of channel {channel}; join it first"),
    )
    .with_data(json!({"channelId": channel}))
}
