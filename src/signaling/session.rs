//! One signaling session: a WebSocket whose token was verified before the upgrade.
//!
//! Requests are handled one at a time in arrival order; replies and server notifications share
//! one bounded outbound queue drained by a writer task ([`super::writer`]: pings, write
//! timeouts, 1008 for a session that cannot keep up). A bad request gets an error reply and
//! the session continues; a message over `server.max_frame_bytes` closes it with 1009, invalid
//! UTF-8 with 1007, other protocol errors with 1002; no frame for `server.ping_timeout_ms`
//! closes it with 1001 (a vanished peer).

use super::methods::{self, Access};
use super::protocol::{
    self, close, error_frame, notification_frame, result_frame, CandidateParams, ChannelParams,
    ErrorCode, Incoming, OfferParams, RpcError,
};
use crate::access::limits::{session_limiter, MessageStrikes, MessageVerdict, SessionLimiter};
use crate::access::token::Claims;
use crate::audit::Audit;
use crate::audit::{Action, Entry};
use crate::floor::Priority;
use crate::hub::{ConnId, ConnectionInfo};
use crate::media::{MediaEngine, OnClosed, PeerId, RTCIceCandidateInit};
use crate::permissions::PermissionStore;
use crate::permissions::{PermissionSync, SqliteStore};
use crate::switchboard::Outbound;
use crate::switchboard::Switchboard;
use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State of one session beyond what the hub keeps.
struct Session {
    gw: Arc<SessionCtx>,
    id: ConnId,
    claims: Claims,
    slot_ssrcs: Vec<u32>,
    media: Option<MediaLink>,
    limiter: SessionLimiter,
    strikes: MessageStrikes,
    /// The session's own outbound queue (replies go here without taking the hub lock);
    /// dropped at the end so the writer sees the queue close.
    out: Option<crate::switchboard::OutboundTx>,
    /// Whether a linked site's session said `link.hello` already (logged once).
    said_hello: bool,
    /// The id of the floor request being handled: its grant is replied to before the
    /// others are told `floor.taken` (the requester first).
    early_reply: Option<(Value, Instant)>,
    /// Whether the request being handled was replied to already.
    replied: bool,
}

/// The configuration a session uses.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Downlink slots per session (`channels.max_channels_per_user`).
    pub slots: usize,
    /// `[limits]`: message rate and strikes.
    pub limits: crate::config::LimitsConfig,
    /// `auth.leeway_secs`: the token's `exp` plus this ends the session, seconds.
    pub leeway_secs: u64,
    /// `dispatch.broadcast_hold_ms`: the emergency broadcast hold guard.
    pub broadcast_hold: Duration,
    /// `server.max_frame_bytes`: larger frames close the session with 1009, bytes.
    pub max_frame_bytes: usize,
    /// `server.ping_interval_ms`: server WebSocket pings.
    pub ping_interval: Duration,
    /// `server.ping_timeout_ms`: no frame for this long closes the session (1001).
    pub ping_timeout: Duration,
    /// `server.write_timeout_ms`: one write may take this long.
    pub write_timeout: Duration,
    /// `server.outbound_queue`: messages queued for the session before it is closed (1008).
    pub outbound_queue: usize,
}

/// What a session uses: its configuration, the hub, the permission store and sync, the audit
/// log, the SFU and, for ADMIN sessions, the admin handles.
pub struct SessionCtx {
    /// The session configuration.
    pub cfg: SessionConfig,
    /// The hub's shell.
    pub hub: Arc<Switchboard>,
    /// The SQLite permission store (channel to event).
    pub store: Arc<SqliteStore>,
    /// The permission sync (generation, re-read after registration).
    pub perm_sync: Arc<PermissionSync>,
    /// The audit log.
    pub audit: Audit,
    /// The media engine (every session's peer connection).
    pub media: MediaEngine,
    /// What the admin methods use.
    pub admin: Arc<super::admin::AdminCtx>,
    /// `[channel_names]`: display names put in the channel list.
    pub channel_names: Arc<std::collections::BTreeMap<String, String>>,
    /// The recordings, when `[recording] enabled` (issue 14).
    pub recordings: Option<Recordings>,
    /// This gateway among linked gateways (issue 16: `link.hello`).
    pub site: Arc<crate::link::Site>,
    /// The linked channels (issue 16): floor requests on them go to the upstream.
    pub links: Arc<crate::link::Links>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FloorParams {
    channel_id: String,
    /// A linked site's session asking for one of its talkers (issue 16).
    on_behalf_of: Option<String>,
}

/// `broadcast.start` params.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BroadcastParams {
    /// A linked site's session starting its Dispatch user's broadcast here (issue 16).
    on_behalf_of: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloParams {
    /// The site's path upwards: its name first, then the gateways above it.
    path: Vec<String>,
}

/// What the sessions read recordings with: the index (its own SQLite connection) and the
/// recorder (drop counter).
#[derive(Clone)]
pub struct Recordings {
    /// The index, for `recording.list`.
    pub index: Arc<parking_lot::Mutex<crate::recording::index::Index>>,
    /// The recorder.
    pub recorder: crate::recording::recorder::Recorder,
    /// The directory of the files.
    pub dir: std::path::PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecordingListParams {
    channel_id: String,
    limit: Option<u32>,
    before: Option<i64>,
}

/// The session's peer connection in the media engine.
struct MediaLink {
    peer: PeerId,
    /// Remote candidates added with `webrtc.candidate` (at most [`MAX_REMOTE_CANDIDATES`]).
    candidates: usize,
}

/// Remote ICE candidates one peer connection accepts through `webrtc.candidate`. The ICE agent
/// keeps every candidate and sends connectivity checks to each: without a cap a client could
/// make the gateway send STUN to any number of addresses. A phone has a handful.
pub const MAX_REMOTE_CANDIDATES: usize = 20;

/// The channels a connecting session may use, as read at connect, and the permission sync
/// [`generation`](crate::permissions::PermissionSync::generation) read just before.
pub struct Permitted {
    /// Permitted channel ids.
    pub channels: Vec<String>,
    /// The sync generation before the read.
    pub generation: u64,
}

/// Every channel the permission store associates with `event` (read off the runtime).
///
/// # Errors
/// [`ErrorCode::Internal`] when the store cannot be read.
pub(super) async fn event_channels(
    store: &Arc<SqliteStore>,
    event: &str,
) -> Result<Vec<String>, RpcError> {
    let (store, event) = (Arc::clone(store), event.to_string());
    tokio::task::spawn_blocking(move || store.event_channels(&event))
        .await
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
}

/// The result of a granted `floor.request`: `{channelId, granted: true, expiresInMs}`.
fn floor_granted_result(channel: &str, expires_in_ms: u64) -> Value {
    json!({"channelId": channel, "granted": true, "expiresInMs": expires_in_ms})
}

/// How many times a phone's message rate and burst (`limits.messages_per_second`,
/// `message_burst`) a session may send: [`LINK_RATE_FACTOR`] for a linked site's session
/// (token with the `link` claim), which carries the requests of all the site's talkers on its
/// channel; 1 otherwise.
fn rate_factor(claims: &Claims) -> u32 {
    if claims.link.is_some() {
        LINK_RATE_FACTOR
    } else {
        1
    }
}

/// A linked site's session may send this many times a phone's message rate (issue 16).
pub const LINK_RATE_FACTOR: u32 = 20;

/// The channels an ADMIN session lists besides its permitted ones: every channel of its event
/// in the permission store (issue 13: "the admin sees every channel of its event"; the hub
/// lets an ADMIN join any of them). Empty for other roles, and when the store cannot be read
/// (logged: the permitted channels are still listed).
async fn admin_event_channels(store: &Arc<SqliteStore>, claims: &Claims) -> Vec<String> {
    if claims.role != crate::access::role::Role::Admin {
        return Vec::new();
    }
    event_channels(store, &claims.event)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e.message, "event channels unreadable: the admin sees its own only");
            Vec::new()
        })
}

/// Runs a session to its end: registers it, sends the channel list, serves requests, and on
/// exit leaves every channel (releasing floors) and closes the peer connection.
pub async fn run(
    gw: Arc<SessionCtx>,
    claims: Claims,
    permitted: Permitted,
    remote: SocketAddr,
    socket: WebSocket,
) {
    let id = gw.hub.next_conn_id();
    let (tx, rx) = crate::switchboard::outbound(gw.cfg.outbound_queue);
    let slots = gw.cfg.slots;
    let info = ConnectionInfo {
        conn_id: id,
        user_id: claims.sub.clone(),
        name: claims.name.clone(),
        device_id: claims.device.clone(),
        role: claims.role,
        event: claims.event.clone(),
        remote_addr: remote,
        connected_at_ms: crate::clock::unix_ms(),
    };
    let also = admin_event_channels(&gw.store, &claims).await;
    {
        let mut hub = gw.hub.lock();
        hub.register(info, permitted.channels, slots, tx.clone());
        let mut list = hub.channel_list(id, &also);
        crate::hub::arrange(&mut list, &claims.channels, &gw.channel_names);
        let params = json!({"connId": id, "userId": claims.sub, "name": claims.name,
                            "role": claims.role, "event": claims.event,
                            "slots": slots, "channels": list,
                            "recorded": gw.recordings.is_some()});
        hub.send(
            id,
            Outbound::Frame(notification_frame("channel.list", params)),
        );
        for b in hub.active_broadcasts(&claims.event) {
            hub.send(
                id,
                Outbound::Frame(notification_frame("broadcast.started", json!(b))),
            );
        }
    }
    tracing::info!(conn = id, user = ?claims.sub, role = %claims.role, event = ?claims.event,
                   %remote, "session connected");
    if gw.perm_sync.generation() != permitted.generation {
        let (gw, claims) = (Arc::clone(&gw), claims.clone());
        tokio::spawn(async move {
            gw.perm_sync
                .recheck_after_register(&gw.hub, &gw.store, &claims)
                .await
        });
    }

    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(super::writer::run(
        sink,
        rx,
        super::writer::WriterConfig {
            ping_every: gw.cfg.ping_interval,
            write_timeout: gw.cfg.write_timeout,
        },
    ));

    let lim = gw.cfg.limits;
    let nz = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
    let rate = rate_factor(&claims);
    gw.audit.record(
        Entry::new(claims.sub.clone(), Action::Connect)
            .who(claims.role, claims.event.clone())
            .details(json!({"connId": id, "remote": remote.to_string(), "device": claims.device})),
    );
    let mut session = Session {
        slot_ssrcs: (0..slots).map(|_| rand::random::<u32>() | 1).collect(),
        gw: Arc::clone(&gw),
        id,
        claims,
        media: None,
        limiter: session_limiter(
            nz(lim.messages_per_second.saturating_mul(rate)),
            nz(lim.message_burst.saturating_mul(rate)),
            governor::clock::DefaultClock::default(),
        ),
        strikes: MessageStrikes::default(),
        out: Some(tx.clone()),
        said_hello: false,
        early_reply: None,
        replied: false,
    };
    let expires_in = Duration::from_secs(
        session
            .claims
            .exp
            .saturating_sub(crate::clock::unix_secs())
            .saturating_add(gw.cfg.leeway_secs),
    );
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    // `session.renew` moves the token's exp: the session then ends at the new one.
    let mut exp_seen = session.claims.exp;
    // Dead-peer detection: any frame (a pong to the writer's pings, or anything else) counts
    // as a sign of life; none for `ping_timeout` closes the session.
    let mut last_heard = Instant::now();
    let mut liveness = tokio::time::interval(gw.cfg.ping_interval.min(gw.cfg.ping_timeout));
    liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end: End = loop {
        tokio::select! {
            frame = stream.next() => {
                if matches!(frame, Some(Ok(_))) {
                    last_heard = Instant::now();
                }
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if !session.handle_text(text.as_str()).await {
                            break End::by_us(close::POLICY, "message rate limit exceeded");
                        }
                        if session.claims.exp != exp_seen {
                            exp_seen = session.claims.exp;
                            let left = Duration::from_secs(
                                exp_seen
                                    .saturating_sub(crate::clock::unix_secs())
                                    .saturating_add(gw.cfg.leeway_secs),
                            );
                            expiry.as_mut().reset(tokio::time::Instant::now() + left);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if !session.count_frame() {
                            break End::by_us(close::POLICY, "message rate limit exceeded");
                        }
                        session.reply_error(
                            &Value::Null,
                            &RpcError::new(ErrorCode::InvalidRequest, "binary frames are not supported; send JSON text"),
                        );
                    }
                    // Control frames count towards the message rate too (issue 15).
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        if !session.count_frame() {
                            break End::by_us(close::POLICY, "message rate limit exceeded");
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        break End::client(f.map(|f| (f.code, f.reason.to_string())));
                    }
                    None => break End::network("connection closed without a close frame"),
                    Some(Err(e)) => {
                        let (code, why) = read_error_close(e, gw.cfg.max_frame_bytes);
                        match code {
                            Some(code) => {
                                tracing::warn!(conn = id, code, reason = %why, "bad frame, closing");
                                break End::by_us_linger(code, why);
                            }
                            None => break End::network(why),
                        }
                    }
                }
            },
            _ = liveness.tick() => {
                if last_heard.elapsed() >= gw.cfg.ping_timeout {
                    break End::by_us(
                        close::GOING_AWAY,
                        format!("no response to ping for {} s", gw.cfg.ping_timeout.as_secs()),
                    );
                }
            }
            _ = &mut expiry => {
                break End::by_us(close::TOKEN_EXPIRED, "token expired");
            }
            w = &mut writer => break End::writer(w.unwrap_or(super::writer::WriterEnd::WriteFailed)),
        }
    };
    if let Some((code, reason)) = &end.send_close {
        session.send(Outbound::Close(*code, reason.clone()));
    }
    // Unregister first so no more media or notifications are routed to this session.
    gw.hub.lock().unregister(id, Instant::now());
    if let Some(link) = session.media.take() {
        gw.media.close(link.peer);
    }
    drop(tx);
    session.out = None;
    // The writer may already have ended (and been awaited by the select above): a JoinHandle
    // must not be polled again after it completed.
    let writer_end = match end.writer.clone() {
        Some(w) => w,
        None => tokio::time::timeout(gw.cfg.write_timeout, writer)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(super::writer::WriterEnd::WriteTimeout),
    };
    let code = match writer_end {
        super::writer::WriterEnd::Closed(c, _) => Some(c),
        super::writer::WriterEnd::Overflow => Some(close::POLICY),
        _ => end.peer_code,
    };
    if end.linger {
        // The read side is unusable after a protocol error: keep the socket open a moment so
        // the peer reads our close frame before the rest of its frames meet a closed socket
        // (which would reset the connection and hide the close code: a bounded linger).
        tokio::time::sleep(Duration::from_millis(500)).await;
    } else if end.send_close.is_some()
        || matches!(
            writer_end,
            super::writer::WriterEnd::Closed(..) | super::writer::WriterEnd::Overflow
        )
    {
        // Let a close frame we sent reach the client: read (and drop) what it still sends
        // until it answers the close or 1 s passes, so the socket is not reset under unread
        // data.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    let reason = match writer_end {
        super::writer::WriterEnd::Overflow
        | super::writer::WriterEnd::WriteTimeout
        | super::writer::WriterEnd::Closed(..) => writer_end.reason().to_string(),
        _ => end.reason.clone(),
    };

    gw.audit.record(
        Entry::new(session.claims.sub.clone(), Action::Disconnect)
            .who(session.claims.role, session.claims.event.clone())
            .outcome(end.outcome)
            .details(json!({"connId": id, "code": code, "reason": reason})),
    );
    tracing::info!(conn = id, user = ?session.claims.sub, code = ?code, reason = ?reason,
                   by = end.outcome, "session ended");
}

/// How a session ended: who ended it, the close code and reason, and what is left to do.
struct End {
    /// `client`, `gateway` or `network` (the audit outcome).
    outcome: &'static str,
    /// The reason, for the log and the audit log.
    reason: String,
    /// A close frame to send (code, reason), when the gateway ends the session.
    send_close: Option<(u16, String)>,
    /// The close code the peer sent.
    peer_code: Option<u16>,
    /// Hold the socket a moment after the close (the read side failed).
    linger: bool,
    /// The writer's end, if it ended first.
    writer: Option<super::writer::WriterEnd>,
}

impl End {
    fn base(outcome: &'static str, reason: String) -> Self {
        Self {
            outcome,
            reason,
            send_close: None,
            peer_code: None,
            linger: false,
            writer: None,
        }
    }

    fn by_us(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            send_close: Some((code, reason.clone())),
            ..Self::base("gateway", reason)
        }
    }

    fn by_us_linger(code: u16, reason: String) -> Self {
        Self {
            linger: true,
            ..Self::by_us(code, reason)
        }
    }

    fn client(frame: Option<(u16, String)>) -> Self {
        let code = frame.as_ref().map(|f| f.0);
        let reason = match frame {
            Some((_, r)) if !r.is_empty() => format!("client closed: {r}"),
            _ => "client closed".to_string(),
        };
        Self {
            peer_code: code,
            ..Self::base("client", reason)
        }
    }

    fn network(reason: impl Into<String>) -> Self {
        Self::base("network", reason.into())
    }

    /// The writer ended first: a close the hub asked for (admin disconnect, ban, shutdown:
    /// the reason is in the close frame it sent), or the peer could not keep up.
    fn writer(w: super::writer::WriterEnd) -> Self {
        let outcome = match w {
            super::writer::WriterEnd::Closed(..)
            | super::writer::WriterEnd::Overflow
            | super::writer::WriterEnd::WriteTimeout => "gateway",
            _ => "network",
        };
        let reason = w.reason().to_string();
        Self {
            writer: Some(w),
            ..Self::base(outcome, reason)
        }
    }
}

/// The close code for a read error, and a reason: 1009 for a message or frame over the limit
/// (however it was fragmented), 1007 for invalid UTF-8 in a text message, 1002 for other
/// protocol errors (reserved opcodes, bad framing) (RFC 6455 section 7.4.1); `None` for a
/// connection that is simply gone.
fn read_error_close(e: axum::Error, max_frame_bytes: usize) -> (Option<u16>, String) {
    use tokio_tungstenite::tungstenite::error::Error as WsError;
    let inner = e.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => (
            Some(close::MESSAGE_TOO_BIG),
            format!("message over {max_frame_bytes} bytes"),
        ),
        Some(WsError::Utf8(_)) => (
            Some(close::INVALID_PAYLOAD),
            "text message is not valid UTF-8".into(),
        ),
        Some(WsError::Protocol(p)) => (Some(close::PROTOCOL_ERROR), format!("protocol error: {p}")),
        Some(other) => (None, format!("connection error: {other}")),
        None => (None, format!("connection error: {inner}")),
    }
}

impl Session {
    fn send(&self, msg: Outbound) {
        if let Some(out) = &self.out {
            let _ = out.send(msg);
        }
    }

    fn reply_error(&self, id: &Value, err: &RpcError) {
        tracing::info!(conn = self.id, code = err.code.name(), message = ?err.message, "request refused");
        self.send(Outbound::Frame(error_frame(id, err)));
    }

    fn entry(&self, action: Action) -> Entry {
        Entry::new(self.claims.sub.clone(), action).who(self.claims.role, self.claims.event.clone())
    }

    /// Counts one received frame against the message rate (spec note 002); false when the
    /// session must close (the rate kept being exceeded: `limits.message_strikes`).
    fn count_frame(&mut self) -> bool {
        !matches!(self.rate_verdict(), MessageVerdict::Close)
    }

    /// The message-rate verdict for one received frame; a `Close` is audited and logged here.
    fn rate_verdict(&mut self) -> MessageVerdict {
        let max = self.gw.cfg.limits.message_strikes;
        let verdict = self.strikes.verdict(self.limiter.check().is_ok(), max);
        if verdict == MessageVerdict::Close {
            self.gw
                .audit
                .record(self.entry(Action::RateLimited).outcome("closed"));
            tracing::warn!(conn = self.id, "message rate exceeded, closing with 1008");
        }
        verdict
    }

    /// Handles one text frame; returns false when the session must close (rate limit).
    async fn handle_text(&mut self, text: &str) -> bool {
        let received = Instant::now();
        match self.rate_verdict() {
            MessageVerdict::Allow => {}
            MessageVerdict::Refuse => {
                self.gw
                    .audit
                    .record(self.entry(Action::RateLimited).outcome("refused"));
                self.reply_error(
                    &protocol::parse_request(text).ok().and_then(|r| r.id).unwrap_or(Value::Null),
                    &RpcError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "too many messages: at most {} per second; the session closes if this goes on",
                            self.gw.cfg.limits.messages_per_second.saturating_mul(rate_factor(&self.claims))
                        ),
                    ),
                );
                return true;
            }
            MessageVerdict::Close => return false,
        }
        let req = match protocol::parse_request(text) {
            Ok(r) => r,
            Err((id, err)) => {
                self.reply_error(&id, &err);
                return true;
            }
        };
        let id = req.id.clone();
        let timed = super::stats::is_floor_request(&req.method);
        self.early_reply = if timed {
            id.clone().map(|i| (i, received))
        } else {
            None
        };
        self.replied = false;
        let outcome = match methods::check(&req.method, self.claims.role) {
            Access::NotFound => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("method not found: {}", req.method),
            )),
            Access::Denied => {
                self.gw.audit.record(
                    self.entry(Action::PermissionDenied)
                        .target(req.method.clone())
                        .outcome("denied"),
                );
                Err(RpcError::new(
                    ErrorCode::PermissionDenied,
                    format!("role {} may not call {}", self.claims.role, req.method),
                ))
            }
            Access::Allowed
                if req.method.starts_with("admin.") || req.method == "device.revoke" =>
            {
                super::admin::handle(&self.gw.admin, &self.claims, self.id, &req).await
            }
            Access::Allowed => self.dispatch(&req).await,
        };
        // Notifications (no id) get no reply, except errors that concern the frame itself.
        self.early_reply = None;
        match (id, outcome) {
            (Some(_), Ok(_)) if self.replied => {}
            (Some(id), Ok(v)) => self.send(Outbound::Frame(result_frame(&id, v))),
            (Some(id), Err(e)) => self.reply_error(&id, &e),
            (None, Err(e)) => self.reply_error(&Value::Null, &e),
            (None, Ok(_)) => {}
        }
        if timed && !self.replied {
            super::stats::FLOOR_REQUEST_LATENCY.record(received.elapsed());
        }
        true
    }

    fn hold(&self) -> Duration {
        self.gw.cfg.broadcast_hold
    }

    /// The event the permission store associates with `channel` (read off the runtime).
    ///
    /// # Errors
    /// [`ErrorCode::Internal`] when the store cannot be read.
    async fn channel_event(&self, channel: &str) -> Result<Option<String>, RpcError> {
        let gw = Arc::clone(&self.gw);
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || gw.store.channel_event(&ch))
            .await
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
    }

    /// `recording.list {channelId, limit?, before?}` (issue 14): the channel's recordings,
    /// newest first (at most `limit`, default 20, at most 100; ids below `before`), for those who
    /// may hear the channel (permitted, or ADMIN of its event). `PERMISSION_DENIED` otherwise,
    /// `INVALID_PARAMS` when recording is off.
    async fn recording_list(&mut self, req: &Incoming) -> Result<Value, RpcError> {
        let p: RecordingListParams = protocol::params(&req.params)?;
        let Some(rec) = self.gw.recordings.clone() else {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                "recording is off on this gateway",
            ));
        };
        let event = self.channel_event(&p.channel_id).await?;
        if !self
            .gw
            .hub
            .lock()
            .may_hear(self.id, &p.channel_id, event.as_deref())
        {
            return Err(RpcError::new(
                ErrorCode::PermissionDenied,
                format!("not permitted on channel {:?}", p.channel_id),
            ));
        }
        let limit = p.limit.unwrap_or(20).clamp(1, 100);
        let list = tokio::task::spawn_blocking(move || {
            rec.index.lock().list(&p.channel_id, limit, p.before)
        })
        .await
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
        Ok(json!({"recordings": list}))
    }

    /// `session.renew` (issue 12): a fresh token with this session's claims and a new `exp`
    /// (`auth.default_ttl` from now), when this gateway signs tokens and the user is not
    /// banned; the session then ends at the new `exp`. `PERMISSION_DENIED` with a sentence when
    /// the tokens come from a control plane or the user is banned.
    fn renew(&mut self) -> Result<Value, RpcError> {
        let Some(issuer) = &self.gw.admin.issuer else {
            return Err(RpcError::new(
                ErrorCode::PermissionDenied,
                "this gateway does not issue links: ask the organiser for a new link",
            ));
        };
        if self.gw.admin.bans.is_banned(&self.claims.sub) {
            return Err(RpcError::new(
                ErrorCode::PermissionDenied,
                "account is suspended",
            ));
        }
        let (token, claims) = issuer
            .renew(&self.claims, crate::clock::unix_secs())
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
        let ttl = claims.exp - claims.iat;
        self.gw.audit.record(
            self.entry(Action::TokenRenewed)
                .details(json!({"ttlSecs": ttl, "expiresAtMs": claims.exp * 1000})),
        );
        tracing::info!(conn = self.id, user = ?claims.sub, ttl_secs = ttl, "access link renewed");
        self.claims.exp = claims.exp;
        self.claims.iat = claims.iat;
        Ok(json!({"token": token, "expiresAtMs": claims.exp * 1000}))
    }

    /// `link.hello {path}` (issue 16): a linked site introduces itself with its path upwards;
    /// refused (`PERMISSION_DENIED`) without the token's `link` claim, and when this gateway
    /// or one above it is already in the path (the link would close a loop). Answers this
    /// gateway's site name and its own path upwards (`chain`).
    fn link_hello(&mut self, req: &Incoming) -> Result<Value, RpcError> {
        let p: HelloParams = protocol::params(&req.params)?;
        let Some(site) = self.claims.link.clone() else {
            return Err(RpcError::new(
                ErrorCode::PermissionDenied,
                "link.hello needs a token with the link claim",
            ));
        };
        let mut path = p.path;
        path.truncate(64);
        if !path.contains(&site) {
            path.insert(0, site.clone());
        }
        if let Some(met) = self.gw.site.loop_with(&path) {
            tracing::error!(conn = self.id, site = ?site, path = ?path, met = ?met, "link refused: it would close a loop of gateways");
            return Err(RpcError::new(
                ErrorCode::PermissionDenied,
                format!("link loop: {met} is already on the path of site {site} ({path:?})"),
            ));
        }
        if self.said_hello {
            // Said again every 5 s: the site's RTT and the loop check of paths that changed.
            tracing::debug!(conn = self.id, site = ?site, "linked site said hello again");
        } else {
            tracing::info!(conn = self.id, site = ?site, "linked site said hello");
            self.said_hello = true;
        }
        Ok(json!({"site": self.gw.site.name, "chain": self.gw.site.path()}))
    }

    /// The talker a linked site's session speaks for (`onBehalfOf`, shown "NAME @ SITE"; a
    /// name that already names a site further down the tree, "NAME @ SITE", is kept).
    ///
    /// # Errors
    /// `INVALID_PARAMS` for a bad name; `PERMISSION_DENIED` without the token's link claim.
    fn shown(&self, on_behalf_of: Option<&str>) -> Result<Option<String>, RpcError> {
        use crate::access::token::valid_site_name as valid;
        match (on_behalf_of, &self.claims.link) {
            (None, _) => Ok(None),
            (Some(n), Some(site)) if valid(n) => Ok(Some(format!("{n} @ {site}"))),
            (Some(n), Some(_))
                if n
                    .split_once(" @ ")
                    .is_some_and(|(who, at)| valid(who) && valid(at)) =>
            {
                Ok(Some(n.to_string()))
            }
            (Some(_), Some(_)) => Err(RpcError::new(
                ErrorCode::InvalidParams,
                "onBehalfOf: NAME or NAME @ SITE, each 1..=64 characters without control characters or '@'",
            )),
            (Some(_), None) => Err(RpcError::new(
                ErrorCode::PermissionDenied,
                "onBehalfOf is for linked sites (a token with the link claim)",
            )),
        }
    }

    /// A floor request, decided here or, on a linked channel, at its upstream (issue 16).
    async fn floor_request(
        &mut self,
        channel: &str,
        priority: Priority,
        shown: Option<String>,
    ) -> Result<u64, RpcError> {
        let decision = {
            let gw = Arc::clone(&self.gw);
            let mut hub = gw.hub.lock();
            let d =
                hub.floor_request_site(self.id, channel, priority, shown.clone(), Instant::now())?;
            if let crate::hub::SiteDecision::Decided(ms) = d {
                // The requester first: its grant is queued before the hub's notifications
                // (the others' floor.taken) are handed out when the lock is released.
                if let Some((id, received)) = self.early_reply.take() {
                    let result = floor_granted_result(channel, ms);
                    self.send(Outbound::Frame(result_frame(&id, result)));
                    self.replied = true;
                    super::stats::FLOOR_REQUEST_LATENCY.record(received.elapsed());
                }
            }
            d
        };
        let link = match decision {
            crate::hub::SiteDecision::Decided(ms) => return Ok(ms),
            crate::hub::SiteDecision::AskUpstream { link } => link,
        };
        let name = shown.clone().unwrap_or_else(|| self.claims.name.clone());
        let res = self.gw.links.request(channel, &name, priority).await;
        let mut hub = self.gw.hub.lock();
        let asked = crate::link::Asked {
            id: self.id,
            channel,
            priority,
            shown,
            link,
        };
        let decided = crate::link::apply_decision(&mut hub, asked, res, Instant::now());
        drop(hub);
        decided.map_err(|e| match e {
            crate::link::LinkError::Local(e) => RpcError::from(e),
            crate::link::LinkError::Denied { holder, message } => {
                let data = json!({"channelId": channel, "talker": {"name": holder}});
                RpcError::new(ErrorCode::FloorBusy, message).with_data(data)
            }
            _ => RpcError::new(
                ErrorCode::FloorBusy,
                "the upstream gateway did not answer; try again",
            )
            .with_data(json!({"channelId": channel})),
        })
    }

    async fn dispatch(&mut self, req: &Incoming) -> Result<Value, RpcError> {
        let now = Instant::now();
        match req.method.as_str() {
            "session.ping" => Ok(json!({"pong": true})),
            "session.renew" => self.renew(),
            "recording.list" => self.recording_list(req).await,
            "channel.list" => {
                let also = admin_event_channels(&self.gw.store, &self.claims).await;
                let mut list = self.gw.hub.lock().channel_list(self.id, &also);
                crate::hub::arrange(&mut list, &self.claims.channels, &self.gw.channel_names);
                Ok(json!({"channels": list}))
            }
            "channel.join" => {
                let p: ChannelParams = protocol::params(&req.params)?;
                let event = self.channel_event(&p.channel_id).await?;
                let joined = self
                    .gw
                    .hub
                    .lock()
                    .join(self.id, &p.channel_id, event.as_deref());
                let j = match joined.map_err(RpcError::from) {
                    Ok(j) => j,
                    Err(e) => {
                        self.gw.audit.record(
                            self.entry(Action::ChannelJoinDenied)
                                .target(p.channel_id.clone())
                                .outcome(e.code.name()),
                        );
                        return Err(e);
                    }
                };
                self.gw
                    .audit
                    .record(self.entry(Action::ChannelJoin).target(p.channel_id.clone()));
                tracing::info!(conn = self.id, channel = ?p.channel_id, slot = ?j.slot, "channel join");
                Ok(json!({
                    "channelId": p.channel_id,
                    "slot": j.slot,
                    "ssrc": j.slot.and_then(|s| self.slot_ssrcs.get(s)),
                    "members": j.members,
                    "talker": j.talker,
                }))
            }
            "channel.leave" => {
                let p: ChannelParams = protocol::params(&req.params)?;
                self.gw.hub.lock().leave(self.id, &p.channel_id, now)?;
                self.gw.audit.record(
                    self.entry(Action::ChannelLeave)
                        .target(p.channel_id.clone()),
                );
                tracing::info!(conn = self.id, channel = ?p.channel_id, "channel leave");
                Ok(json!({"channelId": p.channel_id}))
            }
            "floor.request" | "floor.priority_request" => {
                let p: FloorParams = protocol::params(&req.params)?;
                let priority = if req.method == "floor.priority_request" {
                    Priority::PreEmptive
                } else {
                    Priority::Normal
                };
                let shown = self.shown(p.on_behalf_of.as_deref())?;
                let ms = self.floor_request(&p.channel_id, priority, shown).await?;
                tracing::info!(conn = self.id, channel = ?p.channel_id, "floor granted");
                Ok(floor_granted_result(&p.channel_id, ms))
            }
            "link.hello" => self.link_hello(req),
            "floor.release" => {
                let p: ChannelParams = protocol::params(&req.params)?;
                self.gw
                    .hub
                    .lock()
                    .floor_release(self.id, &p.channel_id, now)?;
                Ok(json!({"channelId": p.channel_id, "released": true}))
            }
            "broadcast.arm" => {
                self.gw.hub.lock().broadcast_arm(self.id, now);
                Ok(json!({"armed": true, "holdMs": self.hold().as_millis() as u64}))
            }
            "broadcast.start" => {
                let p: BroadcastParams = protocol::params(&req.params)?;
                let shown = self.shown(p.on_behalf_of.as_deref())?;
                let channels = event_channels(&self.gw.store, &self.claims.event).await?;
                let name = shown.clone().unwrap_or_else(|| self.claims.name.clone());
                let mut hub = self.gw.hub.lock();
                let res = if shown.is_some() {
                    // A linked site's broadcast: the site measured the hold.
                    hub.broadcast_arm(self.id, now);
                    hub.broadcast_start_as(self.id, &channels, Duration::ZERO, shown, now)?
                } else {
                    hub.broadcast_start(self.id, &channels, self.hold(), now)?
                };
                drop(hub);
                // Up and out: to the upstream of this gateway's linked channels, if any.
                self.gw.links.broadcast_up(&res.channels, &name);
                Ok(json!(res))
            }
            "broadcast.stop" => {
                let was = self.gw.hub.lock().broadcast_stop(self.id, "stopped", now);
                Ok(json!({"stopped": was}))
            }
            "webrtc.offer" => {
                let p: OfferParams = protocol::params(&req.params)?;
                let media: &MediaEngine = &self.gw.media;
                if let Some(old) = self.media.take() {
                    self.gw
                        .hub
                        .lock()
                        .detach_media(self.id, &media.sink(old.peer));
                    media.close(old.peer);
                }
                let (hub, id, engine) = (Arc::clone(&self.gw.hub), self.id, media.clone());
                let on_closed: OnClosed =
                    Arc::new(move |peer| hub.lock().detach_media(id, &engine.sink(peer)));
                let answer = media
                    .offer(self.id, p.sdp, self.slot_ssrcs.clone(), on_closed)
                    .await
                    .map_err(|e| RpcError::new(ErrorCode::MediaError, e.to_string()))?;
                self.gw
                    .hub
                    .lock()
                    .attach_media(self.id, media.sink(answer.peer));
                let slots: Vec<Value> = self.slot_ssrcs[..answer.slots]
                    .iter()
                    .enumerate()
                    .map(|(i, s)| json!({"slot": i, "ssrc": s}))
                    .collect();
                self.media = Some(MediaLink {
                    peer: answer.peer,
                    candidates: 0,
                });
                Ok(json!({"type": "answer", "sdp": answer.sdp, "slots": slots}))
            }
            "webrtc.candidate" => {
                let p: CandidateParams = protocol::params(&req.params)?;
                let link = self.media.as_mut().ok_or_else(|| {
                    RpcError::new(ErrorCode::MediaError, "send webrtc.offer first")
                })?;
                if link.candidates >= MAX_REMOTE_CANDIDATES {
                    return Err(RpcError::new(
                        ErrorCode::MediaError,
                        format!("at most {MAX_REMOTE_CANDIDATES} candidates per offer"),
                    ));
                }
                link.candidates += 1;
                self.gw
                    .media
                    .add_candidate(
                        link.peer,
                        RTCIceCandidateInit {
                            candidate: p.candidate,
                            sdp_mid: p.sdp_mid,
                            sdp_mline_index: p.sdp_m_line_index,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| RpcError::new(ErrorCode::MediaError, e.to_string()))?;
                Ok(json!({"added": true}))
            }
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("method not found: {other}"),
            )),
        }
    }
}
