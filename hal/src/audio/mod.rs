//! Audio sources and sinks: the gateway side always sees 48 kHz mono `f32` samples in
//! `-1.0..=1.0`; backends convert from / to the card's native rate and channel count.
//!
//! Backends: [`CpalSource`] / [`CpalSink`] (a sound card through cpal; ALSA device by name),
//! [`SimSource`] / [`SimSink`] (in-memory, for tests) and [`WavSource`] / [`WavSink`] (files).
//! [`ReconnectingSource`] / [`ReconnectingSink`] reopen a lost card.

mod convert;
mod cpal_dev;
mod file;
mod sim;

use std::time::Instant;

pub use convert::{downmix, upmix, RateConverter};
pub use cpal_dev::{list_devices, CardInfo, CardOptions, CpalSink, CpalSource};
pub use file::{WavSink, WavSource};
pub use sim::{SimSink, SimSinkHandle, SimSource, SimSourceHandle};

use crate::error::{DeviceError, Retry};
use crate::reconnect::{Backoff, DeviceState, Reconnect};

/// The gateway's sample rate (Hz). Every source and sink exchanges samples at this rate, mono.
pub const RATE: u32 = 48_000;

/// Samples in one 20 ms frame at [`RATE`] (the Opus frame the gateway uses).
pub const FRAME: usize = (RATE / 50) as usize;

/// Captured audio. Implementations never block.
pub trait AudioSource: Send {
    /// Moves up to `out.len()` captured samples (48 kHz mono) into `out`; returns how many.
    /// `Ok(0)` means nothing new yet.
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError>;
    /// A short description for logs and status.
    fn describe(&self) -> String;
}

/// Audio to play. Implementations never block.
pub trait AudioSink: Send {
    /// Queues samples (48 kHz mono) for playback. When the queue is full the excess is dropped
    /// (and counted by the backend); playback starts at once.
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError>;
    /// Samples (at 48 kHz) queued and not yet handed to the card: the playback latency now.
    fn queued(&self) -> usize;
    /// Whether the card consumes what is written (a PulseAudio-backed PCM takes up to ~2 s
    /// after opening to start; audio written before then only piles up as latency).
    fn running(&self) -> bool {
        true
    }
    /// A short description for logs and status.
    fn describe(&self) -> String;
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        (**self).read(out)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<S: AudioSink + ?Sized> AudioSink for Box<S> {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        (**self).write(samples)
    }
    fn queued(&self) -> usize {
        (**self).queued()
    }
    fn running(&self) -> bool {
        (**self).running()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Errors of audio sources and sinks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// Opening or using the device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// No sound device has that name.
    #[error("no {direction} sound device named \"{name}\"; available: {available} (names from `aplay -L` / `arecord -L`; a PCM defined in ~/.asoundrc or /etc/asound.conf needs a `hint {{ show on description \"...\" }}` section to be listed)")]
    NoSuchDevice {
        /// The configured name.
        name: String,
        /// "capture" or "playback".
        direction: &'static str,
        /// The names that exist.
        available: String,
    },
    /// The device cannot run in the requested configuration.
    #[error("sound device \"{name}\" does not support {detail}")]
    Unsupported {
        /// The device name.
        name: String,
        /// What it does not support.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("audio file {path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The resampler could not be built or failed.
    #[error("resampler {from} Hz -> {to} Hz: {detail}")]
    Resampler {
        /// Input rate (Hz).
        from: u32,
        /// Output rate (Hz).
        to: u32,
        /// What went wrong.
        detail: String,
    },
}

impl Retry for AudioError {
    fn retryable(&self) -> bool {
        !matches!(
            self,
            AudioError::Unsupported { .. } | AudioError::Resampler { .. }
        )
    }
}

/// An audio source that is reopened after it fails. While down, reads return an error.
pub struct ReconnectingSource {
    inner: Reconnect<Box<dyn AudioSource>, AudioError>,
}

impl ReconnectingSource {
    /// Wraps an opener; the source is opened on the first read.
    pub fn new(
        what: impl Into<String>,
        backoff: Backoff,
        open: impl FnMut() -> Result<Box<dyn AudioSource>, AudioError> + Send + 'static,
    ) -> Self {
        ReconnectingSource {
            inner: Reconnect::new(what, backoff, open),
        }
    }
    /// Up or down with the last error.
    pub fn state(&self) -> DeviceState {
        self.inner.state()
    }
}

impl AudioSource for ReconnectingSource {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let now = Instant::now();
        let what = self.inner.what().to_string();
        let Some(dev) = self.inner.get(now) else {
            return Err(AudioError::Device(DeviceError::Down {
                what,
                last_error: self.inner.last_error().unwrap_or("not opened yet").into(),
            }));
        };
        dev.read(out).inspect_err(|e| self.inner.fail(now, e))
    }
    fn describe(&self) -> String {
        self.inner.what().to_string()
    }
}

/// An audio sink that is reopened after it fails. While down, writes return an error (the
/// audio is dropped).
pub struct ReconnectingSink {
    inner: Reconnect<Box<dyn AudioSink>, AudioError>,
}

impl ReconnectingSink {
    /// Wraps an opener; the sink is opened on the first write.
    pub fn new(
        what: impl Into<String>,
        backoff: Backoff,
        open: impl FnMut() -> Result<Box<dyn AudioSink>, AudioError> + Send + 'static,
    ) -> Self {
        ReconnectingSink {
            inner: Reconnect::new(what, backoff, open),
        }
    }
    /// Up or down with the last error.
    pub fn state(&self) -> DeviceState {
        self.inner.state()
    }

    /// Drops what is queued for playing by closing the card; it is reopened (at once) on the
    /// next write.
    pub fn reset(&mut self) {
        self.inner.close();
    }
}

impl AudioSink for ReconnectingSink {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let now = Instant::now();
        let what = self.inner.what().to_string();
        let Some(dev) = self.inner.get(now) else {
            return Err(AudioError::Device(DeviceError::Down {
                what,
                last_error: self.inner.last_error().unwrap_or("not opened yet").into(),
            }));
        };
        dev.write(samples).inspect_err(|e| self.inner.fail(now, e))
    }
    fn queued(&self) -> usize {
        self.inner.peek().map_or(0, |d| d.queued())
    }
    fn running(&self) -> bool {
        self.inner.peek().is_some_and(|d| d.running())
    }
    fn describe(&self) -> String {
        self.inner.what().to_string()
    }
}
