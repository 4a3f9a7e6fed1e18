//! radiogate: an embedded-first edge radio gateway.
//!
//! One process on a Raspberry Pi-class box runs WebSocket signaling with JWT roles, per-channel
//! push-to-talk floor control and a WebRTC audio SFU (see docs/PROTOCOL.md and
//! ../shared/DESIGN.md). Layout: [`floor`] is the pure floor-control core; [`access`] verifies
//! tokens; [`permissions`] is the SQLite permission store; [`signaling`] holds the protocol,
//! sessions, registry and hub; [`sfu`] the WebRTC peers and RTP rewriting; [`app`] and
//! [`server`] the lifecycle and HTTP routes; [`config`] the TOML configuration; [`web`] the
//! embedded browser client and HTTPS; [`ops`] metrics, systemd, logging and state checks.

// No unsafe code in the radiogate crate, and no allow can bring it back (Cargo.toml lints).
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod audit;
pub mod config;
pub mod floor;
pub mod ops;
pub mod permissions;
pub mod radio;
pub mod server;
pub mod sfu;
pub mod signaling;
pub mod web;
