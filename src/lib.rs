//! radiogate: an embedded-first edge radio gateway.
//!
//! One process on a Raspberry Pi-class box runs WebSocket signaling with JWT roles, per-channel
//! push-to-talk floor control and a WebRTC audio SFU (see docs/PROTOCOL.md and
//! ../shared/DESIGN.md). Layout: PURE cores (time passed in, no I/O, tested with virtual time):
//! [`floor`] per-channel floor control and [`hub`] channels, membership, floors, broadcasts and
//! routes; the radio port timing machines in [`radio`]. Shells: [`signaling`] holds the
//! protocol, sessions and the switchboard that carries out the hub's decisions; [`sfu`] the
//! WebRTC peers, RTP rewriting and the lock-free route table; [`access`] verifies
//! tokens; [`permissions`] is the SQLite permission store; [`app`] and
//! [`server`] the lifecycle and HTTP routes; [`config`] the TOML configuration; [`web`] the
//! embedded browser client and HTTPS; [`ops`] metrics, systemd, logging and state checks.

// No unsafe code in the radiogate crate, and no allow can bring it back (Cargo.toml lints).
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod audit;
pub mod bridge;
pub mod clock;
pub mod config;
pub mod config_forms;
pub mod floor;
pub mod hub;
pub mod link;
pub mod media;
pub mod ops;
pub mod permissions;
pub mod radio;
pub mod recording;
pub mod server;
pub mod sfu;
pub mod signaling;
pub mod state;
pub mod switchboard;
pub mod web;
