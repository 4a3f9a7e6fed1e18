//! Permission writes the database refused (a full or failing card), kept in memory, served to
//! readers as if written, and written when the database accepts them again (issue 15: "bans
//! and permission changes are kept in memory and written when they can be").
//!
//! Only the latest state of each user and each channel association is kept (a later write
//! replaces an earlier one), so the backlog is bounded by the number of users and channels.
//! What is kept is lost if the gateway stops before it is written (docs/CONTROL_PLANE.md).

use super::local::{associate, write_user};
use super::{Source, SqliteStore, StoreError, UserRecord};
use parking_lot::Mutex;
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};

/// What is waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// (event, user) -> (sorted channels, source, when recorded in ms since the Unix epoch).
    users: BTreeMap<(String, String), (Vec<String>, Source, u64)>,
    /// channel -> event associations that replace the stored one.
    assoc: BTreeMap<String, String>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.users.is_empty() && self.assoc.is_empty()
    }

    /// Records waiting (users and associations).
    pub(super) fn len(&self) -> usize {
        self.users.len() + self.assoc.len()
    }

    fn merge(
        &mut self,
        users: &[(String, String, Vec<String>)],
        assoc: &[(String, String)],
        source: Source,
        now_ms: u64,
    ) {
        for (ch, ev) in assoc {
            self.assoc.insert(ch.clone(), ev.clone());
        }
        for (event, user, channels) in users {
            let mut chs = channels.clone();
            chs.sort();
            chs.dedup();
            self.users
                .insert((event.clone(), user.clone()), (chs, source, now_ms));
        }
    }

    /// The kept record of a user, if any.
    pub(super) fn user(&self, event: &str, user: &str) -> Option<UserRecord> {
        self.users
            .get(&(event.to_string(), user.to_string()))
            .map(|(chs, source, at)| UserRecord {
                event: event.to_string(),
                user: user.to_string(),
                channels: chs.clone(),
                source: *source,
                updated_at_ms: *at,
            })
    }

    /// Every kept user record, optionally only of `event`.
    pub(super) fn users(&self, event: Option<&str>) -> Vec<UserRecord> {
        self.users
            .keys()
            .filter(|(ev, _)| event.is_none_or(|e| e == ev))
            .filter_map(|(ev, u)| self.user(ev, u))
            .collect()
    }

    /// A kept association that replaces the stored one.
    pub(super) fn association(&self, channel: &str) -> Option<&str> {
        self.assoc.get(channel).map(String::as_str)
    }

    /// The event of a kept user listing `channel` (used only when nothing else associates it,
    /// as the write would: `INSERT OR IGNORE`).
    pub(super) fn listed_in(&self, channel: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, (chs, _, _))| chs.iter().any(|c| c == channel))
            .map(|((ev, _), _)| ev.as_str())
    }

    /// Adjusts `stored` (the channels the database associates with `event`) for what is kept.
    pub(super) fn adjust_event_channels(
        &self,
        event: &str,
        stored: Vec<String>,
        stored_event_of: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        let mut set: BTreeSet<String> = stored.into_iter().collect();
        for (ch, ev) in &self.assoc {
            if ev == event {
                set.insert(ch.clone());
            } else {
                set.remove(ch);
            }
        }
        for ((ev, _), (chs, _, _)) in &self.users {
            if ev != event {
                continue;
            }
            for ch in chs {
                if !self.assoc.contains_key(ch) && stored_event_of(ch).is_none() {
                    set.insert(ch.clone());
                }
            }
        }
        set.into_iter().collect()
    }
}

/// Writes everything kept in one transaction and empties `p`; returns how many users changed.
fn flush(conn: &Mutex<Connection>, p: &mut Pending) -> Result<usize, StoreError> {
    let mut conn = conn.lock();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (ch, ev) in &p.assoc {
        associate(&tx, ch, ev)?;
    }
    let mut changed = 0;
    for ((event, user), (chs, source, at)) in &p.users {
        if write_user(&tx, event, user, chs, *source, *at)? {
            changed += 1;
        }
    }
    tx.commit()?;
    *p = Pending::default();
    Ok(changed)
}

impl SqliteStore {
    /// Like [`SqliteStore::record_users`], for the gateway's own writes (connect, sync): when
    /// the database refuses the write (full or failing card), the records are kept in memory,
    /// served to every read of this store as if written, and written by a retry every
    /// [`crate::state::write_health::RETRY_INTERVAL`] (and with the next write). The failure is
    /// counted in [`SqliteStore::write_health`]. Returns how many users changed (when kept:
    /// how many were given).
    pub fn record_users_kept(
        &self,
        users: &[(String, String, Vec<String>)],
        assoc: &[(String, String)],
        source: Source,
        now_ms: u64,
    ) -> usize {
        let mut p = self.pending.lock();
        let written = if p.is_empty() {
            let r = self.record_users(users, assoc, source, now_ms);
            if r.is_err() {
                p.merge(users, assoc, source, now_ms);
            }
            r
        } else {
            p.merge(users, assoc, source, now_ms);
            flush(&self.conn, &mut p)
        };
        match written {
            Ok(n) => {
                self.health.succeeded(0);
                n
            }
            Err(e) => {
                self.health.failed(&e, p.len());
                drop(p);
                self.retry_pending();
                users.len()
            }
        }
    }

    /// Writes what is kept now (at shutdown, before the checkpoint).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the database still refuses it (it stays kept).
    pub fn flush_pending(&self) -> Result<(), StoreError> {
        let mut p = self.pending.lock();
        if p.is_empty() {
            return Ok(());
        }
        match flush(&self.conn, &mut p) {
            Ok(_) => {
                self.health.succeeded(0);
                Ok(())
            }
            Err(e) => {
                self.health.failed(&e, p.len());
                Err(e)
            }
        }
    }

    fn retry_pending(&self) {
        let conn = std::sync::Arc::clone(&self.conn);
        self.health.retry_kept(
            std::sync::Arc::clone(&self.pending),
            Pending::len,
            move |p| flush(&conn, p),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::PermissionStore;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    /// A write the database refuses (a trigger standing in for a full card) is served to reads
    /// at once, counted, and written by the retry once the database accepts writes.
    #[test]
    fn refused_writes_are_served_from_memory_and_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = SqliteStore::open(&path).unwrap();
        s.record_users_kept(
            &[("ev".into(), "old".into(), v(&["c0"]))],
            &[],
            Source::Redis,
            1,
        );
        let other = crate::state::open_connection(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON user_sources BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .unwrap();
        let users = [("ev".to_string(), "u1".to_string(), v(&["c2", "c1"]))];
        assert_eq!(
            s.record_users_kept(&users, &[("c9".into(), "ev".into())], Source::Token, 7),
            1
        );
        let st = s.write_health().status();
        assert!(
            st.failing && st.failed_writes == 1 && st.pending == 2,
            "{st:?}"
        );

        let rec = s.user_record("ev", "u1").unwrap().unwrap();
        assert_eq!(
            (rec.channels, rec.source, rec.updated_at_ms),
            (v(&["c1", "c2"]), Source::Token, 7)
        );
        assert_eq!(s.user_channels("ev", "u1").unwrap(), v(&["c1", "c2"]));
        assert_eq!(s.channel_event("c1").unwrap().as_deref(), Some("ev"));
        assert_eq!(s.channel_event("c9").unwrap().as_deref(), Some("ev"));
        assert_eq!(
            s.event_channels("ev").unwrap(),
            v(&["c0", "c1", "c2", "c9"])
        );
        let all: Vec<String> = s
            .user_records(None)
            .unwrap()
            .into_iter()
            .map(|r| r.user)
            .collect();
        assert_eq!(all, v(&["old", "u1"]));
        assert!(SqliteStore::open(&path)
            .unwrap()
            .user_record("ev", "u1")
            .unwrap()
            .is_none());

        // A later write for the same user replaces the kept one (still refused).
        let users = [("ev".to_string(), "u1".to_string(), v(&["c3"]))];
        s.record_users_kept(&users, &[], Source::Redis, 8);
        assert_eq!(s.user_channels("ev", "u1").unwrap(), v(&["c3"]));
        assert_eq!(s.write_health().status().failed_writes, 2);

        other.execute_batch("DROP TRIGGER refuse;").unwrap();
        let limit = crate::state::write_health::RETRY_INTERVAL * 3;
        assert!(s.write_health().wait_resumed(limit), "not retried");
        let fresh = SqliteStore::open(&path).unwrap();
        let rec = fresh.user_record("ev", "u1").unwrap().unwrap();
        assert_eq!((rec.channels, rec.source), (v(&["c3"]), Source::Redis));
        assert_eq!(fresh.channel_event("c9").unwrap().as_deref(), Some("ev"));
        assert_eq!(s.write_health().status().pending, 0);
    }
}
