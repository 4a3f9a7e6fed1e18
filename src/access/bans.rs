//! Banned users (spec note 000: "ban check on connect", "Account is suspended"), kept in
//! SQLite so a ban survives a restart, with an in-memory copy for the connect path.
//!
//! A ban or unban takes effect in memory at once. When the database refuses the write (a full
//! or failing card), the change is kept in memory and written by a retry every
//! [`crate::state::write_health::RETRY_INTERVAL`] (issue 15); until then it is lost if the
//! gateway stops (docs/CONTROL_PLANE.md).

use crate::state::write_health::WriteMonitor;
use parking_lot::Mutex;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Errors of the ban list.
#[derive(Debug, thiserror::Error)]
pub enum BanError {
    /// SQLite failed.
    #[error("ban list: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The close reason and refusal text of a banned user's sessions (spec note 000).
pub fn suspended(reason: &str) -> String {
    format!("Account is suspended: {reason}")
}

/// How often the gateway looks for bans written by another process ([`BanList::reload`]).
pub const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

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

/// What changed in the database since the last look ([`BanList::reload`]): bans another
/// process (`radiogate bans`) added or lifted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BanChanges {
    /// New or changed bans.
    pub added: Vec<Ban>,
    /// User ids no longer banned.
    pub removed: Vec<String>,
}

fn read_all(conn: &Connection) -> Result<HashMap<String, Ban>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT user_id, reason, by, at_ms FROM bans")?;
    let rows = stmt.query_map([], |r| {
        Ok(Ban {
            user_id: r.get(0)?,
            reason: r.get(1)?,
            by: r.get(2)?,
            at_ms: r.get::<_, i64>(3)? as u64,
        })
    })?;
    let mut m = HashMap::new();
    for b in rows {
        let b = b?;
        m.insert(b.user_id.clone(), b);
    }
    Ok(m)
}

/// The ban list: SQLite table `bans` plus an in-memory map read on every connect.
pub struct BanList {
    conn: Arc<Mutex<Connection>>,
    cache: Mutex<HashMap<String, Ban>>,
    /// SQLite's `PRAGMA data_version` at the last load: it changes when another connection
    /// (another process) commits to the database.
    data_version: Mutex<i64>,
    /// Changes the database refused, by user: `Some` a ban to store, `None` a ban to delete.
    pending: Arc<Mutex<BTreeMap<String, Option<Ban>>>>,
    health: WriteMonitor,
}

/// Writes every kept change in one transaction and empties `pending`.
fn flush(
    conn: &Mutex<Connection>,
    pending: &mut BTreeMap<String, Option<Ban>>,
) -> Result<(), rusqlite::Error> {
    let mut conn = conn.lock();
    let tx = conn.transaction()?;
    for (user, change) in pending.iter() {
        match change {
            Some(ban) => tx.execute(
                "INSERT OR REPLACE INTO bans (user_id, reason, by, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![ban.user_id, ban.reason, ban.by, ban.at_ms as i64],
            )?,
            None => tx.execute("DELETE FROM bans WHERE user_id = ?1", params![user])?,
        };
    }
    tx.commit()?;
    pending.clear();
    Ok(())
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
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let cache = read_all(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            cache: Mutex::new(cache),
            data_version: Mutex::new(version),
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            health: WriteMonitor::new("bans"),
        })
    }

    /// Failed writes of the ban list (counters, changes kept in memory, since when).
    pub fn write_health(&self) -> &WriteMonitor {
        &self.health
    }

    /// Applies `change` for `user` in the database together with any kept change; if the
    /// database refuses, keeps them all in memory and retries.
    fn store(&self, user: &str, change: Option<Ban>) {
        let mut pending = self.pending.lock();
        pending.insert(user.to_string(), change);
        match flush(&self.conn, &mut pending) {
            Ok(()) => self.health.succeeded(0),
            Err(e) => {
                self.health.failed(&e, pending.len());
                drop(pending);
                let conn = Arc::clone(&self.conn);
                self.health
                    .retry_kept(Arc::clone(&self.pending), BTreeMap::len, move |p| {
                        flush(&conn, p)
                    });
            }
        }
    }

    /// Whether `user_id` is banned (in-memory lookup).
    pub fn is_banned(&self, user_id: &str) -> bool {
        self.cache.lock().contains_key(user_id)
    }

    /// Bans a user (replacing an earlier ban of the same user), in effect at once. Synced to
    /// the card before returning when the database accepts it; otherwise kept in memory and
    /// retried (see the module documentation).
    ///
    /// # Errors
    /// None today: a refused write is kept, not reported (the `Result` stays for callers).
    pub fn ban(&self, ban: Ban) -> Result<(), BanError> {
        let user = ban.user_id.clone();
        self.cache.lock().insert(user.clone(), ban.clone());
        self.store(&user, Some(ban));
        Ok(())
    }

    /// Lifts a ban, at once; returns whether the user was banned. Stored like [`Self::ban`].
    ///
    /// # Errors
    /// None today: a refused write is kept, not reported.
    pub fn unban(&self, user_id: &str) -> Result<bool, BanError> {
        let was = self.cache.lock().remove(user_id).is_some();
        self.store(user_id, None);
        Ok(was)
    }

    /// Picks up bans that another process wrote to the database (`radiogate bans add|remove`
    /// while the gateway runs: same SQLite file, WAL). Cheap when nothing changed: one
    /// `PRAGMA data_version` read. Changes this process keeps in memory (a refused write) win
    /// over the database. Returns what changed in the in-memory list.
    ///
    /// # Errors
    /// [`BanError::Sqlite`] if the database cannot be read (the list is left as it was).
    pub fn reload(&self) -> Result<BanChanges, BanError> {
        let fresh = {
            let conn = self.conn.lock();
            let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
            let mut last = self.data_version.lock();
            if *last == version {
                return Ok(BanChanges::default());
            }
            let fresh = read_all(&conn)?;
            *last = version;
            fresh
        };
        let mut fresh = fresh;
        for (user, change) in self.pending.lock().iter() {
            match change {
                Some(b) => fresh.insert(user.clone(), b.clone()),
                None => fresh.remove(user),
            };
        }
        let mut cache = self.cache.lock();
        let mut changes = BanChanges {
            added: fresh
                .values()
                .filter(|b| cache.get(&b.user_id) != Some(*b))
                .cloned()
                .collect(),
            removed: cache
                .keys()
                .filter(|u| !fresh.contains_key(*u))
                .cloned()
                .collect(),
        };
        changes.added.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        changes.removed.sort();
        *cache = fresh;
        Ok(changes)
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
    fn bans_written_by_another_process_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let gw = BanList::open(&path).unwrap();
        assert_eq!(gw.reload().unwrap(), BanChanges::default());
        let cli = BanList::open(&path).unwrap();
        let ban = Ban {
            user_id: "u1".into(),
            reason: "abuse".into(),
            by: "cli:root".into(),
            at_ms: 7,
        };
        cli.ban(ban.clone()).unwrap();
        assert!(!gw.is_banned("u1"));
        let c = gw.reload().unwrap();
        assert_eq!(c.added, vec![ban]);
        assert!(gw.is_banned("u1"));
        assert_eq!(gw.reload().unwrap(), BanChanges::default(), "nothing new");
        // Its own writes do not show up as changes.
        gw.ban(Ban {
            user_id: "u2".into(),
            reason: "r".into(),
            by: "admin".into(),
            at_ms: 8,
        })
        .unwrap();
        assert_eq!(gw.reload().unwrap(), BanChanges::default());
        assert!(cli.unban("u1").unwrap());
        let c = gw.reload().unwrap();
        assert_eq!(c.removed, vec!["u1".to_string()]);
        assert!(!gw.is_banned("u1") && gw.is_banned("u2"));
    }

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

    /// A ban the database refuses (a trigger standing in for a full card) is in effect at once,
    /// counted, and stored by the retry once the database accepts writes.
    #[test]
    fn a_refused_ban_is_kept_and_stored_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let b = BanList::open(&path).unwrap();
        let other = crate::state::open_connection(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON bans BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .unwrap();
        b.ban(Ban {
            user_id: "u1".into(),
            reason: "abuse".into(),
            by: "admin".into(),
            at_ms: 5,
        })
        .unwrap();
        assert!(b.is_banned("u1"), "in effect at once");
        let s = b.write_health().status();
        assert!(s.failing && s.failed_writes == 1 && s.pending == 1, "{s:?}");
        assert!(
            !BanList::open(&path).unwrap().is_banned("u1"),
            "not stored yet"
        );
        other.execute_batch("DROP TRIGGER refuse;").unwrap();
        let limit = crate::state::write_health::RETRY_INTERVAL * 3;
        assert!(b.write_health().wait_resumed(limit), "not retried");
        assert!(
            BanList::open(&path).unwrap().is_banned("u1"),
            "stored by the retry"
        );
        assert_eq!(b.write_health().status().pending, 0);
    }
}
