//! SHELL. Signaling: the JSON-RPC protocol over WebSocket, sessions, the method matrix, the
//! wire form of the hub's notifications, and the [`switchboard`] that carries out the pure
//! hub's decisions.

pub mod admin;
pub mod methods;
pub mod notify;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod stats;
pub mod switchboard;
