//! The hub's one error type: why a participant's command was refused.

use super::output::TalkerRef;

/// Why the hub refused a command. The signaling shell maps each to a JSON-RPC error code
/// (docs/PROTOCOL.md); radio and console ports log them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The participant is not registered (it disconnected meanwhile).
    #[error("session not registered")]
    NotRegistered,
    /// The channel is not permitted to the participant, or belongs to another event.
    #[error("not permitted to use channel {channel}")]
    PermissionDenied {
        /// The channel asked for.
        channel: String,
    },
    /// The per-user channel limit is reached (spec note 000; ADMIN bypasses it).
    #[error("already in {joined} channels (limit {limit})")]
    TooManyChannels {
        /// Channels joined now.
        joined: usize,
        /// `channels.max_channels_per_user`.
        limit: usize,
    },
    /// The per-channel member limit is reached (spec note 000).
    #[error("channel {channel} is full ({limit} members)")]
    ChannelFull {
        /// The channel.
        channel: String,
        /// `channels.max_users_per_channel`.
        limit: usize,
    },
    /// The participant has not joined the channel.
    #[error("not a member of channel {channel}; join it first")]
    NotAMember {
        /// The channel.
        channel: String,
    },
    /// Floor deny (TS 24.380): someone else holds the floor.
    #[error("{message}")]
    FloorBusy {
        /// The channel.
        channel: String,
        /// The current holder.
        holder: TalkerRef,
        /// Human text ("Floor taken by NAME", "Dispatch NAME is talking").
        message: String,
    },
    /// The channel is linked to an upstream gateway (issue 16): its floor is decided there,
    /// through the link, not by this hub's own arbitration.
    #[error("channel {channel} is linked: its floor is decided at the upstream gateway")]
    Linked {
        /// The channel.
        channel: String,
    },
    /// `broadcast.start` without a preceding `broadcast.arm`.
    #[error("emergency broadcast not armed: send broadcast.arm when the button goes down")]
    BroadcastNotArmed,
    /// `broadcast.start` sooner than the hold time after `broadcast.arm` (spec note 003).
    #[error("emergency broadcast needs a {hold_ms} ms hold (held {held_ms} ms)")]
    HoldTooShort {
        /// How long the button was held, ms.
        held_ms: u64,
        /// The hold required (`dispatch.broadcast_hold_ms`), ms.
        hold_ms: u64,
    },
    /// Another Dispatch user's emergency broadcast is on in the event: Dispatch never
    /// pre-empts Dispatch (spec note 003).
    #[error("emergency broadcast by Dispatch {} is on", by.name)]
    BroadcastActive {
        /// Who is broadcasting.
        by: TalkerRef,
    },
}
