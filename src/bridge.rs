//! SHELL. The radio bridge: one thread per radio or console port owning its hal devices, its timing
//! state machine ([`RadioPort`] or [`ConsolePort`]), an Opus encoder and decoder and its hub
//! participant, turning the state machine's [`Action`]s into I/O.
//!
//! A thread, not a tokio task: the hal calls are synchronous (a rigctld round trip may take up
//! to 2 s when rigctld hangs) and must never stall the runtime's workers. The loop runs every
//! [`POLL`] (5 ms): hub notifications and channel voice (decoded from the RTP the hub queued),
//! the captured audio, the squelch line or button, the state machine's timers.
//!
//! Fail-safe unkey: the state machine unkeys on floor loss, hang time and time-out; the driver
//! unkeys on port shutdown and gateway shutdown (it watches the gateway's shutdown token and
//! [`Radios::shutdown`] waits for every port); a panic inside the driver unwinds through its
//! devices, whose `Drop` unkeys, and the port restarts after 1 s; the process-wide panic hook
//! ([`install_panic_hook`]) makes every port unkey (or unkeys directly when a port does not
//! answer); `radiogate unkey` ([`unkey_all`]) covers a killed process.

use crate::floor::Priority;
use crate::hub::Notification;
use crate::hub::{ConnId, ConnectionInfo};
use crate::permissions::PermissionStore;
use crate::permissions::SqliteStore;
use crate::radio::config::{ConsoleConfig, Identity, PttConfig, RadioConfig};
use crate::radio::console::ConsolePort;
use crate::radio::devices::{self, Devices};
use crate::radio::port::{Action, PortEvent, RadioPort, UnkeyReason, FRAME_SAMPLES};
use crate::sfu::{Downlink, DOWNLINK_QUEUE};

/// Outbound queue of a radio or console port, messages: its thread drains it every step, so
/// only a stalled port fills it.
const RADIO_OUTBOUND_QUEUE: usize = 4096;
use crate::switchboard::Outbound;
use crate::switchboard::Switchboard;
use parking_lot::Mutex;
use radiogate_hal::{AudioSink, AudioSource, Backoff, DeviceState, LineInput, PttOutput};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The driver loop period: lines, captured audio and queued channel voice are polled this often.
pub const POLL: Duration = Duration::from_millis(5);

/// Errors of the radio driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The Opus codec could not be created or failed.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// The port thread could not be started.
    #[error("cannot start the port thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One device's state for the status page.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// `ptt`, `squelch`, `button`, `capture` or `playback`.
    pub role: &'static str,
    /// What it is, e.g. `CAT PTT via rigctld 127.0.0.1:4532`.
    pub device: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// Why it is down.
    pub last_error: Option<String>,
}

/// Counters of one port since start.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortCounters {
    /// Times the radio was keyed.
    pub key_ups: u64,
    /// Total time keyed, milliseconds (including the current key-up).
    pub keyed_ms: u64,
    /// Transmit time-outs (TOT).
    pub time_outs: u64,
    /// Floor requests denied.
    pub floor_denied: u64,
    /// Floors revoked.
    pub floor_revoked: u64,
    /// 20 ms frames sent to the channel.
    pub frames_sent: u64,
    /// RTP packets of channel voice decoded.
    pub packets_received: u64,
    /// Channel voice packets missing (sequence gaps), concealed.
    pub packets_lost: u64,
    /// Errors of devices and codec.
    pub errors: u64,
    /// Samples of audio to play dropped because the card was not running yet or its queue
    /// was over the latency cap (TX delay + 300 ms).
    pub playout_dropped: u64,
}

/// Latencies measured inside the driver, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortLatency {
    /// Squelch (or button) accepted to the first frame handed to the hub, last over.
    pub squelch_to_first_packet_ms: Option<f64>,
    /// Channel voice packet received by the gateway to its first sample reaching the card
    /// (queued ahead of it included), last packet.
    pub packet_to_card_ms: Option<f64>,
    /// Largest `packet_to_card_ms` since key-up.
    pub packet_to_card_max_ms: Option<f64>,
}

/// The status of one port (`/healthz` `radio.ports[]`, `admin.status` `radio`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    /// Port name.
    pub name: String,
    /// `radio` or `console`.
    pub kind: &'static str,
    /// Channel joined.
    pub channel: String,
    /// Hub connection id while registered.
    pub conn_id: Option<ConnId>,
    /// Whether the port is a member of its channel.
    pub joined: bool,
    /// Its devices.
    pub devices: Vec<DeviceStatus>,
    /// Whether the PTT is keyed.
    pub keyed: bool,
    /// Whether the squelch (radio) is open or the button (console) pressed.
    pub squelch_open: bool,
    /// Whether the port holds the floor and sends to the channel.
    pub sending: bool,
    /// Whether the transmitter is locked out after a time-out.
    pub locked_out: bool,
    /// The last error (device, floor, codec), if any.
    pub last_error: Option<String>,
    /// Counters.
    pub counters: PortCounters,
    /// Measured latencies.
    pub latency: PortLatency,
}

/// What the HTTP side and the panic hook share with a port thread.
pub struct PortShared {
    status: Mutex<PortStatus>,
    keyed: AtomicBool,
    force_unkey: AtomicBool,
    thread: OnceLock<ThreadId>,
    ptt: Option<PttConfig>,
}

impl PortShared {
    /// A snapshot of the status.
    pub fn status(&self) -> PortStatus {
        self.status.lock().clone()
    }
}

/// What a port is.
#[derive(Clone)]
enum Spec {
    Radio(RadioConfig),
    Console(ConsoleConfig),
}

impl Spec {
    fn name(&self) -> &str {
        match self {
            Spec::Radio(r) => &r.name,
            Spec::Console(c) => &c.name,
        }
    }
    fn identity(&self) -> Identity {
        match self {
            Spec::Radio(r) => r.identity(),
            Spec::Console(c) => c.identity(),
        }
    }
}

/// What the port drivers use of the gateway: the hub (to join, request floors, forward
/// audio), the permission store (the channel's event) and the shutdown token.
#[derive(Clone)]
pub struct BridgeCtx {
    /// The hub's shell.
    pub hub: Arc<Switchboard>,
    /// The SQLite permission store.
    pub store: Arc<SqliteStore>,
    /// Cancelled at gateway shutdown (every port unkeys and leaves).
    pub shutdown: CancellationToken,
    /// The recordings, read back for the consoles' instant recall (`None` with
    /// `[recording] enabled = false`).
    pub recall: Option<crate::recording::recall::Recall>,
    /// This gateway's linked channels (issue 16): a port's floor request on one is decided
    /// at its upstream.
    pub links: Arc<crate::link::Links>,
}

/// Every configured port of the gateway.
pub struct Radios {
    ports: Vec<(Spec, Arc<PortShared>)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

fn registry() -> &'static Mutex<Vec<Arc<PortShared>>> {
    static PORTS: OnceLock<Mutex<Vec<Arc<PortShared>>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

impl Radios {
    /// The ports of `radios` and `consoles` (validated configuration), not started yet.
    pub fn new(radios: &[RadioConfig], consoles: &[ConsoleConfig]) -> Self {
        let specs = radios
            .iter()
            .cloned()
            .map(Spec::Radio)
            .chain(consoles.iter().cloned().map(Spec::Console));
        let ports = specs
            .map(|s| {
                let id = s.identity();
                let shared = Arc::new(PortShared {
                    status: Mutex::new(PortStatus {
                        name: s.name().to_string(),
                        kind: if matches!(s, Spec::Radio(_)) {
                            "radio"
                        } else {
                            "console"
                        },
                        channel: id.channel,
                        conn_id: None,
                        joined: false,
                        devices: Vec::new(),
                        keyed: false,
                        squelch_open: false,
                        sending: false,
                        locked_out: false,
                        last_error: None,
                        counters: PortCounters::default(),
                        latency: PortLatency::default(),
                    }),
                    keyed: AtomicBool::new(false),
                    force_unkey: AtomicBool::new(false),
                    thread: OnceLock::new(),
                    ptt: match &s {
                        Spec::Radio(r) => Some(r.ptt.clone()),
                        Spec::Console(_) => None,
                    },
                });
                (s, shared)
            })
            .collect();
        Radios {
            ports,
            threads: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Number of configured ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether no port is configured.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Starts one thread per port (once), registers the ports with the panic hook and installs
    /// it.
    ///
    /// # Errors
    /// [`DriverError::Thread`] when a thread cannot be spawned.
    pub fn start(&self, gw: &Arc<BridgeCtx>) -> Result<(), DriverError> {
        let mut threads = self.threads.lock();
        if !threads.is_empty() || self.ports.is_empty() {
            return Ok(());
        }
        install_panic_hook();
        for (spec, shared) in &self.ports {
            registry().lock().push(Arc::clone(shared));
            let (gw, shared, spec, stop) = (
                Arc::clone(gw),
                Arc::clone(shared),
                spec.clone(),
                Arc::clone(&self.stop),
            );
            let h = std::thread::Builder::new()
                .name(format!("radio-{}", spec.name()))
                .spawn(move || supervise(gw, shared, spec, stop))?;
            threads.push(h);
        }
        Ok(())
    }

    /// Stops every port (unkey, release the floor, leave) and waits for the threads, at most
    /// `grace`. Returns whether all stopped in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.threads.lock());
        if threads.is_empty() {
            return true;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let ok = tokio::time::timeout(grace, joined).await.is_ok();
        if ok {
            tracing::info!("radio ports stopped and unkeyed");
        } else {
            tracing::error!("radio ports did not stop in time");
        }
        ok
    }

    /// Status of every port.
    pub fn status(&self) -> Vec<PortStatus> {
        self.ports.iter().map(|(_, s)| s.status()).collect()
    }

    /// The `radio` object of `/healthz` and `admin.status`: `{ports: [...], keyed: N}`.
    pub fn status_json(&self) -> Value {
        let ports = self.status();
        let keyed = ports.iter().filter(|p| p.keyed).count();
        json!({"ports": ports, "keyed": keyed})
    }
}

/// Runs a port until shutdown, restarting it 1 s after a panic (its devices were dropped,
/// and so unkeyed, while unwinding).
fn supervise(gw: Arc<BridgeCtx>, shared: Arc<PortShared>, spec: Spec, stop: Arc<AtomicBool>) {
    let _ = shared.thread.set(std::thread::current().id());
    loop {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Driver::new(Arc::clone(&gw), Arc::clone(&shared), spec.clone(), &stop).map(|d| d.run())
        }));
        let stopping = || gw.shutdown.is_cancelled() || stop.load(Ordering::SeqCst);
        match run {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                tracing::error!(port = spec.name(), error = %e, "radio port cannot start");
                shared.status.lock().last_error = Some(e.to_string());
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                tracing::error!(port = spec.name(), panic = %msg, "radio port driver panicked; unkeyed, restarting in 1 s");
                let mut st = shared.status.lock();
                st.last_error = Some(format!("driver panicked: {msg}"));
                st.keyed = false;
                st.joined = false;
                st.conn_id = None;
            }
        }
        shared.keyed.store(false, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if stopping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

enum Logic {
    Radio(Box<RadioPort>),
    Console(ConsolePort),
}

impl Logic {
    fn line(&mut self, now: Instant, level: bool) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.squelch(now, level),
            Logic::Console(c) => c.button(now, level),
        }
    }
    fn captured(&mut self, now: Instant, s: &[f32]) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.captured_audio(now, s),
            Logic::Console(c) => c.captured_audio(now, s),
        }
    }
    fn channel_audio(&mut self, now: Instant, s: &[f32]) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.channel_audio(now, s),
            Logic::Console(c) => c.channel_audio(now, s),
        }
    }
    fn granted(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.floor_granted(now),
            Logic::Console(c) => c.floor_granted(now),
        }
    }
    fn denied(&mut self, now: Instant, reason: &str) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.floor_denied(now, reason),
            Logic::Console(c) => c.floor_denied(now, reason),
        }
    }
    fn revoked(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.floor_revoked(now),
            Logic::Console(c) => c.floor_revoked(now),
        }
    }
    fn idle(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.channel_idle(now),
            Logic::Console(_) => Vec::new(),
        }
    }
    fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.tick(now),
            Logic::Console(c) => c.tick(now),
        }
    }
    fn replay_loaded(&mut self, now: Instant, packets: Vec<(Vec<u8>, u32)>) -> Vec<Action> {
        match self {
            Logic::Radio(_) => Vec::new(),
            Logic::Console(c) => c.replay_loaded(now, packets),
        }
    }
    fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Logic::Radio(p) => p.shutdown(now),
            Logic::Console(c) => c.shutdown(now),
        }
    }
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Logic::Radio(p) => p.next_deadline(),
            Logic::Console(c) => c.next_deadline(),
        }
    }
    fn sending(&self) -> bool {
        match self {
            Logic::Radio(p) => p.is_sending(),
            Logic::Console(c) => c.is_sending(),
        }
    }
    fn locked_out(&self) -> bool {
        match self {
            Logic::Radio(p) => p.is_locked_out(),
            Logic::Console(_) => false,
        }
    }
}

/// RTP sender state of the port's uplink.
struct RtpOut {
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
}

/// Channel voice decoding state.
struct RtpIn {
    ssrc: Option<u32>,
    last_seq: u16,
}

struct Driver<'a> {
    gw: Arc<BridgeCtx>,
    shared: Arc<PortShared>,
    stop: &'a AtomicBool,
    name: String,
    id: Identity,
    priority: Priority,
    logic: Logic,
    dev: Devices,
    conn: Option<ConnId>,
    joined: bool,
    detached: Option<String>,
    next_join: Instant,
    out_rx: crate::switchboard::OutboundRx,
    /// Whether the outbound queue's overflow has been handled (the radio made safe once).
    overflow_seen: bool,
    out_tx: crate::switchboard::OutboundTx,
    media_rx: mpsc::Receiver<Downlink>,
    media_tx: mpsc::Sender<Downlink>,
    enc: opus::Encoder,
    dec: opus::Decoder,
    /// Decodes a console's instant recall replay (its own stream, apart from live voice).
    replay_dec: opus::Decoder,
    rtp_out: RtpOut,
    rtp_in: RtpIn,
    keyed_since: Option<Instant>,
    counters: PortCounters,
    latency: PortLatency,
    squelch_at: Option<Instant>,
    line_level: bool,
    last_error: Option<String>,
    capture: Vec<f32>,
    pcm: Vec<f32>,
    opus_buf: Vec<u8>,
    last_ptt_poll: Instant,
    /// When the packet whose audio is being handed to the card now arrived.
    playing_from: Option<Instant>,
    /// Most audio (48 kHz samples) queued for the card before new audio is dropped.
    latency_cap: usize,
    /// A floor request on a linked channel waiting for the upstream's decision.
    asking: Option<Asking>,
}

/// A floor request sent up a link: the link participant, the answer, when to give up.
struct Asking {
    link: ConnId,
    rx: tokio::sync::oneshot::Receiver<Result<(), crate::link::LinkError>>,
    deadline: Instant,
}

impl<'a> Driver<'a> {
    fn new(
        gw: Arc<BridgeCtx>,
        shared: Arc<PortShared>,
        spec: Spec,
        stop: &'a AtomicBool,
    ) -> Result<Self, DriverError> {
        let backoff = Backoff::default();
        let tx_delay_ms = match &spec {
            Spec::Radio(r) => r.tx_delay_ms,
            Spec::Console(_) => 0,
        };
        let latency_cap = ((tx_delay_ms + 300) * 48) as usize;
        let (logic, dev, priority) = match &spec {
            Spec::Radio(r) => (
                Logic::Radio(Box::new(RadioPort::new(r.port_config()))),
                devices::build(&r.name, Some(&r.ptt), &r.squelch, &r.audio, backoff),
                Priority::Normal,
            ),
            Spec::Console(c) => (
                Logic::Console({
                    let port = ConsolePort::new(Duration::from_millis(500));
                    if c.replay_on_double_press {
                        port.with_instant_recall(Duration::from_millis(c.double_press_ms))
                    } else {
                        port
                    }
                }),
                devices::build(&c.name, None, &c.button, &c.audio, backoff),
                if c.pre_empt {
                    Priority::PreEmptive
                } else {
                    Priority::Normal
                },
            ),
        };
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
        enc.set_bitrate(opus::Bitrate::Bits(32_000))?;
        let dec = opus::Decoder::new(48_000, opus::Channels::Mono)?;
        let replay_dec = opus::Decoder::new(48_000, opus::Channels::Mono)?;
        let (out_tx, out_rx) = crate::switchboard::outbound(RADIO_OUTBOUND_QUEUE);
        let (media_tx, media_rx) = mpsc::channel(DOWNLINK_QUEUE);
        let now = Instant::now();
        Ok(Driver {
            name: spec.name().to_string(),
            id: spec.identity(),
            gw,
            shared,
            stop,
            priority,
            logic,
            dev,
            conn: None,
            joined: false,
            detached: None,
            next_join: now,
            out_rx,
            overflow_seen: false,
            out_tx,
            media_rx,
            media_tx,
            enc,
            dec,
            replay_dec,
            rtp_out: RtpOut {
                ssrc: rand::random::<u32>() | 1,
                seq: rand::random(),
                ts: rand::random(),
                marker: true,
            },
            rtp_in: RtpIn {
                ssrc: None,
                last_seq: 0,
            },
            keyed_since: None,
            counters: PortCounters::default(),
            latency: PortLatency::default(),
            squelch_at: None,
            line_level: false,
            last_error: None,
            capture: vec![0.0; 48_000],
            pcm: vec![0.0; 5760],
            opus_buf: vec![0u8; 1500],
            last_ptt_poll: now,
            playing_from: None,
            latency_cap,
            asking: None,
        })
    }

    fn stopping(&self) -> bool {
        self.gw.shutdown.is_cancelled() || self.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        tracing::info!(port = %self.name, channel = %self.id.channel, user = %self.id.user_id, "radio port started");
        // Open the PTT now: it is driven unkeyed on opening.
        if let Some(p) = self.dev.ptt.as_mut() {
            let _ = p.poll(Instant::now());
        }
        if let Some(s) = self.dev.sink.as_mut() {
            let _ = s.write(&[]);
        }
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if self.stopping() {
                break;
            }
            if self.shared.force_unkey.load(Ordering::SeqCst) {
                let acts = self.logic.shutdown(now);
                self.exec(now, acts);
                self.set_keyed(now, false);
                // The current over is cut: channel audio already queued for it is dropped,
                // so it does not key the radio again (the next over does).
                while self.media_rx.try_recv().is_ok() {}
                self.shared.force_unkey.store(false, Ordering::SeqCst);
            }
            self.step(now);
            self.publish(now);
            next += POLL;
            let now = Instant::now();
            if next < now {
                next = now;
            }
            let wake = self
                .logic
                .next_deadline()
                .map_or(next, |d| d.max(now).min(next));
            std::thread::sleep(wake.saturating_duration_since(now));
        }
        let now = Instant::now();
        let acts = self.logic.shutdown(now);
        self.exec(now, acts);
        self.set_keyed(now, false);
        self.leave(now);
        self.publish(now);
        tracing::info!(port = %self.name, "radio port stopped");
    }

    /// Registers with the hub and joins the channel (retried every 5 s while it fails).
    fn ensure_joined(&mut self, now: Instant) {
        if self.joined || self.detached.is_some() || now < self.next_join {
            return;
        }
        self.next_join = now + Duration::from_secs(5);
        let channel_event = match self.gw.store.channel_event(&self.id.channel) {
            Ok(e) => e,
            Err(e) => {
                self.error(format!("permission store: {e}"));
                return;
            }
        };
        let mut hub = self.gw.hub.lock();
        let conn = match self.conn {
            Some(c) => c,
            None => {
                let c = self.gw.hub.next_conn_id();
                hub.register(
                    ConnectionInfo {
                        conn_id: c,
                        user_id: self.id.user_id.clone(),
                        name: self.id.display_name.clone(),
                        device_id: self.id.device_id.clone(),
                        role: self.id.role,
                        event: self.id.event.clone(),
                        remote_addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                        connected_at_ms: crate::clock::unix_ms(),
                    },
                    vec![self.id.channel.clone()],
                    1,
                    self.out_tx.clone(),
                );
                hub.attach_media(c, crate::sfu::routes::Sink::Queue(self.media_tx.clone()));
                self.conn = Some(c);
                c
            }
        };
        match hub.join(conn, &self.id.channel, channel_event.as_deref()) {
            Ok(j) => {
                drop(hub);
                self.joined = true;
                tracing::info!(port = %self.name, conn, channel = %self.id.channel, members = j.members, "radio port joined its channel");
            }
            Err(e) => {
                drop(hub);
                self.error(format!("join {}: {}", self.id.channel, e));
            }
        }
    }

    fn leave(&mut self, now: Instant) {
        if let Some(c) = self.conn.take() {
            self.gw.hub.lock().unregister(c, now);
        }
        self.joined = false;
    }

    fn error(&mut self, msg: String) {
        if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(port = %self.name, error = %msg, "radio port error");
        }
        self.counters.errors += 1;
        self.last_error = Some(msg);
    }

    fn step(&mut self, now: Instant) {
        self.ensure_joined(now);
        self.upstream_decision(now);
        // Hub notifications. Channel voice the hub forwarded before a notification is already
        // queued when the notification is read: handle it first, so that the last packets of
        // a talk are played before the `floor.idle` that followed them (not taken for a new
        // transmission after it, which would key the radio again after a time-out lockout).
        if self.out_rx.overflow.is_cancelled() && !self.overflow_seen {
            // Notifications were lost: a floor.idle or floor.revoke may be among them. Unkey
            // (the safe state); the next notifications set the radio right again.
            self.overflow_seen = true;
            tracing::error!(port = %self.name, "radio port fell behind its notifications; unkeyed for safety");
            self.counters.floor_revoked += 1;
            let acts = self.logic.revoked(now);
            self.exec(now, acts);
        }
        while let Ok(m) = self.out_rx.rx.try_recv() {
            self.drain_media(now);
            match m {
                Outbound::Note(r) => {
                    let acts = match &r.note {
                        Notification::FloorIdle { .. } => self.logic.idle(now),
                        Notification::FloorRevoke { .. } => {
                            self.counters.floor_revoked += 1;
                            self.logic.revoked(now)
                        }
                        _ => Vec::new(),
                    };
                    self.exec(now, acts);
                }
                Outbound::Frame(_) => {}
                Outbound::Close(code, reason) => {
                    if !self.stopping() {
                        tracing::warn!(port = %self.name, code, %reason, "radio port disconnected by the gateway; it stays off its channel until restart");
                        self.error(format!("disconnected ({code}): {reason}"));
                        self.detached = Some(reason);
                    }
                    let acts = self.logic.shutdown(now);
                    self.exec(now, acts);
                    self.set_keyed(now, false);
                    self.leave(now);
                }
            }
        }
        self.drain_media(now);
        // Captured audio, VOX, then the squelch / button.
        let mut n = 0;
        if let Some(src) = self.dev.source.as_mut() {
            match src.read(&mut self.capture) {
                Ok(k) => n = k,
                Err(e) => {
                    let msg = e.to_string();
                    self.error(msg);
                }
            }
        }
        if let Some(v) = self.dev.vox.as_mut() {
            v.process(&self.capture[..n]);
        }
        if let Some(line) = self.dev.line.as_mut() {
            let res = line.poll(now);
            let level = line.level();
            if let Err(e) = res {
                let msg = e.to_string();
                self.error(msg);
            }
            if level != self.line_level {
                self.line_level = level;
                if level {
                    self.squelch_at = Some(now);
                }
                tracing::debug!(port = %self.name, level, "line changed");
                let acts = self.logic.line(now, level);
                self.exec(now, acts);
            }
        }
        if n > 0 {
            let samples = self.capture[..n].to_vec();
            let acts = self.logic.captured(now, &samples);
            self.exec(now, acts);
        }
        let acts = self.logic.tick(now);
        self.exec(now, acts);
        if now.duration_since(self.last_ptt_poll) >= Duration::from_millis(100) {
            self.last_ptt_poll = now;
            if let Some(p) = self.dev.ptt.as_mut() {
                if let Err(e) = p.poll(now) {
                    let msg = e.to_string();
                    self.error(msg);
                }
            }
            // Keep the playback card open (a lost one is reopened with backoff), so a key-up
            // never waits for the card to open.
            if let Some(s) = self.dev.sink.as_mut() {
                if let Err(e) = s.write(&[]) {
                    let msg = e.to_string();
                    self.error(msg);
                }
            }
        }
    }

    /// Handles every channel voice packet queued so far.
    fn drain_media(&mut self, now: Instant) {
        while let Ok(d) = self.media_rx.try_recv() {
            self.channel_packet(now, d);
        }
    }

    fn channel_packet(&mut self, now: Instant, d: Downlink) {
        let p = &d.packet;
        let seq = p.header.sequence_number;
        let mut lost = 0u16;
        match self.rtp_in.ssrc {
            Some(s) if s == p.header.ssrc => {
                let diff = seq.wrapping_sub(self.rtp_in.last_seq);
                if diff == 0 || diff >= 0x8000 {
                    return; // duplicate or late
                }
                lost = diff - 1;
            }
            _ => {
                let _ = self.dec.reset_state();
            }
        }
        self.rtp_in = RtpIn {
            ssrc: Some(p.header.ssrc),
            last_seq: seq,
        };
        self.counters.packets_received += 1;
        self.counters.packets_lost += u64::from(lost);
        self.playing_from = Some(d.received_at);
        // Conceal up to 3 lost frames; longer gaps are silence anyway.
        for _ in 0..lost.min(3) {
            if let Ok(k) = self.dec.decode_float(&[], &mut self.pcm, false) {
                let s = self.pcm[..k].to_vec();
                let acts = self.logic.channel_audio(now, &s);
                self.exec(now, acts);
            }
        }
        match self.dec.decode_float(&p.payload, &mut self.pcm, false) {
            Ok(k) => {
                let s = self.pcm[..k].to_vec();
                let acts = self.logic.channel_audio(now, &s);
                self.exec(now, acts);
            }
            Err(e) => self.error(format!("opus decode: {e}")),
        }
        self.playing_from = None;
    }

    /// The logic asked for the floor: decided here, or sent up the channel's link (the answer
    /// is polled by [`Driver::upstream_decision`]).
    fn request_floor(&mut self, now: Instant) -> Vec<Action> {
        let Some(c) = self.conn.filter(|_| self.joined) else {
            let e = crate::hub::HubError::NotAMember {
                channel: self.id.channel.clone(),
            };
            return self.logic.denied(now, &e.to_string());
        };
        let decision =
            self.gw
                .hub
                .lock()
                .floor_request_site(c, &self.id.channel, self.priority, None, now);
        match decision {
            Ok(crate::hub::SiteDecision::Decided(_)) => self.floor_granted(now),
            Ok(crate::hub::SiteDecision::AskUpstream { link }) => {
                let name = self.id.display_name.clone();
                match self.gw.links.ask(&self.id.channel, &name, self.priority) {
                    Ok(rx) => {
                        tracing::info!(port = %self.name, channel = %self.id.channel, "floor request sent up the link");
                        self.asking = Some(Asking {
                            link,
                            rx,
                            deadline: now + crate::link::DECISION_TIMEOUT,
                        });
                        Vec::new()
                    }
                    Err(e) => self.decided(now, c, link, Err(e)),
                }
            }
            Err(e) => self.logic.denied(now, &e.to_string()),
        }
    }

    /// Polls the upstream's answer to a floor request on a linked channel.
    fn upstream_decision(&mut self, now: Instant) {
        let Some(a) = self.asking.as_mut() else {
            return;
        };
        let res = match a.rx.try_recv() {
            Ok(r) => r,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) if now < a.deadline => return,
            Err(_) => Err(crate::link::LinkError::NoAnswer),
        };
        let link = a.link;
        self.asking = None;
        let acts = match self.conn {
            Some(c) => self.decided(now, c, link, res),
            None => self.logic.denied(now, "left the channel"),
        };
        self.exec(now, acts);
    }

    /// Applies the upstream's decision ([`crate::link::apply_decision`]).
    fn decided(
        &mut self,
        now: Instant,
        c: ConnId,
        link: ConnId,
        res: Result<(), crate::link::LinkError>,
    ) -> Vec<Action> {
        let mut hub = self.gw.hub.lock();
        let asked = crate::link::Asked {
            id: c,
            channel: &self.id.channel,
            priority: self.priority,
            shown: None,
            link,
        };
        let r = crate::link::apply_decision(&mut hub, asked, res, now);
        drop(hub);
        match r {
            Ok(_) => self.floor_granted(now),
            Err(e) => self.logic.denied(now, &e.to_string()),
        }
    }

    fn floor_granted(&mut self, now: Instant) -> Vec<Action> {
        self.rtp_out.marker = true;
        tracing::info!(port = %self.name, channel = %self.id.channel, "floor granted to the radio");
        self.logic.granted(now)
    }

    fn set_keyed(&mut self, now: Instant, keyed: bool) {
        if keyed && self.keyed_since.is_none() {
            self.keyed_since = Some(now);
            self.counters.key_ups += 1;
            self.latency.packet_to_card_max_ms = None;
        } else if !keyed {
            if let Some(t) = self.keyed_since.take() {
                self.counters.keyed_ms += now.duration_since(t).as_millis() as u64;
            }
        }
        self.shared.keyed.store(keyed, Ordering::SeqCst);
        if let Some(p) = self.dev.ptt.as_mut() {
            if let Err(e) = p.set_keyed(keyed) {
                let msg = format!("PTT {}: {e}", if keyed { "key" } else { "unkey" });
                self.error(msg);
            } else {
                tracing::info!(port = %self.name, keyed, "PTT");
            }
        }
    }

    fn exec(&mut self, now: Instant, acts: Vec<Action>) {
        let mut queue: VecDeque<Action> = acts.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Key => self.set_keyed(now, true),
                Action::Unkey(reason) => {
                    self.set_keyed(now, false);
                    if reason == UnkeyReason::TimedOut {
                        if let Some(s) = self.dev.sink.as_mut() {
                            s.reset();
                        }
                    }
                }
                Action::Play(samples) => self.play(now, &samples),
                Action::RequestFloor => queue.extend(self.request_floor(now)),
                Action::ReleaseFloor => {
                    if let Some(c) = self.conn.filter(|_| self.joined) {
                        let _ = self.gw.hub.lock().floor_release(c, &self.id.channel, now);
                    }
                }
                Action::Send(frame) => self.send(now, &frame),
                Action::Log(ev) => self.log(ev),
                Action::Replay => queue.extend(self.recall(now)),
                Action::PlayRecorded(packet) => {
                    match self.replay_dec.decode_float(&packet, &mut self.pcm, false) {
                        Ok(k) => {
                            let s = self.pcm[..k].to_vec();
                            self.play(now, &s);
                        }
                        Err(e) => self.error(format!("instant recall: opus decode: {e}")),
                    }
                }
            }
        }
    }

    /// A console's double press: loads the channel's last recording for the replay.
    fn recall(&mut self, now: Instant) -> Vec<Action> {
        let Some(recall) = self.gw.recall.as_ref() else {
            self.error("instant recall needs [recording] enabled".into());
            return Vec::new();
        };
        match recall.last(&self.id.channel) {
            Ok(Some(r)) => {
                tracing::info!(port = %self.name, channel = %self.id.channel, recording = r.id,
                               talker = %r.name.escape_debug(), packets = r.packets.len(),
                               "instant recall: replaying the channel's last transmission");
                let _ = self.replay_dec.reset_state();
                self.logic.replay_loaded(now, r.packets)
            }
            Ok(None) => {
                tracing::info!(port = %self.name, channel = %self.id.channel,
                               "instant recall: nothing recorded on the channel yet");
                Vec::new()
            }
            Err(e) => {
                self.error(format!("instant recall: {e}"));
                Vec::new()
            }
        }
    }

    fn play(&mut self, now: Instant, samples: &[f32]) {
        let Some(sink) = self.dev.sink.as_mut() else {
            return;
        };
        let queued = sink.queued();
        // Audio written to a card that does not play yet, or on top of a backlog, would only
        // add latency (and outlast the hang time): drop it instead.
        if !sink.running() || queued > self.latency_cap {
            self.counters.playout_dropped += samples.len() as u64;
            return;
        }
        if let Err(e) = sink.write(samples) {
            let msg = e.to_string();
            self.error(msg);
            return;
        }
        if let Some(at) = self.playing_from {
            // The packet's first sample reaches the card after what is queued ahead of it.
            let ms =
                now.duration_since(at).as_secs_f64() * 1000.0 + queued as f64 * 1000.0 / 48_000.0;
            self.latency.packet_to_card_ms = Some(ms);
            let max = self.latency.packet_to_card_max_ms.get_or_insert(ms);
            *max = max.max(ms);
        }
    }

    fn send(&mut self, now: Instant, frame: &[f32]) {
        let Some(conn) = self.conn.filter(|_| self.joined) else {
            return;
        };
        debug_assert_eq!(frame.len(), FRAME_SAMPLES);
        let n = match self.enc.encode_float(frame, &mut self.opus_buf) {
            Ok(n) => n,
            Err(e) => {
                self.error(format!("opus encode: {e}"));
                return;
            }
        };
        let pkt = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: std::mem::replace(&mut self.rtp_out.marker, false),
                payload_type: 111,
                sequence_number: self.rtp_out.seq,
                timestamp: self.rtp_out.ts,
                ssrc: self.rtp_out.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(&self.opus_buf[..n]),
        };
        self.rtp_out.seq = self.rtp_out.seq.wrapping_add(1);
        self.rtp_out.ts = self.rtp_out.ts.wrapping_add(FRAME_SAMPLES as u32);
        self.gw.hub.routes().forward(conn, &pkt, now);
        self.counters.frames_sent += 1;
        if let Some(t) = self.squelch_at.take() {
            self.latency.squelch_to_first_packet_ms =
                Some(now.duration_since(t).as_secs_f64() * 1000.0);
        }
    }

    fn log(&mut self, ev: PortEvent) {
        match &ev {
            PortEvent::TxTimedOut { keyed_for } => {
                self.counters.time_outs += 1;
                tracing::warn!(port = %self.name, keyed_for_ms = keyed_for.as_millis() as u64, "transmit time-out: unkeyed, locked out until the channel is idle");
                self.last_error =
                    Some(format!("transmit time-out after {} s", keyed_for.as_secs()));
            }
            PortEvent::FloorDenied { reason } => {
                self.counters.floor_denied += 1;
                tracing::info!(port = %self.name, %reason, "floor denied to the radio: its audio is dropped until the squelch closes");
            }
            other => tracing::info!(port = %self.name, event = ?other, "radio port event"),
        }
    }

    /// Copies the state into the shared status.
    fn publish(&mut self, now: Instant) {
        let mut devices: Vec<DeviceStatus> = Vec::new();
        let add = |devices: &mut Vec<DeviceStatus>, role, device: String, state: DeviceState| {
            let (state, last_error) = match state {
                DeviceState::Up => ("up", None),
                DeviceState::Down { last_error, .. } => ("down", Some(last_error)),
            };
            devices.push(DeviceStatus {
                role,
                device,
                state,
                last_error,
            });
        };
        let console = matches!(self.logic, Logic::Console(_));
        if let Some(p) = &self.dev.ptt {
            add(&mut devices, "ptt", p.describe(), p.state());
        }
        if let Some(l) = &self.dev.line {
            let role = if console { "button" } else { "squelch" };
            add(&mut devices, role, l.inner().describe(), l.inner().state());
        }
        if let Some(s) = &self.dev.source {
            add(&mut devices, "capture", s.describe(), s.state());
        }
        if let Some(s) = &self.dev.sink {
            add(&mut devices, "playback", s.describe(), s.state());
            if !s.running() {
                if let Some(d) = devices.last_mut().filter(|d| d.state == "up") {
                    d.state = "starting";
                }
            }
        }
        let mut counters = self.counters;
        if let Some(t) = self.keyed_since {
            counters.keyed_ms += now.duration_since(t).as_millis() as u64;
        }
        let mut st = self.shared.status.lock();
        st.conn_id = self.conn;
        st.joined = self.joined;
        st.devices = devices;
        st.keyed = self.keyed_since.is_some();
        st.squelch_open = self.line_level;
        st.sending = self.logic.sending();
        st.locked_out = self.logic.locked_out();
        st.last_error = self.last_error.clone();
        st.counters = counters;
        st.latency = self.latency;
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        // Also runs while unwinding from a panic: leave the hub so no ghost holds the floor.
        // The devices are dropped after this, and every PTT backend unkeys on drop.
        if let Some(c) = self.conn.take() {
            self.gw.hub.lock().unregister(c, Instant::now());
        }
        self.shared.keyed.store(false, Ordering::SeqCst);
        if let Some(p) = self.dev.ptt.as_mut() {
            let _ = p.set_keyed(false);
        }
    }
}

/// Installs (once) a panic hook that runs the previous hook, then makes every running port
/// unkey: the port's own thread is asked to unkey and release its floor (it answers within a
/// few ms); a port that does not answer within 200 ms is unkeyed by opening its PTT output
/// directly (CAT, CM108; a serial or GPIO line held by the stuck thread cannot be opened
/// twice: `radiogate unkey` from systemd's `ExecStopPost=` covers that case).
pub fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            prev(info);
            let me = std::thread::current().id();
            let ports: Vec<Arc<PortShared>> = match registry().try_lock() {
                Some(r) => r.clone(),
                None => return,
            };
            for p in &ports {
                p.force_unkey.store(true, Ordering::SeqCst);
            }
            for p in &ports {
                if p.thread.get() == Some(&me) || !p.keyed.load(Ordering::SeqCst) {
                    // The panicking port unkeys while unwinding (its devices are dropped).
                    continue;
                }
                let until = Instant::now() + Duration::from_millis(200);
                while p.keyed.load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if p.keyed.load(Ordering::SeqCst) {
                    if let Some(cfg) = &p.ptt {
                        let _ = unkey_one(cfg);
                    }
                }
            }
        }));
    });
}

/// Opens one configured PTT output and unkeys it. `Ok(false)` when there is nothing to unkey
/// (`none`, `sim`).
///
/// # Errors
/// The backend's error, rendered with what to fix.
pub fn unkey_one(p: &PttConfig) -> Result<bool, String> {
    match devices::open_ptt_once(p) {
        Ok(Some(mut out)) => {
            out.set_keyed(false).map_err(|e| e.to_string())?;
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// `radiogate unkey`: opens every configured radio PTT output and unkeys it. Returns one line
/// per radio (`name: unkeyed DEVICE` or `name: ERROR`) and whether every one succeeded.
pub fn unkey_all(radios: &[RadioConfig]) -> (Vec<String>, bool) {
    let mut ok = true;
    let lines = radios
        .iter()
        .map(|r| {
            let what = devices::describe_ptt(&r.ptt);
            match unkey_one(&r.ptt) {
                Ok(true) => format!("{}: unkeyed {what}", r.name),
                Ok(false) => format!("{}: nothing to unkey ({what})", r.name),
                Err(e) => {
                    ok = false;
                    format!("{}: could not unkey {what}: {e}", r.name)
                }
            }
        })
        .collect();
    (lines, ok)
}
