//! The one HTTP port: `GET /healthz`, the signaling WebSocket at `GET /ws` and the web client
//! at `/` ([`crate::web`]).
//!
//! The token is verified before the WebSocket upgrade: a missing, malformed, forged, expired,
//! wrong-algorithm or `alg: none` token gets `401` with a plain-text reason, and is logged.

use crate::access::token::{Claims, TokenError};
use crate::app::{unix_now, Gateway};
use crate::permissions::PermissionStore;
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

/// The routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/ws", get(ws))
        .merge(crate::web::router())
        .with_state(gw)
}

async fn healthz(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let hub = gw.hub.lock();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSecs": gw.started.elapsed().as_secs(),
        "sessions": hub.registry().len(),
        "channels": hub.channel_count(),
        "floorsTaken": hub.floors_taken(),
        "counters": hub.counters(),
    }))
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

async fn ws(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if gw.shutdown.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    }
    let claims: Claims = match bearer(&headers, &query)
        .ok_or(TokenError::Missing)
        .and_then(|t| gw.verifier.verify(&t, unix_now()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%remote, reason = %e, "authentication refused");
            return refuse(StatusCode::UNAUTHORIZED, format!("unauthorized: {e}"));
        }
    };
    // Standalone: the token's channels are the user's permitted channels, recorded in SQLite.
    let store = Arc::clone(&gw.store);
    let c = claims.clone();
    let permitted = tokio::task::spawn_blocking(move || {
        store.set_user_channels(&c.event, &c.sub, &c.channels)?;
        store.user_channels(&c.event, &c.sub)
    })
    .await;
    let permitted = match permitted {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "permission store failed at connect");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // A plain GET (no Upgrade header) is a probe: every connect check passed. Browsers use it
    // to learn why their WebSocket was refused, which the WebSocket API does not tell them.
    let Ok(upgrade) = upgrade else {
        return (StatusCode::OK, "ok: token accepted\n").into_response();
    };
    let max = gw.cfg.server.max_frame_bytes;
    let tracker = gw.sessions.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(crate::signaling::session::run(
                gw, claims, permitted, remote, socket,
            ))
        })
}
