//! SHELL. Signaling: the JSON-RPC protocol over WebSocket, sessions, the method matrix and the
//! admin methods. The hub's decisions reach sessions through [`crate::switchboard`].

pub mod admin;
pub mod methods;
pub mod protocol;
pub mod session;
pub mod stats;
pub mod writer;
