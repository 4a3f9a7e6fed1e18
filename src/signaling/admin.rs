//! Admin methods over the signaling WebSocket (spec notes 000 and 004): status, connections,
//! force-disconnect (by user, device or connection; close code 4003), bans and the audit log.
//! The permission matrix (`methods.rs`) lets only ADMIN reach these.

use super::protocol::{close, params, ErrorCode, Incoming, RpcError};
use super::session::event_channels;
use crate::access::bans::{Ban, BanList};
use crate::access::issue::{LinkIssuer, LinkRequest};
use crate::access::token::Claims;
use crate::audit::Audit;
use crate::audit::{Action, AuditQuery, Entry};
use crate::bridge::Radios;
use crate::hub::ConnId;
use crate::permissions::{PermissionSync, SqliteStore};
use crate::switchboard::Switchboard;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DisconnectParams {
    user_id: Option<String>,
    device_id: Option<String>,
    conn_id: Option<ConnId>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeviceParams {
    device_id: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BanParams {
    user_id: String,
    reason: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(ErrorCode::Internal, e.to_string())
}

/// What the admin methods use: the hub, the audit log, the ban list, the permission store
/// (the event's channels) and the sync's status, the radio ports' status, the start time and,
/// when this gateway signs tokens, the link issuer and the join URLs.
pub struct AdminCtx {
    /// The hub's shell.
    pub hub: Arc<Switchboard>,
    /// The audit log.
    pub audit: Audit,
    /// The ban list.
    pub bans: Arc<BanList>,
    /// The permission sync (status).
    pub perm_sync: Arc<PermissionSync>,
    /// The radio and console ports (status).
    pub radio: Arc<Radios>,
    /// When the gateway started.
    pub started: Instant,
    /// The permission store: the channels of the admin's event.
    pub store: Arc<SqliteStore>,
    /// Signs join links (`admin.issueLink`); `None` when this gateway holds no signing key
    /// (tokens come from the control plane).
    pub issuer: Option<LinkIssuer>,
    /// The join URLs phones open (`run` logs them too); the first is the default link base.
    pub join_urls: Vec<String>,
    /// The recordings, when `[recording] enabled`.
    pub recordings: Option<crate::signaling::session::Recordings>,
    /// The linked channels (issue 16: `admin.status` `siteLinks`).
    pub links: Arc<crate::link::Links>,
}

/// Handles one admin method for the ADMIN session `me` with claims `admin`.
///
/// An admin cannot disconnect its own session (`admin.disconnect` or `device.revoke` that would
/// close `me`: another session of the same user, named by `connId`, may be closed), cannot ban
/// its own user id, and nobody can ban the last connected admin (issue 13): each is refused
/// with [`ErrorCode::InvalidParams`] and a sentence saying why.
///
/// # Errors
/// [`ErrorCode::InvalidParams`] for bad params and the refusals above,
/// [`ErrorCode::Internal`] for database errors.
pub async fn handle(
    gw: &Arc<AdminCtx>,
    admin: &Claims,
    me: ConnId,
    req: &Incoming,
) -> Result<Value, RpcError> {
    let entry = |action| Entry::new(admin.sub.clone(), action).who(admin.role, admin.event.clone());
    match req.method.as_str() {
        "admin.status" => {
            let mut hub = serde_json::to_value(gw.hub.lock().status()).map_err(internal)?;
            hub["counters"] = json!(gw.hub.counters());
            Ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptimeSecs": gw.started.elapsed().as_secs(),
                "hub": hub,
                "permissionSync": gw.perm_sync.status(),
                "auditDropped": gw.audit.dropped(),
                "bans": gw.bans.list().len(),
                "radio": gw.radio.status_json(),
                "siteLinks": gw.links.status(),
                "eventChannels": event_channels(&gw.store, &admin.event).await?,
                "links": gw.issuer.as_ref().map(|i| json!({
                    "defaultTtlSecs": i.default_ttl().as_secs(),
                    "maxTtlSecs": i.max_ttl().as_secs(),
                    "joinUrls": gw.join_urls,
                })),
            }))
        }
        "admin.connections" => Ok(json!({"connections": gw.hub.lock().connections()})),
        "admin.issueLink" => {
            let Some(issuer) = &gw.issuer else {
                return Err(RpcError::new(
                    ErrorCode::InvalidParams,
                    "this gateway does not issue links: tokens come from the control plane \
                     (auth has a public key and no private_key_file)",
                ));
            };
            let req: LinkRequest = params(&req.params)?;
            let channels = event_channels(&gw.store, &admin.event).await?;
            let base = gw
                .join_urls
                .first()
                .map_or("https://localhost", String::as_str);
            let link = issuer
                .issue(
                    &admin.event,
                    &channels,
                    req,
                    base,
                    crate::clock::unix_secs(),
                )
                .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))?;
            let url = crate::web::join_url(&link.base, &link.token);
            let qr_svg = crate::web::qr_svg(&url).map_err(|_| {
                RpcError::new(
                    ErrorCode::InvalidParams,
                    "the link is too long for a QR code",
                )
            })?;
            let c = &link.claims;
            tracing::info!(by = ?admin.sub, user = ?c.sub, role = %c.role, channels = ?c.channels,
                           ttl_secs = c.exp - c.iat, "join link issued from the admin panel");
            let expires_at_ms = c.exp.saturating_mul(1000);
            gw.audit.record(
                entry(Action::TokenIssued)
                    .target(c.sub.clone())
                    .details(json!({
                        "name": c.name, "role": c.role, "channels": c.channels,
                        "ttlSecs": c.exp - c.iat, "expiresAtMs": expires_at_ms,
                    })),
            );
            Ok(json!({"token": link.token, "url": url, "qrSvg": qr_svg,
                      "expiresAtMs": expires_at_ms, "claims": c}))
        }
        "admin.disconnect" => {
            let p: DisconnectParams = params(&req.params)?;
            let reason = p
                .reason
                .unwrap_or_else(|| "Disconnected by an administrator".into());
            let mut hub = gw.hub.lock();
            let (ids, target) = match (p.user_id, p.device_id, p.conn_id) {
                (Some(u), None, None) => (hub.registry().by_user(&u), u),
                (None, Some(d), None) => (hub.registry().by_device(&d), format!("device:{d}")),
                // The audit target is the connection's user, so a search by user finds it.
                (None, None, Some(c)) => (
                    vec![c],
                    hub.registry()
                        .get(c)
                        .map_or_else(|| format!("conn:{c}"), |i| i.user_id.clone()),
                ),
                _ => {
                    return Err(RpcError::new(
                        ErrorCode::InvalidParams,
                        "give exactly one of userId, deviceId, connId",
                    ))
                }
            };
            if ids.contains(&me) {
                return Err(not_yourself("disconnect this session: it is your own"));
            }
            let n = hub.force_disconnect(&ids, close::FORCED, &reason, Instant::now());
            drop(hub);
            gw.audit.record(
                entry(Action::ForceDisconnect)
                    .target(target)
                    .details(json!({"reason": reason, "connections": n, "connId": p.conn_id})),
            );
            Ok(json!({"disconnected": n}))
        }
        "device.revoke" => {
            let p: DeviceParams = params(&req.params)?;
            let reason = p.reason.unwrap_or_else(|| "Device revoked".into());
            let mut hub = gw.hub.lock();
            let ids = hub.registry().by_device(&p.device_id);
            if ids.contains(&me) {
                return Err(not_yourself("revoke the device of your own session"));
            }
            let n = hub.force_disconnect(&ids, close::FORCED, &reason, Instant::now());
            drop(hub);
            gw.audit.record(
                entry(Action::ForceDisconnect)
                    .target(format!("device:{}", p.device_id))
                    .details(json!({"reason": reason, "connections": n})),
            );
            Ok(json!({"disconnected": n}))
        }
        "admin.ban" => {
            let p: BanParams = params(&req.params)?;
            let reason = p
                .reason
                .unwrap_or_else(|| "banned by an administrator".into());
            if p.user_id == admin.sub {
                return Err(not_yourself("ban your own user id"));
            }
            if last_admin(&gw.hub, &p.user_id) {
                return Err(RpcError::new(
                    ErrorCode::InvalidParams,
                    "refused: this user is the last connected admin; nobody could lift the ban from the panel",
                ));
            }
            let ban = Ban {
                user_id: p.user_id.clone(),
                reason: reason.clone(),
                by: admin.sub.clone(),
                at_ms: crate::clock::unix_ms(),
            };
            let g = Arc::clone(gw);
            tokio::task::spawn_blocking(move || g.bans.ban(ban))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            let mut hub = gw.hub.lock();
            let ids = hub.registry().by_user(&p.user_id);
            let n = hub.force_disconnect(
                &ids,
                close::FORCED,
                &crate::access::bans::suspended(&reason),
                Instant::now(),
            );
            drop(hub);
            gw.audit.record(
                entry(Action::Ban)
                    .target(p.user_id)
                    .details(json!({"reason": reason, "disconnected": n})),
            );
            Ok(json!({"banned": true, "disconnected": n}))
        }
        "admin.unban" => {
            let p: BanParams = params(&req.params)?;
            let g = Arc::clone(gw);
            let user = p.user_id.clone();
            let was = tokio::task::spawn_blocking(move || g.bans.unban(&user))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            gw.audit
                .record(entry(Action::Unban).target(p.user_id).outcome(if was {
                    "ok"
                } else {
                    "not_banned"
                }));
            Ok(json!({"unbanned": was}))
        }
        "admin.bans" => Ok(json!({"bans": gw.bans.list()})),
        "admin.recordings" => {
            let q: crate::recording::index::Search = params(&req.params)?;
            let rec = recordings(gw)?;
            let event = admin.event.clone();
            let rows = tokio::task::spawn_blocking(move || rec.index.lock().search(&event, &q))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            Ok(json!({"recordings": rows}))
        }
        "admin.recording_delete" => {
            let p: RecordingId = params(&req.params)?;
            let rec = recordings(gw)?;
            let (event, r2) = (admin.event.clone(), rec.clone());
            let gone =
                tokio::task::spawn_blocking(move || -> Result<Option<Vec<String>>, String> {
                    let mut ix = r2.index.lock();
                    match ix.get(p.id).map_err(|e| e.to_string())? {
                        Some(r) if r.event == event && r.ended.is_some() => {
                            ix.delete(p.id).map_err(|e| e.to_string())?;
                            let _ = std::fs::remove_file(crate::recording::recorder::file_of(
                                &r2.dir, p.id,
                            ));
                            Ok(Some(r.channels))
                        }
                        _ => Ok(None),
                    }
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
            let Some(channels) = gone else {
                return Err(RpcError::new(
                    ErrorCode::InvalidParams,
                    format!("no finished recording {} in this event", p.id),
                ));
            };
            gw.audit.record(
                entry(Action::RecordingDeleted)
                    .target(p.id.to_string())
                    .details(json!({"channels": channels})),
            );
            Ok(json!({"deleted": true}))
        }
        "admin.audit" => {
            let q: AuditQuery = params(&req.params)?;
            let g = Arc::clone(gw);
            let rows = tokio::task::spawn_blocking(move || g.audit.query(&q))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            Ok(json!({"entries": rows}))
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("method not found: {other}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingId {
    id: i64,
}

fn recordings(gw: &AdminCtx) -> Result<crate::signaling::session::Recordings, RpcError> {
    gw.recordings
        .clone()
        .ok_or_else(|| RpcError::new(ErrorCode::InvalidParams, "recording is off on this gateway"))
}

fn not_yourself(what: &str) -> RpcError {
    RpcError::new(
        ErrorCode::InvalidParams,
        format!("refused: you cannot {what}"),
    )
}

/// Whether `user` has an ADMIN session and no other user has one: banning it would leave no
/// admin connected.
fn last_admin(hub: &Switchboard, user: &str) -> bool {
    let hub = hub.lock();
    let admins: Vec<_> = hub
        .registry()
        .all()
        .into_iter()
        .filter(|c| c.role == crate::access::role::Role::Admin)
        .collect();
    admins.iter().any(|c| c.user_id == user) && admins.iter().all(|c| c.user_id == user)
}
