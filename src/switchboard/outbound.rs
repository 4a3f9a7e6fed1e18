//! What is queued for a participant's writer: replies, shared notifications, closes.

use super::notify::Rendered;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A message for a participant's writer (a WebSocket session, or a radio or console port).
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame made for this participant alone (a JSON-RPC reply).
    Frame(String),
    /// A hub notification, rendered once and shared by every recipient.
    Note(Arc<Rendered>),
    /// Close the WebSocket with this code and reason, then end the session.
    Close(u16, String),
}

/// Sending half of a participant's outbound queue.
pub type OutboundTx = mpsc::UnboundedSender<Outbound>;
