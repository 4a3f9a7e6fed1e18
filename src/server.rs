//! The one HTTP port: `GET /healthz`, `GET /metrics` (Prometheus, [`crate::ops::metrics`]), the signaling WebSocket at `GET /ws` and the web client
//! at `/` ([`crate::web`]).
//!
//! The token is verified before the WebSocket upgrade: a missing, malformed, forged, expired,
//! wrong-algorithm or `alg: none` token gets `401` with a plain-text reason, and is logged.

use crate::access::bans::BanList;
use crate::access::limits::{AuthBackoff, KeyedLimiter};
use crate::access::token::TokenVerifier;
use crate::access::token::{Claims, TokenError};
use crate::audit::Audit;
use crate::audit::{Action, Entry};
use crate::clock::unix_secs;
use crate::ops::metrics::Observed;
use crate::permissions::PermissionStore;
use crate::permissions::{PermissionSync, SqliteStore};
use crate::signaling::session::SessionCtx;
use crate::web::pending::Pending;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Initial WebSocket read buffer per session, bytes.
const READ_BUFFER_BYTES: usize = 4096;

/// What the HTTP routes use: the connect checks' handles (limits, token verifier, bans,
/// permission store and sync, audit), the session tracker and shutdown token, what a session
/// gets, and what `/healthz` and `/metrics` read.
pub struct ServerCtx {
    /// Cancelled on SIGINT/SIGTERM: new WebSockets are refused with 503.
    pub shutdown: CancellationToken,
    /// Unauthenticated connection attempts per remote address.
    pub conn_limiter: Arc<KeyedLimiter<governor::clock::DefaultClock>>,
    /// Authenticated connects per user.
    pub user_limiter: Arc<KeyedLimiter<governor::clock::DefaultClock, String>>,
    /// Failed authentications per remote address.
    pub auth_backoff: Arc<parking_lot::Mutex<AuthBackoff>>,
    /// Token verification.
    pub verifier: TokenVerifier,
    /// Banned users.
    pub bans: Arc<BanList>,
    /// The SQLite permission store.
    pub store: Arc<SqliteStore>,
    /// The permission sync (channels at connect).
    pub perm_sync: Arc<PermissionSync>,
    /// The audit log.
    pub audit: Audit,
    /// Session tasks, waited for at shutdown.
    pub sessions: TaskTracker,
    /// `server.max_frame_bytes`, bytes.
    pub max_frame_bytes: usize,
    /// What each session gets.
    pub session: Arc<SessionCtx>,
    /// What `/healthz` and `/metrics` read.
    pub observed: Observed,
    /// `limits.max_sessions_per_user`.
    pub max_sessions_per_user: usize,
    /// `limits.max_sessions`.
    pub max_sessions: usize,
}

/// The routes; the web client's CA download serves `STATE_DIR/tls` when `tls` is `auto`.
/// Every request marks its connection active (no longer pending) while it is served, and
/// pending again after its response unless it became a WebSocket session.
pub fn router(
    gw: Arc<ServerCtx>,
    state_dir: &std::path::Path,
    tls: crate::config::TlsMode,
    pending: Pending,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws))
        .route("/recordings/{file}", get(recording_file))
        .route("/recordings-export.ogg", get(recordings_export))
        .merge(crate::web::router(state_dir, tls))
        .with_state(gw)
        .layer(axum::middleware::from_fn_with_state(pending, track_pending))
}

/// See [`crate::web::pending`]: a request head arrived, so the connection is not pending
/// while it is served; after a plain HTTP response it waits (pending) for the next request.
async fn track_pending(
    State(pending): State<Pending>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    pending.active(remote);
    let resp = next.run(req).await;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        pending.idle(remote);
    }
    resp
}

async fn metrics(State(gw): State<Arc<ServerCtx>>) -> Response {
    crate::ops::metrics::respond(&gw.observed).into_response()
}

/// `/healthz` `degraded` reason: a store of the state database cannot write (full or failing
/// card; what it could not write is kept in memory and retried).
pub const DEGRADED_STATE_WRITES: &str = "state database writes failing";
/// `/healthz` `degraded` reason: the control plane's Redis is unreachable (serving from the
/// SQLite copy, reconnecting).
pub const DEGRADED_PERMISSION_SYNC: &str = "permission sync degraded";

/// `/healthz` `degraded` reason: a radio or console port has a device down (its PTT output,
/// squelch or button input, or audio device), or could not start.
pub const DEGRADED_RADIO: &str = "radio device down";

/// `/healthz` `degraded` reason: new talk spurts are not recorded for lack of free space
/// (`recording.min_free_bytes`); calls go on.
pub const DEGRADED_RECORDING: &str = "recording paused (little free space)";

/// Always HTTP 200 while the gateway serves: `status` is `"ok"`, or `"degraded"` with the
/// reasons in `degraded` (docs/CONTROL_PLANE.md); `stateWrites` has each store's write
/// counters.
async fn healthz(State(ctx): State<Arc<ServerCtx>>) -> Json<serde_json::Value> {
    let gw = &ctx.observed;
    let sync = gw.perm_sync.status();
    let writes = [
        ctx.audit.write_health(),
        ctx.store.write_health(),
        ctx.bans.write_health(),
    ];
    let mut degraded = Vec::new();
    if writes.iter().any(|w| w.failing()) {
        degraded.push(DEGRADED_STATE_WRITES);
    }
    if sync.state == crate::permissions::policy::LinkState::Degraded {
        degraded.push(DEGRADED_PERMISSION_SYNC);
    }
    let radio_down = gw.radio.status().iter().any(|p| {
        p.devices.iter().any(|d| d.state == "down")
            || (p.devices.is_empty() && p.last_error.is_some())
    });
    if radio_down {
        degraded.push(DEGRADED_RADIO);
    }
    let disk = gw.disk.status();
    if disk.nearly_full {
        degraded.push(crate::state::disk::DEGRADED_DISK);
    }
    let recording = gw
        .recorder
        .as_ref()
        .map(|r| json!({"recorded": r.recorded(), "dropped": r.dropped(), "paused": r.paused()}));
    if gw.recorder.as_ref().is_some_and(|r| r.paused()) {
        degraded.push(DEGRADED_RECORDING);
    }
    let state_writes: serde_json::Map<String, serde_json::Value> = writes
        .iter()
        .map(|w| (w.store().to_string(), json!(w.status())))
        .collect();
    let counters = gw.hub.counters();
    let hub = gw.hub.lock();
    Json(json!({
        "status": if degraded.is_empty() { "ok" } else { "degraded" },
        "degraded": degraded,
        "stateWrites": state_writes,
        "stateDisk": disk,
        "recording": recording,
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSecs": gw.started.elapsed().as_secs(),
        "sessions": hub.registry().len(),
        "channels": hub.channel_count(),
        "floorsTaken": hub.floors_taken(),
        "counters": counters,
        "auditDropped": gw.audit.dropped(),
        "forwardLatency": crate::sfu::stats::FORWARD_LATENCY.summary(),
        "floorRequestLatency": crate::signaling::stats::FLOOR_REQUEST_LATENCY.summary(),
        "permissionSync": sync,
        "radio": gw.radio.status_json(),
    }))
}

/// The recordings and the caller of a request for them: 404 when recording is off; the token
/// from `Authorization: Bearer` or the `token` parameter, 401 without a valid one; 403 for a
/// banned user.
#[allow(clippy::result_large_err)] // the refusal is the response itself, built once per request
fn recordings_caller(
    gw: &ServerCtx,
    headers: &HeaderMap,
    query_token: Option<String>,
) -> Result<(crate::signaling::session::Recordings, Claims), Response> {
    let Some(rec) = gw.session.recordings.clone() else {
        return Err((StatusCode::NOT_FOUND, "recording is off\n").into_response());
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = bearer.or(query_token) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized: no token".into(),
        ));
    };
    let claims = gw
        .verifier
        .verify(&token, unix_secs())
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, format!("unauthorized: {e}")))?;
    if gw.bans.is_banned(&claims.sub) {
        return Err(refuse(StatusCode::FORBIDDEN, "Account is suspended".into()));
    }
    Ok((rec, claims))
}

/// `GET /recordings/ID.opus` (issue 14): the recording as `audio/ogg` (byte ranges for
/// seeking), for a valid token (the `Authorization: Bearer` header or the `token` parameter) of
/// a user who is not banned and who may hear one of the channels it reached: of its event and
/// permitted there (the permission store's copy, which follows Redis), or ADMIN of its event.
/// 401 without a valid token, 403 otherwise, 404 for no such recording.
async fn recording_file(
    State(gw): State<Arc<ServerCtx>>,
    axum::extract::Path(file): axum::extract::Path<String>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
) -> Response {
    let (rec, claims) = match recordings_caller(&gw, &headers, q.token) {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let Some(id) = file
        .strip_suffix(".opus")
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return (StatusCode::NOT_FOUND, "no such recording\n").into_response();
    };
    let store = Arc::clone(&gw.store);
    let index = Arc::clone(&rec.index);
    let (event, sub) = (claims.event.clone(), claims.sub.clone());
    let found = tokio::task::spawn_blocking(move || {
        let r = index.lock().get(id).map_err(|e| e.to_string())?;
        let permitted = store
            .user_channels(&event, &sub)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((r, permitted))
    })
    .await;
    let (r, permitted) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let Some(r) = r else {
        return (StatusCode::NOT_FOUND, "no such recording\n").into_response();
    };
    let allowed = r.event == claims.event
        && (claims.role == crate::access::role::Role::Admin
            || r.channels.iter().any(|c| permitted.contains(c)));
    if !allowed {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden: not permitted on this recording's channels".into(),
        );
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    crate::recording::http::serve_file(&crate::recording::recorder::file_of(&rec.dir, id), range)
        .await
}

#[derive(Deserialize)]
struct ExportQuery {
    token: Option<String>,
    channel: String,
    since: Option<u64>,
    until: Option<u64>,
}

/// `GET /recordings-export.ogg?channel=C&since=MS&until=MS&token=T` (ADMIN, issue 14): every
/// recording of channel `C` of the admin's event that started in `[since, until)`, oldest
/// first, as one chained Ogg file (RFC 3533 §4: streams one after the other, each with its own
/// serial number), at most 500 recordings. 401 without a valid token, 403 for other roles.
async fn recordings_export(
    State(gw): State<Arc<ServerCtx>>,
    Query(q): Query<ExportQuery>,
    headers: HeaderMap,
) -> Response {
    let (rec, claims) = match recordings_caller(&gw, &headers, q.token.clone()) {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    if claims.role != crate::access::role::Role::Admin {
        return refuse(StatusCode::FORBIDDEN, "forbidden: ADMIN only".into());
    }
    let search = crate::recording::index::Search {
        channel_id: Some(q.channel.clone()),
        user_id: None,
        since_ms: q.since,
        until_ms: q.until,
        limit: Some(500),
    };
    let dir = rec.dir.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut rows = rec
            .index
            .lock()
            .search(&claims.event, &search)
            .map_err(|e| e.to_string())?;
        rows.retain(|r| r.ended.is_some());
        rows.reverse(); // oldest first
        let mut out = Vec::new();
        for r in rows {
            if let Ok(b) = std::fs::read(crate::recording::recorder::file_of(&dir, r.id)) {
                out.extend_from_slice(&b);
            }
        }
        Ok::<_, String>(out)
    })
    .await;
    match body {
        Ok(Ok(b)) => (
            [
                (header::CONTENT_TYPE, "audio/ogg".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}.ogg\"",
                        q.channel.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    ),
                ),
            ],
            b,
        )
            .into_response(),
        Ok(Err(e)) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// The token from `Authorization: Bearer` or, for browsers, the `token` query parameter.
fn bearer(headers: &HeaderMap, query: &WsQuery) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::trim).map(String::from))
        .or_else(|| query.token.clone())
        .filter(|t| !t.is_empty())
}

fn refuse(status: StatusCode, reason: String) -> Response {
    (status, reason).into_response()
}

/// 429 with `Retry-After` (whole seconds, rounded up) for the failed-auth progressive delay.
fn retry_after(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        format!("too many failed authentications; retry after {secs} s"),
    )
        .into_response()
}

/// The session caps (issue 15): `limits.max_sessions` in total (503) and
/// `limits.max_sessions_per_user` per user id (429). Checked at connect, before the upgrade.
fn session_cap(gw: &ServerCtx, claims: &Claims) -> Option<Response> {
    let hub = gw.session.hub.lock();
    let (total, mine) = (
        hub.registry().len(),
        hub.registry().by_user(&claims.sub).len(),
    );
    drop(hub);
    if total >= gw.max_sessions {
        tracing::warn!(user = ?claims.sub, total, "session cap reached, connect refused");
        return Some(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the gateway is full ({total} sessions); try again later"),
        ));
    }
    // A linked site opens one session per linked channel (issue 16): only the total applies.
    if mine >= gw.max_sessions_per_user && claims.link.is_none() {
        tracing::warn!(user = ?claims.sub, sessions = mine, "per-user session cap reached, connect refused");
        gw.audit.record(
            Entry::new(claims.sub.clone(), Action::RateLimited)
                .who(claims.role, claims.event.clone())
                .target("connect")
                .outcome("too_many_sessions"),
        );
        return Some(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many sessions for this user ({mine}, at most {}); close the app on another device",
                gw.max_sessions_per_user
            ),
        ));
    }
    None
}

/// 429 for a connection rate limit (`whom`: "from this address" or "for this user"), audited
/// with `actor` (the address or the user id).
fn rate_limited(gw: &ServerCtx, actor: String, whom: &str) -> Response {
    tracing::warn!(actor = ?actor, "connection rate limit {whom}");
    gw.audit.record(
        Entry::new(actor, Action::RateLimited)
            .target("connect")
            .outcome("too_many_connections"),
    );
    refuse(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many connections {whom}; try again in a minute"),
    )
}

async fn ws(
    State(gw): State<Arc<ServerCtx>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if gw.shutdown.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    }
    let ip = remote.ip();
    // The token first: a valid one is never refused for what others behind the same address
    // (a NAT) did; only unauthenticated attempts count against the address (issue 13).
    let claims: Claims = match bearer(&headers, &query)
        .ok_or(TokenError::Missing)
        .and_then(|t| gw.verifier.verify(&t, unix_secs()))
    {
        Ok(c) => c,
        Err(e) => {
            if let Err(wait) = gw.auth_backoff.lock().check(ip, Instant::now()) {
                return retry_after(wait);
            }
            if gw.conn_limiter.check_key(&ip).is_err() {
                return rate_limited(&gw, ip.to_string(), "from this address");
            }
            tracing::warn!(%remote, reason = %e, "authentication refused");
            let delay = gw.auth_backoff.lock().failure(ip, Instant::now());
            gw.audit.record(
                Entry::new(ip.to_string(), Action::AuthFailure)
                    .outcome(e.code())
                    .details(json!({"reason": e.to_string(), "delaySecs": delay.as_secs()})),
            );
            return refuse(StatusCode::UNAUTHORIZED, format!("unauthorized: {e}"));
        }
    };
    if gw.user_limiter.check_key(&claims.sub).is_err() {
        return rate_limited(&gw, claims.sub.clone(), "for this user");
    }
    if gw.bans.is_banned(&claims.sub) {
        tracing::warn!(%remote, user = ?claims.sub, "banned user refused");
        gw.audit.record(
            Entry::new(claims.sub.clone(), Action::AuthFailure)
                .who(claims.role, claims.event.clone())
                .outcome("banned"),
        );
        return refuse(StatusCode::FORBIDDEN, "Account is suspended".into());
    }
    if let Some(refusal) = session_cap(&gw, &claims) {
        return refusal;
    }
    gw.audit.record(
        Entry::new(claims.sub.clone(), Action::AuthSuccess)
            .who(claims.role, claims.event.clone())
            .details(json!({"remote": remote.to_string(), "device": claims.device})),
    );
    // Redis (when configured) or the SQLite copy decides; the token only for unknown users
    // (see PermissionSync::permitted_at_connect and docs/CONTROL_PLANE.md).
    let store = Arc::clone(&gw.store);
    let (event, sub) = (claims.event.clone(), claims.sub.clone());
    let before = tokio::task::spawn_blocking(move || store.user_channels(&event, &sub))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let perm_generation = gw.perm_sync.generation();
    let permitted = match gw.perm_sync.permitted_at_connect(&gw.store, &claims).await {
        Ok(p) => {
            if before != p {
                gw.audit.record(
                    Entry::new("connect", Action::PermissionChange)
                        .who(claims.role, claims.event.clone())
                        .target(claims.sub.clone())
                        .details(json!({"before": before, "after": p})),
                );
            }
            p
        }
        Err(e) => {
            tracing::error!(error = %e, "permission store failed at connect");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    // A plain GET (no Upgrade header) is a probe: every connect check passed. Browsers use it
    // to learn why their WebSocket was refused, which the WebSocket API does not tell them.
    let Ok(upgrade) = upgrade else {
        return (StatusCode::OK, "ok: token accepted\n").into_response();
    };
    let max = gw.max_frame_bytes;
    let tracker = gw.sessions.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite's default 128 KiB read and write buffers per session are most of a
        // session's memory; signaling frames are small, and the buffers grow when needed.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            tracker.track_future(crate::signaling::session::run(
                Arc::clone(&gw.session),
                claims,
                crate::signaling::session::Permitted {
                    channels: permitted,
                    generation: perm_generation,
                },
                remote,
                socket,
            ))
        })
}
