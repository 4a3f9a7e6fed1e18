//! The wire form of the hub's typed notifications (docs/PROTOCOL.md), rendered once per
//! notification; every recipient gets the same bytes.

use crate::hub::Notification;
use axum::extract::ws::Utf8Bytes;
use serde_json::json;

/// A notification with its rendered JSON-RPC frame.
#[derive(Debug)]
pub struct Rendered {
    /// The typed notification (what in-process participants such as radio ports read).
    pub note: Notification,
    /// The JSON-RPC notification frame (what WebSocket sessions send).
    pub text: Utf8Bytes,
}

impl Rendered {
    /// Renders `note` once.
    pub fn new(note: Notification) -> Self {
        let text = render(&note).into();
        Self { note, text }
    }
}

/// The JSON-RPC notification frame of `note`.
pub fn render(note: &Notification) -> String {
    let params = match note {
        Notification::FloorGranted {
            channel,
            expires_in_ms,
        } => json!({"channelId": channel, "expiresInMs": expires_in_ms}),
        Notification::FloorTaken {
            channel,
            talker,
            emergency,
        } => {
            if *emergency {
                json!({"channelId": channel, "talker": talker, "emergency": true})
            } else {
                json!({"channelId": channel, "talker": talker})
            }
        }
        Notification::FloorRevoke {
            channel,
            reason,
            message,
        } => json!({"channelId": channel, "reason": reason.as_str(), "message": message}),
        Notification::FloorIdle { channel } => json!({"channelId": channel}),
        Notification::BroadcastStarted { by, channels } => {
            json!({"by": by, "channels": channels})
        }
        Notification::BroadcastStopped { by, reason } => json!({"by": by, "reason": reason}),
        Notification::PermissionUpdate {
            added,
            removed,
            channels,
            pending,
        } => json!({"added": added, "removed": removed, "channels": channels, "pending": pending}),
        Notification::ChannelRemoved { channel, deferred } => json!({
            "channelId": channel, "reason": "PERMISSION_REVOKED", "deferred": deferred,
            "message": format!("permission for channel {channel} was withdrawn")}),
        Notification::ChannelLink { channel, link } => {
            json!({"channelId": channel, "link": link})
        }
    };
    json!({"jsonrpc": "2.0", "method": note.method(), "params": params}).to_string()
}
