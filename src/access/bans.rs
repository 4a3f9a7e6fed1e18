//! Banned users (spec note 000: "ban check on connect", "Account is suspended"), kept in
//! SQLite so a ban survives a restart, with an in-memory copy for the connect path.

use parking_lot::Mutex;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Errors of the ban list.
#[derive(Debug, thiserror::Error)]
pub enum BanError {
    /// SQLite failed.
    #[error("ban list: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    /// The banned user id.
    pub user_id: String,
    /// Why (shown to admins, sent as the close reason).
    pub reason: String,
    /// The admin who banned.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// The ban list: SQLite table `bans` plus an in-memory map read on every connect.
pub struct BanList {
    conn: Mutex<Connection>,
    cache: Mutex<HashMap<String, Ban>>,
}

impl BanList {
    /// Opens the `bans` table in the database file and loads it.
    ///
    /// # Errors
    /// [`BanError::Sqlite`] if the database cannot be opened or read.
    pub fn open(path: &Path) -> Result<Self, BanError> {
        let conn = crate::state::open_connection(path)?;
        // Bans are rare and a lost one lets a suspended user back in after a power cut: this
        // connection's commits are synced to the card before the admin is told (FULL), where
        // the permission store and audit log settle for NORMAL.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bans (
                user_id TEXT PRIMARY KEY, reason TEXT NOT NULL, by TEXT NOT NULL,
                at_ms INTEGER NOT NULL) WITHOUT ROWID;",
        )?;
        let mut cache = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT user_id, reason, by, at_ms FROM bans")?;
            let rows = stmt.query_map([], |r| {
                Ok(Ban {
                    user_id: r.get(0)?,
                    reason: r.get(1)?,
                    by: r.get(2)?,
                    at_ms: r.get::<_, i64>(3)? as u64,
                })
            })?;
            for b in rows {
                let b = b?;
                cache.insert(b.user_id.clone(), b);
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            cache: Mutex::new(cache),
        })
    }

    /// Whether `user_id` is banned (in-memory lookup).
    pub fn is_banned(&self, user_id: &str) -> bool {
        self.cache.lock().contains_key(user_id)
    }

    /// Bans a user (replacing an earlier ban of the same user).
    ///
    /// # Errors
    /// [`BanError::Sqlite`] if it cannot be stored; the user is then not banned.
    pub fn ban(&self, ban: Ban) -> Result<(), BanError> {
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO bans (user_id, reason, by, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![ban.user_id, ban.reason, ban.by, ban.at_ms as i64],
        )?;
        self.cache.lock().insert(ban.user_id.clone(), ban);
        Ok(())
    }

    /// Lifts a ban; returns whether the user was banned.
    ///
    /// # Errors
    /// [`BanError::Sqlite`] if it cannot be stored.
    pub fn unban(&self, user_id: &str) -> Result<bool, BanError> {
        let n = self
            .conn
            .lock()
            .execute("DELETE FROM bans WHERE user_id = ?1", params![user_id])?;
        self.cache.lock().remove(user_id);
        Ok(n > 0)
    }

    /// Every ban, by user id.
    pub fn list(&self) -> Vec<Ban> {
        let mut v: Vec<Ban> = self.cache.lock().values().cloned().collect();
        v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_survive_reopen_and_unban() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let b = BanList::open(&path).unwrap();
            b.ban(Ban {
                user_id: "u1".into(),
                reason: "abuse".into(),
                by: "admin".into(),
                at_ms: 5,
            })
            .unwrap();
            assert!(b.is_banned("u1"));
            assert!(!b.is_banned("u2"));
        }
        let b = BanList::open(&path).unwrap();
        assert!(b.is_banned("u1"));
        assert_eq!(b.list()[0].reason, "abuse");
        assert!(b.unban("u1").unwrap());
        assert!(!b.unban("u1").unwrap());
        assert!(!BanList::open(&path).unwrap().is_banned("u1"));
    }
}
