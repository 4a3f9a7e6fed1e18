//! One signaling session: a WebSocket whose token was verified before the upgrade.
//!
//! Requests are handled one at a time in arrival order; replies and server notifications share
//! one outbound queue drained by a writer task. A bad frame gets an error reply and the session
//! continues; a frame over `server.max_frame_bytes` closes it with 1009.

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
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
}

/// The session's peer connection in the media engine.
struct MediaLink {
    peer: PeerId,
}

/// The channels a connecting session may use, as read at connect, and the permission sync
/// [`generation`](crate::permissions::PermissionSync::generation) read just before.
pub struct Permitted {
    /// Permitted channel ids.
    pub channels: Vec<String>,
    /// The sync generation before the read.
    pub generation: u64,
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
    let (tx, mut rx) = mpsc::unbounded_channel::<Outbound>();
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
    {
        let mut hub = gw.hub.lock();
        hub.register(info, permitted.channels, slots, tx.clone());
        let params = json!({"connId": id, "userId": claims.sub, "name": claims.name,
                            "role": claims.role, "event": claims.event,
                            "slots": slots, "channels": hub.channel_list(id)});
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
    tracing::info!(conn = id, user = %claims.sub, role = %claims.role, event = %claims.event,
                   %remote, "session connected");
    if gw.perm_sync.generation() != permitted.generation {
        let (gw, claims) = (Arc::clone(&gw), claims.clone());
        tokio::spawn(async move {
            gw.perm_sync
                .recheck_after_register(&gw.hub, &gw.store, &claims)
                .await
        });
    }

    let (mut sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                Outbound::Frame(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Outbound::Note(note) => {
                    if sink.send(Message::Text(note.text.clone())).await.is_err() {
                        break;
                    }
                }
                Outbound::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });

    let lim = gw.cfg.limits;
    let nz = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
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
            nz(lim.messages_per_second),
            nz(lim.message_burst),
            governor::clock::DefaultClock::default(),
        ),
        strikes: MessageStrikes::default(),
        out: Some(tx.clone()),
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
    let close_reason = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if !session.handle_text(text.as_str()).await {
                        break "rate limit exceeded";
                    }
                }
                Some(Ok(Message::Binary(_))) => session.reply_error(
                    &Value::Null,
                    &RpcError::new(ErrorCode::InvalidRequest, "binary frames are not supported; send JSON text"),
                ),
                Some(Ok(Message::Close(_))) | None => break "client closed",
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if is_too_big(e) {
                        tracing::warn!(conn = id, "frame over server.max_frame_bytes, closing with 1009");
                        session.send(Outbound::Close(close::MESSAGE_TOO_BIG,
                            format!("frame over {} bytes", gw.cfg.max_frame_bytes)));
                        break "message too big";
                    }
                    break "websocket error";
                }
            },
            _ = &mut expiry => {
                session.send(Outbound::Close(close::TOKEN_EXPIRED, "token expired".into()));
                break "token expired";
            }
            _ = &mut writer => break "writer ended",
        }
    };
    // Unregister first so no more media or notifications are routed to this session.
    gw.hub.lock().unregister(id, Instant::now());
    if let Some(link) = session.media.take() {
        gw.media.close(link.peer);
    }
    drop(tx);
    session.out = None;
    // The writer may already have ended (and been awaited by the select above): a JoinHandle
    // must not be polled again after it completed.
    if !writer.is_finished() || close_reason != "writer ended" {
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
    // Let a close frame we sent reach the client: read (and drop) what it still sends until
    // it answers the close or 1 s passes, so the socket is not reset under unread data.
    let we_closed = !matches!(close_reason, "client closed" | "websocket error");
    let _ = tokio::time::timeout(Duration::from_secs(if we_closed { 1 } else { 0 }), async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;

    gw.audit.record(
        Entry::new(session.claims.sub.clone(), Action::Disconnect)
            .who(session.claims.role, session.claims.event.clone())
            .outcome(close_reason)
            .details(json!({"connId": id})),
    );
    tracing::info!(conn = id, reason = close_reason, "session ended");
}

fn is_too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let inner = e.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(CapacityError::MessageTooLong { .. })) => true,
        Some(WsError::Capacity(_)) => true,
        _ => {
            let s = inner.to_string();
            s.contains("too long") || s.contains("too big")
        }
    }
}

impl Session {
    fn send(&self, msg: Outbound) {
        if let Some(out) = &self.out {
            let _ = out.send(msg);
        }
    }

    fn reply_error(&self, id: &Value, err: &RpcError) {
        tracing::info!(conn = self.id, code = err.code.name(), message = %err.message, "request refused");
        self.send(Outbound::Frame(error_frame(id, err)));
    }

    fn entry(&self, action: Action) -> Entry {
        Entry::new(self.claims.sub.clone(), action).who(self.claims.role, self.claims.event.clone())
    }

    /// Handles one text frame; returns false when the session must close (rate limit).
    async fn handle_text(&mut self, text: &str) -> bool {
        let received = Instant::now();
        let max = self.gw.cfg.limits.message_strikes;
        match self.strikes.verdict(self.limiter.check().is_ok(), max) {
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
                            self.gw.cfg.limits.messages_per_second
                        ),
                    ),
                );
                return true;
            }
            MessageVerdict::Close => {
                self.gw
                    .audit
                    .record(self.entry(Action::RateLimited).outcome("closed"));
                tracing::warn!(conn = self.id, "message rate exceeded, closing with 1008");
                self.send(Outbound::Close(
                    close::POLICY,
                    "message rate limit exceeded".into(),
                ));
                return false;
            }
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
                super::admin::handle(&self.gw.admin, &self.claims, &req).await
            }
            Access::Allowed => self.dispatch(&req).await,
        };
        // Notifications (no id) get no reply, except errors that concern the frame itself.
        match (id, outcome) {
            (Some(id), Ok(v)) => self.send(Outbound::Frame(result_frame(&id, v))),
            (Some(id), Err(e)) => self.reply_error(&id, &e),
            (None, Err(e)) => self.reply_error(&Value::Null, &e),
            (None, Ok(_)) => {}
        }
        if timed {
            super::stats::FLOOR_REQUEST_LATENCY.record(received.elapsed());
        }
        true
    }

    fn hold(&self) -> Duration {
        self.gw.cfg.broadcast_hold
    }

    async fn dispatch(&mut self, req: &Incoming) -> Result<Value, RpcError> {
        let now = Instant::now();
        match req.method.as_str() {
            "session.ping" => Ok(json!({"pong": true})),
            "channel.list" => Ok(json!({"channels": self.gw.hub.lock().channel_list(self.id)})),
            "channel.join" => {
                let p: ChannelParams = protocol::params(&req.params)?;
                let gw = Arc::clone(&self.gw);
                let ch = p.channel_id.clone();
                let event = tokio::task::spawn_blocking(move || gw.store.channel_event(&ch))
                    .await
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
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
                tracing::info!(conn = self.id, channel = %p.channel_id, slot = ?j.slot, "channel join");
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
                tracing::info!(conn = self.id, channel = %p.channel_id, "channel leave");
                Ok(json!({"channelId": p.channel_id}))
            }
            "floor.request" | "floor.priority_request" => {
                let p: ChannelParams = protocol::params(&req.params)?;
                let priority = if req.method == "floor.priority_request" {
                    Priority::PreEmptive
                } else {
                    Priority::Normal
                };
                let ms = self
                    .gw
                    .hub
                    .lock()
                    .floor_request(self.id, &p.channel_id, priority, now)?;
                tracing::info!(conn = self.id, channel = %p.channel_id, "floor granted");
                Ok(json!({"channelId": p.channel_id, "granted": true, "expiresInMs": ms}))
            }
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
                let gw = Arc::clone(&self.gw);
                let event = self.claims.event.clone();
                let channels = tokio::task::spawn_blocking(move || gw.store.event_channels(&event))
                    .await
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
                let hold = self.hold();
                let res = self
                    .gw
                    .hub
                    .lock()
                    .broadcast_start(self.id, &channels, hold, now)?;
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
                self.media = Some(MediaLink { peer: answer.peer });
                Ok(json!({"type": "answer", "sdp": answer.sdp, "slots": slots}))
            }
            "webrtc.candidate" => {
                let p: CandidateParams = protocol::params(&req.params)?;
                let link = self.media.as_ref().ok_or_else(|| {
                    RpcError::new(ErrorCode::MediaError, "send webrtc.offer first")
                })?;
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
