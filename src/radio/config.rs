//! `[[radio]]` and `[[console]]` configuration: the port's identity, its devices and timing.
//!
//! Every key is documented (with unit and default) in the commented example block of
//! `config/radiogate.toml` and in `config/examples/*.toml`. [`validate`] names the bad key as
//! `radio[N].ptt.device` and so on.

use super::port::{CourtesyTone, PortConfig};
use crate::access::role::Role;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a `[[radio]]` or `[[console]]` section was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PortConfigError {
    /// Dotted key path, e.g. `radio[0].ptt.device`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

/// The participant identity a port joins its channel with.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// User id.
    pub user_id: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Event of the channel.
    pub event: String,
    /// Channel joined.
    pub channel: String,
    /// Device id.
    pub device_id: Option<String>,
}

fn general() -> Role {
    Role::General
}

/// Which PTT output keys the radio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PttKind {
    /// No PTT output (a receive-only port, or a radio keyed by VOX on its own).
    #[default]
    None,
    /// Serial RTS or DTR (`device`, `line`, `active_low`).
    Serial,
    /// GPIO character device (`device` + `offset`, or `line` name; `active_low`).
    Gpio,
    /// CM108/CM119 GPIO through hidraw (`device`, `gpio`, `active_low`).
    Cm108,
    /// CAT through hamlib's rigctld (`address`).
    Cat,
    /// Simulated (tests; records transitions in memory).
    Sim,
}

/// `[radio.ptt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PttConfig {
    /// `none`, `serial`, `gpio`, `cm108`, `cat` or `sim`.
    #[serde(rename = "type")]
    pub kind: PttKind,
    /// Serial port (`/dev/ttyUSB0`), GPIO chip (`/dev/gpiochip0`) or hidraw node
    /// (`/dev/hidraw0`).
    pub device: String,
    /// Serial: `RTS` or `DTR`. GPIO: a line name (`GPIO17`) instead of `device` + `offset`.
    pub line: String,
    /// GPIO: line offset on the chip (the BCM number on a Raspberry Pi).
    pub offset: Option<u32>,
    /// CM108: GPIO pin number 1..=8 (default 3).
    pub gpio: Option<u8>,
    /// The line is driven low (deasserted) to key.
    pub active_low: bool,
    /// CAT: rigctld `host:port` (default port 4532).
    pub address: String,
}

/// Which input is the squelch (COS) or the PTT button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// No line (transmit-only radio, listen-only console).
    #[default]
    None,
    /// Serial CTS, DSR or DCD (`device`, `line`, `active_low`).
    Serial,
    /// GPIO character device input with edge events.
    Gpio,
    /// CM108/CM119 HID input bit (`device`, `byte`, `mask`).
    Cm108,
    /// VOX on the captured audio level (`threshold_dbfs`, `attack_ms`, `release_ms`).
    Vox,
    /// Simulated (tests).
    Sim,
}

/// `[radio.squelch]` or `[console.button]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineConfig {
    /// `none`, `serial`, `gpio`, `cm108`, `vox` or `sim`.
    #[serde(rename = "type")]
    pub kind: LineKind,
    /// Serial port, GPIO chip or hidraw node.
    pub device: String,
    /// Serial: `CTS`, `DSR` or `DCD`. GPIO: a line name instead of `device` + `offset`.
    pub line: String,
    /// GPIO: line offset on the chip.
    pub offset: Option<u32>,
    /// The input is active when low.
    pub active_low: bool,
    /// Debounce time, milliseconds (0..=1000). Default 20.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub debounce_ms: u64,
    /// CM108: input report byte (0..=3). Default 0.
    pub byte: usize,
    /// CM108: bit mask in that byte. Default 2 (VOLDN, where COS is usually wired).
    pub mask: u8,
    /// VOX: opening level, dBFS (RMS over 10 ms). Default -35.
    pub threshold_dbfs: f32,
    /// VOX: level must stay above the threshold this long to open, ms. Default 20.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub attack_ms: u64,
    /// VOX: level must stay below the threshold this long to close, ms. Default 500.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub release_ms: u64,
}

impl Default for LineConfig {
    fn default() -> Self {
        LineConfig {
            kind: LineKind::None,
            device: String::new(),
            line: String::new(),
            offset: None,
            active_low: false,
            debounce_ms: 20,
            byte: 0,
            mask: 0x02,
            threshold_dbfs: -35.0,
            attack_ms: 20,
            release_ms: 500,
        }
    }
}

/// Which audio backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioKind {
    /// No audio.
    #[default]
    None,
    /// A sound card through cpal (ALSA PCM names).
    Cpal,
    /// WAV files: `capture` is played as the received audio (paced in real time), `playback`
    /// is written as 48 kHz mono 16-bit.
    Wav,
    /// Simulated (tests).
    Sim,
}

/// `[radio.audio]` or `[console.audio]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// `none`, `cpal`, `wav` or `sim`.
    #[serde(rename = "type")]
    pub kind: AudioKind,
    /// Capture device (ALSA PCM name, e.g. `plughw:CARD=Device,DEV=0`) or WAV file; empty:
    /// no capture.
    pub capture: String,
    /// Playback device or WAV file; empty: no playback.
    pub playback: String,
    /// Card sample rate, Hz; 0 = the card's native rate.
    pub rate: u32,
    /// Card channel count; 0 = the card's native count.
    pub channels: u16,
    /// Card period, milliseconds (2..=100). Default 10.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub period_ms: u32,
    /// Ring buffer between the card and the gateway, milliseconds (100..=10000). Default 2000.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub buffer_ms: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            kind: AudioKind::None,
            capture: String::new(),
            playback: String::new(),
            rate: 0,
            channels: 0,
            period_ms: 10,
            buffer_ms: 2000,
        }
    }
}

/// One `[[radio]]`: a two-way radio joined to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadioConfig {
    /// Port name (unique among radios and consoles), used in logs and status.
    pub name: String,
    /// User id shown to other members (`userId`), e.g. `radio-repeater1`.
    pub user_id: String,
    /// Display name (`name` in `floor.taken`), e.g. `Repeater 1`.
    pub display_name: String,
    /// Role: `GENERAL` (default) or `DISPATCH` (pre-empts GENERAL talkers); `ADMIN` has no
    /// talk priority.
    #[serde(default = "general")]
    pub role: Role,
    /// Event the channel belongs to.
    pub event: String,
    /// Channel joined.
    pub channel: String,
    /// Device id (for `admin.disconnect {deviceId}` and the registry); default none.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Key-up delay before audio, ms (0..=2000). Default 150.
    #[serde(default = "d150")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub tx_delay_ms: u64,
    /// Stay keyed this long after the last audio, ms (0..=10000). Default 500.
    #[serde(default = "d500")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub hang_time_ms: u64,
    /// Transmit time-out timer, ms (1000..=3600000). Default 180000.
    #[serde(default = "d180000")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub tx_timeout_ms: u64,
    /// Squelch ignored this long after an unkey, ms (0..=5000). Default 300.
    #[serde(default = "d300")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub squelch_ignore_after_unkey_ms: u64,
    /// Received audio dropped at squelch close (squelch crash), ms (0..=1000). Default 100.
    /// The audio sent to the channel lags the radio by this much.
    #[serde(default = "d100")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub squelch_tail_ms: u64,
    /// Received audio kept while the floor request is pending, ms (20..=5000). Default 1000.
    #[serde(default = "d1000")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub rx_prebuffer_ms: u64,
    /// Peak limit of audio to the radio, fraction of full scale (0 disables, else
    /// 0.05..=1.0). Default 0.89 (-1 dBFS).
    #[serde(default = "d089")]
    pub limiter_threshold: f32,
    /// Courtesy tone frequency, Hz (0 = no tone, else 100..=4000). Default 0.
    #[serde(default)]
    pub courtesy_tone_hz: f32,
    /// Courtesy tone length, ms (10..=2000). Default 100.
    #[serde(default = "d100")]
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub courtesy_tone_ms: u64,
    /// Courtesy tone amplitude, fraction of full scale (0..=1). Default 0.3.
    #[serde(default = "d03")]
    pub courtesy_tone_amplitude: f32,
    /// The PTT output.
    #[serde(default)]
    pub ptt: PttConfig,
    /// The squelch (COS) input.
    #[serde(default)]
    pub squelch: LineConfig,
    /// The sound card.
    #[serde(default)]
    pub audio: AudioConfig,
}

/// One `[[console]]`: a PTT button plus a local microphone and speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Port name (unique among radios and consoles).
    pub name: String,
    /// User id shown to other members (`userId`), e.g. `radio-repeater1`.
    pub user_id: String,
    /// Display name (`name` in `floor.taken`), e.g. `Repeater 1`.
    pub display_name: String,
    /// Role: `GENERAL` (default) or `DISPATCH` (pre-empts GENERAL talkers); `ADMIN` has no
    /// talk priority.
    #[serde(default = "general")]
    pub role: Role,
    /// Event the channel belongs to.
    pub event: String,
    /// Channel joined.
    pub channel: String,
    /// Device id (for `admin.disconnect {deviceId}` and the registry); default none.
    #[serde(default)]
    pub device_id: Option<String>,
    /// DISPATCH only: the button sends a pre-emptive floor request (takes the floor from a
    /// GENERAL talker). Default false.
    #[serde(default)]
    pub pre_empt: bool,
    /// Instant recall (issue 14): two short presses of the button within `double_press_ms`
    /// replay the channel's last recorded transmission on this console's speaker only
    /// (needs `[recording] enabled`). While on, a press asks for the floor once it has been
    /// held `double_press_ms` (the microphone is kept meanwhile and sent at the grant), so a
    /// tap never keys the channel. Default false.
    #[serde(default)]
    pub replay_on_double_press: bool,
    /// The double press window, ms (150..=1000, default 400).
    #[serde(default = "d400")]
    pub double_press_ms: u64,
    /// The PTT button.
    #[serde(default)]
    pub button: LineConfig,
    /// Microphone (`capture`) and speaker (`playback`).
    #[serde(default)]
    pub audio: AudioConfig,
}

fn d100() -> u64 {
    100
}
fn d150() -> u64 {
    150
}
fn d300() -> u64 {
    300
}
fn d400() -> u64 {
    400
}
fn d500() -> u64 {
    500
}
fn d1000() -> u64 {
    1000
}
fn d180000() -> u64 {
    180_000
}
fn d089() -> f32 {
    0.89
}
fn d03() -> f32 {
    0.3
}

macro_rules! identity {
    ($t:ty) => {
        impl $t {
            /// The participant identity.
            pub fn identity(&self) -> Identity {
                Identity {
                    user_id: self.user_id.clone(),
                    display_name: self.display_name.clone(),
                    role: self.role,
                    event: self.event.clone(),
                    channel: self.channel.clone(),
                    device_id: self.device_id.clone(),
                }
            }
        }
    };
}
identity!(RadioConfig);
identity!(ConsoleConfig);

impl RadioConfig {
    /// The timing state machine's settings.
    pub fn port_config(&self) -> PortConfig {
        PortConfig {
            tx_delay: Duration::from_millis(self.tx_delay_ms),
            hang_time: Duration::from_millis(self.hang_time_ms),
            tx_timeout: Duration::from_millis(self.tx_timeout_ms),
            squelch_ignore_after_unkey: Duration::from_millis(self.squelch_ignore_after_unkey_ms),
            squelch_tail: Duration::from_millis(self.squelch_tail_ms),
            rx_prebuffer: Duration::from_millis(self.rx_prebuffer_ms),
            courtesy_tone: (self.courtesy_tone_hz > 0.0).then_some(CourtesyTone {
                freq_hz: self.courtesy_tone_hz,
                duration: Duration::from_millis(self.courtesy_tone_ms),
                amplitude: self.courtesy_tone_amplitude,
            }),
            limiter_threshold: (self.limiter_threshold > 0.0).then_some(self.limiter_threshold),
        }
    }
}

struct Check<'a> {
    prefix: &'a str,
}

impl Check<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> PortConfigError {
        PortConfigError {
            key: format!("{}.{key}", self.prefix),
            reason: reason.into(),
        }
    }

    fn range(&self, key: &str, v: f64, lo: f64, hi: f64) -> Result<(), PortConfigError> {
        if v.is_nan() || v < lo || v > hi {
            return Err(self.err(key, format!("must be between {lo} and {hi} (got {v})")));
        }
        Ok(())
    }

    fn nonempty(&self, key: &str, v: &str, what: &str) -> Result<(), PortConfigError> {
        if v.trim().is_empty() {
            return Err(self.err(key, format!("required: {what}")));
        }
        Ok(())
    }

    fn identity(&self, id: &Identity) -> Result<(), PortConfigError> {
        self.nonempty("user_id", &id.user_id, "the user id the port talks as")?;
        self.nonempty("display_name", &id.display_name, "the name members see")?;
        self.nonempty("event", &id.event, "the event of the channel")?;
        self.nonempty("channel", &id.channel, "the channel the port joins")
    }

    fn ptt(&self, p: &PttConfig) -> Result<(), PortConfigError> {
        match p.kind {
            PttKind::None | PttKind::Sim => Ok(()),
            PttKind::Serial => {
                self.nonempty(
                    "ptt.device",
                    &p.device,
                    "the serial port, e.g. /dev/ttyUSB0",
                )?;
                match p.line.to_ascii_uppercase().as_str() {
                    "RTS" | "DTR" => Ok(()),
                    other => Err(self.err(
                        "ptt.line",
                        format!("serial PTT must be \"RTS\" or \"DTR\" (got {other:?})"),
                    )),
                }
            }
            PttKind::Gpio => self.gpio("ptt", &p.device, &p.line, p.offset),
            PttKind::Cm108 => {
                self.nonempty(
                    "ptt.device",
                    &p.device,
                    "the hidraw node, e.g. /dev/hidraw0",
                )?;
                self.range("ptt.gpio", f64::from(p.gpio.unwrap_or(3)), 1.0, 8.0)
            }
            PttKind::Cat => {
                self.nonempty(
                    "ptt.address",
                    &p.address,
                    "rigctld host:port, e.g. 127.0.0.1:4532",
                )?;
                let ok = p
                    .address
                    .rsplit_once(':')
                    .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
                if ok {
                    Ok(())
                } else {
                    Err(self.err(
                        "ptt.address",
                        format!(
                            "must be host:port, e.g. 127.0.0.1:4532 (got {:?})",
                            p.address
                        ),
                    ))
                }
            }
        }
    }

    fn gpio(
        &self,
        sect: &str,
        device: &str,
        line: &str,
        offset: Option<u32>,
    ) -> Result<(), PortConfigError> {
        match (device.is_empty(), line.is_empty(), offset) {
            (false, true, Some(_)) | (true, false, None) => Ok(()),
            _ => Err(self.err(
                &format!("{sect}.device"),
                "GPIO needs either device (e.g. /dev/gpiochip0) and offset (the BCM number), or line (a line name such as GPIO17), not both",
            )),
        }
    }

    fn line(&self, sect: &str, l: &LineConfig, has_capture: bool) -> Result<(), PortConfigError> {
        self.range(
            &format!("{sect}.debounce_ms"),
            l.debounce_ms as f64,
            0.0,
            1000.0,
        )?;
        match l.kind {
            LineKind::None | LineKind::Sim => Ok(()),
            LineKind::Serial => {
                self.nonempty(&format!("{sect}.device"), &l.device, "the serial port")?;
                match l.line.to_ascii_uppercase().as_str() {
                    "CTS" | "DSR" | "DCD" => Ok(()),
                    other => Err(self.err(
                        &format!("{sect}.line"),
                        format!("serial input must be \"CTS\", \"DSR\" or \"DCD\" (got {other:?})"),
                    )),
                }
            }
            LineKind::Gpio => self.gpio(sect, &l.device, &l.line, l.offset),
            LineKind::Cm108 => {
                self.nonempty(&format!("{sect}.device"), &l.device, "the hidraw node")?;
                self.range(&format!("{sect}.byte"), l.byte as f64, 0.0, 3.0)?;
                self.range(&format!("{sect}.mask"), f64::from(l.mask), 1.0, 255.0)
            }
            LineKind::Vox => {
                if !has_capture {
                    return Err(self.err(
                        &format!("{sect}.type"),
                        "vox needs captured audio: set audio.type and audio.capture",
                    ));
                }
                self.range(
                    &format!("{sect}.threshold_dbfs"),
                    f64::from(l.threshold_dbfs),
                    -90.0,
                    0.0,
                )?;
                self.range(
                    &format!("{sect}.attack_ms"),
                    l.attack_ms as f64,
                    0.0,
                    5000.0,
                )?;
                self.range(
                    &format!("{sect}.release_ms"),
                    l.release_ms as f64,
                    10.0,
                    10000.0,
                )
            }
        }
    }

    fn audio(&self, a: &AudioConfig) -> Result<(), PortConfigError> {
        self.range("audio.period_ms", f64::from(a.period_ms), 2.0, 100.0)?;
        self.range("audio.buffer_ms", f64::from(a.buffer_ms), 100.0, 10000.0)?;
        if a.rate != 0 {
            self.range("audio.rate", f64::from(a.rate), 8000.0, 192000.0)?;
        }
        self.range("audio.channels", f64::from(a.channels), 0.0, 32.0)?;
        if matches!(a.kind, AudioKind::Cpal | AudioKind::Wav)
            && a.capture.is_empty()
            && a.playback.is_empty()
        {
            return Err(self.err(
                "audio.capture",
                "give capture and/or playback (ALSA PCM names, e.g. plughw:CARD=Device,DEV=0, or WAV files)",
            ));
        }
        Ok(())
    }
}

fn has_capture(a: &AudioConfig) -> bool {
    a.kind == AudioKind::Sim || (a.kind != AudioKind::None && !a.capture.is_empty())
}

/// Checks every `[[radio]]` and `[[console]]`.
///
/// # Errors
/// [`PortConfigError`] naming the first offending key, e.g. `radio[0].ptt.device`.
pub fn validate(radios: &[RadioConfig], consoles: &[ConsoleConfig]) -> Result<(), PortConfigError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in radios.iter().enumerate() {
        let prefix = format!("radio[{i}]");
        let c = Check { prefix: &prefix };
        c.nonempty("name", &r.name, "a port name")?;
        if !names.insert(r.name.clone()) {
            return Err(c.err("name", format!("{:?} is used by another port", r.name)));
        }
        c.identity(&r.identity())?;
        c.range("tx_delay_ms", r.tx_delay_ms as f64, 0.0, 2000.0)?;
        c.range("hang_time_ms", r.hang_time_ms as f64, 0.0, 10000.0)?;
        c.range("tx_timeout_ms", r.tx_timeout_ms as f64, 1000.0, 3_600_000.0)?;
        c.range(
            "squelch_ignore_after_unkey_ms",
            r.squelch_ignore_after_unkey_ms as f64,
            0.0,
            5000.0,
        )?;
        c.range("squelch_tail_ms", r.squelch_tail_ms as f64, 0.0, 1000.0)?;
        c.range("rx_prebuffer_ms", r.rx_prebuffer_ms as f64, 20.0, 5000.0)?;
        if r.limiter_threshold != 0.0 {
            c.range(
                "limiter_threshold",
                f64::from(r.limiter_threshold),
                0.05,
                1.0,
            )?;
        }
        if r.courtesy_tone_hz != 0.0 {
            c.range(
                "courtesy_tone_hz",
                f64::from(r.courtesy_tone_hz),
                100.0,
                4000.0,
            )?;
            c.range("courtesy_tone_ms", r.courtesy_tone_ms as f64, 10.0, 2000.0)?;
            c.range(
                "courtesy_tone_amplitude",
                f64::from(r.courtesy_tone_amplitude),
                0.0,
                1.0,
            )?;
        }
        c.ptt(&r.ptt)?;
        c.audio(&r.audio)?;
        c.line("squelch", &r.squelch, has_capture(&r.audio))?;
    }
    for (i, k) in consoles.iter().enumerate() {
        let prefix = format!("console[{i}]");
        let c = Check { prefix: &prefix };
        c.nonempty("name", &k.name, "a port name")?;
        if !names.insert(k.name.clone()) {
            return Err(c.err("name", format!("{:?} is used by another port", k.name)));
        }
        c.identity(&k.identity())?;
        if k.pre_empt && k.role != Role::Dispatch {
            return Err(c.err(
                "pre_empt",
                "only a DISPATCH console may pre-empt (set role = \"DISPATCH\")",
            ));
        }
        c.range("double_press_ms", k.double_press_ms as f64, 150.0, 1000.0)?;
        c.audio(&k.audio)?;
        c.line("button", &k.button, has_capture(&k.audio))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, EMBEDDED_DEFAULT};

    const RADIO: &str = r#"
[[radio]]
name = "r1"
user_id = "radio-r1"
display_name = "Radio 1"
event = "ev1"
channel = "c1"
[radio.ptt]
type = "cat"
address = "127.0.0.1:4532"
[radio.squelch]
type = "vox"
[radio.audio]
type = "cpal"
capture = "default"
playback = "default"
"#;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_radio_parses_with_documented_defaults() {
        let cfg = Config::from_toml(RADIO).unwrap();
        let r = &cfg.radio[0];
        assert_eq!(r.tx_delay_ms, 150);
        assert_eq!(r.hang_time_ms, 500);
        assert_eq!(r.squelch.release_ms, 500);
        assert_eq!(r.audio.period_ms, 10);
        assert_eq!(r.role, crate::access::role::Role::General);
        let pc = r.port_config();
        assert_eq!(pc, super::super::PortConfig::default());
    }

    #[test]
    fn bad_keys_are_named_with_their_index() {
        assert!(err(&RADIO.replace("127.0.0.1:4532", "")).starts_with("radio[0].ptt.address:"));
        assert!(err(&RADIO.replace("type = \"cat\"", "type = \"serial\""))
            .starts_with("radio[0].ptt.device:"));
        let e = err(&RADIO.replace(
            "type = \"cat\"\naddress = \"127.0.0.1:4532\"",
            "type = \"serial\"\ndevice = \"/dev/ttyUSB0\"\nline = \"CTS\"",
        ));
        assert!(e.starts_with("radio[0].ptt.line:"), "{e}");
        let e = err(&RADIO.replace("[[radio]]\nname", "[[radio]]\ntx_delay_ms = 5000\nname"));
        assert!(e.starts_with("radio[0].tx_delay_ms:"), "{e}");
        let e = err(&RADIO.replace("capture = \"default\"", "capture = \"\""));
        assert!(
            e.starts_with("radio[0].squelch.type:"),
            "vox without capture: {e}"
        );
        let e = err(&format!("{RADIO}{RADIO}"));
        assert!(e.starts_with("radio[1].name:"), "{e}");
        let e = err(&RADIO.replace("channel = \"c1\"", "channel = \"\""));
        assert!(e.starts_with("radio[0].channel:"), "{e}");
        // Unknown keys are refused by name.
        let e = err(&RADIO.replace("[radio.ptt]", "[radio.ptt]\ndevise = \"x\""));
        assert!(e.contains("devise"), "{e}");
        let e = err("[[console]]\nname = \"d\"\nuser_id = \"u\"\ndisplay_name = \"D\"\nevent = \"e\"\nchannel = \"c\"\npre_empt = true\n");
        assert!(e.starts_with("console[0].pre_empt:"), "{e}");
    }

    #[test]
    fn the_commented_example_block_is_valid() {
        let (_, block) = EMBEDDED_DEFAULT
            .split_once("# [[radio]]")
            .expect("example block");
        let text: String = format!("# [[radio]]{block}")
            .lines()
            .filter_map(|l| l.strip_prefix("# ").or_else(|| (l == "#").then_some("")))
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.radio.len(), 1);
        assert_eq!(cfg.console.len(), 1);
        assert_eq!(
            cfg.radio[0].port_config(),
            super::super::PortConfig::default()
        );
    }
}
