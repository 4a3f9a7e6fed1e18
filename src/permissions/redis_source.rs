//! The control plane's Redis: key layout, the membership-update payload, and the reads.
//!
//! Layout (docs/CONTROL_PLANE.md): `{prefix}u.{userId}.g` is a SET of the user's channel ids;
//! `{prefix}channel:events` is a HASH channel id -> event id; the pub/sub channel
//! (`vp:membership_updates` by default) carries JSON
//! `{"eventId", "userId", "channelIds", "action"}`.

use crate::config::RedisConfig;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Longest id (user, event, channel) accepted from Redis, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most channel ids accepted in one update or one user set.
pub const MAX_CHANNELS: usize = 1024;
/// Users read per pipeline round trip in a resync.
pub const PIPELINE_USERS: usize = 500;

/// Errors from the Redis source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The link failed: connection refused or dropped, timeout, authentication, TLS.
    #[error("redis: {0}")]
    Link(String),
    /// A key holds something else than expected (e.g. WRONGTYPE); the link is fine.
    #[error("redis key {key}: {reason}")]
    Data {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A membership-update payload was refused.
    #[error("malformed membership update: {0}")]
    Payload(String),
    /// The configuration cannot be used (bad URL, unreadable CA file).
    #[error("redis configuration: {0}")]
    Config(String),
}

impl SourceError {
    /// Whether this is a link failure (reconnect) rather than bad data (skip and go on).
    pub fn is_link(&self) -> bool {
        matches!(self, SourceError::Link(_))
    }
}

/// Classifies a redis-rs error: a server's reply error (WRONGTYPE, NOPERM...) or a type
/// mismatch is data; everything else (I/O, timeout, auth, TLS) is the link.
fn classify(key: &str, e: RedisError) -> SourceError {
    match e.kind() {
        ErrorKind::Server(_)
        | ErrorKind::Extension
        | ErrorKind::Parse
        | ErrorKind::UnexpectedReturnType => SourceError::Data {
            key: key.to_string(),
            reason: e.to_string(),
        },
        _ => SourceError::Link(e.to_string()),
    }
}

/// What an update asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `set_user_channels`: `channelIds` is the user's complete channel list in the event.
    SetUserChannels(Vec<String>),
    /// `remove_user`: the user has no channel in the event any more (`channelIds` ignored).
    RemoveUser,
    /// `resync_user`: re-read `{prefix}u.{userId}.g` (`channelIds` ignored).
    ResyncUser,
}

/// One parsed, validated membership update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipUpdate {
    /// Event id.
    pub event_id: String,
    /// User id.
    pub user_id: String,
    /// What to do.
    pub action: Action,
}

fn id_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, SourceError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(SourceError::Payload(format!("missing field {name}"))),
        Some(Value::String(s)) => check_id(name, s).map(|_| s.as_str()),
        Some(_) => Err(SourceError::Payload(format!("{name} must be a string"))),
    }
}

fn check_id(what: &str, s: &str) -> Result<(), SourceError> {
    if s.is_empty() || s.len() > MAX_ID_BYTES || s.chars().any(char::is_control) {
        return Err(SourceError::Payload(format!(
            "{what} must be 1..={MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Parses and validates a payload from the updates channel.
///
/// # Errors
/// [`SourceError::Payload`] naming what is wrong: not JSON, not an object, a missing field,
/// a wrong type, an empty or oversized id, an unknown action.
pub fn parse_update(payload: &[u8]) -> Result<MembershipUpdate, SourceError> {
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| SourceError::Payload(format!("not JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(SourceError::Payload("not a JSON object".into()));
    };
    let event_id = id_field(&obj, "eventId")?.to_string();
    let user_id = id_field(&obj, "userId")?.to_string();
    let action = match obj.get("action") {
        None | Some(Value::Null) => {
            return Err(SourceError::Payload("missing field action".into()))
        }
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err(SourceError::Payload("action must be a string".into())),
    };
    let action = match action {
        "set_user_channels" => {
            let list = match obj.get("channelIds") {
                None | Some(Value::Null) => {
                    return Err(SourceError::Payload("missing field channelIds".into()))
                }
                Some(Value::Array(a)) => a,
                Some(_) => {
                    return Err(SourceError::Payload(
                        "channelIds must be an array of strings".into(),
                    ))
                }
            };
            if list.len() > MAX_CHANNELS {
                return Err(SourceError::Payload(format!(
                    "more than {MAX_CHANNELS} channelIds"
                )));
            }
            let mut set = BTreeSet::new();
            for c in list {
                let Value::String(c) = c else {
                    return Err(SourceError::Payload(
                        "channelIds must be an array of strings".into(),
                    ));
                };
                check_id("channel id", c)?;
                set.insert(c.clone());
            }
            Action::SetUserChannels(set.into_iter().collect())
        }
        "remove_user" => Action::RemoveUser,
        "resync_user" => Action::ResyncUser,
        other => {
            return Err(SourceError::Payload(format!(
                "unknown action {:?}",
                other.chars().take(64).collect::<String>()
            )))
        }
    };
    Ok(MembershipUpdate {
        event_id,
        user_id,
        action,
    })
}

/// Key names under the configured prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// The SET of a user's channel ids: `{prefix}u.{userId}.g`.
    pub fn user(&self, user: &str) -> String {
        format!("{}u.{user}.g", self.prefix)
    }

    /// The HASH channel id -> event id: `{prefix}channel:events`.
    pub fn channel_events(&self) -> String {
        format!("{}channel:events", self.prefix)
    }
}

/// The result of reading users' channels.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Per requested (event, user), in order: the channels permitted in that event, or why
    /// the user's key could not be used.
    pub users: Vec<Result<Vec<String>, SourceError>>,
    /// Channel -> event associations read from `{prefix}channel:events`.
    pub assoc: Vec<(String, String)>,
    /// Set when the association hash itself could not be used (wrong type).
    pub assoc_error: Option<SourceError>,
}

/// The control plane's Redis: a client and the key layout.
pub struct RedisSource {
    client: redis::Client,
    keys: Keys,
    conn_cfg: AsyncConnectionConfig,
    connect_timeout: std::time::Duration,
    /// The pub/sub channel name.
    pub updates_channel: String,
}

impl RedisSource {
    /// Builds the client from the `[redis]` configuration (no connection yet).
    ///
    /// # Errors
    /// [`SourceError::Config`] for an unusable URL or CA file.
    pub fn new(cfg: &RedisConfig) -> Result<Self, SourceError> {
        let client = if cfg.ca_file.as_os_str().is_empty() {
            redis::Client::open(cfg.url.as_str())
        } else {
            let pem = std::fs::read(&cfg.ca_file).map_err(|e| {
                SourceError::Config(format!("cannot read {}: {e}", cfg.ca_file.display()))
            })?;
            redis::Client::build_with_tls(
                cfg.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        .map_err(|e| SourceError::Config(format!("{}: {e}", cfg.redacted_url())))?;
        Ok(Self {
            client,
            keys: Keys::new(&cfg.key_prefix),
            conn_cfg: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(cfg.connect_timeout()))
                .set_response_timeout(Some(cfg.response_timeout())),
            connect_timeout: cfg.connect_timeout(),
            updates_channel: cfg.updates_channel.clone(),
        })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Opens the command connection and the subscription (subscribed to the updates
    /// channel), each bounded by the connect timeout.
    ///
    /// # Errors
    /// [`SourceError::Link`] if either cannot be established.
    pub async fn connect(
        &self,
    ) -> Result<(MultiplexedConnection, PubSubSink, PubSubStream), SourceError> {
        let link = |e: RedisError| SourceError::Link(e.to_string());
        let cmd = self
            .client
            .get_multiplexed_async_connection_with_config(&self.conn_cfg)
            .await
            .map_err(link)?;
        let pubsub = tokio::time::timeout(self.connect_timeout, async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(&self.updates_channel).await?;
            Ok::<_, RedisError>(ps)
        })
        .await
        .map_err(|_| SourceError::Link("subscribe timed out".into()))?
        .map_err(link)?;
        let (sink, stream) = pubsub.split();
        Ok((cmd, sink, stream))
    }

    /// Reads the channels of `users` (event, user) in pipelines of [`PIPELINE_USERS`]:
    /// `SMEMBERS {prefix}u.{user}.g` for each, then `HMGET {prefix}channel:events` for every
    /// channel seen. A channel associated with another event than the user's is dropped; a
    /// channel without association counts for the user's event.
    ///
    /// # Errors
    /// [`SourceError::Link`] if the link fails (bad keys are reported per user instead).
    pub async fn fetch(
        &self,
        conn: &mut MultiplexedConnection,
        users: &[(String, String)],
    ) -> Result<Fetched, SourceError> {
        let mut sets: Vec<Result<Vec<String>, SourceError>> = Vec::with_capacity(users.len());
        for chunk in users.chunks(PIPELINE_USERS) {
            let mut pipe = redis::pipe();
            for (_, user) in chunk {
                pipe.smembers(self.keys.user(user));
            }
            let replies: Vec<redis::RedisResult<Vec<String>>> = pipe
                .ignore_errors()
                .query_async(conn)
                .await
                .map_err(|e| SourceError::Link(e.to_string()))?;
            for ((_, user), r) in chunk.iter().zip(replies) {
                let key = self.keys.user(user);
                sets.push(match r {
                    Ok(chs) => check_set(&key, chs),
                    Err(e) => match classify(&key, e) {
                        SourceError::Link(m) => return Err(SourceError::Link(m)),
                        other => Err(other),
                    },
                });
            }
        }
        let all: BTreeSet<&String> = sets.iter().flatten().flatten().collect();
        let mut fetched = Fetched::default();
        let mut event_of: HashMap<String, String> = HashMap::new();
        if !all.is_empty() {
            let fields: Vec<&String> = all.into_iter().collect();
            let key = self.keys.channel_events();
            let reply: redis::RedisResult<Vec<Option<String>>> = redis::cmd("HMGET")
                .arg(&key)
                .arg(&fields)
                .query_async(conn)
                .await;
            match reply {
                Ok(events) => {
                    for (ch, ev) in fields.iter().zip(events) {
                        if let Some(ev) = ev.filter(|e| check_id("event id", e).is_ok()) {
                            event_of.insert((*ch).clone(), ev);
                        }
                    }
                }
                Err(e) => match classify(&key, e) {
                    SourceError::Link(m) => return Err(SourceError::Link(m)),
                    other => fetched.assoc_error = Some(other),
                },
            }
        }
        fetched.users = users
            .iter()
            .zip(sets)
            .map(|((event, _), r)| {
                r.map(|chs| {
                    chs.into_iter()
                        .filter(|c| event_of.get(c).is_none_or(|e| e == event))
                        .collect()
                })
            })
            .collect();
        let mut assoc: Vec<(String, String)> = event_of.into_iter().collect();
        assoc.sort();
        fetched.assoc = assoc;
        Ok(fetched)
    }

    /// Pings over the subscription connection (detects a half-open link).
    ///
    /// # Errors
    /// [`SourceError::Link`] if the ping fails or times out.
    pub async fn ping(&self, sink: &mut PubSubSink) -> Result<(), SourceError> {
        tokio::time::timeout(self.connect_timeout, sink.ping::<String>())
            .await
            .map_err(|_| SourceError::Link("ping timed out".into()))?
            .map(|_| ())
            .map_err(|e| SourceError::Link(e.to_string()))
    }
}

/// Validates a user's set: ids of sane length, bounded count; sorted.
fn check_set(key: &str, mut chs: Vec<String>) -> Result<Vec<String>, SourceError> {
    if chs.len() > MAX_CHANNELS {
        return Err(SourceError::Data {
            key: key.to_string(),
            reason: format!("more than {MAX_CHANNELS} members"),
        });
    }
    chs.retain(|c| check_id("channel id", c).is_ok());
    chs.sort();
    chs.dedup();
    Ok(chs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MembershipUpdate, String> {
        parse_update(s.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_control_plane_payload() {
        let u = parse(
            r#"{"eventId":"ev1","userId":"u1","channelIds":["c2","c1","c2"],"action":"set_user_channels"}"#,
        )
        .unwrap();
        assert_eq!(u.event_id, "ev1");
        assert_eq!(u.user_id, "u1");
        assert_eq!(
            u.action,
            Action::SetUserChannels(vec!["c1".into(), "c2".into()])
        );
        let u = parse(r#"{"eventId":"e","userId":"u","channelIds":[],"action":"set_user_channels","extra":1}"#).unwrap();
        assert_eq!(u.action, Action::SetUserChannels(vec![]));
        let u = parse(r#"{"eventId":"e","userId":"u","action":"remove_user"}"#).unwrap();
        assert_eq!(u.action, Action::RemoveUser);
        let u = parse(r#"{"eventId":"e","userId":"u","action":"resync_user"}"#).unwrap();
        assert_eq!(u.action, Action::ResyncUser);
    }

    #[test]
    fn refuses_malformed_payloads() {
        for (p, why) in [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (
                r#"{"userId":"u","channelIds":[],"action":"set_user_channels"}"#,
                "missing field eventId",
            ),
            (
                r#"{"eventId":"e","channelIds":[],"action":"set_user_channels"}"#,
                "missing field userId",
            ),
            (
                r#"{"eventId":"e","userId":"u","channelIds":[]}"#,
                "missing field action",
            ),
            (
                r#"{"eventId":"e","userId":"u","action":"set_user_channels"}"#,
                "missing field channelIds",
            ),
            (
                r#"{"eventId":5,"userId":"u","channelIds":[],"action":"set_user_channels"}"#,
                "eventId must be a string",
            ),
            (
                r#"{"eventId":"e","userId":"u","channelIds":"c1","action":"set_user_channels"}"#,
                "channelIds must be an array",
            ),
            (
                r#"{"eventId":"e","userId":"u","channelIds":[1],"action":"set_user_channels"}"#,
                "channelIds must be an array",
            ),
            (
                r#"{"eventId":"e","userId":"u","channelIds":[""],"action":"set_user_channels"}"#,
                "channel id must be",
            ),
            (
                r#"{"eventId":"","userId":"u","channelIds":[],"action":"set_user_channels"}"#,
                "eventId must be",
            ),
            (
                r#"{"eventId":"e","userId":"u","channelIds":[],"action":7}"#,
                "action must be a string",
            ),
            (
                r#"{"eventId":"e","userId":"u","channelIds":[],"action":"drop_tables"}"#,
                "unknown action",
            ),
        ] {
            let err = parse(p).unwrap_err();
            assert!(err.contains(why), "{p}: {err}");
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(parse(&format!(
            r#"{{"eventId":"e","userId":"{long}","channelIds":[],"action":"set_user_channels"}}"#
        ))
        .is_err());
    }

    #[test]
    fn keys_use_the_prefix() {
        let k = Keys::new("cp1:");
        assert_eq!(k.user("alice"), "cp1:u.alice.g");
        assert_eq!(k.channel_events(), "cp1:channel:events");
        assert_eq!(Keys::new("").user("u"), "u.u.g");
    }

    #[test]
    fn set_check_drops_bad_ids() {
        let k = "u.x.g";
        assert_eq!(
            check_set(k, vec!["b".into(), "".into(), "a".into(), "b".into()]).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(check_set(k, vec!["c".to_string(); MAX_CHANNELS + 1]).is_err());
    }
}
