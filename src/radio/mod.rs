//! Radio and console ports: the pure timing state machines ([`port`] for radios, [`console`]
//! for PTT-button consoles), their configuration ([`config`]), the hal devices they own
//! ([`devices`]) and the driver thread that turns the state machines' actions into I/O and
//! joins the hub as a participant ([`driver`]).

pub mod config;
pub mod console;
pub mod devices;
pub mod driver;
pub mod port;

pub use config::{ConsoleConfig, PortConfigError, RadioConfig};
pub use console::ConsolePort;
pub use driver::{unkey_all, PortStatus, Radios};
pub use port::{Action, CourtesyTone, Limiter, PortConfig, PortEvent, RadioPort, UnkeyReason};
