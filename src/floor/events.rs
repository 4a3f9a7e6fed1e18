//! Floor control events and the reasons attached to deny and revoke.
//!
//! Terms follow 3GPP TS 24.380 (MCPTT floor control): floor granted, floor deny,
//! floor revoke, floor release, floor idle. The human texts for pre-emption come from
//! spec note 003 ("Dispatch priority rules").

use std::time::{Duration, Instant};

use super::{ParticipantId, Talker};

/// What a call on [`super::Floor`] decided; the caller turns each event into signaling
/// messages, audit records and media gating. Events are returned in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorEvent {
    /// Floor granted (TS 24.380 "Floor Granted") to `to`.
    ///
    /// `expires_at` is the end of the granted duration: `now + time_out_timer` for a new
    /// grant. A repeated request by the current holder is granted again with the
    /// *original* `expires_at` (the time-out timer is not extended).
    Granted {
        /// The talker now holding the floor.
        to: Talker,
        /// When the time-out timer revokes this grant (absolute virtual time).
        expires_at: Instant,
    },
    /// Floor deny (TS 24.380 "Floor Deny") sent to the requester; the floor is unchanged.
    Denied {
        /// The participant whose request was refused.
        to: ParticipantId,
        /// Why the request was refused.
        reason: DenyReason,
    },
    /// Floor revoke (TS 24.380 "Floor Revoke") sent to the previous holder; they must
    /// press PTT again (there is no automatic resume, spec note 003).
    Revoked {
        /// The talker who lost the floor.
        from: Talker,
        /// Why the floor was taken away.
        reason: RevokeReason,
    },
    /// The holder released the floor (TS 24.380 "Floor Release"), or was removed from the
    /// channel (left, disconnected or lost permission).
    Released {
        /// The talker who held the floor.
        by: Talker,
    },
    /// Floor idle (TS 24.380 "Floor Idle"), to be sent to every member of the channel.
    /// Emitted last, exactly when a call took the floor from taken to nobody holding it.
    Idle,
}

/// Why a floor request was refused (TS 24.380 "Floor Deny" reject cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The floor is taken by another talker of normal priority, and the requester has no
    /// pre-emptive priority (TS 24.380: floor taken, no queueing in this version).
    Busy {
        /// The current holder.
        holder: Talker,
    },
    /// The floor is held by a talker with pre-emptive priority (Dispatch). Dispatch is
    /// never pre-empted, not even by another Dispatch (spec note 003). Used for every
    /// requester, normal or pre-emptive, while a Dispatch holds the floor.
    DispatchHolds {
        /// The current (Dispatch) holder.
        holder: Talker,
    },
}

impl DenyReason {
    /// The talker holding the floor when the request was refused.
    pub fn holder(&self) -> &Talker {
        match self {
            DenyReason::Busy { holder } | DenyReason::DispatchHolds { holder } => holder,
        }
    }

    /// Human text for the requester: `"Floor taken by NAME"` or `"Dispatch NAME is talking"`.
    pub fn message(&self) -> String {
        match self {
            DenyReason::Busy { holder } => format!("Floor taken by {}", holder.name),
            DenyReason::DispatchHolds { holder } => format!("Dispatch {} is talking", holder.name),
        }
    }
}

/// Why the holder lost the floor (TS 24.380 "Floor Revoke" reject cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeReason {
    /// The time-out timer (TOT) expired: the granted duration is over.
    TimeOut,
    /// A talker with pre-emptive priority (Dispatch) took the floor (spec note 003).
    PreEmpted {
        /// The Dispatch talker who now holds the floor.
        by: Talker,
    },
    /// An emergency broadcast took every floor of the event (spec note 003).
    Emergency {
        /// The Dispatch talker broadcasting.
        by: Talker,
    },
    /// The end-of-RTP-media timer (3GPP TS 24.380 timer T1, "End of RTP media") expired: the
    /// holder's uplink RTP stopped (a phone that left Wi-Fi, a dead media path).
    MediaTimeout,
}

impl RevokeReason {
    /// Human text for the revoked talker: `"Time-out timer expired"` or exactly
    /// `"Dispatch NAME has priority"` (spec note 003). See
    /// [`RevokeReason::message_with_limit`] to include the time-out length.
    pub fn message(&self) -> String {
        match self {
            RevokeReason::TimeOut => "Time-out timer expired".to_string(),
            RevokeReason::PreEmpted { by } => format!("Dispatch {} has priority", by.name),
            RevokeReason::Emergency { by } => {
                format!("Emergency broadcast by Dispatch {}", by.name)
            }
            RevokeReason::MediaTimeout => {
                "No audio received from you (end-of-media timer)".to_string()
            }
        }
    }

    /// Like [`RevokeReason::message`], but `TimeOut` reads
    /// `"Time-out timer expired after N s"` where N is `time_out_timer` in whole seconds
    /// (pass [`super::FloorConfig::time_out_timer`]).
    pub fn message_with_limit(&self, time_out_timer: Duration) -> String {
        match self {
            RevokeReason::TimeOut => format!(
                "Time-out timer expired after {} s",
                time_out_timer.as_secs()
            ),
            RevokeReason::PreEmpted { .. }
            | RevokeReason::Emergency { .. }
            | RevokeReason::MediaTimeout => self.message(),
        }
    }
}
