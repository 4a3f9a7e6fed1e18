//! Opening a port's hal devices from its configuration, each behind a reconnect wrapper so a
//! lost device is retried (1, 2, 4 ... 30 s) without restarting the gateway; the simulated
//! devices' handles for tests; and the direct unkey used by `radiogate unkey` and the panic
//! hook.

use super::config::{AudioConfig, AudioKind, LineConfig, LineKind, PttConfig, PttKind};
use parking_lot::Mutex;
use radiogate_hal::audio::{
    CardOptions, CpalSink, CpalSource, ReconnectingSink, ReconnectingSource, SimSink,
    SimSinkHandle, SimSource, SimSourceHandle, WavSink, WavSource,
};
use radiogate_hal::cat::RigctldPtt;
use radiogate_hal::cm108::{Cm108Line, Cm108Ptt};
use radiogate_hal::gpio::{GpioLine, GpioLineId, GpioPtt};
use radiogate_hal::line::{DebouncedLine, SimLine, SimLineHandle};
use radiogate_hal::ptt::{SimPtt, SimPttHandle};
use radiogate_hal::serial::{SerialDevice, SerialLine, SerialPtt};
use radiogate_hal::vox::{Vox, VoxConfig};
use radiogate_hal::{
    AudioSink, AudioSource, Backoff, LineError, LineInput, ModemLine, Polarity, PttError,
    PttOutput, ReconnectingLine, ReconnectingPtt,
};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A PTT output of any backend.
pub type AnyPtt = ReconnectingPtt<Box<dyn PttOutput>>;
/// A debounced line input of any backend.
pub type AnyLine = DebouncedLine<ReconnectingLine<Box<dyn LineInput>>>;

type PttOpener = Box<dyn FnMut() -> Result<Box<dyn PttOutput>, PttError> + Send>;
type LineOpener = Box<dyn FnMut() -> Result<Box<dyn LineInput>, LineError> + Send>;

/// A port's devices, each optional.
pub struct Devices {
    /// The PTT output.
    pub ptt: Option<AnyPtt>,
    /// The squelch line or PTT button.
    pub line: Option<AnyLine>,
    /// The VOX detector fed with the captured audio (when the line is VOX).
    pub vox: Option<Vox>,
    /// Capture (radio receiver or console microphone).
    pub source: Option<ReconnectingSource>,
    /// Playback (radio transmitter audio or console speaker).
    pub sink: Option<ReconnectingSink>,
}

/// Handles on a port's simulated devices (`type = "sim"`), for tests and benchmarks running
/// the gateway in-process.
#[derive(Debug, Clone, Default)]
pub struct SimHandles {
    /// The simulated PTT's record.
    pub ptt: Option<SimPttHandle>,
    /// Drives the simulated squelch line / button.
    pub line: Option<SimLineHandle>,
    /// Feeds the simulated capture.
    pub source: Option<SimSourceHandle>,
    /// Reads the simulated playback.
    pub sink: Option<SimSinkHandle>,
}

fn sims() -> &'static Mutex<HashMap<String, SimHandles>> {
    static SIMS: OnceLock<Mutex<HashMap<String, SimHandles>>> = OnceLock::new();
    SIMS.get_or_init(Default::default)
}

/// The simulated devices of the port named `port`, once it has started.
pub fn sim_handles(port: &str) -> Option<SimHandles> {
    sims().lock().get(port).cloned()
}

fn modem_line(name: &str) -> Option<ModemLine> {
    Some(match name.to_ascii_uppercase().as_str() {
        "RTS" => ModemLine::Rts,
        "DTR" => ModemLine::Dtr,
        "CTS" => ModemLine::Cts,
        "DSR" => ModemLine::Dsr,
        "DCD" => ModemLine::Dcd,
        _ => return None,
    })
}

fn gpio_id(device: &str, line: &str, offset: Option<u32>) -> GpioLineId {
    match offset {
        Some(offset) if !device.is_empty() => GpioLineId::Offset {
            chip: device.to_string(),
            offset,
        },
        _ => GpioLineId::Name(line.to_string()),
    }
}

fn polarity(active_low: bool) -> Polarity {
    if active_low {
        Polarity::ActiveLow
    } else {
        Polarity::ActiveHigh
    }
}

/// Serial ports opened for one port, shared by its PTT and squelch.
#[derive(Default)]
struct SerialPorts(HashMap<String, Arc<SerialDevice>>);

impl SerialPorts {
    fn get(&mut self, path: &str, backoff: Backoff) -> Arc<SerialDevice> {
        Arc::clone(
            self.0
                .entry(path.to_string())
                .or_insert_with(|| SerialDevice::lazy(path, backoff)),
        )
    }
}

/// Opens one PTT output now, without reconnecting (for `radiogate unkey`): it is driven to
/// the unkeyed level on opening. `None` for `none` and `sim`.
///
/// # Errors
/// The backend's [`PttError`].
pub fn open_ptt_once(p: &PttConfig) -> Result<Option<Box<dyn PttOutput>>, PttError> {
    Ok(Some(match p.kind {
        PttKind::None | PttKind::Sim => return Ok(None),
        PttKind::Serial => {
            let dev = SerialDevice::open(&p.device).map_err(PttError::from)?;
            let line = modem_line(&p.line)
                .ok_or_else(|| PttError::Config(format!("serial line {:?}", p.line)))?;
            Box::new(SerialPtt::new(dev, line, polarity(p.active_low))?)
        }
        PttKind::Gpio => Box::new(GpioPtt::open(
            &gpio_id(&p.device, &p.line, p.offset),
            p.active_low,
        )?),
        PttKind::Cm108 => Box::new(Cm108Ptt::open(
            &p.device,
            p.gpio.unwrap_or(3),
            p.active_low,
        )?),
        PttKind::Cat => Box::new(RigctldPtt::connect(&p.address)?),
    }))
}

/// A short description of a configured PTT output, for logs.
pub fn describe_ptt(p: &PttConfig) -> String {
    match p.kind {
        PttKind::None => "no PTT".into(),
        PttKind::Sim => "simulated PTT".into(),
        PttKind::Serial => format!("serial {} on {}", p.line.to_ascii_uppercase(), p.device),
        PttKind::Gpio => format!("GPIO PTT on {}", gpio_id(&p.device, &p.line, p.offset)),
        PttKind::Cm108 => format!("CM108 GPIO{} on {}", p.gpio.unwrap_or(3), p.device),
        PttKind::Cat => format!("CAT PTT via rigctld {}", p.address),
    }
}

/// Builds the devices of a port named `port`. Nothing is opened here: each device is opened
/// on first use and reopened with `backoff` after it is lost.
pub fn build(
    port: &str,
    ptt: Option<&PttConfig>,
    line: &LineConfig,
    audio: &AudioConfig,
    backoff: Backoff,
) -> Devices {
    let mut serial = SerialPorts::default();
    let mut handles = SimHandles::default();
    let ptt = ptt.filter(|p| p.kind != PttKind::None).map(|p| {
        let what = describe_ptt(p);
        let p = p.clone();
        let opener: PttOpener = match p.kind {
            PttKind::Serial => {
                let dev = serial.get(&p.device, backoff);
                let l = modem_line(&p.line).unwrap_or(ModemLine::Rts);
                let pol = polarity(p.active_low);
                Box::new(move || {
                    Ok(Box::new(SerialPtt::new(Arc::clone(&dev), l, pol)?) as Box<dyn PttOutput>)
                })
            }
            PttKind::Sim => {
                let sim = SimPtt::new(port);
                handles.ptt = Some(sim.handle());
                Box::new(move || Ok(Box::new(sim.clone_shared()) as Box<dyn PttOutput>))
            }
            _ => Box::new(move || {
                open_ptt_once(&p)?.ok_or_else(|| PttError::Config("no PTT configured".into()))
            }),
        };
        ReconnectingPtt::new(what, backoff, opener)
    });
    let has_capture = audio.kind == AudioKind::Sim
        || (audio.kind != AudioKind::None && !audio.capture.is_empty());
    let mut vox = None;
    let debounce = Duration::from_millis(line.debounce_ms);
    let line_dev = if line.kind == LineKind::None {
        None
    } else {
        let l = line.clone();
        let (what, opener): (String, LineOpener) = match l.kind {
            LineKind::Serial => {
                let dev = serial.get(&l.device, backoff);
                let ml = modem_line(&l.line).unwrap_or(ModemLine::Cts);
                (
                    format!("serial {ml} on {}", l.device),
                    Box::new(move || {
                        Ok(
                            Box::new(SerialLine::new(Arc::clone(&dev), ml, l.active_low)?)
                                as Box<dyn LineInput>,
                        )
                    }),
                )
            }
            LineKind::Gpio => {
                let id = gpio_id(&l.device, &l.line, l.offset);
                (
                    format!("GPIO input on {id}"),
                    Box::new(move || {
                        Ok(Box::new(GpioLine::open(&id, l.active_low, Duration::ZERO)?)
                            as Box<dyn LineInput>)
                    }),
                )
            }
            LineKind::Cm108 => (
                format!(
                    "CM108 input on {} byte {} mask {:#04x}",
                    l.device, l.byte, l.mask
                ),
                Box::new(move || {
                    Ok(
                        Box::new(Cm108Line::open(&l.device, l.byte, l.mask, l.active_low)?)
                            as Box<dyn LineInput>,
                    )
                }),
            ),
            LineKind::Vox => {
                let (v, vl) = Vox::new(VoxConfig {
                    threshold_dbfs: l.threshold_dbfs,
                    attack: Duration::from_millis(l.attack_ms),
                    release: Duration::from_millis(l.release_ms),
                });
                vox = has_capture.then_some(v);
                (
                    format!("VOX at {} dBFS", l.threshold_dbfs),
                    Box::new(move || Ok(Box::new(vl.clone()) as Box<dyn LineInput>)),
                )
            }
            LineKind::Sim | LineKind::None => {
                let sim = SimLine::new();
                handles.line = Some(sim.handle());
                (
                    "simulated line".to_string(),
                    Box::new(move || Ok(Box::new(sim.clone()) as Box<dyn LineInput>)),
                )
            }
        };
        // VOX already has attack/release: no extra debouncing.
        let debounce = if l.kind == LineKind::Vox {
            Duration::ZERO
        } else {
            debounce
        };
        Some(DebouncedLine::new(
            ReconnectingLine::new(what, backoff, opener),
            debounce,
        ))
    };
    let opts = CardOptions {
        rate: (audio.rate != 0).then_some(audio.rate),
        channels: (audio.channels != 0).then_some(audio.channels),
        period_ms: audio.period_ms,
        buffer_ms: audio.buffer_ms,
    };
    let (source, sink) = match audio.kind {
        AudioKind::None => (None, None),
        AudioKind::Sim => {
            let src = SimSource::new();
            let snk = SimSink::new();
            handles.source = Some(src.handle());
            handles.sink = Some(snk.handle());
            // Reopening (after an error, or `reset` dropping queued playback at a time-out)
            // gives a new handle on the same record, as a real card reopens the same device.
            (
                Some(ReconnectingSource::new(
                    "simulated capture",
                    backoff,
                    move || Ok(Box::new(src.clone()) as Box<dyn AudioSource>),
                )),
                Some(ReconnectingSink::new(
                    "simulated playback",
                    backoff,
                    move || Ok(Box::new(snk.clone()) as Box<dyn AudioSink>),
                )),
            )
        }
        AudioKind::Cpal => {
            let (c, o) = (audio.capture.clone(), opts.clone());
            let source = (!c.is_empty()).then(|| {
                ReconnectingSource::new(format!("sound capture {c}"), backoff, move || {
                    Ok(Box::new(CpalSource::open(&c, &o)?) as Box<dyn AudioSource>)
                })
            });
            let (p, o) = (audio.playback.clone(), opts);
            let sink = (!p.is_empty()).then(|| {
                ReconnectingSink::new(format!("sound playback {p}"), backoff, move || {
                    Ok(Box::new(CpalSink::open(&p, &o)?) as Box<dyn AudioSink>)
                })
            });
            (source, sink)
        }
        AudioKind::Wav => {
            let c = audio.capture.clone();
            let source = (!c.is_empty()).then(|| {
                ReconnectingSource::new(format!("WAV capture {c}"), backoff, move || {
                    Ok(Box::new(WavSource::open(&c, true)?) as Box<dyn AudioSource>)
                })
            });
            let p = audio.playback.clone();
            let sink = (!p.is_empty()).then(|| {
                ReconnectingSink::new(format!("WAV playback {p}"), backoff, move || {
                    Ok(Box::new(WavSink::create(&p)?) as Box<dyn AudioSink>)
                })
            });
            (source, sink)
        }
    };
    sims().lock().insert(port.to_string(), handles);
    Devices {
        ptt,
        line: line_dev,
        vox,
        source,
        sink,
    }
}
