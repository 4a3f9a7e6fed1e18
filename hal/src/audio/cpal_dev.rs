//! Sound cards through cpal (ALSA on Linux), opened by device name at their native rate and
//! channel count. The audio callback only moves samples between the card and a lock-free ring
//! buffer (ringbuf); conversion to / from 48 kHz mono happens in `read` / `write`, outside the
//! callback. cpal streams are not `Send` on every platform, so each stream lives on its own
//! small thread that ends when the source or sink is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::convert::{downmix, upmix, RateConverter};
use super::{AudioError, AudioSink, AudioSource, RATE};
use crate::error::DeviceError;

/// How to open a card. `None` fields use the card's default (native) configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOptions {
    /// Sample rate (Hz) to open the card at.
    pub rate: Option<u32>,
    /// Channel count to open the card with (mono is taken as the average of all channels and
    /// played on all of them).
    pub channels: Option<u16>,
    /// Hardware period (ms): the callback interval and so the card-side latency.
    pub period_ms: u32,
    /// Ring buffer capacity (ms) between the callback and the gateway.
    pub buffer_ms: u32,
}

impl Default for CardOptions {
    /// Native rate and channels, 10 ms period, 2000 ms ring buffer.
    fn default() -> Self {
        CardOptions {
            rate: None,
            channels: None,
            period_ms: 10,
            buffer_ms: 2000,
        }
    }
}

/// What a card was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInfo {
    /// The device name as configured.
    pub name: String,
    /// The card's sample rate (Hz).
    pub rate: u32,
    /// The card's channel count.
    pub channels: u16,
    /// The card's sample format (e.g. `i16`, `f32`).
    pub format: String,
}

/// The names of the sound devices cpal can open (ALSA PCM names), for error messages and
/// `check-config`.
pub fn list_devices() -> Vec<String> {
    let host = cpal::default_host();
    match host.devices() {
        Ok(devs) => devs
            .filter_map(|d| d.id().ok().map(|id| id.id().to_string()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn map_cpal(name: &str, e: &cpal::Error) -> AudioError {
    use cpal::ErrorKind as K;
    match e.kind() {
        K::DeviceNotAvailable => AudioError::Device(DeviceError::NotFound { path: name.into() }),
        K::PermissionDenied => AudioError::Device(DeviceError::permission(name)),
        K::DeviceBusy => AudioError::Device(DeviceError::Busy { path: name.into() }),
        K::UnsupportedConfig | K::InvalidInput | K::UnsupportedOperation => {
            AudioError::Unsupported {
                name: name.into(),
                detail: e.to_string(),
            }
        }
        K::StreamInvalidated => AudioError::Device(DeviceError::Lost {
            path: name.into(),
            detail: e.to_string(),
        }),
        _ => AudioError::Device(DeviceError::Other {
            path: name.into(),
            detail: e.to_string(),
        }),
    }
}

fn find_device(host: &cpal::Host, name: &str, input: bool) -> Result<cpal::Device, AudioError> {
    let direction = if input { "capture" } else { "playback" };
    if name.is_empty() || name == "default" {
        let d = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return d.ok_or_else(|| AudioError::NoSuchDevice {
            name: "default".into(),
            direction,
            available: list_devices().join(", "),
        });
    }
    let devices = host.devices().map_err(|e| map_cpal(name, &e))?;
    let mut available = Vec::new();
    for d in devices {
        let id = d.id().ok().map(|i| i.id().to_string()).unwrap_or_default();
        let desc = d
            .description()
            .ok()
            .map(|x| x.name().to_string())
            .unwrap_or_default();
        if id == name || desc == name {
            return Ok(d);
        }
        available.push(id);
    }
    Err(AudioError::NoSuchDevice {
        name: name.into(),
        direction,
        available: available.join(", "),
    })
}

/// Failure state shared with the error callback.
#[derive(Debug, Default)]
struct Health {
    failed: AtomicBool,
    message: Mutex<Option<String>>,
    xruns: AtomicU64,
    /// Data callbacks so far (one relaxed atomic add per callback).
    callbacks: AtomicU64,
    /// Samples (all channels) the card asked for or delivered so far.
    samples: AtomicU64,
    /// Since when errors come with no data callback in between (and the callback count then).
    stall: Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long stream errors may go on with no data callback before the device counts as lost
/// (a PulseAudio-backed PCM reports EIO for up to ~2 s while its server stream starts).
const STALL_LOST: Duration = Duration::from_secs(5);

impl Health {
    fn on_error(&self, e: cpal::Error) {
        use cpal::ErrorKind as K;
        if e.kind() == K::Xrun {
            self.xruns.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // cpal's ALSA worker stops only on these; other errors (e.g. EIO from the pulse plugin
        // while its server stream starts) are transient and the stream goes on.
        let fatal = matches!(e.kind(), K::DeviceNotAvailable | K::StreamInvalidated);
        let cbs = self.callbacks.load(Ordering::Relaxed);
        let now = std::time::Instant::now();
        let stalled_for = match self.stall.lock() {
            Ok(mut st) => match *st {
                Some((since, at)) if at == cbs => now.saturating_duration_since(since),
                _ => {
                    *st = Some((now, cbs));
                    Duration::ZERO
                }
            },
            Err(_) => Duration::ZERO,
        };
        if let Ok(mut m) = self.message.lock() {
            *m = Some(e.to_string());
        }
        if fatal || stalled_for >= STALL_LOST {
            self.failed.store(true, Ordering::SeqCst);
        } else {
            tracing::debug!(error = %e, "transient audio stream error");
        }
    }

    fn check(&self, name: &str) -> Result<(), AudioError> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let detail = self
            .message
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .unwrap_or_else(|| "stream error".into());
        Err(AudioError::Device(DeviceError::Lost {
            path: name.into(),
            detail,
        }))
    }
}

type Build = Box<
    dyn FnOnce(
            &cpal::Device,
            &StreamConfig,
            SampleFormat,
            Arc<Health>,
        ) -> Result<cpal::Stream, cpal::Error>
        + Send,
>;

struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the card on a thread that owns the stream; returns once it plays (or failed).
fn start(
    name: &str,
    input: bool,
    opts: &CardOptions,
    health: Arc<Health>,
    make: impl FnOnce(CardInfo) -> Build + Send + 'static,
) -> Result<(CardInfo, StreamThread), AudioError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<CardInfo, AudioError>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let name_s = name.to_string();
    let opts = opts.clone();
    let thread = std::thread::Builder::new()
        .name(format!("audio-{}", if input { "in" } else { "out" }))
        .spawn(move || {
            let name = name_s;
            let opened = (|| {
                let host = cpal::default_host();
                let dev = find_device(&host, &name, input)?;
                let def = if input {
                    dev.default_input_config()
                } else {
                    dev.default_output_config()
                }
                .map_err(|e| map_cpal(&name, &e))?;
                let format = def.sample_format();
                let rate = opts.rate.unwrap_or(def.sample_rate());
                let channels = opts.channels.unwrap_or(def.channels()).max(1);
                let info = CardInfo {
                    name: name.clone(),
                    rate,
                    channels,
                    format: format.to_string(),
                };
                let build = make(info.clone());
                let period = (rate * opts.period_ms.max(1) / 1000).max(32);
                let cfg = StreamConfig {
                    channels,
                    sample_rate: rate,
                    buffer_size: BufferSize::Fixed(period),
                };
                let stream = build(&dev, &cfg, format, health).map_err(|e| map_cpal(&name, &e))?;
                stream.play().map_err(|e| map_cpal(&name, &e))?;
                Ok((info, stream))
            })();
            match opened {
                Ok((info, stream)) => {
                    let _ = ready_tx.send(Ok(info));
                    // Keep the stream alive until the owner drops the stop sender.
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| {
            AudioError::Device(DeviceError::Other {
                path: name.into(),
                detail: format!("cannot start the audio thread: {e}"),
            })
        })?;
    let res = ready_rx.recv_timeout(Duration::from_secs(10));
    let st = StreamThread {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match res {
        Ok(Ok(info)) => Ok((info, st)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AudioError::Device(DeviceError::Other {
            path: name.into(),
            detail: "the sound device did not start within 10 s".into(),
        })),
    }
}

fn input_stream<T>(
    dev: &cpal::Device,
    cfg: &StreamConfig,
    mut prod: HeapProd<f32>,
    health: Arc<Health>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let h2 = health.clone();
    dev.build_input_stream::<T, _, _>(
        *cfg,
        move |data: &[T], _| {
            // Real-time: no allocation, no locks; an overrun drops the newest samples.
            h2.callbacks.fetch_add(1, Ordering::Relaxed);
            let n = prod.push_iter(data.iter().map(|s| f32::from_sample(*s)));
            if n < data.len() {
                h2.xruns.fetch_add(1, Ordering::Relaxed);
            }
        },
        move |e| health.on_error(e),
        None,
    )
}

fn output_stream<T>(
    dev: &cpal::Device,
    cfg: &StreamConfig,
    mut cons: HeapCons<f32>,
    health: Arc<Health>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let h2 = health.clone();
    dev.build_output_stream::<T, _, _>(
        *cfg,
        move |data: &mut [T], _| {
            h2.callbacks.fetch_add(1, Ordering::Relaxed);
            h2.samples.fetch_add(data.len() as u64, Ordering::Relaxed);
            // Real-time: no allocation, no locks; an underrun plays silence.
            for s in data.iter_mut() {
                *s = match cons.try_pop() {
                    Some(v) => T::from_sample(v),
                    None => T::EQUILIBRIUM,
                };
            }
        },
        move |e| health.on_error(e),
        None,
    )
}

fn unsupported(format: SampleFormat) -> cpal::Error {
    cpal::Error::with_message(
        cpal::ErrorKind::UnsupportedConfig,
        format!("sample format {format}"),
    )
}

/// Capture from a sound card, delivered as 48 kHz mono.
pub struct CpalSource {
    info: CardInfo,
    cons: HeapCons<f32>,
    health: Arc<Health>,
    conv: RateConverter,
    raw: Vec<f32>,
    mono: Vec<f32>,
    ready: VecDeque<f32>,
    _thread: StreamThread,
}

impl CpalSource {
    /// Opens capture device `name` (an ALSA PCM name such as `plughw:CARD=Device,DEV=0`,
    /// `default`, or a PCM from asoundrc) and starts capturing.
    pub fn open(name: &str, opts: &CardOptions) -> Result<Self, AudioError> {
        let health = Arc::new(Health::default());
        let (prod_tx, prod_rx) = mpsc::channel::<HeapCons<f32>>();
        let buffer_ms = opts.buffer_ms.max(100);
        let (info, thread) = start(name, true, opts, health.clone(), move |info| {
            let cap =
                (info.rate as usize * info.channels as usize * buffer_ms as usize / 1000).max(1024);
            let (prod, cons) = HeapRb::<f32>::new(cap).split();
            let _ = prod_tx.send(cons);
            Box::new(move |dev, cfg, format, health| match format {
                SampleFormat::F32 => input_stream::<f32>(dev, cfg, prod, health),
                SampleFormat::I16 => input_stream::<i16>(dev, cfg, prod, health),
                SampleFormat::I32 => input_stream::<i32>(dev, cfg, prod, health),
                SampleFormat::U16 => input_stream::<u16>(dev, cfg, prod, health),
                SampleFormat::U8 => input_stream::<u8>(dev, cfg, prod, health),
                other => Err(unsupported(other)),
            })
        })?;
        let cons = prod_rx.recv().map_err(|_| {
            AudioError::Device(DeviceError::Other {
                path: name.into(),
                detail: "audio thread ended".into(),
            })
        })?;
        let conv = RateConverter::new(info.rate, RATE)?;
        Ok(CpalSource {
            raw: Vec::with_capacity(cons.capacity().get()),
            mono: Vec::with_capacity(cons.capacity().get()),
            ready: VecDeque::with_capacity(RATE as usize),
            info,
            cons,
            health,
            conv,
            _thread: thread,
        })
    }

    /// What the card was opened with.
    pub fn info(&self) -> &CardInfo {
        &self.info
    }

    /// Overruns and other xruns counted so far.
    pub fn xruns(&self) -> u64 {
        self.health.xruns.load(Ordering::Relaxed)
    }
}

impl AudioSource for CpalSource {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        self.health.check(&self.info.name)?;
        let ch = self.info.channels as usize;
        let avail = self.cons.occupied_len() / ch * ch;
        if avail > 0 {
            self.raw.resize(avail, 0.0);
            let n = self.cons.pop_slice(&mut self.raw[..]);
            self.raw.truncate(n);
            self.mono.clear();
            downmix(&self.raw, ch, &mut self.mono);
            self.raw.clear();
            self.conv.process(&self.mono, &mut self.raw)?;
            self.ready.extend(self.raw.iter().copied());
        }
        let n = out.len().min(self.ready.len());
        for (o, s) in out.iter_mut().zip(self.ready.drain(..n)) {
            *o = s;
        }
        Ok(n)
    }
    fn describe(&self) -> String {
        format!(
            "sound capture {} ({} Hz, {} ch, {})",
            self.info.name, self.info.rate, self.info.channels, self.info.format
        )
    }
}

/// Playback to a sound card, fed with 48 kHz mono.
pub struct CpalSink {
    info: CardInfo,
    prod: HeapProd<f32>,
    health: Arc<Health>,
    conv: RateConverter,
    card: Vec<f32>,
    frames: Vec<f32>,
    dropped: u64,
    _thread: StreamThread,
}

impl CpalSink {
    /// Opens playback device `name` (see [`CpalSource::open`]) and starts playing silence.
    pub fn open(name: &str, opts: &CardOptions) -> Result<Self, AudioError> {
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel::<HeapProd<f32>>();
        let buffer_ms = opts.buffer_ms.max(100);
        let (info, thread) = start(name, false, opts, health.clone(), move |info| {
            let cap =
                (info.rate as usize * info.channels as usize * buffer_ms as usize / 1000).max(1024);
            let (prod, cons) = HeapRb::<f32>::new(cap).split();
            let _ = tx.send(prod);
            Box::new(move |dev, cfg, format, health| match format {
                SampleFormat::F32 => output_stream::<f32>(dev, cfg, cons, health),
                SampleFormat::I16 => output_stream::<i16>(dev, cfg, cons, health),
                SampleFormat::I32 => output_stream::<i32>(dev, cfg, cons, health),
                SampleFormat::U16 => output_stream::<u16>(dev, cfg, cons, health),
                SampleFormat::U8 => output_stream::<u8>(dev, cfg, cons, health),
                other => Err(unsupported(other)),
            })
        })?;
        let prod = rx.recv().map_err(|_| {
            AudioError::Device(DeviceError::Other {
                path: name.into(),
                detail: "audio thread ended".into(),
            })
        })?;
        let conv = RateConverter::new(RATE, info.rate)?;
        Ok(CpalSink {
            info,
            prod,
            health,
            conv,
            card: Vec::with_capacity(RATE as usize),
            frames: Vec::with_capacity(RATE as usize * 2),
            dropped: 0,
            _thread: thread,
        })
    }

    /// What the card was opened with.
    pub fn info(&self) -> &CardInfo {
        &self.info
    }

    /// Samples (card rate, all channels) dropped because the ring buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Underruns and other xruns counted so far.
    pub fn xruns(&self) -> u64 {
        self.health.xruns.load(Ordering::Relaxed)
    }
}

impl AudioSink for CpalSink {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        self.health.check(&self.info.name)?;
        self.card.clear();
        self.conv.process(samples, &mut self.card)?;
        self.frames.clear();
        upmix(&self.card, self.info.channels as usize, &mut self.frames);
        let n = self.prod.push_slice(&self.frames);
        self.dropped += (self.frames.len() - n) as u64;
        Ok(())
    }
    fn queued(&self) -> usize {
        let frames = self.prod.occupied_len() / self.info.channels as usize;
        (frames as u64 * u64::from(RATE) / u64::from(self.info.rate)) as usize
    }
    fn running(&self) -> bool {
        // The first data callbacks (a prefill) may come before a PulseAudio-backed stream
        // really runs: running once the card has taken 500 ms of samples.
        let half_second = u64::from(self.info.rate) * u64::from(self.info.channels) / 2;
        self.health.samples.load(Ordering::Relaxed) >= half_second
    }
    fn describe(&self) -> String {
        format!(
            "sound playback {} ({} Hz, {} ch, {})",
            self.info.name, self.info.rate, self.info.channels, self.info.format
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_device_lists_the_names() {
        match CpalSource::open("radiogate-no-such-pcm", &CardOptions::default()) {
            Err(AudioError::NoSuchDevice {
                name, direction, ..
            }) => {
                assert_eq!(name, "radiogate-no-such-pcm");
                assert_eq!(direction, "capture");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("opened a device that does not exist"),
        }
    }
}
