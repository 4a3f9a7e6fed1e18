//! The radio port timing state machine. Pure: every input carries `now`, nothing does I/O,
//! and every call returns the [`Action`]s for the driver to perform (key/unkey the PTT output,
//! play audio, request/release the floor, send audio to the channel, log).
//!
//! Audio is 48 kHz mono `f32` everywhere ([`SAMPLE_RATE`]); durations of audio are computed
//! from sample counts.
//!
//! Transmit side (channel voice to the radio):
//! - channel voice while idle keys the radio ([`Action::Key`]) and buffers the audio for the
//!   TX delay, then plays the whole buffer ([`Action::Play`]) so no syllable is lost;
//! - later voice is played at once; the radio is unkeyed ([`Action::Unkey`]) when the hang
//!   time has passed after the end of the audio queued for playing;
//! - the transmit time-out timer (TOT) unkeys after `tx_timeout` of continuous keying and locks
//!   the transmitter out until the channel goes idle ([`RadioPort::channel_idle`]);
//! - never keys while the radio is receiving (the channel audio is dropped and logged once).
//!
//! Receive side (radio to the channel):
//! - squelch open (COS or VOX) requests the floor ([`Action::RequestFloor`]), buffering the
//!   captured audio meanwhile (up to `rx_prebuffer`); granted: the audio is sent in 20 ms
//!   frames ([`Action::Send`]) delayed by the squelch tail; squelch close drops the last
//!   `squelch_tail` of audio (the squelch crash) and releases the floor;
//! - denied: audio dropped and logged until the squelch closes; revoked: sending stops;
//! - squelch is ignored while keyed and for `squelch_ignore_after_unkey` after an unkey (the
//!   radio's own tail or a repeater's hang must not loop back into the channel).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sample rate of all audio in and out of the port (Hz).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame, the size of every [`Action::Send`].
pub const FRAME_SAMPLES: usize = 960;

fn samples_of(d: Duration) -> usize {
    (d.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as usize
}

fn duration_of(samples: usize) -> Duration {
    Duration::from_nanos(samples as u64 * 1_000_000_000 / u64::from(SAMPLE_RATE))
}

/// A courtesy tone played when the channel goes idle while the radio is keyed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CourtesyTone {
    /// Tone frequency (Hz).
    pub freq_hz: f32,
    /// Tone length.
    pub duration: Duration,
    /// Peak amplitude (0..=1 of full scale).
    pub amplitude: f32,
}

impl Default for CourtesyTone {
    /// 1000 Hz, 100 ms, 0.3 of full scale.
    fn default() -> Self {
        CourtesyTone {
            freq_hz: 1000.0,
            duration: Duration::from_millis(100),
            amplitude: 0.3,
        }
    }
}

impl CourtesyTone {
    /// The tone's samples (48 kHz), with 5 ms fades against clicks.
    pub fn samples(&self) -> Vec<f32> {
        let n = samples_of(self.duration);
        let fade = samples_of(Duration::from_millis(5)).min(n / 2).max(1);
        (0..n)
            .map(|i| {
                let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
                let ph = 2.0 * std::f32::consts::PI * self.freq_hz * i as f32 / SAMPLE_RATE as f32;
                self.amplitude * env * ph.sin()
            })
            .collect()
    }
}

/// Port timing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    /// Key-up delay before audio is played (the radio's TX settling time). Default 150 ms.
    pub tx_delay: Duration,
    /// How long the radio stays keyed after the last audio has played. Default 500 ms.
    pub hang_time: Duration,
    /// Transmit time-out timer: longest continuous keying. Default 180 s.
    pub tx_timeout: Duration,
    /// Squelch is ignored for this long after an unkey. Default 300 ms.
    pub squelch_ignore_after_unkey: Duration,
    /// The last part of received audio dropped at squelch close (squelch crash). Default
    /// 100 ms; the sent audio lags the radio by this much.
    pub squelch_tail: Duration,
    /// Longest received audio buffered while the floor request is pending. Default 1000 ms.
    pub rx_prebuffer: Duration,
    /// Courtesy tone at the end of a channel transmission. Default none.
    pub courtesy_tone: Option<CourtesyTone>,
    /// Peak limit (0..=1 of full scale) for audio to the radio; `None` disables the limiter.
    /// Default 0.89 (-1 dBFS).
    pub limiter_threshold: Option<f32>,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            tx_delay: Duration::from_millis(150),
            hang_time: Duration::from_millis(500),
            tx_timeout: Duration::from_secs(180),
            squelch_ignore_after_unkey: Duration::from_millis(300),
            squelch_tail: Duration::from_millis(100),
            rx_prebuffer: Duration::from_millis(1000),
            courtesy_tone: None,
            limiter_threshold: Some(0.89),
        }
    }
}

/// Why the radio was unkeyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnkeyReason {
    /// The hang time passed after the last audio.
    HangTimeOver,
    /// The transmit time-out timer expired.
    TimedOut,
    /// The port is shutting down.
    Shutdown,
}

/// Something worth logging / counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEvent {
    /// The TOT unkeyed the radio after `keyed_for`; locked out until the channel is idle.
    TxTimedOut {
        /// How long the radio had been keyed.
        keyed_for: Duration,
    },
    /// The lockout after a time-out ended (the channel went idle).
    LockoutEnded,
    /// The radio's floor request was denied; its audio is dropped until squelch closes.
    FloorDenied {
        /// The reason given by floor control.
        reason: String,
    },
    /// The radio's floor was revoked; its audio is dropped until squelch closes.
    FloorRevoked,
    /// Channel voice arrived while the radio was receiving and was dropped (once per over).
    DroppedWhileReceiving,
    /// Channel voice arrived during the time-out lockout and was dropped (once).
    DroppedWhileLockedOut,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Key the PTT output.
    Key,
    /// Unkey the PTT output.
    Unkey(UnkeyReason),
    /// Play these samples (48 kHz mono, limited) on the radio's sound card.
    Play(Vec<f32>),
    /// Request the channel floor for the radio.
    RequestFloor,
    /// Release the floor (or cancel the pending request).
    ReleaseFloor,
    /// Send one 20 ms frame ([`FRAME_SAMPLES`] samples, 48 kHz mono) to the channel.
    Send(Vec<f32>),
    /// Log / count an event.
    Log(PortEvent),
    /// Console instant recall: load the channel's last recorded transmission and hand its
    /// Opus packets to [`ConsolePort::replay_loaded`](super::console::ConsolePort::replay_loaded).
    Replay,
    /// Console instant recall: decode this recorded Opus packet and play it on the speaker
    /// (only there: never sent to the channel).
    PlayRecorded(Vec<u8>),
}

/// A peak limiter with instant attack and a 50 ms release: output never exceeds the
/// threshold.
#[derive(Debug, Clone)]
pub struct Limiter {
    threshold: f32,
    gain: f32,
    release: f32,
}

impl Limiter {
    /// A limiter at `threshold` (0..=1 of full scale).
    pub fn new(threshold: f32) -> Self {
        let release_samples = samples_of(Duration::from_millis(50)) as f32;
        Limiter {
            threshold: threshold.clamp(0.01, 1.0),
            gain: 1.0,
            release: 1.0 - (-1.0 / release_samples).exp(),
        }
    }

    /// Limits `samples` in place.
    pub fn process(&mut self, samples: &mut [f32]) {
        for s in samples.iter_mut() {
            let peak = s.abs();
            let target = if peak > self.threshold {
                self.threshold / peak
            } else {
                1.0
            };
            if target < self.gain {
                self.gain = target;
            } else {
                self.gain += (target - self.gain) * self.release;
            }
            *s = (*s * self.gain).clamp(-self.threshold, self.threshold);
        }
    }
}

#[derive(Debug)]
enum Tx {
    Idle,
    /// Keyed at `since`; audio is buffered until `since + tx_delay`.
    KeyingUp {
        since: Instant,
        buffer: Vec<f32>,
    },
    /// Keyed at `since`; the audio queued for playing ends at `play_end`.
    Keyed {
        since: Instant,
        play_end: Instant,
    },
    /// Timed out; no keying until the channel goes idle.
    LockedOut,
}

#[derive(Debug)]
enum Rx {
    Idle,
    Requesting { buffer: VecDeque<f32> },
    Sending { delay: VecDeque<f32> },
    Denied,
    Revoked,
}

/// One radio port's timing state. See the module docs.
#[derive(Debug)]
pub struct RadioPort {
    cfg: PortConfig,
    tx: Tx,
    rx: Rx,
    squelch: bool,
    unkeyed_at: Option<Instant>,
    now: Option<Instant>,
    limiter: Option<Limiter>,
    dropped_logged: bool,
}

impl RadioPort {
    /// An idle, unkeyed port.
    pub fn new(cfg: PortConfig) -> Self {
        RadioPort {
            limiter: cfg.limiter_threshold.map(Limiter::new),
            cfg,
            tx: Tx::Idle,
            rx: Rx::Idle,
            squelch: false,
            unkeyed_at: None,
            now: None,
            dropped_logged: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PortConfig {
        &self.cfg
    }

    /// Whether the radio is keyed now (the last Key has not been followed by an Unkey).
    pub fn is_keyed(&self) -> bool {
        matches!(self.tx, Tx::KeyingUp { .. } | Tx::Keyed { .. })
    }

    /// Whether the radio is receiving (squelch open and accepted; until it closes).
    pub fn is_receiving(&self) -> bool {
        !matches!(self.rx, Rx::Idle)
    }

    /// Whether the radio holds (or is requesting) the floor and sends to the channel.
    pub fn is_sending(&self) -> bool {
        matches!(self.rx, Rx::Sending { .. })
    }

    /// Whether the transmitter is locked out after a time-out.
    pub fn is_locked_out(&self) -> bool {
        matches!(self.tx, Tx::LockedOut)
    }

    /// The raw squelch level last reported.
    pub fn squelch_open(&self) -> bool {
        self.squelch
    }

    /// Channel voice (decoded, 48 kHz mono) to transmit on the radio.
    pub fn channel_audio(&mut self, now: Instant, samples: &[f32]) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        if self.is_receiving() {
            if !self.dropped_logged {
                self.dropped_logged = true;
                out.push(Action::Log(PortEvent::DroppedWhileReceiving));
            }
            return out;
        }
        match &mut self.tx {
            Tx::Idle => {
                out.push(Action::Key);
                self.tx = Tx::KeyingUp {
                    since: now,
                    buffer: samples.to_vec(),
                };
                // A zero TX delay plays at once.
                self.advance(now, &mut out);
            }
            Tx::KeyingUp { buffer, .. } => buffer.extend_from_slice(samples),
            Tx::Keyed { play_end, .. } => {
                *play_end = (*play_end).max(now) + duration_of(samples.len());
                let mut v = samples.to_vec();
                if let Some(l) = self.limiter.as_mut() {
                    l.process(&mut v);
                }
                out.push(Action::Play(v));
            }
            Tx::LockedOut => {
                if !self.dropped_logged {
                    self.dropped_logged = true;
                    out.push(Action::Log(PortEvent::DroppedWhileLockedOut));
                }
            }
        }
        out
    }

    /// The channel's floor went idle (nobody talks): ends a time-out lockout and plays the
    /// courtesy tone when the radio is keyed.
    pub fn channel_idle(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        match &mut self.tx {
            Tx::LockedOut => {
                self.tx = Tx::Idle;
                self.dropped_logged = false;
                out.push(Action::Log(PortEvent::LockoutEnded));
            }
            Tx::KeyingUp { buffer, .. } => {
                if let Some(t) = self.cfg.courtesy_tone {
                    buffer.extend(t.samples());
                }
            }
            Tx::Keyed { play_end, .. } => {
                if let Some(t) = self.cfg.courtesy_tone {
                    let tone = t.samples();
                    *play_end = (*play_end).max(now) + duration_of(tone.len());
                    out.push(Action::Play(tone));
                }
            }
            Tx::Idle => {}
        }
        out
    }

    /// The squelch (COS line or VOX, debounced) changed or was re-read.
    pub fn squelch(&mut self, now: Instant, open: bool) -> Vec<Action> {
        self.squelch = open;
        let mut out = Vec::new();
        self.advance(now, &mut out);
        out
    }

    /// Received audio from the radio's sound card (48 kHz mono).
    pub fn captured_audio(&mut self, now: Instant, samples: &[f32]) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        let tail = samples_of(self.cfg.squelch_tail);
        let max_pre = samples_of(self.cfg.rx_prebuffer).max(FRAME_SAMPLES);
        match &mut self.rx {
            Rx::Requesting { buffer } => {
                buffer.extend(samples.iter().copied());
                let excess = buffer.len().saturating_sub(max_pre);
                buffer.drain(..excess);
            }
            Rx::Sending { delay } => {
                delay.extend(samples.iter().copied());
                while delay.len() >= tail + FRAME_SAMPLES {
                    out.push(Action::Send(delay.drain(..FRAME_SAMPLES).collect()));
                }
            }
            Rx::Idle | Rx::Denied | Rx::Revoked => {}
        }
        out
    }

    /// Floor control granted the radio's request.
    pub fn floor_granted(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        match std::mem::replace(&mut self.rx, Rx::Idle) {
            Rx::Requesting { buffer } => {
                self.rx = Rx::Sending { delay: buffer };
                out.extend(self.captured_audio(now, &[]));
            }
            other => {
                // A grant that arrives after the squelch closed: give the floor back.
                self.rx = other;
                if matches!(self.rx, Rx::Idle) {
                    out.push(Action::ReleaseFloor);
                }
            }
        }
        out
    }

    /// Floor control denied the radio's request.
    pub fn floor_denied(&mut self, now: Instant, reason: &str) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        if matches!(self.rx, Rx::Requesting { .. }) {
            self.rx = Rx::Denied;
            out.push(Action::Log(PortEvent::FloorDenied {
                reason: reason.into(),
            }));
        }
        out
    }

    /// Floor control revoked the radio's floor (pre-emption, floor time-out).
    pub fn floor_revoked(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        if matches!(self.rx, Rx::Sending { .. } | Rx::Requesting { .. }) {
            self.rx = Rx::Revoked;
            out.push(Action::Log(PortEvent::FloorRevoked));
        }
        out
    }

    /// Timers: call at [`Self::next_deadline`] (calling later or more often is harmless).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        out
    }

    /// Port shutdown: unkeys and releases the floor at once.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.is_keyed() {
            out.push(Action::Unkey(UnkeyReason::Shutdown));
            self.unkeyed_at = Some(now);
        }
        self.tx = Tx::Idle;
        if matches!(self.rx, Rx::Sending { .. } | Rx::Requesting { .. }) {
            out.push(Action::ReleaseFloor);
        }
        self.rx = Rx::Idle;
        out
    }

    /// When [`Self::tick`] must be called next, if a timer runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        let tot = self.cfg.tx_timeout;
        let tx = match &self.tx {
            Tx::KeyingUp { since, .. } => Some((*since + self.cfg.tx_delay).min(*since + tot)),
            Tx::Keyed { since, play_end } => {
                Some((*play_end + self.cfg.hang_time).min(*since + tot))
            }
            Tx::Idle | Tx::LockedOut => None,
        };
        let rx = match (self.squelch, &self.rx, self.unkeyed_at, self.now) {
            (true, Rx::Idle, Some(t), Some(now)) if !self.is_keyed() => {
                let end = t + self.cfg.squelch_ignore_after_unkey;
                (end > now).then_some(end)
            }
            _ => None,
        };
        match (tx, rx) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn advance(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        let now = self.now.unwrap_or(now);
        let tot = self.cfg.tx_timeout;
        // Transmit timers.
        loop {
            match &mut self.tx {
                Tx::KeyingUp { since, buffer } => {
                    let since = *since;
                    if now >= since + tot && tot <= self.cfg.tx_delay {
                        self.time_out(now, since, out);
                    } else if now >= since + self.cfg.tx_delay {
                        let mut v = std::mem::take(buffer);
                        if let Some(l) = self.limiter.as_mut() {
                            l.process(&mut v);
                        }
                        let play_end = since + self.cfg.tx_delay + duration_of(v.len());
                        out.push(Action::Play(v));
                        self.tx = Tx::Keyed { since, play_end };
                        continue;
                    }
                }
                Tx::Keyed { since, play_end } => {
                    let (since, hang_end) = (*since, *play_end + self.cfg.hang_time);
                    if now >= since + tot && since + tot <= hang_end {
                        self.time_out(now, since, out);
                    } else if now >= hang_end {
                        out.push(Action::Unkey(UnkeyReason::HangTimeOver));
                        self.tx = Tx::Idle;
                        self.unkeyed_at = Some(now);
                    }
                }
                Tx::Idle | Tx::LockedOut => {}
            }
            break;
        }
        // Receive side: squelch is honoured only while unkeyed and after the ignore window.
        let keyed = self.is_keyed();
        let ignoring = self
            .unkeyed_at
            .is_some_and(|t| now < t + self.cfg.squelch_ignore_after_unkey);
        if self.squelch {
            if matches!(self.rx, Rx::Idle) && !keyed && !ignoring {
                out.push(Action::RequestFloor);
                self.rx = Rx::Requesting {
                    buffer: VecDeque::new(),
                };
            }
        } else {
            let was = std::mem::replace(&mut self.rx, Rx::Idle);
            if !matches!(was, Rx::Idle) {
                // A new over starts: log the next dropped channel voice again.
                self.dropped_logged = false;
            }
            match was {
                Rx::Sending { mut delay } => {
                    // Drop the squelch tail; send what precedes it, padded to a whole frame.
                    let tail = samples_of(self.cfg.squelch_tail);
                    let keep = delay.len().saturating_sub(tail);
                    if keep > 0 {
                        let mut frame: Vec<f32> = delay.drain(..keep).collect();
                        frame.resize(FRAME_SAMPLES, 0.0);
                        out.push(Action::Send(frame));
                    }
                    out.push(Action::ReleaseFloor);
                }
                Rx::Requesting { .. } => out.push(Action::ReleaseFloor),
                Rx::Denied | Rx::Revoked | Rx::Idle => {}
            }
        }
    }

    fn time_out(&mut self, now: Instant, since: Instant, out: &mut Vec<Action>) {
        out.push(Action::Unkey(UnkeyReason::TimedOut));
        out.push(Action::Log(PortEvent::TxTimedOut {
            keyed_for: now.saturating_duration_since(since),
        }));
        self.tx = Tx::LockedOut;
        self.dropped_logged = false;
        self.unkeyed_at = Some(now);
    }
}

#[cfg(test)]
mod tests;
