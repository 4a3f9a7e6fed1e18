//! Wiring only: opens the state, builds each module's narrow handles (sessions, admin, the
//! permission sync, the radio bridge, the HTTP routes, metrics) and starts the shells; serves
//! until shutdown, then shuts down gracefully. No other module imports this one
//! (tests/layering.rs).

use crate::access::bans::BanList;
use crate::access::limits::{
    connection_limiter, user_limiter, AuthBackoff, AuthBackoffConfig, KeyedLimiter,
};
use crate::access::token::{KeyMaterial, TokenVerifier};
use crate::audit::Audit;
use crate::config::{Algorithm, Config};
use crate::floor::FloorConfig;
use crate::hub::{Hub, Limits};
use crate::media::MediaEngine;
use crate::permissions::SqliteStore;
use crate::signaling::protocol::close;
use crate::switchboard::Switchboard;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Errors that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The state directory or a key file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key material is unusable.
    #[error("auth keys: {0}")]
    Keys(#[from] crate::access::token::TokenError),
    /// The SQLite state could not be opened.
    #[error(transparent)]
    Store(#[from] crate::permissions::StoreError),
    /// The TLS certificate could not be loaded or generated.
    #[error("server.tls: {0}")]
    Tls(#[from] crate::web::tls::TlsError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The media engine could not start (no UDP port free in the range).
    #[error("media engine: {0}")]
    Media(#[from] crate::media::MediaError),
    /// The ban list could not be opened.
    #[error(transparent)]
    Bans(#[from] crate::access::bans::BanError),
    /// The permission sync configuration is unusable (Redis URL, CA file).
    #[error(transparent)]
    Sync(#[from] crate::permissions::SyncError),
    /// The state directory is in use by another gateway, or its database is damaged.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A file a configuration key names cannot be read (`radiogate check-config`).
    #[error("{key}: cannot read {path}: {source}")]
    KeyFile {
        /// The key, e.g. `server.tls_cert_file`.
        key: &'static str,
        /// The path it names.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A command that never creates state found none where the configuration points
    /// (`radiogate token`, `radiogate permissions`, `radiogate backup`).
    #[error("no {what} at {path}: {hint}")]
    NoState {
        /// What is missing, e.g. "token signing secret".
        what: &'static str,
        /// Where the configuration says it is.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
}

/// Everything the sessions share.
pub struct Gateway {
    /// The validated configuration.
    pub cfg: Config,
    /// The media engine (one thread, one UDP socket for every peer connection).
    pub media: MediaEngine,
    /// Channels, floors, registry: the pure hub behind its shell.
    pub hub: Arc<Switchboard>,
    /// The SQLite permission store (standalone source and local copy).
    pub store: Arc<SqliteStore>,
    /// Permission sync from the control plane's Redis (or standalone refresh), its status.
    pub perm_sync: Arc<crate::permissions::PermissionSync>,
    /// Token verification at connect.
    pub verifier: TokenVerifier,
    /// Signs join links from the admin panel, when this gateway holds a signing key.
    issuer: Option<crate::access::issue::LinkIssuer>,
    /// The recordings index (reads) and directory, when `[recording] enabled`.
    recordings: Option<crate::signaling::session::Recordings>,
    /// Cancelled on SIGINT/SIGTERM.
    pub shutdown: CancellationToken,
    /// Session tasks, waited for at shutdown.
    pub sessions: TaskTracker,
    /// When the gateway started.
    pub started: Instant,
    /// The audit log.
    pub audit: Audit,
    /// Banned users.
    pub bans: Arc<BanList>,
    /// Unauthenticated connection attempts per remote address.
    pub conn_limiter: Arc<KeyedLimiter<governor::clock::DefaultClock>>,
    /// Authenticated connects per user.
    pub user_limiter: Arc<KeyedLimiter<governor::clock::DefaultClock, String>>,
    /// Failed authentications per remote address.
    pub auth_backoff: Arc<Mutex<AuthBackoff>>,
    /// Radio and console ports (`[[radio]]`, `[[console]]`), started by [`Gateway::serve`].
    pub radio: Arc<crate::bridge::Radios>,
    /// This gateway among linked gateways (`[site]`, issue 16).
    pub site: Arc<crate::link::Site>,
    /// The state directory's lock, held while the gateway lives (state).
    _dir_lock: crate::state::DirLock,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AppError {
    let path = path.to_path_buf();
    move |source| AppError::Io { what, path, source }
}

/// Creates the state directory if needed and returns it.
///
/// # Errors
/// [`AppError::Io`] when it cannot be created.
pub fn state_dir(cfg: &Config) -> Result<PathBuf, AppError> {
    let dir = cfg.state.dir.clone();
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create state directory", &dir))?;
    Ok(dir)
}

/// The signing/verifying key material the configuration names. For HS256 with an empty
/// `auth.secret`, the secret in `STATE_DIR/jwt-secret` (created with 256 random bits, mode
/// 0600, on first use).
///
/// # Errors
/// [`AppError::Io`] when a key file or the state directory cannot be read or written.
pub fn key_material(cfg: &Config) -> Result<KeyMaterial, AppError> {
    key_material_with(cfg, true)
}

/// [`key_material`] for commands that must not create state (`radiogate token`,
/// `check-config`): with HS256 and an empty `auth.secret`, `STATE_DIR/jwt-secret` must exist.
///
/// # Errors
/// [`AppError::NoState`] naming the secret's path and what to do when it does not exist (or
/// holds fewer than 32 characters); [`AppError::Io`] when a key file cannot be read.
pub fn existing_key_material(cfg: &Config) -> Result<KeyMaterial, AppError> {
    key_material_with(cfg, false)
}

fn key_material_with(cfg: &Config, create: bool) -> Result<KeyMaterial, AppError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(io_err("cannot read key file", p));
    Ok(match cfg.auth.algorithm {
        Algorithm::HS256 if !cfg.auth.secret.is_empty() => KeyMaterial::Hs256 {
            secret: cfg.auth.secret.as_bytes().to_vec(),
        },
        Algorithm::HS256 if !create => {
            let path = cfg.state.dir.join("jwt-secret");
            match std::fs::read_to_string(&path) {
                Ok(s) if s.trim().len() >= 32 => KeyMaterial::Hs256 {
                    secret: s.trim().as_bytes().to_vec(),
                },
                _ => {
                    return Err(AppError::NoState {
                        what: "token signing secret",
                        path,
                        hint: cfg.first_run_hint(true),
                    })
                }
            }
        }
        Algorithm::HS256 => {
            let path = state_dir(cfg)?.join("jwt-secret");
            let secret = match std::fs::read_to_string(&path) {
                Ok(s) if s.trim().len() >= 32 => s.trim().to_string(),
                _ => {
                    let bytes: [u8; 32] = rand::random();
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    write_private(&path, &hex)?;
                    tracing::info!(path = %path.display(), "generated a new token signing secret");
                    hex
                }
            };
            KeyMaterial::Hs256 {
                secret: secret.into_bytes(),
            }
        }
        alg => {
            let public_pem = read(&cfg.auth.public_key_file)?;
            let private_pem = if cfg.auth.private_key_file.as_os_str().is_empty() {
                None
            } else {
                Some(read(&cfg.auth.private_key_file)?)
            };
            if alg == Algorithm::RS256 {
                KeyMaterial::Rs256 {
                    public_pem,
                    private_pem,
                }
            } else {
                KeyMaterial::EdDsa {
                    public_pem,
                    private_pem,
                }
            }
        }
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(io_err("cannot write secret", path))?;
    f.write_all(text.as_bytes())
        .map_err(io_err("cannot write secret", path))
}

impl Gateway {
    /// Opens the state and builds the shared gateway state.
    ///
    /// # Errors
    /// [`AppError`] when the state directory, the database or the keys are unusable.
    pub fn new(cfg: Config) -> Result<Arc<Self>, AppError> {
        let dir = state_dir(&cfg)?;
        let db = dir.join("radiogate.db");
        let dir_lock = crate::state::lock_dir(&dir)?;
        crate::state::check_database(&db)?;
        let store = Arc::new(SqliteStore::open(&db)?);
        let key = key_material(&cfg)?;
        let verifier = TokenVerifier::new(&key, cfg.auth.leeway_secs)?;
        let issuer = link_issuer(&cfg, &key);
        let audit = Audit::open(&db, cfg.audit.retention)?;
        let bans = BanList::open(&db)?;
        let perm_sync = Arc::new(crate::permissions::PermissionSync::new(&cfg.redis)?);
        let hub = Hub::new(
            Limits {
                max_channels_per_user: cfg.channels.max_channels_per_user,
                max_users_per_channel: cfg.channels.max_users_per_channel,
            },
            FloorConfig {
                time_out_timer: cfg.time_out_timer(),
                end_of_media_timer: match cfg.floor.end_of_media_timer_ms {
                    0 => None,
                    ms => Some(Duration::from_millis(ms)),
                },
            },
        );
        let hub = Switchboard::new(hub, Some(audit.clone()));
        let recordings = recordings(&cfg, &dir, &db, &hub)?;
        let per_minute = std::num::NonZeroU32::new(cfg.limits.connections_per_minute)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let per_user = std::num::NonZeroU32::new(cfg.limits.user_connections_per_minute)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let auth_backoff = AuthBackoff::new(AuthBackoffConfig {
            max_failures: cfg.limits.auth_failures,
            window: Duration::from_secs(cfg.limits.auth_failure_window_secs),
        });
        let cfg_site_name = cfg.site.resolved_name();
        Ok(Arc::new(Self {
            radio: Arc::new(crate::bridge::Radios::new(&cfg.radio, &cfg.console)),
            media: MediaEngine::start(&cfg.sfu, hub.routes().clone())?,
            cfg,
            hub: Arc::new(hub),
            store,
            perm_sync,
            verifier,
            issuer,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            started: Instant::now(),
            audit,
            bans: Arc::new(bans),
            conn_limiter: Arc::new(connection_limiter(
                per_minute,
                governor::clock::DefaultClock::default(),
            )),
            user_limiter: Arc::new(user_limiter(
                per_user,
                governor::clock::DefaultClock::default(),
            )),
            auth_backoff: Arc::new(Mutex::new(auth_backoff)),
            recordings,
            site: Arc::new(crate::link::Site::new(cfg_site_name)),
            _dir_lock: dir_lock,
        }))
    }

    /// What the metrics and health views read.
    pub fn observed(&self, links: Arc<crate::link::Links>) -> crate::ops::metrics::Observed {
        crate::ops::metrics::Observed {
            hub: Arc::clone(&self.hub),
            media: self.media.clone(),
            audit: self.audit.clone(),
            perm_sync: Arc::clone(&self.perm_sync),
            radio: Arc::clone(&self.radio),
            started: self.started,
            disk: crate::state::disk::DiskCheck {
                dir: self.cfg.state.dir.clone(),
                min_free_bytes: self.cfg.state.min_free_bytes,
            },
            recorder: self.recordings.as_ref().map(|r| r.recorder.clone()),
            links,
        }
    }

    fn server_ctx(
        &self,
        join_urls: Vec<String>,
        links: Arc<crate::link::Links>,
    ) -> crate::server::ServerCtx {
        let cfg = &self.cfg;
        let admin = crate::signaling::admin::AdminCtx {
            hub: Arc::clone(&self.hub),
            audit: self.audit.clone(),
            bans: Arc::clone(&self.bans),
            perm_sync: Arc::clone(&self.perm_sync),
            radio: Arc::clone(&self.radio),
            started: self.started,
            store: Arc::clone(&self.store),
            issuer: self.issuer.clone(),
            join_urls,
            recordings: self.recordings.clone(),
            links: Arc::clone(&links),
        };
        let session = crate::signaling::session::SessionCtx {
            cfg: crate::signaling::session::SessionConfig {
                slots: cfg.channels.max_channels_per_user,
                limits: cfg.limits,
                leeway_secs: cfg.auth.leeway_secs,
                broadcast_hold: Duration::from_millis(cfg.dispatch.broadcast_hold_ms),
                max_frame_bytes: cfg.server.max_frame_bytes,
                ping_interval: Duration::from_millis(cfg.server.ping_interval_ms),
                ping_timeout: Duration::from_millis(cfg.server.ping_timeout_ms),
                write_timeout: Duration::from_millis(cfg.server.write_timeout_ms),
                outbound_queue: cfg.server.outbound_queue,
            },
            hub: Arc::clone(&self.hub),
            store: Arc::clone(&self.store),
            perm_sync: Arc::clone(&self.perm_sync),
            audit: self.audit.clone(),
            media: self.media.clone(),
            admin: Arc::new(admin),
            channel_names: Arc::new(cfg.channel_names.clone()),
            recordings: self.recordings.clone(),
            site: Arc::clone(&self.site),
            links: Arc::clone(&links),
        };
        crate::server::ServerCtx {
            shutdown: self.shutdown.clone(),
            conn_limiter: Arc::clone(&self.conn_limiter),
            user_limiter: Arc::clone(&self.user_limiter),
            auth_backoff: Arc::clone(&self.auth_backoff),
            verifier: self.verifier.clone(),
            bans: Arc::clone(&self.bans),
            store: Arc::clone(&self.store),
            perm_sync: Arc::clone(&self.perm_sync),
            audit: self.audit.clone(),
            sessions: self.sessions.clone(),
            max_frame_bytes: cfg.server.max_frame_bytes,
            session: Arc::new(session),
            observed: self.observed(Arc::clone(&links)),
            max_sessions_per_user: cfg.limits.max_sessions_per_user as usize,
            max_sessions: cfg.limits.max_sessions as usize,
        }
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully: stops accepting,
    /// releases floors, closes sessions with 1001 and a reason, waits for them (at most
    /// `server.shutdown_grace_ms`) and checkpoints SQLite.
    ///
    /// `on_bound` is called with the bound address once the listener is up.
    ///
    /// # Errors
    /// [`AppError::Io`] if the listen address cannot be bound.
    pub async fn serve(self: Arc<Self>, on_bound: impl FnOnce(SocketAddr)) -> Result<(), AppError> {
        let listen = self.cfg.server.listen;
        let cfg = self.cfg.clone();
        let tls = tokio::task::spawn_blocking(move || crate::web::tls::setup(&cfg))
            .await
            .map_err(|e| AppError::Io {
                what: "tls setup task failed for",
                path: PathBuf::from(listen.to_string()),
                source: std::io::Error::other(e),
            })??;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| AppError::Io {
                what: "cannot listen on",
                path: PathBuf::from(listen.to_string()),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| AppError::Io {
            what: "cannot read bound address of",
            path: PathBuf::from(listen.to_string()),
            source,
        })?;
        let tls_mode = match (&tls, self.cfg.server.plain_http) {
            (None, _) => "off (plain HTTP)",
            (Some(_), crate::config::PlainHttp::Loopback) => "on (plain HTTP from loopback)",
            (Some(_), crate::config::PlainHttp::Any) => "on (plain HTTP from anyone)",
            (Some(_), crate::config::PlainHttp::None) => "on (HTTPS only)",
        };
        if let Some(names) = tls.as_ref().map(|t| &t.names).filter(|n| !n.is_empty()) {
            tracing::info!(names = ?names, "generated certificate covers");
        }
        let sv = &self.cfg.server;
        let cert_names = tls.as_ref().map(|t| t.names.clone());
        let pending = crate::web::pending::Pending::new(crate::web::pending::PendingLimits {
            timeout: Duration::from_millis(sv.header_timeout_ms),
            max_total: sv.max_pending_connections,
            max_per_address: sv.max_pending_per_address,
        });
        let listener =
            crate::web::tls::Listener::new(listener, tls, sv.plain_http, pending.clone()).map_err(
                |source| AppError::Io {
                    what: "cannot read bound address of",
                    path: PathBuf::from(listen.to_string()),
                    source,
                },
            )?;
        tracing::info!(addr = %bound, tls = tls_mode, "listening");
        let urls = join_urls(&self.cfg, cert_names.as_deref(), bound);
        for url in &urls {
            tracing::info!(url = %url, "join URL for phones on the site network");
        }
        tracing::info!(
            command = %mint_command(&self.cfg, urls.first().map(String::as_str)),
            "mint a join link (and QR code) for a phone with"
        );
        if let Some(behind) = crate::ops::clock_behind_build(crate::clock::unix_secs()) {
            tracing::warn!(
                behind_secs = behind,
                "the wall clock is before this binary's build time: tokens' iat/exp checks \
                 will be wrong; set the clock (or give the Pi network time or an RTC)"
            );
        }
        on_bound(bound);
        let timer = tokio::spawn(floor_timer(Arc::clone(&self)));
        let housekeeping = tokio::spawn(housekeeping(Arc::clone(&self)));
        let ban_watch = tokio::spawn(watch_bans(
            Arc::clone(&self.bans),
            Arc::clone(&self.hub),
            self.audit.clone(),
        ));
        let memory = tokio::spawn(crate::ops::memory::run(
            self.sessions.clone(),
            self.shutdown.clone(),
        ));
        let perm_sync = tokio::spawn(crate::permissions::sync::run(Arc::new(
            crate::permissions::sync::SyncCtx {
                perm_sync: Arc::clone(&self.perm_sync),
                hub: Arc::clone(&self.hub),
                store: Arc::clone(&self.store),
                shutdown: self.shutdown.clone(),
            },
        )));
        let links =
            if self.cfg.link.is_empty() {
                crate::link::Links::default()
            } else {
                let sfu = &self.cfg.sfu;
                let advertise_ip = sfu.advertise_ips.first().copied().unwrap_or(
                    if sfu.udp_bind_ip.is_unspecified() {
                        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                    } else {
                        sfu.udp_bind_ip
                    },
                );
                let ctx = crate::link::client::LinkCtx {
                    hub: Arc::clone(&self.hub),
                    store: Arc::clone(&self.store),
                    site: Arc::clone(&self.site),
                    bind_ip: sfu.udp_bind_ip,
                    advertise_ip,
                    shutdown: self.shutdown.clone(),
                };
                match crate::link::client::start(&ctx, &self.cfg.link) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "links not started");
                        crate::link::Links::default()
                    }
                }
            };
        let links = Arc::new(links);
        if let Err(e) = self.radio.start(&Arc::new(crate::bridge::BridgeCtx {
            hub: Arc::clone(&self.hub),
            store: Arc::clone(&self.store),
            shutdown: self.shutdown.clone(),
            recall: self.recordings.as_ref().map(|r| {
                crate::recording::recall::Recall::new(Arc::clone(&r.index), r.dir.clone())
            }),
            links: Arc::clone(&links),
        })) {
            tracing::error!(error = %e, "radio ports not started");
        }
        let router = crate::server::router(
            Arc::new(self.server_ctx(urls, links)),
            &self.cfg.state.dir,
            self.cfg.server.tls,
            pending,
        );
        let token = self.shutdown.clone();
        // Small frames (floor grants) must not wait for delayed ACKs: the listener sets
        // TCP_NODELAY on every accepted connection (web::tls::Listener). tap_io only makes
        // ConnectInfo<SocketAddr> available for the custom listener.
        let served = axum::serve(
            axum::serve::ListenerExt::tap_io(listener, |_| {}),
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http server error");
        }
        tracing::info!("shutting down: releasing floors and closing sessions");
        // Radios first: unkey, release their floors and leave (they already saw the token).
        self.radio.shutdown(Duration::from_secs(3)).await;
        self.hub
            .lock()
            .close_all(close::GOING_AWAY, "server shutting down", Instant::now());
        self.sessions.close();
        let grace = Duration::from_millis(self.cfg.server.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.sessions.len(),
                "sessions still open after the grace period"
            );
        }
        timer.abort();
        housekeeping.abort();
        ban_watch.abort();
        memory.abort();
        // Every session closed its peer connection; the media thread closes any left.
        let media = self.media.clone();
        let _ = tokio::task::spawn_blocking(move || media.stop()).await;
        if !self.audit.flush(Duration::from_secs(2)) {
            tracing::warn!("audit log not flushed at shutdown");
        }
        perm_sync.abort();
        if let Err(e) = self.store.checkpoint() {
            tracing::warn!(error = %e, "SQLite checkpoint at shutdown failed");
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Runs every floor's time-out and end-of-media timers at their deadlines.
async fn floor_timer(gw: Arc<Gateway>) {
    loop {
        let next = gw.hub.tick(Instant::now());
        let wait = next
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(wait) => {}
            _ = gw.hub.wake().notified() => {}
            _ = gw.shutdown.cancelled() => return,
        }
    }
}

/// Bounds the memory of the per-address limiters: forgets idle addresses every minute.
async fn housekeeping(gw: Arc<Gateway>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        gw.conn_limiter.retain_recent();
        gw.user_limiter.retain_recent();
        gw.auth_backoff.lock().prune(Instant::now());
    }
}

/// Applies bans written by another process (`radiogate bans add|remove` on the Pi, issue 13)
/// every [`crate::access::bans::RELOAD_INTERVAL`]: a new ban closes the user's sessions with
/// 4003 like an admin's ban, and each change is logged and audited (the actor is the ban's
/// `by`, e.g. `cli:root`).
async fn watch_bans(bans: Arc<BanList>, hub: Arc<Switchboard>, audit: Audit) {
    use crate::audit::{Action, Entry};
    let mut every = tokio::time::interval(crate::access::bans::RELOAD_INTERVAL);
    loop {
        every.tick().await;
        let b = Arc::clone(&bans);
        let changes = match tokio::task::spawn_blocking(move || b.reload()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ban list not re-read");
                continue;
            }
            Err(_) => continue,
        };
        for ban in changes.added {
            let n = {
                let mut hub = hub.lock();
                let ids = hub.registry().by_user(&ban.user_id);
                hub.force_disconnect(
                    &ids,
                    close::FORCED,
                    &crate::access::bans::suspended(&ban.reason),
                    Instant::now(),
                )
            };
            tracing::warn!(user = ?ban.user_id, by = ?ban.by, reason = ?ban.reason,
                           disconnected = n, "user banned outside the gateway (radiogate bans)");
            audit.record(
                Entry::new(ban.by.clone(), Action::Ban)
                    .target(ban.user_id.clone())
                    .details(serde_json::json!({"reason": ban.reason, "disconnected": n})),
            );
        }
        for user in changes.removed {
            tracing::info!(user = ?user, "ban lifted outside the gateway (radiogate bans)");
            audit.record(Entry::new("cli", Action::Unban).target(user));
        }
    }
}

/// Starts the recorder when `[recording] enabled` (files in `recording.dir`, default
/// `STATE_DIR/recordings`, index in the state database) and feeds it from `hub`; returns what
/// the sessions read recordings with.
fn recordings(
    cfg: &Config,
    state: &Path,
    db: &Path,
    hub: &Switchboard,
) -> Result<Option<crate::signaling::session::Recordings>, AppError> {
    use crate::recording::recorder::{Recorder, RecorderConfig};
    if !cfg.recording.enabled {
        return Ok(None);
    }
    let rc = &cfg.recording;
    let dir = if rc.dir.as_os_str().is_empty() {
        state.join("recordings")
    } else {
        rc.dir.clone()
    };
    let recorder = Recorder::start(RecorderConfig {
        dir: dir.clone(),
        db: db.to_path_buf(),
        max_bytes: rc.max_bytes,
        retention: Duration::from_secs(rc.retention_secs),
        min_free_bytes: rc.min_free_bytes,
        queue: rc.queue,
    })
    .map_err(|e| AppError::Io {
        what: "cannot start the recorder in",
        path: dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    hub.set_recorder(recorder.clone());
    let index = crate::recording::index::Index::open(db).map_err(|e| AppError::Io {
        what: "cannot open the recordings index in",
        path: db.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Some(crate::signaling::session::Recordings {
        index: Arc::new(Mutex::new(index)),
        recorder,
        dir,
    }))
}

/// The admin panel's link issuer: `Some` when `key` can sign (HS256, or RS256/EdDSA with
/// `auth.private_key_file`), with `auth.default_ttl` and `auth.max_ttl` (checked at load).
fn link_issuer(cfg: &Config, key: &KeyMaterial) -> Option<crate::access::issue::LinkIssuer> {
    let default = crate::access::parse_ttl(&cfg.auth.default_ttl).ok()?;
    let max = cfg.max_ttl().ok()?;
    crate::access::issue::LinkIssuer::for_key(key, default, max)
}

/// The URLs phones open: `https://NAME:PORT/` for each name or address the certificate
/// covers (`cert_names`, generated certificates; else `server.tls_names` and the box's
/// addresses), `http://` with TLS off. Loopback names and wildcards are left out (a phone
/// cannot use them) unless nothing else is left.
fn join_urls(cfg: &Config, cert_names: Option<&[String]>, bound: SocketAddr) -> Vec<String> {
    let scheme = if cfg.server.tls == crate::config::TlsMode::Off {
        "http"
    } else {
        "https"
    };
    let names: Vec<String> = match cert_names {
        Some(n) if !n.is_empty() => n.to_vec(),
        _ if !cfg.server.tls_names.is_empty() => cfg.server.tls_names.clone(),
        _ if !bound.ip().is_unspecified() => vec![bound.ip().to_string()],
        _ => crate::web::tls::local_names(cfg),
    };
    let loopback = |n: &str| {
        n == "localhost"
            || n.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let url = |n: &str| match n.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{}/", bound.port()),
        _ => format!("{scheme}://{n}:{}/", bound.port()),
    };
    let usable: Vec<String> = names
        .iter()
        .filter(|n| !loopback(n) && !n.contains('*'))
        .map(|n| url(n))
        .collect();
    if usable.is_empty() {
        names
            .iter()
            .filter(|n| !n.contains('*'))
            .map(|n| url(n))
            .collect()
    } else {
        usable
    }
}

/// The `radiogate token` command line that mints a join link for this gateway.
fn mint_command(cfg: &Config, url: Option<&str>) -> String {
    let config = cfg
        .file
        .as_ref()
        .map(|f| format!(" --config {}", f.display()))
        .unwrap_or_default();
    let base = url
        .map(|u| u.trim_end_matches('/'))
        .unwrap_or("https://HOST:PORT");
    format!(
        "radiogate token{config} --user USER --name NAME --role GENERAL --event EVENT \
         --channel CHANNEL --url {base} --qr"
    )
}

/// Every check `radiogate run` makes before it binds the port, without creating or changing
/// anything (`radiogate check-config`): the values' ranges (already checked at load), the TLS
/// files readable and their certificate and key a pair (`tls = "files"`, with the same
/// function `run` uses), the token keys readable and parseable, the secret in the state
/// directory when `auth.secret` is empty (a warning when it will be generated), the Redis URL
/// and CA file, the database's integrity when it exists. Returns warnings (things `run` will create).
///
/// # Errors
/// The first [`AppError`] `run` would stop at.
pub fn preflight(cfg: &Config) -> Result<Vec<String>, AppError> {
    let mut warnings = Vec::new();
    if cfg.server.tls == crate::config::TlsMode::Files {
        for (key, path) in [
            ("server.tls_cert_file", &cfg.server.tls_cert_file),
            ("server.tls_key_file", &cfg.server.tls_key_file),
        ] {
            std::fs::File::open(path).map_err(|source| AppError::KeyFile {
                key,
                path: path.clone(),
                source,
            })?;
        }
        // The same parse and pair check `run` makes (rustls refuses a key that is not the
        // certificate's).
        crate::web::tls::setup(cfg)?;
    }
    if cfg.auth.algorithm != Algorithm::HS256 {
        for (key, path) in [
            ("auth.public_key_file", &cfg.auth.public_key_file),
            ("auth.private_key_file", &cfg.auth.private_key_file),
        ] {
            if !path.as_os_str().is_empty() {
                std::fs::File::open(path).map_err(|source| AppError::KeyFile {
                    key,
                    path: path.clone(),
                    source,
                })?;
            }
        }
    }
    match existing_key_material(cfg) {
        Ok(key) => {
            TokenVerifier::new(&key, cfg.auth.leeway_secs)?;
            if cfg.auth.algorithm != Algorithm::HS256
                && !cfg.auth.private_key_file.as_os_str().is_empty()
            {
                crate::access::token::TokenMinter::new(&key)?;
            }
        }
        Err(AppError::NoState { path, .. }) => warnings.push(format!(
            "{} does not exist yet: `radiogate run` generates it on first start",
            path.display()
        )),
        Err(e) => return Err(e),
    }
    crate::permissions::PermissionSync::new(&cfg.redis)?;
    let db = cfg.state.dir.join("radiogate.db");
    if db.exists() {
        crate::state::check_database(&db)?;
    } else {
        warnings.push(format!(
            "{} does not exist yet: `radiogate run` creates it on first start",
            db.display()
        ));
    }
    Ok(warnings)
}
