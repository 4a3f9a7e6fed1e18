//! Radio and console ports: the pure timing state machine ([`port`]); the driver over
//! radiogate-hal that owns the PTT output, squelch line and sound card joins later.

pub mod port;

pub use port::{Action, CourtesyTone, Limiter, PortConfig, PortEvent, RadioPort, UnkeyReason};
