//! The SQLite permission store (WAL mode), the gateway's local copy of permissions.

use super::{PermissionStore, StoreError};
use crate::state::write_health::WriteMonitor;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Arc;

mod local;
mod pending;
pub use local::{Source, UserRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user_channels (
    event_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    PRIMARY KEY (event_id, user_id, channel_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_events (
    channel_id TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL
) WITHOUT ROWID;
";

/// Permission store in an SQLite file (`STATE_DIR/radiogate.db`), WAL journal,
/// `synchronous=NORMAL`, 5 s busy timeout. The gateway's writes go through
/// [`SqliteStore::record_users_kept`], which keeps what the database refuses in memory (every
/// read of this store sees it) until it can be written.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    pending: Arc<Mutex<pending::Pending>>,
    health: WriteMonitor,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its schema.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::state::open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        local::migrate(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            pending: Arc::new(Mutex::new(pending::Pending::default())),
            health: WriteMonitor::new("permissions"),
        })
    }

    /// Failed writes of the permission store (counters, records kept in memory, since when).
    pub fn write_health(&self) -> &WriteMonitor {
        &self.health
    }

    /// Writes what is kept in memory (see [`SqliteStore::record_users_kept`]), then flushes the
    /// WAL into the main database file (used at shutdown).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the kept records cannot be written or the checkpoint fails.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.flush_pending()?;
        self.conn
            .lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

impl SqliteStore {
    /// The event the database (not what is kept in memory) associates with `channel`.
    fn stored_channel_event(&self, channel: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn.lock();
        Ok(conn
            .query_row(
                "SELECT event_id FROM channel_events WHERE channel_id = ?1",
                params![channel],
                |r| r.get::<_, String>(0),
            )
            .optional()?)
    }
}

impl PermissionStore for SqliteStore {
    fn user_channels(&self, event: &str, user: &str) -> Result<Vec<String>, StoreError> {
        if let Some(rec) = self.pending.lock().user(event, user) {
            return Ok(rec.channels);
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT channel_id FROM user_channels WHERE event_id = ?1 AND user_id = ?2 ORDER BY channel_id",
        )?;
        let rows = stmt.query_map(params![event, user], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn set_user_channels(
        &self,
        event: &str,
        user: &str,
        channels: &[String],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM user_channels WHERE event_id = ?1 AND user_id = ?2",
            params![event, user],
        )?;
        for ch in channels {
            tx.execute(
                "INSERT OR IGNORE INTO user_channels (event_id, user_id, channel_id) VALUES (?1, ?2, ?3)",
                params![event, user, ch],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO channel_events (channel_id, event_id) VALUES (?1, ?2)",
                params![ch, event],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn channel_event(&self, channel: &str) -> Result<Option<String>, StoreError> {
        if let Some(ev) = self.pending.lock().association(channel) {
            return Ok(Some(ev.to_string()));
        }
        if let Some(ev) = self.stored_channel_event(channel)? {
            return Ok(Some(ev));
        }
        Ok(self.pending.lock().listed_in(channel).map(String::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chans(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_and_read_back_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("radiogate.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.set_user_channels("ev1", "u1", &chans(&["c2", "c1", "c1"]))
                .unwrap();
            assert_eq!(s.user_channels("ev1", "u1").unwrap(), chans(&["c1", "c2"]));
            assert!(s.user_channels("ev2", "u1").unwrap().is_empty());
            s.checkpoint().unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.user_channels("ev1", "u1").unwrap(), chans(&["c1", "c2"]));
        assert_eq!(s.channel_event("c1").unwrap().as_deref(), Some("ev1"));
        assert_eq!(s.channel_event("nope").unwrap(), None);
    }

    #[test]
    fn replacing_removes_and_keeps_first_event_association() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        s.set_user_channels("ev1", "u1", &chans(&["c1", "c2"]))
            .unwrap();
        s.set_user_channels("ev1", "u1", &chans(&["c2"])).unwrap();
        assert_eq!(s.user_channels("ev1", "u1").unwrap(), chans(&["c2"]));
        s.set_user_channels("ev2", "u9", &chans(&["c2"])).unwrap();
        assert_eq!(s.channel_event("c2").unwrap().as_deref(), Some("ev1"));
    }
}
