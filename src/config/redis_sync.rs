//! `[redis]`: the control plane's Redis, the source of channel permissions when configured.
//!
//! Empty `url` (the embedded default) means standalone: permissions come from the SQLite copy
//! alone. See docs/CONTROL_PLANE.md for the keys and payloads read from Redis.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[redis]`: permission sync from the control plane's Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://...` (TLS); empty = standalone.
    pub url: String,
    /// PEM file of the CA that signed the Redis server's TLS certificate (`rediss://` only);
    /// empty = the system's trusted roots.
    pub ca_file: PathBuf,
    /// Prefix put before every key read (`{prefix}u.{userId}.g`, `{prefix}channel:events`).
    pub key_prefix: String,
    /// Pub/sub channel carrying membership updates (not prefixed).
    pub updates_channel: String,
    /// Event ids this gateway follows; empty = every event.
    pub events: Vec<String>,
    /// Heartbeat refresh: connected users' permissions are re-read this often, milliseconds.
    /// Also the standalone re-read of the SQLite copy.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub refresh_interval_ms: u64,
    /// Bound on establishing a Redis connection (TCP + TLS + AUTH), milliseconds.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub connect_timeout_ms: u64,
    /// Bound on one Redis command or pipeline, milliseconds.
    #[serde(deserialize_with = "crate::config_forms::ms")]
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: PathBuf::new(),
            key_prefix: String::new(),
            updates_channel: "vp:membership_updates".into(),
            events: Vec::new(),
            refresh_interval_ms: 30_000,
            connect_timeout_ms: 5_000,
            response_timeout_ms: 2_000,
        }
    }
}

impl RedisConfig {
    /// Whether a control-plane Redis is configured (otherwise: standalone).
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The heartbeat refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms)
    }

    /// The connection timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The per-command response timeout.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Checks the `[redis]` keys.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        if self.enabled() {
            let scheme_ok = self.url.starts_with("redis://") || self.url.starts_with("rediss://");
            if !scheme_ok {
                return Err(invalid(
                    "redis.url",
                    "must start with redis:// or rediss:// (TLS), or be empty (standalone)".into(),
                ));
            }
            if let Err(e) = redis::IntoConnectionInfo::into_connection_info(self.url.as_str()) {
                return Err(invalid(
                    "redis.url",
                    format!("{} ({e})", self.redacted_url()),
                ));
            }
            if !self.ca_file.as_os_str().is_empty() && !self.url.starts_with("rediss://") {
                return Err(invalid(
                    "redis.ca_file",
                    "only used with a rediss:// (TLS) url".into(),
                ));
            }
        }
        if self.updates_channel.is_empty() {
            return Err(invalid("redis.updates_channel", "must not be empty".into()));
        }
        if self.events.iter().any(String::is_empty) {
            return Err(invalid(
                "redis.events",
                "event ids must not be empty".into(),
            ));
        }
        let ranges: [(&'static str, u64, u64, u64); 3] = [
            (
                "redis.refresh_interval_ms",
                self.refresh_interval_ms,
                100,
                3_600_000,
            ),
            (
                "redis.connect_timeout_ms",
                self.connect_timeout_ms,
                100,
                60_000,
            ),
            (
                "redis.response_timeout_ms",
                self.response_timeout_ms,
                100,
                60_000,
            ),
        ];
        for (key, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(invalid(
                    key,
                    format!("must be between {lo} and {hi} (got {v})"),
                ));
            }
        }
        Ok(())
    }
}

/// `url` with the password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("rediss://gw:s3cr@t@cp.example:6380/0"),
            "rediss://gw:***@cp.example:6380/0"
        );
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
    }

    #[test]
    fn validates_keys() {
        let ok = "[redis]\nurl = \"rediss://gw:pw@cp.example:6380/2\"\n";
        assert!(Config::from_toml(ok).unwrap().redis.enabled());
        for (text, key) in [
            ("[redis]\nurl = \"http://x\"\n", "redis.url:"),
            ("[redis]\nurl = \"redis://h:notaport\"\n", "redis.url:"),
            (
                "[redis]\nurl = \"redis://h\"\nca_file = \"ca.pem\"\n",
                "redis.ca_file:",
            ),
            (
                "[redis]\nrefresh_interval_ms = 5\n",
                "redis.refresh_interval_ms:",
            ),
            (
                "[redis]\nupdates_channel = \"\"\n",
                "redis.updates_channel:",
            ),
            ("[redis]\nevents = [\"\"]\n", "redis.events:"),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }
}
