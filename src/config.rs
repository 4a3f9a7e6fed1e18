//! Configuration: the TOML file, its embedded documented default and validation.
//!
//! The default lives in `config/radiogate.toml` and is compiled into the binary
//! ([`EMBEDDED_DEFAULT`]); [`Config::default`] must equal that file parsed (a unit test checks
//! it). A user file may leave any key out (the default applies) but an unknown key or a value
//! out of range is refused with [`ConfigError`] naming the key.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented default configuration, `config/radiogate.toml`, as compiled in.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/radiogate.toml");

use crate::config_forms as de;
pub mod link;
mod paths;
mod redis_sync;
pub use redis_sync::RedisConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type; the message names the key and line.
    #[error("{0}")]
    Parse(String),
    /// A `[[radio]]` / `[[console]]` value is out of range or missing; the key is indexed,
    /// e.g. `radio[0].ptt.device`.
    #[error(transparent)]
    Port(#[from] crate::radio::PortConfigError),
    /// A `[site]` or `[[link]]` value is refused (issue 16).
    #[error(transparent)]
    Link(#[from] link::LinkConfigError),
    /// The file has no settings at all (empty, or only comments): refused rather than run on
    /// the defaults, which is what a truncated or half-written file would otherwise do.
    #[error("{0} has no settings (empty or only comments); `radiogate print-config` prints a complete one")]
    Empty(PathBuf),
    /// A value is out of range or inconsistent with another key.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted key path, e.g. `floor.time_out_timer_ms`.
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// The whole configuration. See `config/radiogate.toml` for every key's meaning and unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: the HTTP/WebSocket listener.
    pub server: ServerConfig,
    /// `[state]`: where SQLite and generated secrets live.
    pub state: StateConfig,
    /// `[auth]`: token verification.
    pub auth: AuthConfig,
    /// `[channels]`: membership limits.
    pub channels: ChannelLimits,
    /// `[channel_names]`: display names the clients show instead of channel ids
    /// (`ops = "Operations"`; issue 12). Channels without one show their id.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub channel_names: std::collections::BTreeMap<String, String>,
    /// `[floor]`: floor control timing.
    pub floor: FloorTiming,
    /// `[sfu]`: WebRTC media transport.
    pub sfu: SfuConfig,
    /// `[redis]`: permission sync from the control plane (empty url: standalone).
    pub redis: RedisConfig,
    /// `[limits]`: abuse limits.
    pub limits: LimitsConfig,
    /// `[dispatch]`: Dispatch features.
    pub dispatch: DispatchConfig,
    /// `[audit]`: the audit log.
    pub audit: AuditConfig,
    /// `[recording]`: every talk spurt kept as Ogg Opus (issue 14).
    pub recording: RecordingConfig,
    /// `[[radio]]`: two-way radios bridged to channels (none by default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub radio: Vec<crate::radio::RadioConfig>,
    /// `[[console]]`: PTT-button consoles with a local microphone and speaker (none by default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console: Vec<crate::radio::ConsoleConfig>,
    /// `[site]`: this gateway's name among linked gateways (issue 16).
    #[serde(skip_serializing_if = "crate::config::link::SiteConfig::is_default")]
    pub site: crate::config::link::SiteConfig,
    /// `[[link]]`: upstream gateways this site's channels are linked to (none by default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<crate::config::link::LinkConfig>,
    /// The file this configuration was read from ([`Config::load`]); `None` for the embedded
    /// default. Not a key of the file.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[limits]` (spec note 002).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Unauthenticated connection attempts (no token, or one that fails verification) per
    /// remote address per minute.
    pub connections_per_minute: u32,
    /// Authenticated connects per user id per minute (a verified token counts here, not
    /// against its address: phones behind one NAT do not share a budget).
    pub user_connections_per_minute: u32,
    /// Free failed authentications per address within the window.
    pub auth_failures: u32,
    /// Failed-authentication window, seconds.
    #[serde(deserialize_with = "de::secs")]
    pub auth_failure_window_secs: u64,
    /// Sustained signaling messages per second per session.
    pub messages_per_second: u32,
    /// Burst of messages above the sustained rate.
    pub message_burst: u32,
    /// Refused messages before the session is closed.
    pub message_strikes: u32,
    /// Sessions one user id may have at once; the next connect gets 429 (issue 15).
    pub max_sessions_per_user: u32,
    /// Sessions in total; the next connect gets 503 (each WebRTC session costs a socket and
    /// 100-500 KiB).
    pub max_sessions: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connections_per_minute: 20,
            user_connections_per_minute: 20,
            auth_failures: 10,
            auth_failure_window_secs: 900,
            messages_per_second: 20,
            message_burst: 60,
            message_strikes: 20,
            max_sessions_per_user: 5,
            max_sessions: 2000,
        }
    }
}

/// `[dispatch]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Emergency broadcast hold guard, milliseconds.
    #[serde(deserialize_with = "de::ms")]
    pub broadcast_hold_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            broadcast_hold_ms: 2000,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Entries kept.
    pub retention: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention: 200_000 }
    }
}

/// `[recording]` (issue 14).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record every talk spurt.
    pub enabled: bool,
    /// Directory of the `ID.opus` files; empty means `STATE_DIR/recordings`.
    pub dir: PathBuf,
    /// Byte budget of all recordings; the oldest are deleted beyond it.
    pub max_bytes: u64,
    /// Age limit, seconds (`"7d"`); older recordings are deleted.
    #[serde(deserialize_with = "de::secs")]
    pub retention_secs: u64,
    /// Free bytes on the recordings' file system below which new spurts are not recorded.
    pub min_free_bytes: u64,
    /// Messages (packets, spurt boundaries) queued for the recorder before it drops.
    pub queue: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::new(),
            max_bytes: 1 << 30,
            retention_secs: 7 * 86_400,
            min_free_bytes: 256 << 20,
            queue: 4096,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address for HTTP and the WebSocket (`/ws`); port 0 picks a free port. A host
    /// name (`localhost:8080`) is resolved when the file is loaded.
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Largest accepted WebSocket frame/message, bytes; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Graceful shutdown budget, milliseconds.
    #[serde(deserialize_with = "de::ms")]
    pub shutdown_grace_ms: u64,
    /// TLS on the listen port (sniffed per connection): generated certificate, files, or off.
    pub tls: TlsMode,
    /// PEM certificate chain for `tls = "files"`.
    pub tls_cert_file: PathBuf,
    /// PEM private key for `tls = "files"`.
    pub tls_key_file: PathBuf,
    /// Extra DNS names or IP addresses the generated certificate covers.
    pub tls_names: Vec<String>,
    /// Who may use plain HTTP (no TLS) on the listen port while TLS is on.
    pub plain_http: PlainHttp,
    /// Server WebSocket ping interval, milliseconds (dead-peer detection).
    #[serde(deserialize_with = "de::ms")]
    pub ping_interval_ms: u64,
    /// A session that sent no frame (pong or other) for this long is closed, milliseconds.
    #[serde(deserialize_with = "de::ms")]
    pub ping_timeout_ms: u64,
    /// Messages queued for one session before it counts as not keeping up and is closed
    /// with 1008.
    pub outbound_queue: usize,
    /// One WebSocket write may take this long before the session is closed, milliseconds.
    #[serde(deserialize_with = "de::ms")]
    pub write_timeout_ms: u64,
    /// A connection must finish its TLS handshake and send a request head within this long
    /// (and an idle keep-alive connection is closed after it), milliseconds.
    #[serde(deserialize_with = "de::ms")]
    pub header_timeout_ms: u64,
    /// Connections not yet carrying a request or a session, in total; beyond it the oldest
    /// is closed.
    pub max_pending_connections: usize,
    /// The same, per remote address.
    pub max_pending_per_address: usize,
}

/// `server.tls`: how the listen port does TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// A certificate signed by a local CA generated on first start in `STATE_DIR/tls/`.
    Auto,
    /// The certificate and key in `server.tls_cert_file` / `server.tls_key_file`.
    Files,
    /// No TLS: plain HTTP only (behind a TLS-terminating reverse proxy, or localhost only).
    Off,
}

/// `server.plain_http`: which clients may speak plain HTTP while TLS is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlainHttp {
    /// Loopback peers only (this box, a reverse proxy on this box); others are redirected to
    /// `https://` on the same port.
    Loopback,
    /// Every peer (a reverse proxy on another host).
    Any,
    /// Nobody: every plain HTTP request is redirected to `https://`.
    None,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_frame_bytes: 65536,
            shutdown_grace_ms: 4000,
            tls: TlsMode::Auto,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            tls_names: Vec::new(),
            plain_http: PlainHttp::Loopback,
            ping_interval_ms: 5000,
            ping_timeout_ms: 15_000,
            outbound_queue: 256,
            write_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_pending_connections: 1024,
            max_pending_per_address: 512,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory holding `radiogate.db` and `jwt-secret`.
    pub dir: PathBuf,
    /// Free space on the state directory's file system below which `/healthz` reports
    /// `"state disk nearly full"`, bytes (0: never).
    pub min_free_bytes: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./radiogate-state"),
            min_free_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Token signature algorithm accepted by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256; public key verifies.
    RS256,
    /// Ed25519; public key verifies.
    EdDSA,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted algorithm (only this one; every other is refused).
    pub algorithm: Algorithm,
    /// HS256 secret; empty means generated and kept in `STATE_DIR/jwt-secret`.
    pub secret: String,
    /// PEM public key path for RS256/EdDSA.
    pub public_key_file: PathBuf,
    /// PEM private key path for minting RS256/EdDSA tokens locally.
    pub private_key_file: PathBuf,
    /// Tolerated clock skew on `exp`, seconds.
    #[serde(deserialize_with = "de::secs")]
    pub leeway_secs: u64,
    /// Default TTL of minted tokens, e.g. "8h".
    pub default_ttl: String,
    /// Longest TTL `radiogate token --ttl` accepts, e.g. "7d" (a lost link stays valid this
    /// long at most).
    pub max_ttl: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::HS256,
            secret: String::new(),
            public_key_file: PathBuf::new(),
            private_key_file: PathBuf::new(),
            leeway_secs: 30,
            default_ttl: "8h".into(),
            max_ttl: "7d".into(),
        }
    }
}

/// `[channels]`: limits from spec note 002.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelLimits {
    /// Channels a user may have joined at once (ADMIN bypasses).
    pub max_channels_per_user: usize,
    /// Members a channel may hold (nobody bypasses).
    pub max_users_per_channel: usize,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            max_channels_per_user: 10,
            max_users_per_channel: 100,
        }
    }
}

/// `[floor]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloorTiming {
    /// Time-out timer, milliseconds.
    #[serde(deserialize_with = "de::ms")]
    pub time_out_timer_ms: u64,
    /// End-of-RTP-media timer (3GPP TS 24.380 T1), milliseconds: a talker with a media path
    /// whose uplink RTP stops this long loses the floor (`MEDIA_TIMEOUT`). 0 turns it off.
    #[serde(deserialize_with = "de::ms")]
    pub end_of_media_timer_ms: u64,
}

impl Default for FloorTiming {
    fn default() -> Self {
        Self {
            time_out_timer_ms: 60_000,
            end_of_media_timer_ms: 4000,
        }
    }
}

/// `[sfu]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuConfig {
    /// Local IP the media UDP sockets bind to.
    pub udp_bind_ip: IpAddr,
    /// First UDP port of the media range (inclusive); 0 with `udp_port_max` 0 = ephemeral.
    pub udp_port_min: u16,
    /// Last UDP port of the media range (inclusive).
    pub udp_port_max: u16,
    /// Addresses advertised as host candidates instead of local ones (NAT 1:1).
    pub advertise_ips: Vec<IpAddr>,
    /// Whether the gateway is an ICE-lite agent (RFC 8445 §2.5): it answers the clients'
    /// connectivity checks and sends none of its own. Default true; false makes it a full
    /// ICE agent that also checks each connected client every 2 s (twice the idle STUN
    /// traffic per phone).
    pub ice_lite: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            udp_bind_ip: IpAddr::from([0, 0, 0, 0]),
            udp_port_min: 0,
            udp_port_max: 0,
            advertise_ips: Vec::new(),
            ice_lite: true,
        }
    }
}

impl Config {
    /// Parses TOML text and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for syntax, unknown keys and wrong types (the message names the
    /// key and line); [`ConfigError::Invalid`] for out-of-range values.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a file.
    ///
    /// # Errors
    /// As [`Config::from_toml`], plus [`ConfigError::Read`] when the file cannot be read and
    /// [`ConfigError::Empty`] when it has no settings at all.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.is_empty()) {
            return Err(ConfigError::Empty(path.to_path_buf()));
        }
        let mut cfg = Self::from_toml(&text)?;
        // Relative paths in the file are relative to the file, wherever the command runs.
        let abs = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.resolve_paths(abs.parent().unwrap_or(Path::new("/")));
        cfg.file = Some(abs);
        Ok(cfg)
    }

    /// The embedded default, parsed.
    ///
    /// # Errors
    /// Only if the compiled-in file were broken (a unit test guards against that).
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_toml(EMBEDDED_DEFAULT)
    }

    /// The time-out timer as a [`Duration`].
    pub fn time_out_timer(&self) -> Duration {
        Duration::from_millis(self.floor.time_out_timer_ms)
    }

    /// Checks every range documented in `config/radiogate.toml`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "recording.queue",
            self.recording.queue as u64,
            16,
            1_000_000,
        )?;
        range(
            "recording.retention_secs",
            self.recording.retention_secs,
            1,
            10 * 365 * 86_400,
        )?;
        for (id, name) in &self.channel_names {
            if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(ConfigError::Invalid {
                    key: "channel_names",
                    reason: format!("{id:?}: a name is 1 to 64 bytes without control characters"),
                });
            }
        }
        range(
            "server.max_frame_bytes",
            self.server.max_frame_bytes as u64,
            1024,
            1_048_576,
        )?;
        range(
            "server.shutdown_grace_ms",
            self.server.shutdown_grace_ms,
            100,
            30_000,
        )?;
        self.validate_tls()?;
        range("auth.leeway_secs", self.auth.leeway_secs, 0, 300)?;
        self.validate_ttls()?;
        if self.auth.algorithm != Algorithm::HS256
            && self.auth.public_key_file.as_os_str().is_empty()
        {
            return Err(ConfigError::Invalid {
                key: "auth.public_key_file",
                reason: format!(
                    "required when auth.algorithm is {:?} (the PEM public key that verifies tokens)",
                    self.auth.algorithm
                ),
            });
        }
        if self.auth.algorithm == Algorithm::HS256
            && !self.auth.secret.is_empty()
            && self.auth.secret.len() < 32
        {
            return Err(ConfigError::Invalid {
                key: "auth.secret",
                reason: "must be at least 32 characters, or empty to generate one".into(),
            });
        }
        range(
            "channels.max_channels_per_user",
            self.channels.max_channels_per_user as u64,
            1,
            64,
        )?;
        range(
            "channels.max_users_per_channel",
            self.channels.max_users_per_channel as u64,
            1,
            10_000,
        )?;
        range(
            "floor.time_out_timer_ms",
            self.floor.time_out_timer_ms,
            1000,
            600_000,
        )?;
        if self.floor.end_of_media_timer_ms != 0 {
            range(
                "floor.end_of_media_timer_ms",
                self.floor.end_of_media_timer_ms,
                500,
                60_000,
            )?;
        }
        let sv = &self.server;
        range("server.ping_interval_ms", sv.ping_interval_ms, 100, 600_000)?;
        range(
            "server.ping_timeout_ms",
            sv.ping_timeout_ms,
            sv.ping_interval_ms.max(100),
            3_600_000,
        )?;
        range(
            "server.outbound_queue",
            sv.outbound_queue as u64,
            8,
            100_000,
        )?;
        range("server.write_timeout_ms", sv.write_timeout_ms, 100, 600_000)?;
        range(
            "server.header_timeout_ms",
            sv.header_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "server.max_pending_connections",
            sv.max_pending_connections as u64,
            1,
            100_000,
        )?;
        range(
            "server.max_pending_per_address",
            sv.max_pending_per_address as u64,
            1,
            100_000,
        )?;
        let l = &self.limits;
        range(
            "limits.max_sessions_per_user",
            l.max_sessions_per_user.into(),
            1,
            10_000,
        )?;
        range("limits.max_sessions", l.max_sessions.into(), 1, 1_000_000)?;
        range(
            "limits.connections_per_minute",
            l.connections_per_minute.into(),
            1,
            10_000,
        )?;
        range(
            "limits.user_connections_per_minute",
            l.user_connections_per_minute.into(),
            1,
            10_000,
        )?;
        range("limits.auth_failures", l.auth_failures.into(), 1, 10_000)?;
        range(
            "limits.auth_failure_window_secs",
            l.auth_failure_window_secs,
            1,
            86_400,
        )?;
        range(
            "limits.messages_per_second",
            l.messages_per_second.into(),
            1,
            10_000,
        )?;
        range("limits.message_burst", l.message_burst.into(), 1, 10_000)?;
        range("limits.message_strikes", l.message_strikes.into(), 0, 1000)?;
        range(
            "dispatch.broadcast_hold_ms",
            self.dispatch.broadcast_hold_ms,
            500,
            10_000,
        )?;
        range("audit.retention", self.audit.retention, 1000, 10_000_000)?;
        self.redis.validate()?;
        crate::radio::config::validate(&self.radio, &self.console)?;
        crate::config::link::validate(&self.site, &self.link)?;
        let (lo, hi) = (self.sfu.udp_port_min, self.sfu.udp_port_max);
        if (lo == 0) != (hi == 0) || lo > hi {
            return Err(ConfigError::Invalid {
                key: "sfu.udp_port_min",
                reason: format!(
                    "udp_port_min..udp_port_max must be both 0 (ephemeral) or a range with min <= max (got {lo}..{hi})"
                ),
            });
        }
        Ok(())
    }
}

impl Config {
    /// The longest TTL `radiogate token` mints (`auth.max_ttl`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `auth.max_ttl` does not parse.
    pub fn max_ttl(&self) -> Result<Duration, ConfigError> {
        crate::access::token::parse_ttl(&self.auth.max_ttl).map_err(|e| ConfigError::Invalid {
            key: "auth.max_ttl",
            reason: e.to_string(),
        })
    }

    fn validate_ttls(&self) -> Result<(), ConfigError> {
        let default = crate::access::token::parse_ttl(&self.auth.default_ttl).map_err(|e| {
            ConfigError::Invalid {
                key: "auth.default_ttl",
                reason: e.to_string(),
            }
        })?;
        let max = self.max_ttl()?;
        if default > max {
            return Err(ConfigError::Invalid {
                key: "auth.default_ttl",
                reason: format!(
                    "{:?} is longer than auth.max_ttl {:?}",
                    self.auth.default_ttl, self.auth.max_ttl
                ),
            });
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let have_files =
            !s.tls_cert_file.as_os_str().is_empty() || !s.tls_key_file.as_os_str().is_empty();
        match s.tls {
            TlsMode::Files => {
                for (key, path) in [
                    ("server.tls_cert_file", &s.tls_cert_file),
                    ("server.tls_key_file", &s.tls_key_file),
                ] {
                    if path.as_os_str().is_empty() {
                        return Err(ConfigError::Invalid {
                            key,
                            reason: "required when server.tls is \"files\" (a PEM file)".into(),
                        });
                    }
                }
            }
            _ if have_files => {
                return Err(ConfigError::Invalid {
                    key: "server.tls",
                    reason:
                        "set tls = \"files\" to use server.tls_cert_file and server.tls_key_file"
                            .into(),
                });
            }
            _ => {}
        }
        for name in &s.tls_names {
            let ok = name.parse::<IpAddr>().is_ok()
                || (!name.is_empty()
                    && name.len() <= 253
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*')));
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "server.tls_names",
                    reason: format!("{name:?} is neither an IP address nor a DNS name"),
                });
            }
        }
        Ok(())
    }
}

fn range(key: &'static str, value: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("must be between {lo} and {hi} (got {value})"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_equals_struct_defaults() {
        let parsed = Config::embedded().expect("embedded config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn empty_text_is_the_default_but_an_empty_file_is_refused() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("radiogate.toml");
        for text in ["", "# only a comment\n\n"] {
            std::fs::write(&p, text).unwrap();
            let err = Config::load(&p).unwrap_err();
            assert!(matches!(err, ConfigError::Empty(_)), "{err}");
            assert!(err.to_string().contains("has no settings"), "{err}");
        }
        std::fs::write(&p, "[floor]\n").unwrap();
        let mut loaded = Config::load(&p).unwrap();
        assert_eq!(loaded.file.as_deref(), Some(p.as_path()));
        loaded.file = None;
        let mut default = Config::default();
        default.resolve_paths(dir.path());
        assert_eq!(loaded, default);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[floor]\ntime_out_timer = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("time_out_timer"), "{msg}");
    }

    #[test]
    fn out_of_range_is_named() {
        let err = Config::from_toml("[floor]\ntime_out_timer_ms = 5\n").unwrap_err();
        assert!(
            err.to_string().starts_with("floor.time_out_timer_ms:"),
            "{err}"
        );
        let err = Config::from_toml("[sfu]\nudp_port_min = 50000\n").unwrap_err();
        assert!(err.to_string().starts_with("sfu.udp_port_min:"), "{err}");
        let err = Config::from_toml("[auth]\nsecret = \"short\"\n").unwrap_err();
        assert!(err.to_string().starts_with("auth.secret:"), "{err}");
    }

    #[test]
    fn tls_keys_are_checked() {
        let err = Config::from_toml("[server]\ntls = \"files\"\n").unwrap_err();
        assert!(
            err.to_string().starts_with("server.tls_cert_file:"),
            "{err}"
        );
        let err = Config::from_toml("[server]\ntls_cert_file = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().starts_with("server.tls:"), "{err}");
        let err = Config::from_toml("[server]\ntls = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("tls"), "{err}");
        let err = Config::from_toml("[server]\ntls_names = [\"a b\"]\n").unwrap_err();
        assert!(err.to_string().starts_with("server.tls_names:"), "{err}");
        let ok = Config::from_toml(
            "[server]\ntls = \"files\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n\
             tls_names = [\"pi.local\", \"10.0.0.2\"]\nplain_http = \"any\"\n",
        )
        .unwrap();
        assert_eq!(ok.server.tls, TlsMode::Files);
        assert_eq!(ok.server.plain_http, PlainHttp::Any);
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::from_toml("[server]\nlisten = 12\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }
}
