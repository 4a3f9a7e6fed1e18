//! Radio and console ports: the pure timing state machines ([`port`] for radios, [`console`]
//! for PTT-button consoles), their configuration ([`config`]), the hal devices they own
//! ([`devices`]). The driver threads that turn the state machines' actions into I/O and join
//! the hub as participants are the radio bridge, [`crate::bridge`].

pub mod config;
pub mod console;
pub mod devices;
pub mod port;

pub use config::{ConsoleConfig, PortConfigError, RadioConfig};
pub use console::ConsolePort;
pub use port::{Action, CourtesyTone, Limiter, PortConfig, PortEvent, RadioPort, UnkeyReason};
