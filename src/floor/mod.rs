//! Per-channel floor control: a pure state machine (no I/O, no clock reads, no tokio).
//!
//! Terms follow 3GPP TS 24.380 (MCPTT floor control): floor request, floor granted, floor
//! deny, floor release, floor revoke, floor idle, floor taken, pre-emptive priority and
//! granted duration (our time-out timer). Dispatch pre-emption follows spec note 003
//! ("Dispatch priority rules").
//!
//! Rules implemented by [`Floor`]:
//! - One talker per channel. A request on an idle floor is granted for
//!   [`FloorConfig::time_out_timer`]. A request by the current holder is granted again with
//!   the original expiry (the time-out timer is not extended).
//! - A request while the floor is taken is denied ([`DenyReason::Busy`]), unless the
//!   requester has [`Priority::PreEmptive`] and the holder [`Priority::Normal`]: then the
//!   holder is revoked ([`RevokeReason::PreEmpted`]) and the requester granted. A
//!   pre-emptive holder is never pre-empted ([`DenyReason::DispatchHolds`], for any
//!   requester). ADMIN has [`Priority::Normal`].
//! - Release or removal of the holder frees the floor (`Released`, then `Idle`); release or
//!   removal of anybody else changes nothing and returns no events (a no-op, not an error).
//! - The time-out timer revokes a grant once `now >= expires_at` ([`RevokeReason::TimeOut`]).
//!   Every call applies it first, so no operation ever acts on an expired grant, even if
//!   [`Floor::tick`] was late.
//! - The end-of-RTP-media timer (TS 24.380 timer T1, [`FloorConfig::end_of_media_timer`])
//!   runs for a holder once armed ([`Floor::arm_end_of_media`], at the grant and again on each
//!   report of uplink RTP) and revokes the grant when it expires ([`RevokeReason::MediaTimeout`]).
//!   Only [`Floor::tick`] applies it: the caller reports the uplink media it has seen before
//!   each tick, so no command acts on a stale view of the media.
//! - Queued requests (TS 24.380 "queued request") are NOT implemented in this version: a
//!   refused request is simply denied and the requester must press again.
//!
//! Time is always passed in as `now` ([`Instant`]); callers must pass non-decreasing times.

mod events;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use events::{DenyReason, FloorEvent, RevokeReason};

/// Identifies a participant (a signaling connection or a radio port); assigned by the caller.
pub type ParticipantId = u64;

/// Floor priority of a participant (TS 24.380 floor priority, reduced to two levels).
///
/// GENERAL and ADMIN map to `Normal` (ADMIN has no talk priority, spec note 003);
/// DISPATCH maps to `PreEmptive`. Ordered: `Normal < PreEmptive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// No pre-emption: GENERAL and ADMIN users, radio ports.
    Normal,
    /// Pre-emptive priority: DISPATCH. Pre-empts `Normal` holders, never another `PreEmptive`.
    PreEmptive,
}

/// A participant asking for or holding the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Talker {
    /// Caller-assigned participant id.
    pub id: ParticipantId,
    /// Display name, used in the human texts ("Dispatch NAME has priority").
    pub name: String,
    /// Floor priority of this participant.
    pub priority: Priority,
}

/// Configuration of one channel's floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorConfig {
    /// Time-out timer (TOT): the granted duration of each grant, measured from the grant.
    /// Default 60 s.
    pub time_out_timer: Duration,
    /// End-of-RTP-media timer (TS 24.380 T1): an armed holder whose uplink media stops this
    /// long is revoked. `None`: off. Default 4 s.
    pub end_of_media_timer: Option<Duration>,
}

impl Default for FloorConfig {
    fn default() -> Self {
        FloorConfig {
            time_out_timer: Duration::from_secs(60),
            end_of_media_timer: Some(Duration::from_secs(4)),
        }
    }
}

/// Snapshot of a floor (TS 24.380 "floor idle" / "floor taken").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorState {
    /// Nobody holds the floor.
    Idle,
    /// The floor is taken.
    Taken {
        /// The holder's participant id.
        holder: ParticipantId,
        /// When the current grant started (re-grants to the holder keep it).
        granted_at: Instant,
        /// When the time-out timer revokes the grant: `granted_at + time_out_timer`.
        expires_at: Instant,
    },
}

/// The current grant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    talker: Talker,
    granted_at: Instant,
    expires_at: Instant,
    /// When T1 expires, if armed.
    media_deadline: Option<Instant>,
}

/// Floor control of one channel. Each operation returns the [`FloorEvent`]s it caused, in
/// order; the floor itself never sends anything.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    cfg: FloorConfig,
    grant: Option<Grant>,
}

impl Floor {
    /// An idle floor with the given configuration.
    pub fn new(cfg: FloorConfig) -> Self {
        Floor { cfg, grant: None }
    }

    /// The configuration this floor was built with.
    pub fn config(&self) -> FloorConfig {
        self.cfg
    }

    /// The current holder, if the floor is taken. May be a holder whose grant has expired
    /// but who has not been revoked yet because [`Floor::tick`] was not called.
    pub fn holder(&self) -> Option<&Talker> {
        self.grant.as_ref().map(|g| &g.talker)
    }

    /// Whether `who` currently holds the floor.
    pub fn is_holder(&self, who: ParticipantId) -> bool {
        self.holder().is_some_and(|t| t.id == who)
    }

    /// Idle, or taken with the holder's id, grant start and expiry.
    pub fn state(&self) -> FloorState {
        match &self.grant {
            None => FloorState::Idle,
            Some(g) => FloorState::Taken {
                holder: g.talker.id,
                granted_at: g.granted_at,
                expires_at: g.expires_at,
            },
        }
    }

    /// Floor request (TS 24.380) by `who` at `now`.
    ///
    /// Returns `[Granted]` on an idle floor or for the current holder (re-grant with the
    /// original expiry; `who`'s name and priority replace the stored ones);
    /// `[Revoked{PreEmpted}, Granted]` when a pre-emptive requester meets a normal holder
    /// (spec note 003); `[Denied]` otherwise. An expired grant is first revoked
    /// (`Revoked{TimeOut}`), after which the request finds the floor free.
    pub fn request(&mut self, who: Talker, now: Instant) -> Vec<FloorEvent> {
        let mut events = Vec::new();
        self.expire(now, &mut events);
        let decision = match &mut self.grant {
            None => None,
            Some(g) if g.talker.id == who.id => {
                g.talker = who.clone();
                events.push(FloorEvent::Granted {
                    to: who,
                    expires_at: g.expires_at,
                });
                return events;
            }
            Some(g) => Some((g.talker.clone(), g.talker.priority)),
        };
        match decision {
            None => self.grant_to(who, now, &mut events),
            Some((holder, Priority::PreEmptive)) => events.push(FloorEvent::Denied {
                to: who.id,
                reason: DenyReason::DispatchHolds { holder },
            }),
            Some((holder, Priority::Normal)) => {
                if who.priority == Priority::PreEmptive {
                    events.push(FloorEvent::Revoked {
                        from: holder,
                        reason: RevokeReason::PreEmpted { by: who.clone() },
                    });
                    self.grant_to(who, now, &mut events);
                } else {
                    events.push(FloorEvent::Denied {
                        to: who.id,
                        reason: DenyReason::Busy { holder },
                    });
                }
            }
        }
        events
    }

    /// Emergency override (spec note 003, emergency broadcast): `who` takes the floor whatever
    /// the holder's priority. Returns `[Revoked{Emergency}, Granted]` when someone else holds
    /// it, `[Granted]` (a fresh grant with a new expiry) otherwise. The caller restricts this
    /// to the emergency broadcast of a DISPATCH user.
    pub fn emergency_grant(&mut self, who: Talker, now: Instant) -> Vec<FloorEvent> {
        let mut events = Vec::new();
        self.expire(now, &mut events);
        if let Some(g) = self.grant.take() {
            if g.talker.id != who.id {
                events.push(FloorEvent::Revoked {
                    from: g.talker,
                    reason: RevokeReason::Emergency { by: who.clone() },
                });
            }
        }
        self.grant_to(who, now, &mut events);
        events
    }

    /// A grant decided elsewhere: a linked channel's floor is decided at the upstream gateway
    /// (issue 16), and this floor mirrors it. `who` takes the floor whatever the holder's
    /// priority; another holder is revoked as pre-empted by `who` (`emergency`: by an
    /// emergency broadcast). Returns `[Revoked, Granted]` or `[Granted]`, like
    /// [`Floor::emergency_grant`].
    pub fn decided_grant(&mut self, who: Talker, emergency: bool, now: Instant) -> Vec<FloorEvent> {
        let mut events = Vec::new();
        self.expire(now, &mut events);
        if let Some(g) = self.grant.take() {
            if g.talker.id != who.id {
                let by = who.clone();
                let reason = if emergency {
                    RevokeReason::Emergency { by }
                } else {
                    RevokeReason::PreEmpted { by }
                };
                events.push(FloorEvent::Revoked {
                    from: g.talker,
                    reason,
                });
            }
        }
        self.grant_to(who, now, &mut events);
        events
    }

    /// A revoke decided elsewhere (the upstream of a linked channel, issue 16): the holder
    /// loses the floor with `reason` (`TimeOut` or `MediaTimeout` as the upstream said);
    /// `[Revoked, Idle]`, or no events when the floor is idle.
    pub fn decided_revoke(&mut self, reason: RevokeReason, now: Instant) -> Vec<FloorEvent> {
        let mut events = Vec::new();
        self.expire(now, &mut events);
        if let Some(g) = self.grant.take() {
            events.push(FloorEvent::Revoked {
                from: g.talker,
                reason,
            });
        }
        self.push_idle_if_freed(&mut events);
        events
    }

    /// Floor release (TS 24.380) by `who` at `now`: `[Released, Idle]` if `who` holds the
    /// floor; no events (a no-op) if not. An expired grant is revoked first
    /// (`[Revoked{TimeOut}, Idle]`).
    pub fn release(&mut self, who: ParticipantId, now: Instant) -> Vec<FloorEvent> {
        self.drop_holder(who, now)
    }

    /// Member `who` left the channel, disconnected or lost permission: frees the floor if
    /// held (`[Released, Idle]`), otherwise no events. Afterwards `who` does not hold the
    /// floor. An expired grant is revoked first (`[Revoked{TimeOut}, Idle]`).
    pub fn remove_participant(&mut self, who: ParticipantId, now: Instant) -> Vec<FloorEvent> {
        self.drop_holder(who, now)
    }

    /// The timers: `[Revoked{TimeOut}, Idle]` when the floor is taken and
    /// `now >= expires_at`; `[Revoked{MediaTimeout}, Idle]` when the end-of-media timer is
    /// armed and has expired; no events otherwise. Call it at [`Floor::next_deadline`].
    pub fn tick(&mut self, now: Instant) -> Vec<FloorEvent> {
        let mut events = Vec::new();
        self.expire(now, &mut events);
        if self
            .grant
            .as_ref()
            .and_then(|g| g.media_deadline)
            .is_some_and(|d| now >= d)
        {
            if let Some(g) = self.grant.take() {
                events.push(FloorEvent::Revoked {
                    from: g.talker,
                    reason: RevokeReason::MediaTimeout,
                });
            }
        }
        self.push_idle_if_freed(&mut events);
        events
    }

    /// (Re)starts the end-of-media timer of holder `who`: uplink media was seen at `at` (the
    /// grant's start if earlier), so T1 expires no sooner than `at + T1`. Never shortens a
    /// running T1. No-op when `who` does not hold the floor or T1 is off.
    pub fn arm_end_of_media(&mut self, who: ParticipantId, at: Instant) {
        let Some(t1) = self.cfg.end_of_media_timer else {
            return;
        };
        if let Some(g) = self.grant.as_mut().filter(|g| g.talker.id == who) {
            let d = deadline(at.max(g.granted_at), t1);
            g.media_deadline = Some(g.media_deadline.map_or(d, |old| old.max(d)));
        }
    }

    /// When [`Floor::tick`] must next be called: the earlier of the grant's expiry and its
    /// armed end-of-media timer, `None` when idle.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.grant.as_ref().map(|g| match g.media_deadline {
            Some(m) => m.min(g.expires_at),
            None => g.expires_at,
        })
    }

    fn drop_holder(&mut self, who: ParticipantId, now: Instant) -> Vec<FloorEvent> {
        let mut events = Vec::new();
        self.expire(now, &mut events);
        if self.is_holder(who) {
            if let Some(g) = self.grant.take() {
                events.push(FloorEvent::Released { by: g.talker });
            }
        }
        self.push_idle_if_freed(&mut events);
        events
    }

    /// Revokes the grant if its time-out timer has expired at `now`.
    fn expire(&mut self, now: Instant, events: &mut Vec<FloorEvent>) {
        if self.grant.as_ref().is_some_and(|g| now >= g.expires_at) {
            if let Some(g) = self.grant.take() {
                events.push(FloorEvent::Revoked {
                    from: g.talker,
                    reason: RevokeReason::TimeOut,
                });
            }
        }
    }

    /// Appends `Idle` when this call freed the floor (any `Released`/`Revoked` emitted and
    /// nobody holds it now).
    fn push_idle_if_freed(&self, events: &mut Vec<FloorEvent>) {
        let freed = events
            .iter()
            .any(|e| matches!(e, FloorEvent::Released { .. } | FloorEvent::Revoked { .. }));
        if freed && self.grant.is_none() {
            events.push(FloorEvent::Idle);
        }
    }

    fn grant_to(&mut self, who: Talker, now: Instant, events: &mut Vec<FloorEvent>) {
        let expires_at = deadline(now, self.cfg.time_out_timer);
        events.push(FloorEvent::Granted {
            to: who.clone(),
            expires_at,
        });
        self.grant = Some(Grant {
            talker: who,
            granted_at: now,
            expires_at,
            media_deadline: None,
        });
    }
}

/// `now + d`, clamped (by halving `d`) if that would overflow `Instant`, so an absurd
/// time-out timer never panics.
fn deadline(now: Instant, mut d: Duration) -> Instant {
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}
