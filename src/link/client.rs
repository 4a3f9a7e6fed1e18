//! SHELL. One linked channel's task: the session at the upstream (WebSocket, JSON-RPC), the
//! link participant at this site, island mode and the reconnect backoff. See the module docs
//! of [`crate::link`].

use super::media::{AudioParts, AudioStats, LinkAudio};
use super::{remote_name, Ask, LinkChannel, LinkError, LinkStatus, Links, Request, Site};
use crate::access::role::Role;
use crate::config::link::{LinkChannels, LinkConfig};
use crate::floor::{Priority, RevokeReason};
use crate::hub::{ConnectionInfo, Notification};
use crate::permissions::{PermissionStore, SqliteStore};
use crate::sfu::{Downlink, DOWNLINK_QUEUE};
use crate::switchboard::{Outbound, OutboundRx, Switchboard};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Reconnect backoff, seconds (the last repeats).
pub const BACKOFF_SECS: [u64; 6] = [1, 2, 4, 8, 16, 30];
/// Longest wait for the WebSocket connect and for each set-up reply.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the link says `link.hello` again: its answer is the RTT in `admin.status`, and
/// both ends check the paths for a loop again (a gateway further up may have linked since).
const PING_EVERY: Duration = Duration::from_secs(5);
/// Floor requests waiting for the link task, per linked channel.
const REQUEST_QUEUE: usize = 16;
/// Requests sent to the upstream and not answered yet, at most (floor requests, pings,
/// releases); an upstream that leaves this many unanswered is treated as gone (reconnect).
const MAX_PENDING: usize = 64;
/// Notifications queued for the link participant.
const OUTBOUND_QUEUE: usize = 1024;

/// What the link tasks use of the gateway.
#[derive(Clone)]
pub struct LinkCtx {
    /// The hub's shell.
    pub hub: Arc<Switchboard>,
    /// The permission store (the channel's event; `"event"` channel lists).
    pub store: Arc<SqliteStore>,
    /// This gateway among linked gateways.
    pub site: Arc<Site>,
    /// `sfu.udp_bind_ip`: the link audio sockets bind here.
    pub bind_ip: IpAddr,
    /// The IP put in the link audio's host candidate.
    pub advertise_ip: IpAddr,
    /// Cancelled at gateway shutdown.
    pub shutdown: CancellationToken,
}

/// The `event` claim of a JWT, read without verifying it (the upstream verifies; the site
/// only needs the event to list its channels).
fn token_event(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("event")?.as_str().map(str::to_string)
}

/// Starts one task per linked channel of `links` (validated configuration).
///
/// # Errors
/// A message naming the link whose token file cannot be read, or whose `"event"` channels
/// cannot be listed.
pub fn start(ctx: &LinkCtx, links: &[LinkConfig]) -> Result<Links, String> {
    let mut out = Links::default();
    for (i, l) in links.iter().enumerate() {
        let token = match (&l.token, &l.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("link[{i}].token_file {}: {e}", f.display()))?
                .trim()
                .to_string(),
            (None, None) => return Err(format!("link[{i}]: no token")),
        };
        let channels = match &l.channels {
            LinkChannels::List(v) => v.clone(),
            LinkChannels::Event(_) => {
                let ev = token_event(&token)
                    .ok_or_else(|| format!("link[{i}]: the token names no event"))?;
                ctx.store
                    .event_channels(&ev)
                    .map_err(|e| format!("link[{i}]: channels of event {ev:?}: {e}"))?
            }
        };
        let name = l.name.clone().unwrap_or_else(|| l.upstream.clone());
        for channel in channels {
            let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
            let lc = Arc::new(LinkChannel {
                requests: tx,
                status: parking_lot::Mutex::new(LinkStatus {
                    name: name.clone(),
                    upstream: l.upstream.clone(),
                    channel: channel.clone(),
                    state: "site only",
                    ..Default::default()
                }),
                audio: Arc::new(AudioStats::default()),
            });
            out.by_channel.insert(channel.clone(), Arc::clone(&lc));
            let task = Task {
                ctx: ctx.clone(),
                cfg: l.clone(),
                token: token.clone(),
                name: name.clone(),
                channel,
                link: lc,
                conn: 0,
                out_rx: None,
            };
            tokio::spawn(task.run(rx));
        }
    }
    Ok(out)
}

struct Task {
    ctx: LinkCtx,
    cfg: LinkConfig,
    token: String,
    name: String,
    channel: String,
    link: Arc<LinkChannel>,
    /// The link participant at this site.
    conn: u64,
    out_rx: Option<OutboundRx>,
}

use super::tls::Ws;

/// What an answer from the upstream is for.
enum Pending {
    Floor {
        reply: oneshot::Sender<Result<(), LinkError>>,
    },
    Ping(Instant),
    /// `broadcast.start` of a broadcast started here.
    Broadcast,
    Ignore,
}

/// One connection's state.
struct Up {
    ws: Ws,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    audio: LinkAudio,
    upstream_site: String,
    /// Whether the local floor follows the upstream (false: relinking at the next idle).
    linked: bool,
    /// Whether a local talker holds the upstream floor through this link.
    holding: bool,
    /// The upstream revoked our talker for an emergency broadcast (the next taken is one).
    emergency: bool,
    /// Set when the link must end (a loop found by a later `link.hello`).
    broken: Option<LinkError>,
}

/// The strings of a JSON array (others skipped); empty when `v` is not an array.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one JSON-RPC request to the upstream; returns its id.
async fn write(up: &mut Up, method: &str, params: Value) -> Result<u64, LinkError> {
    up.next_id += 1;
    let id = up.next_id;
    let frame = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    up.ws
        .send(Message::text(frame.to_string()))
        .await
        .map_err(|e| LinkError::Unreachable(e.to_string()))?;
    Ok(id)
}

impl Task {
    fn set_status(&self, f: impl FnOnce(&mut LinkStatus)) {
        f(&mut self.link.status.lock());
    }

    fn url(&self) -> String {
        let base = self.cfg.upstream.trim_end_matches('/');
        let after_scheme = base.split_once("://").map_or(base, |(_, r)| r);
        let path = if after_scheme.contains('/') {
            ""
        } else {
            "/ws"
        };
        format!("{base}{path}?token={}", self.token)
    }

    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        self.register();
        let mut attempt = 0usize;
        loop {
            let res = self.session(&mut requests).await;
            self.unlink();
            let connected = matches!(res, Ok(()));
            let msg = match res {
                Ok(()) => "upstream closed the link".to_string(),
                Err(e) => e.to_string(),
            };
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            tracing::warn!(link = ?self.name, channel = ?self.channel, error = ?msg, "link down: the channel is site only");
            self.set_status(|s| {
                s.state = "site only";
                s.last_error = Some(msg);
                s.rtt_ms = None;
            });
            if connected {
                attempt = 0;
            }
            let wait = Duration::from_secs(BACKOFF_SECS[attempt.min(BACKOFF_SECS.len() - 1)]);
            attempt += 1;
            // Requests that arrive meanwhile are answered at once: decide locally.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = self.ctx.shutdown.cancelled() => break,
                    r = requests.recv() => match r {
                        Some(r) => { let _ = r.reply.send(Err(LinkError::NoAnswer)); }
                        None => return,
                    },
                }
            }
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
        }
        let now = Instant::now();
        self.ctx.hub.lock().unregister(self.conn, now);
    }

    /// Registers the link participant and joins the channel (once; it stays across
    /// reconnects, so local listeners keep their slot).
    fn register(&mut self) {
        let event = self
            .ctx
            .store
            .channel_event(&self.channel)
            .ok()
            .flatten()
            .or_else(|| token_event(&self.token))
            .unwrap_or_default();
        let (out_tx, out_rx) = crate::switchboard::outbound(OUTBOUND_QUEUE);
        let mut hub = self.ctx.hub.lock();
        let c = self.ctx.hub.next_conn_id();
        hub.register(
            ConnectionInfo {
                conn_id: c,
                user_id: format!("link:{}", self.name),
                name: format!("link {}", self.name),
                device_id: Some(format!("link:{}", self.name)),
                role: Role::General,
                event: event.clone(),
                remote_addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                connected_at_ms: crate::clock::unix_ms(),
            },
            vec![self.channel.clone()],
            1,
            out_tx,
        );
        if event.is_empty() {
            // A member of no event would make the channel an event of its own and lock the
            // site's users out of it: stay out (the link cannot work; the upstream refuses a
            // token without an event too).
            tracing::warn!(link = ?self.name, channel = ?self.channel,
                           "link participant not joined: the channel's event is unknown here and the link token names none");
        } else if let Err(e) = hub.join(c, &self.channel, Some(event.as_str())) {
            tracing::warn!(link = ?self.name, channel = ?self.channel, error = %e, "link participant cannot join its channel");
        }
        // Site only until the link is up (clients see it in `channel.list`).
        hub.set_linked(&self.channel, None);
        drop(hub);
        self.conn = c;
        self.out_rx = Some(out_rx);
    }

    /// Island mode: local floors; a floor the link participant held (a talker elsewhere) is
    /// freed.
    fn unlink(&mut self) {
        let now = Instant::now();
        let mut hub = self.ctx.hub.lock();
        hub.set_linked(&self.channel, None);
        hub.link_broadcast_stopped(self.conn, "link down");
        if hub.floor_holder(&self.channel) == Some(self.conn) {
            let _ = hub.floor_release(self.conn, &self.channel, now);
        }
        drop(hub);
        self.ctx.site.set_above(&self.name, &self.channel, None);
    }

    async fn connect(&self) -> Result<Ws, LinkError> {
        let url = self.url();
        let fut = super::tls::connect(&url, self.cfg.ca_file.as_deref());
        tokio::time::timeout(SETUP_TIMEOUT, fut)
            .await
            .map_err(|_| LinkError::Unreachable("connect timed out".into()))?
    }

    /// Sends one call and waits for its answer, notifications before it are handled.
    async fn call(&mut self, up: &mut Up, method: &str, params: Value) -> Result<Value, LinkError> {
        let id = write(up, method, params).await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline, up.ws.next())
                .await
                .map_err(|_| LinkError::Unreachable(format!("{method}: no answer")))?;
            let v = match msg {
                Some(Ok(Message::Text(t))) => {
                    serde_json::from_str::<Value>(&t).unwrap_or(Value::Null)
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(LinkError::Refused(
                        c.map(|c| c.reason.to_string()).unwrap_or_default(),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(LinkError::Unreachable(e.to_string())),
                None => return Err(LinkError::Unreachable("connection closed".into())),
            };
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(r) = v.get("result") {
                    return Ok(r.clone());
                }
                let msg = v["error"]["message"]
                    .as_str()
                    .unwrap_or("refused")
                    .to_string();
                return Err(LinkError::Refused(format!("{method}: {msg}")));
            }
            self.upstream_message(up, &v);
        }
    }

    async fn session(&mut self, requests: &mut mpsc::Receiver<Request>) -> Result<(), LinkError> {
        let ws = self.connect().await?;
        let (dl_tx, dl_rx) = mpsc::channel::<Downlink>(DOWNLINK_QUEUE);
        let (audio, offer) = LinkAudio::start(AudioParts {
            bind_ip: self.ctx.bind_ip,
            advertise_ip: self.ctx.advertise_ip,
            conn: self.conn,
            routes: self.ctx.hub.routes().clone(),
            downlink: dl_rx,
            stats: Arc::clone(&self.link.audio),
        })
        .map_err(|e| LinkError::Unreachable(format!("link audio: {e}")))?;
        let mut up = Up {
            ws,
            next_id: 0,
            pending: HashMap::new(),
            audio,
            upstream_site: String::new(),
            linked: false,
            holding: false,
            emergency: false,
            broken: None,
        };
        let path = self.ctx.site.path_for(&self.name);
        let hello = self
            .call(&mut up, "link.hello", json!({"path": path}))
            .await?;
        up.upstream_site = hello["site"].as_str().unwrap_or("upstream").to_string();
        self.accept_chain(&hello, true)?;
        let joined = self
            .call(&mut up, "channel.join", json!({"channelId": self.channel}))
            .await?;
        let answer = self
            .call(&mut up, "webrtc.offer", json!({"sdp": offer}))
            .await?;
        let sdp = answer["sdp"].as_str().unwrap_or_default().to_string();
        up.audio.answer(sdp);
        self.ctx
            .hub
            .lock()
            .attach_media(self.conn, crate::sfu::routes::Sink::Queue(dl_tx));
        self.set_status(|s| {
            s.connects += 1;
            s.upstream_site = Some(up.upstream_site.clone());
            s.last_error = None;
        });
        tracing::info!(link = ?self.name, channel = ?self.channel, upstream = ?up.upstream_site, "link up");
        self.try_link(&mut up);
        if up.linked {
            if let Some(name) = joined["talker"]["name"].as_str() {
                self.remote_taken(&mut up, name);
            }
        }
        self.serve(up, requests).await
    }

    /// Links the channel if its local floor is idle (else at the next local `floor.idle`).
    fn try_link(&mut self, up: &mut Up) {
        let mut hub = self.ctx.hub.lock();
        if hub.floor_holder(&self.channel).is_none() {
            hub.set_linked(&self.channel, Some(self.conn));
            up.linked = true;
        }
        drop(hub);
        let state = if up.linked { "linked" } else { "relinking" };
        self.set_status(|s| s.state = state);
    }

    async fn serve(
        &mut self,
        mut up: Up,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<(), LinkError> {
        let mut ping = tokio::time::interval(PING_EVERY);
        let Some(mut out_rx) = self.out_rx.take() else {
            return Err(LinkError::Unreachable("no local queue".into()));
        };
        // What was queued for the link participant while the link was down is stale.
        while out_rx.rx.try_recv().is_ok() {}
        let res = loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => {
                    let _ = up.ws.close(None).await;
                    break Ok(());
                }
                m = up.ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let v = serde_json::from_str::<Value>(&t).unwrap_or(Value::Null);
                        self.upstream_message(&mut up, &v);
                        if let Some(e) = up.broken.take() {
                            break Err(e);
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        break Err(LinkError::Unreachable(format!(
                            "upstream closed: {}",
                            c.map(|c| format!("{} {}", u16::from(c.code), c.reason)).unwrap_or_default()
                        )));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(LinkError::Unreachable(e.to_string())),
                    None => break Err(LinkError::Unreachable("connection closed".into())),
                },
                r = requests.recv() => match r {
                    Some(r) => {
                        if let Err(e) = self.floor_request(&mut up, r).await {
                            break Err(e);
                        }
                    }
                    None => break Ok(()),
                },
                m = out_rx.rx.recv() => {
                    if let Some(Outbound::Note(n)) = m {
                        if let Err(e) = self.local_note(&mut up, &n.note).await {
                            break Err(e);
                        }
                    }
                }
                _ = ping.tick() => {
                    let path = json!({"path": self.ctx.site.path_for(&self.name)});
                    if let Err(e) = self.send(&mut up, "link.hello", path, Pending::Ping(Instant::now())).await {
                        break Err(e);
                    }
                }
            }
        };
        self.out_rx = Some(out_rx);
        for (_, p) in up.pending.drain() {
            if let Pending::Floor { reply } = p {
                let _ = reply.send(Err(LinkError::NoAnswer));
            }
        }
        up.audio.set_sending(false);
        res
    }

    async fn send(
        &mut self,
        up: &mut Up,
        method: &str,
        params: Value,
        pending: Pending,
    ) -> Result<(), LinkError> {
        if up.pending.len() >= MAX_PENDING {
            return Err(LinkError::Unreachable(format!(
                "the upstream left {MAX_PENDING} requests unanswered"
            )));
        }
        let id = write(up, method, params).await?;
        up.pending.insert(id, pending);
        Ok(())
    }

    async fn floor_request(&mut self, up: &mut Up, r: Request) -> Result<(), LinkError> {
        if !up.linked {
            let _ = r.reply.send(Err(LinkError::NoAnswer));
            return Ok(());
        }
        let method = match r.ask {
            Ask::Floor(Priority::PreEmptive) => "floor.priority_request",
            Ask::Floor(Priority::Normal) => "floor.request",
            Ask::Broadcast => {
                // The local broadcast holds this channel: its audio goes up on this link.
                up.holding = true;
                up.audio.set_sending(true);
                let params = json!({"onBehalfOf": r.name});
                return self
                    .send(up, "broadcast.start", params, Pending::Broadcast)
                    .await;
            }
        };
        let params = json!({"channelId": self.channel, "onBehalfOf": r.name});
        self.send(up, method, params, Pending::Floor { reply: r.reply })
            .await
    }

    /// The answer to a repeated `link.hello`: the upstream's chain now, recorded for this
    /// site's own path. A loop (the upstream refused this site's path, or its chain holds this
    /// site) ends the link: [`LinkError::Loop`].
    fn check_chain(&self, v: &Value) -> Option<LinkError> {
        if let Some(msg) = v["error"]["message"].as_str() {
            if msg.starts_with("link loop") {
                tracing::error!(link = ?self.name, error = ?msg, "link dropped: it closes a loop of gateways");
                return Some(LinkError::Loop(msg.to_string()));
            }
            return None;
        }
        self.accept_chain(&v["result"], false).err()
    }

    /// The upstream's chain from a `link.hello` answer (`{site, chain}`): recorded for this
    /// site's own path, or [`LinkError::Loop`] when it holds this site. `first`: the answer
    /// to the handshake's hello (the link is refused), else to a repeated one (the link is
    /// dropped).
    fn accept_chain(&self, hello: &Value, first: bool) -> Result<(), LinkError> {
        let chain = strings(&hello["chain"]);
        if chain.contains(&self.ctx.site.name) {
            if first {
                tracing::error!(link = ?self.name, chain = ?chain, "link refused: it would close a loop of gateways");
            } else {
                tracing::error!(link = ?self.name, chain = ?chain, "link dropped: it closes a loop of gateways");
            }
            let upstream = hello["site"].as_str().unwrap_or(&self.name);
            return Err(LinkError::Loop(format!(
                "{} is above {upstream} (chain {chain:?})",
                self.ctx.site.name
            )));
        }
        self.ctx
            .site
            .set_above(&self.name, &self.channel, Some(chain));
        Ok(())
    }

    /// Whether a talker the upstream names is one of this site's ("Dan @ north"): its own
    /// grant or broadcast come back from the upstream on the site's other linked channels.
    fn ours(&self, name: &str) -> bool {
        name.strip_suffix(self.ctx.site.name.as_str())
            .is_some_and(|n| n.ends_with(" @ "))
    }

    /// A notification for the link participant from this site's hub.
    async fn local_note(&mut self, up: &mut Up, note: &Notification) -> Result<(), LinkError> {
        if let Notification::FloorIdle { channel } = note {
            if *channel != self.channel {
                return Ok(());
            }
            if up.holding {
                // The local talker released, left or timed out: free the upstream floor.
                up.holding = false;
                up.audio.set_sending(false);
                let params = json!({"channelId": self.channel});
                self.send(up, "floor.release", params, Pending::Ignore)
                    .await?;
            }
            if !up.linked {
                self.try_link(up);
            }
        }
        Ok(())
    }

    /// An answer or a notification from the upstream.
    fn upstream_message(&mut self, up: &mut Up, v: &Value) {
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            match up.pending.remove(&id) {
                Some(Pending::Floor { reply }) => {
                    let res = if v.get("result").is_some() {
                        up.holding = true;
                        up.audio.set_sending(true);
                        Ok(())
                    } else {
                        let holder = v["error"]["data"]["talker"]["name"]
                            .as_str()
                            .map(|n| remote_name(n, &up.upstream_site));
                        let message = match &holder {
                            Some(h) => format!("Floor taken by {h}"),
                            None => v["error"]["message"]
                                .as_str()
                                .unwrap_or("denied")
                                .to_string(),
                        };
                        Err(LinkError::Denied { holder, message })
                    };
                    if reply.send(res.clone()).is_err() && res.is_ok() {
                        // The session gave up waiting: give the floor back.
                        up.holding = false;
                        up.audio.set_sending(false);
                    }
                }
                Some(Pending::Broadcast) => {
                    if v.get("result").is_none() {
                        up.holding = false;
                        up.audio.set_sending(false);
                        let msg = v["error"]["message"].as_str().unwrap_or("refused");
                        tracing::warn!(link = ?self.name, channel = ?self.channel, error = ?msg,
                                       "the upstream refused this site's emergency broadcast: it stays at this site");
                    }
                }
                Some(Pending::Ping(sent)) => {
                    let ms = sent.elapsed().as_secs_f64() * 1000.0;
                    self.set_status(|s| s.rtt_ms = Some((ms * 100.0).round() / 100.0));
                    up.broken = self.check_chain(v);
                }
                Some(Pending::Ignore) | None => {}
            }
            return;
        }
        let p = &v["params"];
        let method = v["method"].as_str().unwrap_or_default();
        if !up.linked {
            return;
        }
        if method.starts_with("broadcast.") {
            self.remote_broadcast(up, method, p);
            return;
        }
        if p["channelId"].as_str() != Some(self.channel.as_str()) {
            return;
        }
        let now = Instant::now();
        match method {
            "floor.taken" => {
                let name = p["talker"]["name"]
                    .as_str()
                    .unwrap_or("someone")
                    .to_string();
                let held_here =
                    self.ctx
                        .hub
                        .lock()
                        .floor_talker(&self.channel)
                        .is_some_and(|(id, n)| {
                            id != self.conn && remote_name(&n, &self.ctx.site.name) == name
                        });
                if self.ours(&name) || held_here {
                    // This site's own talker (a broadcast gone up through another link, or
                    // one from further down the tree that holds the floor here already).
                    up.emergency = false;
                    return;
                }
                if p["emergency"].as_bool() == Some(true) {
                    up.emergency = true;
                }
                self.remote_taken(up, &name);
            }
            "floor.revoke" => {
                up.holding = false;
                up.audio.set_sending(false);
                match p["reason"].as_str() {
                    Some("TIME_OUT") => {
                        self.ctx
                            .hub
                            .lock()
                            .link_revoke(&self.channel, RevokeReason::TimeOut, now);
                    }
                    Some("MEDIA_TIMEOUT") => {
                        self.ctx.hub.lock().link_revoke(
                            &self.channel,
                            RevokeReason::MediaTimeout,
                            now,
                        );
                    }
                    // Pre-emption: the floor.taken that follows revokes the local talker.
                    Some("EMERGENCY") => up.emergency = true,
                    _ => {}
                }
            }
            "floor.idle" => {
                let mut hub = self.ctx.hub.lock();
                if hub.floor_holder(&self.channel) == Some(self.conn) {
                    let _ = hub.floor_release(self.conn, &self.channel, now);
                }
            }
            _ => {}
        }
    }

    /// The upstream's `broadcast.started` / `broadcast.stopped`: shown to this site's event
    /// (once for all its linked channels, [`crate::hub::Hub::link_broadcast_started`]).
    fn remote_broadcast(&mut self, up: &Up, method: &str, p: &Value) {
        let name = p["by"]["name"].as_str().unwrap_or("Dispatch");
        if self.ours(name) {
            return;
        }
        let mut hub = self.ctx.hub.lock();
        if method == "broadcast.started" {
            let by = crate::hub::TalkerRef {
                conn_id: self.conn,
                user_id: p["by"]["userId"].as_str().unwrap_or_default().to_string(),
                name: remote_name(name, &up.upstream_site),
            };
            hub.link_broadcast_started(self.conn, by, strings(&p["channels"]));
        } else if method == "broadcast.stopped" {
            let reason = p["reason"].as_str().unwrap_or("stopped");
            hub.link_broadcast_stopped(self.conn, reason);
        }
    }

    /// Someone elsewhere took the upstream floor: the link participant takes the local one.
    fn remote_taken(&mut self, up: &mut Up, name: &str) {
        up.holding = false;
        up.audio.set_sending(false);
        let shown = remote_name(name, &up.upstream_site);
        let emergency = std::mem::take(&mut up.emergency);
        let res = self.ctx.hub.lock().link_grant(
            self.conn,
            &self.channel,
            Priority::Normal,
            Some(shown),
            emergency,
            Instant::now(),
        );
        if let Err(e) = res {
            tracing::warn!(link = ?self.name, channel = ?self.channel, error = %e, "link: upstream grant not applied");
        }
    }
}
