//! radiogate-hal: the hardware layer of the radiogate gateway.
//!
//! Three narrow traits, each with real and simulated backends:
//!
//! - [`ptt::PttOutput`]: key and unkey a transmitter. Backends: serial RTS/DTR
//!   ([`serial::SerialPtt`]), GPIO character device ([`gpio::GpioPtt`]), CM108/CM119 USB GPIO
//!   through hidraw ([`cm108::Cm108Ptt`]), CAT through hamlib's rigctld ([`cat::RigctldPtt`]),
//!   simulated ([`ptt::SimPtt`]). All unkey on drop.
//! - [`line::LineInput`]: a binary input (COS/squelch, PTT button), polled and debounced with
//!   [`line::Debouncer`]. Backends: serial CTS/DSR/DCD ([`serial::SerialLine`]), GPIO edge
//!   events ([`gpio::GpioLine`]), CM108 HID input ([`cm108::Cm108Line`]), VOX on the audio
//!   level ([`vox::VoxLine`]), simulated ([`line::SimLine`]).
//! - [`audio::AudioSource`] / [`audio::AudioSink`]: 48 kHz mono `f32` audio converted from / to
//!   the card's native rate and channels. Backends: cpal sound cards ([`audio::CpalSource`],
//!   [`audio::CpalSink`]), simulated and WAV files.
//!
//! Errors are typed per module and say what to fix ([`error::DeviceError`]); lost devices are
//! reopened with backoff by the [`reconnect`] wrappers (the serial device does it itself).
//! See hal/README.md for wiring diagrams and permissions.

pub mod audio;
pub mod cat;
pub mod cm108;
pub mod error;
pub mod gpio;
pub mod line;
pub mod memory;
pub mod ptt;
pub mod reconnect;
pub mod serial;
pub mod vox;

pub use audio::{AudioError, AudioSink, AudioSource, FRAME, RATE};
pub use error::{DeviceError, ModemLine};
pub use line::{Debouncer, LineError, LineInput};
pub use ptt::{Polarity, PttError, PttOutput};
pub use reconnect::{Backoff, DeviceState, ReconnectingLine, ReconnectingPtt};
