//! The permission sync driver: a thin tokio shell around [`SyncPolicy`] that owns the Redis
//! connections, applies membership updates, runs the heartbeat refresh and reconnects.
//!
//! Every applied change is written through to the SQLite copy first, then pushed to the
//! user's live sessions through the hub (`permission.update`, see docs/PROTOCOL.md).
//! Standalone (no `[redis] url`), the same loop re-reads the SQLite copy for connected users
//! every refresh interval, so `radiogate permissions set` reaches live sessions.

use super::policy::{ResyncScope, SyncPolicy, SyncStatus, Transition};
use super::redis_source::{parse_update, Action, RedisSource, SourceError};
use super::{Source, SqliteStore, StoreError};
use crate::access::token::Claims;
use crate::clock::unix_ms as wall_ms;
use crate::config::RedisConfig;
use crate::switchboard::Switchboard;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Errors of the sync driver and the connect-time lookup.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The SQLite copy failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Redis source failed or refused its configuration.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A blocking task panicked or was cancelled.
    #[error("permission sync task: {0}")]
    Task(String),
}

/// The command connection of one connected period and the token that ends the period early
/// (cancelled when a connect-time read on it fails: see [`PermissionSync::permitted_at_connect`]).
#[derive(Clone)]
struct Link {
    cmd: MultiplexedConnection,
    lost: CancellationToken,
}

/// Shared permission-sync state: the policy (status), the Redis source and its command
/// connection while connected.
pub struct PermissionSync {
    cfg: RedisConfig,
    source: Option<RedisSource>,
    policy: Mutex<SyncPolicy>,
    conn: Mutex<Option<Link>>,
    /// Bumped before every application of permissions to the hub (see
    /// [`PermissionSync::generation`]).
    applied: AtomicU64,
}

impl PermissionSync {
    /// Builds the sync state from `[redis]` (no connection yet; the driver connects).
    ///
    /// # Errors
    /// [`SyncError::Source`] if the URL or CA file is unusable.
    pub fn new(cfg: &RedisConfig) -> Result<Self, SyncError> {
        let source = if cfg.enabled() {
            Some(RedisSource::new(cfg)?)
        } else {
            None
        };
        Ok(Self {
            policy: Mutex::new(SyncPolicy::new(cfg.enabled(), cfg.refresh_interval())),
            cfg: cfg.clone(),
            source,
            conn: Mutex::new(None),
            applied: AtomicU64::new(0),
        })
    }

    /// A counter the driver bumps *before* it applies permissions to the hub. A connecting
    /// session reads it before its connect-time read ([`Self::permitted_at_connect`]) and
    /// compares after registering with the hub: a change means an update may have been
    /// applied while the session was not yet registered to receive it, so it reads again
    /// ([`Self::recheck_after_register`]) instead of waiting for the heartbeat refresh.
    pub fn generation(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Applies each `(event, user, channels)` to the user's live sessions
    /// ([`crate::hub::Hub::apply_permissions`]), after bumping
    /// [`Self::generation`]: every path that changes live sessions' permissions goes through
    /// here, so a connecting session can tell it may have missed one. Returns how many users'
    /// sessions were told of a change.
    fn apply_to_sessions<'a>(
        &self,
        hub: &Switchboard,
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
    ) -> usize {
        self.applied.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut hub = hub.lock();
        let mut changed = 0;
        for (event, user, chs) in rows {
            if hub.apply_permissions(event, user, chs, now).sessions_told > 0 {
                changed += 1;
            }
        }
        changed
    }

    /// When the next heartbeat refresh is due (the policy's, else one refresh interval on).
    fn next_refresh(&self) -> Instant {
        self.policy
            .lock()
            .next_refresh(Instant::now())
            .unwrap_or_else(|| Instant::now() + self.cfg.refresh_interval())
    }

    /// Re-reads the channels of a just-registered session's user (as at connect) and applies
    /// them to the user's sessions, telling them with `permission.update` if they changed.
    /// Called when [`Self::generation`] moved between the connect-time read and registration.
    /// A store failure is logged; the heartbeat refresh corrects the session later.
    pub async fn recheck_after_register(
        &self,
        hub: &Switchboard,
        store: &Arc<SqliteStore>,
        claims: &Claims,
    ) {
        match self.permitted_at_connect(store, claims).await {
            Ok(chs) => {
                let changed = self.apply_to_sessions(
                    hub,
                    [(claims.event.as_str(), claims.sub.as_str(), chs.as_slice())],
                );
                tracing::info!(user = %claims.sub, changed,
                    "permissions re-read: an update arrived while the session was connecting");
            }
            Err(e) => tracing::warn!(user = %claims.sub, error = %e,
                "permission re-read after connect failed; the heartbeat refresh will correct it"),
        }
    }

    /// The current sync status (state, degraded since, last full sync, counters).
    pub fn status(&self) -> SyncStatus {
        self.policy.lock().status().clone()
    }

    /// Whether this gateway follows `event` (`redis.events` empty: every event).
    pub fn follows(&self, event: &str) -> bool {
        self.cfg.events.is_empty() || self.cfg.events.iter().any(|e| e == event)
    }

    /// The channels a connecting user may use.
    ///
    /// With Redis configured and connected: read from Redis (the whole read bounded by the
    /// response timeout) and written through to SQLite. Otherwise (outage, Redis read failed):
    /// the SQLite copy if it knows the user from Redis or a site admin; for a user it never
    /// saw, the token's channels (recorded as such, replaced at the next resync).
    /// Standalone: channels a site admin set with `radiogate permissions set` win; else the
    /// token's channels, recorded at each connect.
    ///
    /// A Redis read that fails or times out marks the sync degraded at once and ends the
    /// connected period (the driver reconnects with backoff and resyncs), so the connects that
    /// follow read the SQLite copy without waiting for Redis (issue 15: a hung control plane
    /// cost every connect the response timeout until the heartbeat noticed).
    ///
    /// Writes to the SQLite copy that fail (a full card) are kept in memory and retried
    /// ([`SqliteStore::record_users_kept`]); they never refuse the connect.
    ///
    /// # Errors
    /// [`SyncError::Store`] if SQLite cannot be read.
    pub async fn permitted_at_connect(
        &self,
        store: &Arc<SqliteStore>,
        claims: &Claims,
    ) -> Result<Vec<String>, SyncError> {
        let (event, user) = (claims.event.clone(), claims.sub.clone());
        if let Some(src) = &self.source {
            let link = self.conn.lock().clone();
            if let (Some(link), true) = (link, self.follows(&event)) {
                let key = (event.clone(), user.clone());
                let mut cmd = link.cmd.clone();
                let read = tokio::time::timeout(
                    self.cfg.response_timeout(),
                    src.fetch(&mut cmd, std::slice::from_ref(&key)),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(SourceError::Link(format!(
                        "connect-time read timed out after {} ms",
                        self.cfg.response_timeout().as_millis()
                    )))
                });
                match read {
                    Ok(mut f) => {
                        match f.users.pop() {
                            Some(Ok(chs)) => {
                                let store = Arc::clone(store);
                                let rows = vec![(event, user, chs.clone())];
                                let assoc = std::mem::take(&mut f.assoc);
                                blocking(move || {
                                    Ok(store.record_users_kept(
                                        &rows,
                                        &assoc,
                                        Source::Redis,
                                        wall_ms(),
                                    ))
                                })
                                .await?;
                                return Ok(chs);
                            }
                            Some(Err(e)) => {
                                tracing::warn!(user = ?claims.sub, error = %e,
                                "permission key unusable at connect; using the SQLite copy");
                            }
                            None => {}
                        }
                    }
                    Err(e) => {
                        tracing::info!(user = ?claims.sub, error = %e,
                            "Redis read at connect failed; using the SQLite copy");
                        self.link_failed(&link, &e.to_string());
                    }
                }
            }
        }
        let redis_mode = self.source.is_some();
        let store = Arc::clone(store);
        let token_channels = claims.channels.clone();
        blocking(move || {
            if let Some(rec) = store.user_record(&event, &user)? {
                let authoritative = match rec.source {
                    Source::Local => true,
                    Source::Redis => redis_mode,
                    Source::Token => false,
                };
                if authoritative {
                    return Ok(rec.channels);
                }
            }
            let rows = vec![(event, user, token_channels.clone())];
            store.record_users_kept(&rows, &[], Source::Token, wall_ms());
            let mut chs = token_channels;
            chs.sort();
            chs.dedup();
            Ok(chs)
        })
        .await
    }

    /// A read on `link` failed (`reason`): unless the driver already replaced it, stop using it
    /// for connects, mark the sync degraded now (logged once) and end its connected period so
    /// the driver reconnects.
    fn link_failed(&self, link: &Link, reason: &str) {
        link.lost.cancel();
        {
            let mut current = self.conn.lock();
            if current.as_ref().is_some_and(|l| l.lost.is_cancelled()) {
                *current = None;
            }
        }
        let t = self
            .policy
            .lock()
            .on_read_failed(Instant::now(), wall_ms(), reason);
        log_transition(&self.cfg, t);
    }
}

/// Runs a blocking SQLite closure off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?
        .map_err(SyncError::from)
}

/// What the sync loops use: the sync state, the hub (to apply changes to live sessions), the
/// SQLite copy and the shutdown token.
#[derive(Clone)]
pub struct SyncCtx {
    /// The sync state and policy.
    pub perm_sync: Arc<PermissionSync>,
    /// The hub's shell.
    pub hub: Arc<Switchboard>,
    /// The SQLite permission store (standalone source and local copy).
    pub store: Arc<SqliteStore>,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
}

/// Runs the permission sync until shutdown (spawned by `app::Gateway::serve`).
pub async fn run(gw: Arc<SyncCtx>) {
    if gw.perm_sync.source.is_some() {
        redis_loop(gw).await;
    } else {
        standalone_loop(gw).await;
    }
}

/// Standalone: re-read the SQLite copy for connected users every refresh interval.
async fn standalone_loop(gw: Arc<SyncCtx>) {
    let sync = Arc::clone(&gw.perm_sync);
    loop {
        let next = sync.next_refresh();
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
            _ = gw.shutdown.cancelled() => return,
        }
        let t0 = Instant::now();
        let users = gw.hub.lock().connected_users();
        let store = Arc::clone(&gw.store);
        let n = users.len();
        let recs = blocking(move || {
            let mut out = Vec::with_capacity(users.len());
            for (event, user) in users {
                if let Some(rec) = store.user_record(&event, &user)? {
                    out.push(rec);
                }
            }
            Ok(out)
        })
        .await;
        let changed = match recs {
            Ok(recs) => sync.apply_to_sessions(
                &gw.hub,
                recs.iter()
                    .map(|r| (r.event.as_str(), r.user.as_str(), r.channels.as_slice())),
            ),
            Err(e) => {
                tracing::error!(error = %e, "permission refresh from SQLite failed");
                0
            }
        };
        let mut p = sync.policy.lock();
        p.count_refresh_changes(changed);
        p.on_resync_done(
            Instant::now(),
            wall_ms(),
            ResyncScope::Connected,
            n,
            t0.elapsed(),
        );
    }
}

/// Why a connected period ended.
enum Ended {
    Shutdown,
    Lost(String),
}

fn log_transition(cfg: &RedisConfig, t: Option<Transition>) {
    match t {
        Some(Transition::Connected { outage: None }) => {
            tracing::info!(url = %cfg.redacted_url(), channel = %cfg.updates_channel,
                "permission sync connected to Redis");
        }
        Some(Transition::Connected {
            outage: Some(outage),
        }) => {
            tracing::info!(url = %cfg.redacted_url(), outage_ms = outage.as_millis() as u64,
                "permission sync reconnected to Redis; resubscribed, resyncing");
        }
        Some(Transition::Degraded { reason }) => {
            tracing::warn!(url = %cfg.redacted_url(), %reason,
                "permission sync degraded: Redis unreachable, serving from the SQLite copy; \
                 reconnecting with backoff 1, 2, 4, 8, 16, 30 s");
        }
        None => {}
    }
}

async fn redis_loop(gw: Arc<SyncCtx>) {
    let sync = Arc::clone(&gw.perm_sync);
    let Some(src) = sync.source.as_ref() else {
        return;
    };
    loop {
        let reason = tokio::select! {
            r = src.connect() => match r {
                Ok((cmd, sink, stream)) => {
                    let lost = CancellationToken::new();
                    *sync.conn.lock() = Some(Link { cmd: cmd.clone(), lost: lost.clone() });
                    let t = sync.policy.lock().on_connected(Instant::now(), wall_ms());
                    log_transition(&sync.cfg, t);
                    let ended = connected(&gw, src, cmd, sink, stream, &lost).await;
                    *sync.conn.lock() = None;
                    match ended {
                        Ended::Shutdown => return,
                        Ended::Lost(r) => r,
                    }
                }
                Err(e) => e.to_string(),
            },
            _ = gw.shutdown.cancelled() => return,
        };
        let jitter = rand::random::<f64>() * 2.0 - 1.0;
        let (delay, t) =
            sync.policy
                .lock()
                .on_link_lost(Instant::now(), wall_ms(), &reason, jitter);
        if t.is_none() {
            tracing::debug!(%reason, delay_ms = delay.as_millis() as u64, "Redis reconnect failed");
        }
        log_transition(&sync.cfg, t);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = gw.shutdown.cancelled() => return,
        }
    }
}

/// One connected period: full resync, then updates and heartbeat refreshes until the link
/// drops or the gateway shuts down.
async fn connected(
    gw: &Arc<SyncCtx>,
    src: &RedisSource,
    mut cmd: MultiplexedConnection,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    lost: &CancellationToken,
) -> Ended {
    let sync = &gw.perm_sync;
    let scope = sync.policy.lock().resync_scope();
    tokio::select! {
        r = resync(gw, src, &mut cmd, scope) => if let Err(e) = r {
            return Ended::Lost(e.to_string());
        },
        _ = lost.cancelled() => return Ended::Lost(LOST_AT_CONNECT.into()),
    }
    loop {
        let next = sync.next_refresh();
        tokio::select! {
            msg = stream.next() => match msg {
                Some(m) => {
                    if let Err(e) = handle_update(gw, src, &mut cmd, m.get_payload_bytes()).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                None => return Ended::Lost("subscription connection closed".into()),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                if let Err(e) = src.ping(&mut sink).await {
                    return Ended::Lost(e.to_string());
                }
                if let Err(e) = resync(gw, src, &mut cmd, ResyncScope::Connected).await {
                    return Ended::Lost(e.to_string());
                }
            }
            _ = lost.cancelled() => return Ended::Lost(LOST_AT_CONNECT.into()),
            _ = gw.shutdown.cancelled() => return Ended::Shutdown,
        }
    }
}

/// Why a connected period ended when a connect-time read failed.
const LOST_AT_CONNECT: &str = "a connect-time read failed or timed out";

/// Re-reads users from Redis, writes them through and pushes changes. Returns `Err` only
/// for a link failure.
async fn resync(
    gw: &Arc<SyncCtx>,
    src: &RedisSource,
    cmd: &mut MultiplexedConnection,
    scope: ResyncScope,
) -> Result<(), SourceError> {
    let sync = &gw.perm_sync;
    let t0 = Instant::now();
    let mut users: BTreeSet<(String, String)> =
        gw.hub.lock().connected_users().into_iter().collect();
    if scope == ResyncScope::Known {
        let store = Arc::clone(&gw.store);
        match blocking(move || store.user_records(None)).await {
            Ok(recs) => users.extend(recs.into_iter().map(|r| (r.event, r.user))),
            Err(e) => tracing::error!(error = %e, "cannot list the SQLite copy for resync"),
        }
    }
    let users: Vec<(String, String)> = users.into_iter().filter(|(e, _)| sync.follows(e)).collect();
    let fetched = src.fetch(cmd, &users).await?;
    if let Some(e) = &fetched.assoc_error {
        tracing::warn!(error = %e, "channel-to-event association unusable; channels counted for the user's event");
    }
    let mut rows = Vec::with_capacity(users.len());
    for ((event, user), r) in users.iter().zip(fetched.users) {
        match r {
            Ok(chs) => rows.push((event.clone(), user.clone(), chs)),
            Err(e) => {
                tracing::warn!(%user, %event, error = %e, "permission key skipped; keeping the last known channels");
            }
        }
    }
    let store = Arc::clone(&gw.store);
    let assoc = fetched.assoc;
    let rows = Arc::new(rows);
    let rows2 = Arc::clone(&rows);
    let written =
        blocking(move || Ok(store.record_users_kept(&rows2, &assoc, Source::Redis, wall_ms())))
            .await;
    if let Err(e) = &written {
        tracing::error!(error = %e, "writing permissions to the SQLite copy failed");
    }
    let changed = sync.apply_to_sessions(
        &gw.hub,
        rows.iter()
            .map(|(event, user, chs)| (event.as_str(), user.as_str(), chs.as_slice())),
    );
    let took = t0.elapsed();
    if scope == ResyncScope::Known {
        tracing::info!(
            users = users.len(),
            sessions_changed = changed,
            stored_changed = written.as_ref().copied().unwrap_or(0),
            took_ms = took.as_millis() as u64,
            "permission full resync done"
        );
    } else {
        tracing::debug!(
            users = users.len(),
            changed,
            "permission heartbeat refresh done"
        );
    }
    let mut p = sync.policy.lock();
    p.count_refresh_changes(changed);
    p.on_resync_done(Instant::now(), wall_ms(), scope, users.len(), took);
    Ok(())
}

/// Applies one message from the updates channel. Returns `Err` only for a link failure.
async fn handle_update(
    gw: &Arc<SyncCtx>,
    src: &RedisSource,
    cmd: &mut MultiplexedConnection,
    payload: &[u8],
) -> Result<(), SourceError> {
    let sync = &gw.perm_sync;
    let update = match parse_update(payload) {
        Ok(u) => u,
        Err(e) => {
            let shown: String = String::from_utf8_lossy(payload).chars().take(200).collect();
            tracing::warn!(error = %e, payload = %shown, "malformed membership update skipped");
            sync.policy.lock().count_update(false);
            return Ok(());
        }
    };
    if !sync.follows(&update.event_id) {
        tracing::debug!(event = %update.event_id, "membership update for an event not followed here");
        sync.policy.lock().count_update(false);
        return Ok(());
    }
    let (event, user) = (update.event_id, update.user_id);
    let (channels, assoc) = match update.action {
        Action::SetUserChannels(chs) => {
            let assoc = chs.iter().map(|c| (c.clone(), event.clone())).collect();
            (chs, assoc)
        }
        Action::RemoveUser => (Vec::new(), Vec::new()),
        Action::ResyncUser => {
            let mut f = src.fetch(cmd, &[(event.clone(), user.clone())]).await?;
            match f.users.pop() {
                Some(Ok(chs)) => (chs, std::mem::take(&mut f.assoc)),
                Some(Err(e)) => {
                    tracing::warn!(%user, %event, error = %e, "resync_user skipped: permission key unusable");
                    sync.policy.lock().count_update(false);
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    };
    let store = Arc::clone(&gw.store);
    let rows = vec![(event.clone(), user.clone(), channels.clone())];
    if let Err(e) =
        blocking(move || Ok(store.record_users_kept(&rows, &assoc, Source::Redis, wall_ms()))).await
    {
        tracing::error!(error = %e, user = ?user, "writing a membership update to the SQLite copy failed");
    }
    let has_session = !gw.hub.lock().registry().by_user(&user).is_empty();
    let changed = sync.apply_to_sessions(
        &gw.hub,
        [(event.as_str(), user.as_str(), channels.as_slice())],
    );
    if !has_session {
        tracing::info!(%user, %event, "membership update for a user with no session here; recorded in the SQLite copy");
    }
    tracing::debug!(%user, %event, changed, "membership update applied");
    sync.policy.lock().count_update(true);
    Ok(())
}
