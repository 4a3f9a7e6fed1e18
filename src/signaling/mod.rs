//! Signaling: the JSON-RPC protocol over WebSocket, sessions, the connection registry and the
//! hub that routes floor control and media between them.

pub mod admin;
pub mod hub;
pub mod methods;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod stats;
