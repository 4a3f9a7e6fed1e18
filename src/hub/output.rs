//! What the hub decided, as typed values: the notifications to send, the sessions to close and
//! the audit entries to write. The shell (`crate::switchboard`) carries them out; the wire
//! JSON of a notification is rendered there, once, and the same bytes go to every recipient.

use super::registry::ConnId;
use crate::audit::Entry;
use crate::floor::RevokeReason;
use serde::Serialize;

/// A participant named in a notification (`{connId, userId, name}` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TalkerRef {
    /// Connection id of the participant.
    pub conn_id: ConnId,
    /// Its user id (empty once it left the registry).
    pub user_id: String,
    /// Its display name.
    pub name: String,
}

/// Why a floor was revoked, as the wire's `reason` code (PROTOCOL: `floor.revoke`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevokeCode {
    /// The time-out timer expired (`TIME_OUT`).
    TimeOut,
    /// A Dispatch talker took the floor (`PRE_EMPTED`, spec note 003).
    PreEmpted,
    /// An emergency broadcast took the floor (`EMERGENCY`, spec note 003).
    Emergency,
    /// The end-of-RTP-media timer (TS 24.380 T1) expired: no uplink audio (`MEDIA_TIMEOUT`).
    MediaTimeout,
}

impl RevokeCode {
    /// The code of a floor-control revoke reason.
    pub fn of(reason: &RevokeReason) -> Self {
        match reason {
            RevokeReason::TimeOut => Self::TimeOut,
            RevokeReason::PreEmpted { .. } => Self::PreEmpted,
            RevokeReason::Emergency { .. } => Self::Emergency,
            RevokeReason::MediaTimeout => Self::MediaTimeout,
        }
    }

    /// The wire string: `"TIME_OUT"`, `"PRE_EMPTED"`, `"EMERGENCY"` or `"MEDIA_TIMEOUT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TimeOut => "TIME_OUT",
            Self::PreEmpted => "PRE_EMPTED",
            Self::Emergency => "EMERGENCY",
            Self::MediaTimeout => "MEDIA_TIMEOUT",
        }
    }
}

/// A server notification (docs/PROTOCOL.md), typed. Each variant is one JSON-RPC method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `floor.granted {channelId, expiresInMs}` to the new holder (TS 24.380 Floor Granted).
    FloorGranted {
        /// The channel.
        channel: String,
        /// Remaining granted duration (time-out timer), ms.
        expires_in_ms: u64,
    },
    /// `floor.taken {channelId, talker}` to the other members (TS 24.380 Floor Taken).
    FloorTaken {
        /// The channel.
        channel: String,
        /// The new holder.
        talker: TalkerRef,
        /// Taken by an emergency broadcast (`"emergency": true` on the wire, absent
        /// otherwise; a linked site shows the upstream's broadcast from it, issue 16).
        emergency: bool,
    },
    /// `floor.revoke {channelId, reason, message}` to the holder that lost the floor.
    FloorRevoke {
        /// The channel.
        channel: String,
        /// The reason code.
        reason: RevokeCode,
        /// Human text ("Dispatch NAME has priority", spec note 003).
        message: String,
    },
    /// `floor.idle {channelId}` to every member (TS 24.380 Floor Idle).
    FloorIdle {
        /// The channel.
        channel: String,
    },
    /// `broadcast.started {by, channels}` to every session of the event.
    BroadcastStarted {
        /// The broadcasting Dispatch user.
        by: TalkerRef,
        /// Every channel the broadcast holds.
        channels: Vec<String>,
    },
    /// `broadcast.stopped {by, reason}` to every session of the event.
    BroadcastStopped {
        /// The broadcasting Dispatch user.
        by: TalkerRef,
        /// Why it ended (`"stopped"`, `"disconnected"`, `"time-out timer"`, ...).
        reason: String,
    },
    /// `permission.update {added, removed, channels, pending}` to a session whose permitted
    /// channels changed (spec notes 000, 002).
    PermissionUpdate {
        /// Channels newly permitted.
        added: Vec<String>,
        /// Channels no longer permitted.
        removed: Vec<String>,
        /// The whole permitted set now, sorted.
        channels: Vec<String>,
        /// Removed channels still joined because the session holds their floor.
        pending: Vec<String>,
    },
    /// `channel.removed {channelId, reason: "PERMISSION_REVOKED", deferred, message}`.
    ChannelRemoved {
        /// The channel left.
        channel: String,
        /// Whether the removal waited for the session's floor to end.
        deferred: bool,
    },
    /// `channel.link {channelId, link}`: a linked channel's state changed (issue 16):
    /// `"linked"` (the floor is decided at the upstream, everyone on it at every site hears
    /// each other) or `"site only"` (the upstream cannot be reached: only this site).
    ChannelLink {
        /// The channel.
        channel: String,
        /// `"linked"` or `"site only"`.
        link: &'static str,
    },
}

impl Notification {
    /// The JSON-RPC method name, e.g. `"floor.idle"`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::FloorGranted { .. } => "floor.granted",
            Self::FloorTaken { .. } => "floor.taken",
            Self::FloorRevoke { .. } => "floor.revoke",
            Self::FloorIdle { .. } => "floor.idle",
            Self::BroadcastStarted { .. } => "broadcast.started",
            Self::BroadcastStopped { .. } => "broadcast.stopped",
            Self::PermissionUpdate { .. } => "permission.update",
            Self::ChannelRemoved { .. } => "channel.removed",
            Self::ChannelLink { .. } => "channel.link",
        }
    }
}

/// One thing the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `note` to each of `to` (in this order).
    Notify {
        /// Recipients.
        to: Vec<ConnId>,
        /// The notification.
        note: Notification,
    },
    /// Close the participant's connection with a WebSocket close `code` and `reason`.
    Close {
        /// The participant.
        to: ConnId,
        /// WebSocket close code (e.g. 4003 forced, 1001 going away).
        code: u16,
        /// Close reason shown to the user.
        reason: String,
    },
    /// Write an audit entry (its `ts_ms` is 0: the shell stamps the wall clock).
    Audit(Entry),
    /// A talk spurt started or ended on a channel (for the recorder, issue 14).
    Spurt(SpurtEvent),
}

/// A talk spurt's start or end on one channel: from the floor grant to the release or revoke

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpurtEvent {
    /// `talker` was granted `channel`'s floor (a new spurt, not a repeated grant).
    Start {
        /// The talker's connection id.
        talker: ConnId,
        /// The channel.
        channel: String,
        /// The channel's event.
        event: String,
        /// The talker's user id.
        user_id: String,
        /// Its display name.
        name: String,
        /// Its role.
        role: crate::access::role::Role,
        /// Whether the grant is part of an emergency broadcast.
        emergency: bool,
    },
    /// The spurt of `talker` on `channel` ended.
    End {
        /// The talker's connection id.
        talker: ConnId,
        /// The channel.
        channel: String,
        /// How: `"release"`, `"disconnect"`, or the revoke code (`"TIME_OUT"`, `"PRE_EMPTED"`,
        /// `"EMERGENCY"`, `"MEDIA_TIMEOUT"`).
        reason: String,
    },
}
