//! SHELL around the pure [`Hub`] (between it and the participants' shells: signaling
//! sessions, radio and console ports, the permission sync): one lock guards the hub together with the participants'
//! outbound queues and media links; every command's outputs are carried out before the lock
//! is released (pushed onto in-memory queues: no syscalls, no awaits), so each participant
//! sees notifications in decision order. See the hub's module docs for why a lock and not a
//! task.
//!
//! [`Switchboard::lock`] returns a [`HubGuard`] that derefs to the [`Hub`]; when the guard is
//! dropped it renders each notification once ([`Rendered`]), queues it for its recipients,
//! sends closes, stamps and records audit entries, republishes the media route table if the
//! routes changed, and wakes the floor timer if the next deadline moved.

pub mod notify;
pub mod outbound;

use crate::audit::Audit;
use crate::hub::{ConnId, ConnectionInfo, Hub, Output};
use crate::sfu::routes::{RouteTable, Routes, Sink, Target};
pub use notify::Rendered;
pub use outbound::{outbound, Outbound, OutboundError, OutboundRx, OutboundTx};
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct Shell {
    core: Hub,
    outbound: HashMap<ConnId, OutboundTx>,
    media: HashMap<ConnId, Sink>,
    media_dirty: bool,
    deadline: Option<Instant>,
}

/// The hub, its participants' queues and the published route table.
pub struct Switchboard {
    inner: Mutex<Shell>,
    next_conn: AtomicU64,
    audit: Option<Audit>,
    routes: Routes,
    wake: Notify,
    /// The recorder (issue 14), once set: it gets every talk spurt boundary.
    recorder: std::sync::OnceLock<crate::recording::recorder::Recorder>,
}

/// Floor and forwarding counters since start (`counters` in `/healthz` and `admin.status`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Counters {
    /// Floors granted, denied, revoked.
    #[serde(flatten)]
    pub floors: crate::hub::HubCounters,
    /// RTP packets and bytes forwarded, dropped, unauthorised.
    #[serde(flatten)]
    pub forward: crate::sfu::routes::ForwardCounters,
}

/// Exclusive access to the hub; carries out its outputs when dropped.
pub struct HubGuard<'a> {
    shell: MutexGuard<'a, Shell>,
    board: &'a Switchboard,
}

impl Switchboard {
    /// Starts feeding `recorder` (once): every talk spurt's boundaries, and every routed
    /// uplink packet through the route table's tap.
    pub fn set_recorder(&self, recorder: crate::recording::recorder::Recorder) {
        self.routes.set_tap(std::sync::Arc::new(recorder.clone()));
        let _ = self.recorder.set(recorder);
    }

    /// Wraps `core`; audit entries go to `audit` (none: dropped).
    pub fn new(core: Hub, audit: Option<Audit>) -> Self {
        Self {
            inner: Mutex::new(Shell {
                core,
                outbound: HashMap::new(),
                media: HashMap::new(),
                media_dirty: false,
                deadline: None,
            }),
            next_conn: AtomicU64::new(1),
            audit,
            routes: Routes::default(),
            wake: Notify::new(),
            recorder: std::sync::OnceLock::new(),
        }
    }

    /// A fresh participant id (connection ids start at 1, unique for the process).
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Locks the hub.
    pub fn lock(&self) -> HubGuard<'_> {
        HubGuard {
            shell: self.inner.lock(),
            board: self,
        }
    }

    /// Locks the hub, waiting at most `timeout` (the systemd watchdog's liveness probe).
    pub fn try_lock_for(&self, timeout: Duration) -> Option<HubGuard<'_>> {
        self.inner
            .try_lock_for(timeout)
            .map(|shell| HubGuard { shell, board: self })
    }

    /// The media route table handle (read lock-free by the uplinks).
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The hub's floor counters and the media path's forwarding counters.
    pub fn counters(&self) -> Counters {
        Counters {
            floors: self.lock().counters(),
            forward: self.routes.counters(),
        }
    }

    /// Runs the hub's floor timers at `now`, after reporting the uplink RTP the media path
    /// has seen (so the end-of-media timer acts on fresh media); returns the next deadline.
    pub fn tick(&self, now: Instant) -> Option<Instant> {
        let heard = self.routes.uplink_activity();
        let mut hub = self.lock();
        for (talker, at) in heard {
            hub.uplink_media(talker, at);
        }
        hub.tick(now)
    }

    /// Notified when the hub's next timer deadline moved (the floor timer task waits on it).
    pub fn wake(&self) -> &Notify {
        &self.wake
    }
}

impl HubGuard<'_> {
    /// Registers a participant with the hub and keeps its outbound queue.
    pub fn register(
        &mut self,
        info: ConnectionInfo,
        permitted: Vec<String>,
        slot_count: usize,
        tx: OutboundTx,
    ) {
        let id = info.conn_id;
        self.shell.core.register(info, permitted, slot_count);
        self.shell.outbound.insert(id, tx);
    }

    /// Unregisters a participant (releasing its floors, leaving its channels) and drops its
    /// queue and media link. Returns its info if it was registered.
    pub fn unregister(&mut self, id: ConnId, now: Instant) -> Option<ConnectionInfo> {
        let info = self.shell.core.unregister(id, now);
        self.flush();
        self.shell.outbound.remove(&id);
        if self.shell.media.remove(&id).is_some() {
            self.shell.media_dirty = true;
        }
        info
    }

    /// Attaches a participant's downlink sink (its media is up).
    pub fn attach_media(&mut self, id: ConnId, sink: Sink) {
        // A WebRTC peer is a media path whose silence means trouble (TS 24.380 T1); a radio
        // or console port's queue is not.
        let webrtc = matches!(sink, Sink::Engine { .. });
        self.shell.core.set_media_uplink(id, webrtc);
        self.shell.media.insert(id, sink);
        self.shell.media_dirty = true;
    }

    /// Detaches a participant's downlink sink if it is still `sink` (a replaced peer
    /// connection closing late must not detach its successor).
    pub fn detach_media(&mut self, id: ConnId, sink: &Sink) {
        if self.shell.media.get(&id).is_some_and(|cur| cur.same(sink)) {
            self.shell.core.set_media_uplink(id, false);
            self.shell.media.remove(&id);
            self.shell.media_dirty = true;
        }
    }

    /// Queues a message for one participant (ignored if it is gone).
    pub fn send(&self, id: ConnId, msg: Outbound) {
        if let Some(tx) = self.shell.outbound.get(&id) {
            if let Err(e) = tx.send(msg) {
                tracing::debug!(conn = id, error = %e, "message not queued");
            }
        }
    }

    fn flush(&mut self) {
        let shell = &mut *self.shell;
        let outputs = shell.core.take_outputs();
        let mut wall_ms = 0;
        for o in outputs {
            match o {
                Output::Notify { to, note } => {
                    let r = Arc::new(Rendered::new(note));
                    for id in to {
                        if let Some(tx) = shell.outbound.get(&id) {
                            let _ = tx.send(Outbound::Note(Arc::clone(&r)));
                        }
                    }
                }
                Output::Spurt(e) => {
                    if let Some(r) = self.board.recorder.get() {
                        if wall_ms == 0 {
                            wall_ms = crate::clock::unix_ms();
                        }
                        r.spurt(&e, wall_ms);
                    }
                }
                Output::Close { to, code, reason } => {
                    if let Some(tx) = shell.outbound.get(&to) {
                        let _ = tx.send(Outbound::Close(code, reason));
                    }
                }
                Output::Audit(mut e) => {
                    if let Some(a) = &self.board.audit {
                        if e.ts_ms == 0 {
                            if wall_ms == 0 {
                                wall_ms = crate::clock::unix_ms();
                            }
                            e.ts_ms = wall_ms;
                        }
                        a.record(e);
                    }
                }
            }
        }
        if shell.core.take_routes_dirty() || std::mem::take(&mut shell.media_dirty) {
            let table = shell
                .core
                .routes()
                .into_iter()
                .map(|(talker, routes)| {
                    let targets = routes
                        .into_iter()
                        .filter_map(|r| {
                            shell.media.get(&r.listener).map(|sink| Target {
                                listener: r.listener,
                                slot: r.slot,
                                grant: r.grant,
                                sink: sink.clone(),
                            })
                        })
                        .collect();
                    (talker, targets)
                })
                .collect();
            self.board
                .routes
                .publish_with_channels(RouteTable::new(table), &shell.core.talker_channels());
        }
        let deadline = shell.core.next_deadline();
        if deadline != shell.deadline {
            shell.deadline = deadline;
            self.board.wake.notify_one();
        }
    }
}

impl Deref for HubGuard<'_> {
    type Target = Hub;
    fn deref(&self) -> &Hub {
        &self.shell.core
    }
}

impl DerefMut for HubGuard<'_> {
    fn deref_mut(&mut self) -> &mut Hub {
        &mut self.shell.core
    }
}

impl Drop for HubGuard<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
