//! What the permission sync and `radiogate permissions` need from the SQLite copy beyond the
//! [`PermissionStore`](super::PermissionStore) trait: where each user's channels came from,
//! batch write-through, the channel-to-event association and listings.

use super::{SqliteStore, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Extra schema (idempotent): the source of each user's recorded channels.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user_sources (
    event_id      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    source        TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (event_id, user_id)
) WITHOUT ROWID;
";

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// Where a user's recorded channels came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The control plane's Redis (authoritative while Redis is configured).
    Redis,
    /// The user's token at connect (standalone, or a user never seen while Redis was down).
    Token,
    /// Set by a site admin with `radiogate permissions set` (standalone authority).
    Local,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Token => "token",
            Source::Local => "local",
        }
    }

    fn parse(s: &str) -> Source {
        match s {
            "redis" => Source::Redis,
            "local" => Source::Local,
            _ => Source::Token,
        }
    }
}

/// One user's recorded channels in one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRecord {
    /// Event id.
    pub event: String,
    /// User id.
    pub user: String,
    /// Permitted channel ids, sorted.
    pub channels: Vec<String>,
    /// Where they came from.
    pub source: Source,
    /// When they were last written, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Associates `channel` with `event` (replacing an association with another event).
pub(super) fn associate(tx: &Connection, channel: &str, event: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO channel_events (channel_id, event_id) VALUES (?1, ?2)
         ON CONFLICT (channel_id) DO UPDATE SET event_id = ?2",
        params![channel, event],
    )?;
    Ok(())
}

fn channels_of(tx: &Connection, event: &str, user: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT channel_id FROM user_channels WHERE event_id = ?1 AND user_id = ?2 ORDER BY channel_id",
    )?;
    let rows = stmt.query_map(params![event, user], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn source_of(tx: &Connection, event: &str, user: &str) -> Result<Option<Source>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT source FROM user_sources WHERE event_id = ?1 AND user_id = ?2",
            params![event, user],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .map(|s| Source::parse(&s)))
}

/// Writes one user's channels if they or their source differ; returns whether it wrote.
pub(super) fn write_user(
    tx: &Transaction<'_>,
    event: &str,
    user: &str,
    channels: &[String],
    source: Source,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let mut sorted: Vec<String> = channels.to_vec();
    sorted.sort();
    sorted.dedup();
    if channels_of(tx, event, user)? == sorted && source_of(tx, event, user)? == Some(source) {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM user_channels WHERE event_id = ?1 AND user_id = ?2",
        params![event, user],
    )?;
    for ch in &sorted {
        tx.execute(
            "INSERT INTO user_channels (event_id, user_id, channel_id) VALUES (?1, ?2, ?3)",
            params![event, user, ch],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO channel_events (channel_id, event_id) VALUES (?1, ?2)",
            params![ch, event],
        )?;
    }
    tx.execute(
        "INSERT INTO user_sources (event_id, user_id, source, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (event_id, user_id) DO UPDATE SET source = ?3, updated_at_ms = ?4",
        params![event, user, source.as_str(), now_ms as i64],
    )?;
    Ok(true)
}

impl SqliteStore {
    /// Records the channels of several users (event, user, channels) from `source` in one
    /// transaction, writing only those that changed; also replaces the channel-to-event
    /// association for each `(channel, event)` in `assoc`. Returns how many users changed.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database cannot be written (nothing is written then).
    pub fn record_users(
        &self,
        users: &[(String, String, Vec<String>)],
        assoc: &[(String, String)],
        source: Source,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (ch, ev) in assoc {
            associate(&tx, ch, ev)?;
        }
        let mut changed = 0;
        for (event, user, channels) in users {
            if write_user(&tx, event, user, channels, source, now_ms)? {
                changed += 1;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// A user's recorded channels in `event` and their source; `None` if never recorded.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database cannot be read.
    pub fn user_record(&self, event: &str, user: &str) -> Result<Option<UserRecord>, StoreError> {
        if let Some(rec) = self.pending.lock().user(event, user) {
            return Ok(Some(rec));
        }
        let conn = self.conn.lock();
        let row = conn
            .query_row(
                "SELECT source, updated_at_ms FROM user_sources WHERE event_id = ?1 AND user_id = ?2",
                params![event, user],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?;
        let Some((source, at)) = row else {
            return Ok(None);
        };
        Ok(Some(UserRecord {
            event: event.to_string(),
            user: user.to_string(),
            channels: channels_of(&conn, event, user)?,
            source: Source::parse(&source),
            updated_at_ms: at.max(0) as u64,
        }))
    }

    /// Every recorded user, optionally only of `event`, ordered by event and user.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database cannot be read.
    pub fn user_records(&self, event: Option<&str>) -> Result<Vec<UserRecord>, StoreError> {
        let keys: Vec<(String, String)> = {
            let conn = self.conn.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, user_id FROM user_sources WHERE ?1 IS NULL OR event_id = ?1
                 UNION SELECT DISTINCT event_id, user_id FROM user_channels WHERE ?1 IS NULL OR event_id = ?1
                 ORDER BY 1, 2",
            )?;
            let rows = stmt.query_map(params![event], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let kept = self.pending.lock().users(event);
        let mut out = Vec::with_capacity(keys.len() + kept.len());
        for (ev, user) in keys {
            if kept.iter().any(|k| k.event == ev && k.user == user) {
                continue;
            }
            let rec = self.user_record(&ev, &user)?;
            out.push(rec.unwrap_or_else(|| UserRecord {
                channels: Vec::new(),
                event: ev,
                user,
                source: Source::Token,
                updated_at_ms: 0,
            }));
        }
        out.extend(kept);
        out.sort_by(|a, b| (&a.event, &a.user).cmp(&(&b.event, &b.user)));
        Ok(out)
    }

    /// Forgets a user's recorded channels in `event`; returns whether anything was recorded.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database cannot be written.
    pub fn clear_user(&self, event: &str, user: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let a = tx.execute(
            "DELETE FROM user_channels WHERE event_id = ?1 AND user_id = ?2",
            params![event, user],
        )?;
        let b = tx.execute(
            "DELETE FROM user_sources WHERE event_id = ?1 AND user_id = ?2",
            params![event, user],
        )?;
        tx.commit()?;
        Ok(a + b > 0)
    }

    /// The channels associated with `event`, sorted.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database cannot be read.
    pub fn event_channels(&self, event: &str) -> Result<Vec<String>, StoreError> {
        let stored = {
            let conn = self.conn.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT channel_id FROM channel_events WHERE event_id = ?1 ORDER BY channel_id",
            )?;
            let rows = stmt.query_map(params![event], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let pending = self.pending.lock();
        if pending.is_empty() {
            return Ok(stored);
        }
        Ok(pending.adjust_event_channels(event, stored, |ch| {
            self.stored_channel_event(ch).ok().flatten()
        }))
    }

    /// Makes `channels` exactly the channels of `event`: each is (re)associated with it and
    /// channels of `event` not listed lose their association.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database cannot be written.
    pub fn set_event_channels(&self, event: &str, channels: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM channel_events WHERE event_id = ?1",
            params![event],
        )?;
        for ch in channels {
            associate(&tx, ch, event)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::PermissionStore;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn record_writes_only_changes_and_keeps_sources() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        let users = vec![
            ("ev".to_string(), "u1".to_string(), v(&["b", "a", "a"])),
            ("ev".to_string(), "u2".to_string(), v(&[])),
        ];
        assert_eq!(s.record_users(&users, &[], Source::Redis, 10).unwrap(), 2);
        assert_eq!(s.record_users(&users, &[], Source::Redis, 11).unwrap(), 0);
        let r = s.user_record("ev", "u1").unwrap().unwrap();
        assert_eq!(
            (r.channels, r.source, r.updated_at_ms),
            (v(&["a", "b"]), Source::Redis, 10)
        );
        let r2 = s.user_record("ev", "u2").unwrap().unwrap();
        assert!(r2.channels.is_empty(), "known user with no channels");
        assert_eq!(s.user_record("ev", "u3").unwrap(), None);
        assert_eq!(s.user_records(None).unwrap().len(), 2);
        assert_eq!(s.user_channels("ev", "u1").unwrap(), v(&["a", "b"]));
        assert!(s.clear_user("ev", "u1").unwrap());
        assert_eq!(s.user_record("ev", "u1").unwrap(), None);
    }

    #[test]
    fn association_is_replaced_by_the_authority() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        s.set_user_channels("ev1", "u", &v(&["c1"])).unwrap();
        assert_eq!(s.channel_event("c1").unwrap().as_deref(), Some("ev1"));
        s.record_users(&[], &[("c1".into(), "ev2".into())], Source::Redis, 1)
            .unwrap();
        assert_eq!(s.channel_event("c1").unwrap().as_deref(), Some("ev2"));
        s.set_event_channels("ev3", &v(&["c1", "c9"])).unwrap();
        assert_eq!(s.event_channels("ev3").unwrap(), v(&["c1", "c9"]));
        assert!(s.event_channels("ev2").unwrap().is_empty());
        s.set_event_channels("ev3", &v(&["c9"])).unwrap();
        assert_eq!(s.channel_event("c1").unwrap(), None);
    }
}
