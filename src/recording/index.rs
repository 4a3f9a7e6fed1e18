//! The recordings index in SQLite (issue 14): one row per talk spurt (event, talker, start,
//! duration, bytes, how it ended, emergency flag, whether it was closed properly) and the
//! channels each reached (an emergency broadcast reaches several), plus the retention rule
//! ([`to_delete`]: oldest first, by age and by byte budget).
//!
//! A row is written when the spurt starts (`complete = 0`) and finished when it ends; rows still
//! open at the next start are the spurts a crash or power cut interrupted ([`Index::interrupted`]).

use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::Path;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite failed.
    #[error("recordings index: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Who and what a recording is, known when the spurt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpurtMeta {
    /// The event.
    pub event: String,
    /// The channel where the spurt started.
    pub channel: String,
    /// The talker's user id.
    pub user_id: String,
    /// Its display name.
    pub name: String,
    /// Its role (`"GENERAL"`, ...).
    pub role: String,
    /// Its connection id (a phone's session or a radio port).
    pub conn: u64,
    /// Wall-clock start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Part of an emergency broadcast.
    pub emergency: bool,
}

/// One recording as listed (`recording.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// Its id (also the file name: `ID.opus`).
    pub id: i64,
    /// The event.
    pub event: String,
    /// Every channel it reached, sorted.
    pub channels: Vec<String>,
    /// The talker's user id.
    pub user_id: String,
    /// The talker's display name.
    pub name: String,
    /// The talker's role.
    pub role: String,
    /// The talker's connection id.
    pub conn: u64,
    /// Start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Duration, ms (0 while it is being recorded).
    pub duration_ms: u64,
    /// File size, bytes.
    pub bytes: u64,
    /// How it ended: `"release"`, `"disconnect"`, a revoke code, `"interrupted"`; `None` while
    /// it is being recorded.
    pub ended: Option<String>,
    /// Part of an emergency broadcast.
    pub emergency: bool,
}

/// `admin.recordings` params: every filter optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Search {
    /// Only this channel.
    pub channel_id: Option<String>,
    /// Only this talker.
    pub user_id: Option<String>,
    /// Started at or after, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Started before, ms since the Unix epoch.
    pub until_ms: Option<u64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

/// The recordings that the retention rule removes, oldest first: every one that started more
/// than `retention_ms` before `now_ms`, then the oldest until the total is within `max_bytes`.
/// `oldest` are `(id, start_ms, bytes)` of the oldest finished recordings, oldest first (a
/// prefix of them is enough: the rule stops at the first one it keeps); `total` is the bytes
/// of all finished recordings.
pub fn to_delete(
    oldest: &[(i64, u64, u64)],
    total: u64,
    now_ms: u64,
    max_bytes: u64,
    retention_ms: u64,
) -> Vec<i64> {
    let mut total = total;
    let mut out = Vec::new();
    for &(id, start, bytes) in oldest {
        let old = now_ms.saturating_sub(start) > retention_ms;
        if old || total > max_bytes {
            out.push(id);
            total = total.saturating_sub(bytes);
        } else {
            break;
        }
    }
    out
}

/// The index, on its own connection to the state database.
pub struct Index {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL, user_id TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    conn INTEGER NOT NULL, start_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0, ended TEXT, emergency INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS recording_channels (
    recording_id INTEGER NOT NULL, channel TEXT NOT NULL,
    PRIMARY KEY (recording_id, channel)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recording_channels_by_channel
    ON recording_channels (channel, recording_id);";

impl Index {
    /// Opens (creating the tables) the index in the database file `path`.
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be opened or written.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let conn = crate::state::open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Records the start of a spurt; returns its id.
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the row cannot be written.
    pub fn begin(&mut self, m: &SpurtMeta) -> Result<i64, IndexError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO recordings (event, user_id, name, role, conn, start_ms, emergency)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                m.event,
                m.user_id,
                m.name,
                m.role,
                m.conn as i64,
                m.start_ms as i64,
                m.emergency
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT OR IGNORE INTO recording_channels (recording_id, channel) VALUES (?1, ?2)",
            params![id, m.channel],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Lists `channel` as reached by recording `id` too (an emergency broadcast).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the row cannot be written.
    pub fn add_channel(&self, id: i64, channel: &str) -> Result<(), IndexError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO recording_channels (recording_id, channel) VALUES (?1, ?2)",
            params![id, channel],
        )?;
        Ok(())
    }

    /// Closes recording `id`: its duration (ms), file size (bytes) and how it ended.
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the row cannot be written.
    pub fn finish(
        &self,
        id: i64,
        duration_ms: u64,
        bytes: u64,
        ended: &str,
    ) -> Result<(), IndexError> {
        self.conn.execute(
            "UPDATE recordings SET duration_ms = ?2, bytes = ?3, ended = ?4, complete = 1 WHERE id = ?1",
            params![id, duration_ms as i64, bytes as i64, ended],
        )?;
        Ok(())
    }

    /// Recordings still open: spurts a crash or power cut interrupted (at start), or being
    /// recorded (while running).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be read.
    pub fn interrupted(&self) -> Result<Vec<i64>, IndexError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM recordings WHERE complete = 0 ORDER BY id")?;
        let ids = stmt.query_map([], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn channels(&self, id: i64) -> Result<Vec<String>, IndexError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT channel FROM recording_channels WHERE recording_id = ?1 ORDER BY channel",
        )?;
        let chs = stmt.query_map([id], |r| r.get(0))?;
        Ok(chs.collect::<Result<_, _>>()?)
    }

    /// The columns [`Index::row`] reads, of `recordings r`.
    const COLUMNS: &'static str = "r.id, r.event, r.user_id, r.name, r.role, r.conn, r.start_ms, \
                                   r.duration_ms, r.bytes, r.ended, r.emergency";

    /// The recordings `sql` (selecting [`Index::COLUMNS`]) finds with `params`, each with its
    /// channels.
    fn query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Recording>, IndexError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| self.row(r))?;
        let mut out: Vec<Recording> = rows.collect::<Result<_, _>>()?;
        for rec in &mut out {
            rec.channels = self.channels(rec.id)?;
        }
        Ok(out)
    }

    fn row(&self, r: &rusqlite::Row) -> rusqlite::Result<Recording> {
        Ok(Recording {
            id: r.get(0)?,
            event: r.get(1)?,
            channels: Vec::new(),
            user_id: r.get(2)?,
            name: r.get(3)?,
            role: r.get(4)?,
            conn: r.get::<_, i64>(5)? as u64,
            start_ms: r.get::<_, i64>(6)? as u64,
            duration_ms: r.get::<_, i64>(7)? as u64,
            bytes: r.get::<_, i64>(8)? as u64,
            ended: r.get(9)?,
            emergency: r.get(10)?,
        })
    }

    /// One recording.
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be read.
    pub fn get(&self, id: i64) -> Result<Option<Recording>, IndexError> {
        let sql = format!("SELECT {} FROM recordings r WHERE r.id = ?1", Self::COLUMNS);
        Ok(self.query(&sql, [id])?.pop())
    }

    /// The recordings of `channel`, newest first: at most `limit`, with ids below `before`
    /// when given (paging).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be read.
    pub fn list(
        &self,
        channel: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Recording>, IndexError> {
        let sql = format!(
            "SELECT {} FROM recording_channels c JOIN recordings r ON r.id = c.recording_id
             WHERE c.channel = ?1 AND r.id < ?2 ORDER BY r.id DESC LIMIT ?3",
            Self::COLUMNS
        );
        self.query(
            &sql,
            params![channel, before.unwrap_or(i64::MAX), i64::from(limit)],
        )
    }

    /// Search (`admin.recordings`): recordings of `event`, newest first, at most `limit`,
    /// optionally only of `channel`, of `user_id`, started at or after `since_ms` and before
    /// `until_ms`.
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be read.
    pub fn search(&self, event: &str, q: &Search) -> Result<Vec<Recording>, IndexError> {
        let sql = format!(
            "SELECT {} FROM recordings r
             WHERE r.event = ?1
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM recording_channels c
                                           WHERE c.recording_id = r.id AND c.channel = ?2))
               AND (?3 IS NULL OR r.user_id = ?3)
               AND r.start_ms >= ?4 AND r.start_ms < ?5
             ORDER BY r.id DESC LIMIT ?6",
            Self::COLUMNS
        );
        self.query(
            &sql,
            params![
                event,
                q.channel_id,
                q.user_id,
                q.since_ms.unwrap_or(0) as i64,
                q.until_ms.map_or(i64::MAX, |u| u as i64),
                i64::from(q.limit.unwrap_or(50).clamp(1, 500)),
            ],
        )
    }

    /// `(id, start_ms, bytes)` of the `limit` oldest finished recordings, oldest first (for
    /// [`to_delete`]; by rowid, so without a scan).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be read.
    pub fn oldest(&self, limit: u32) -> Result<Vec<(i64, u64, u64)>, IndexError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, start_ms, bytes FROM recordings WHERE complete = 1 ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::from(limit)], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bytes of all finished recordings (one pass over the table: the recorder keeps the
    /// total itself and reads this at start and once per retention period).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the database cannot be read.
    pub fn total_bytes(&self) -> Result<u64, IndexError> {
        let total: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM recordings WHERE complete = 1",
            [],
            |r| r.get(0),
        )?;
        Ok(total.max(0) as u64)
    }

    /// Removes recording `id` from the index (its file is the caller's).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`] when the rows cannot be deleted.
    pub fn delete(&mut self, id: i64) -> Result<(), IndexError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM recording_channels WHERE recording_id = ?1",
            [id],
        )?;
        tx.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(channel: &str, start_ms: u64, emergency: bool) -> SpurtMeta {
        SpurtMeta {
            event: "ev".into(),
            channel: channel.into(),
            user_id: "ana".into(),
            name: "Ana".into(),
            role: "DISPATCH".into(),
            conn: 7,
            start_ms,
            emergency,
        }
    }

    #[test]
    fn retention_deletes_the_old_then_the_oldest_over_budget() {
        let rows = [
            (1, 0, 100),
            (2, 50_000, 100),
            (3, 90_000, 100),
            (4, 99_000, 100),
        ];
        // Nothing old, within budget.
        assert!(to_delete(&rows, 400, 100_000, 400, 200_000).is_empty());
        // Older than 60 s: only 1 (started 100 s ago; 2 started 50 s ago).
        assert_eq!(to_delete(&rows, 400, 100_000, 1_000, 60_000), vec![1]);
        // Over a 250-byte budget: the two oldest go.
        assert_eq!(to_delete(&rows, 400, 100_000, 250, 1_000_000), vec![1, 2]);
        // The total counts recordings beyond the rows given: 1,000 bytes in all.
        assert_eq!(
            to_delete(&rows[..2], 1_000, 100_000, 850, 1_000_000),
            vec![1, 2]
        );
        assert!(to_delete(&[], 0, 0, 0, 0).is_empty());
    }

    #[test]
    fn oldest_and_total_bytes_see_finished_recordings_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("radiogate.db")).unwrap();
        let a = ix.begin(&meta("ops", 1_000, false)).unwrap();
        ix.finish(a, 1_000, 300, "release").unwrap();
        let b = ix.begin(&meta("ops", 2_000, false)).unwrap();
        ix.finish(b, 1_000, 200, "release").unwrap();
        let _open = ix.begin(&meta("ops", 3_000, false)).unwrap();
        assert_eq!(ix.total_bytes().unwrap(), 500);
        assert_eq!(ix.oldest(1).unwrap(), vec![(a, 1_000, 300)]);
        assert_eq!(ix.oldest(10).unwrap().len(), 2);
        ix.delete(a).unwrap();
        assert_eq!(ix.total_bytes().unwrap(), 200);
    }

    #[test]
    fn spurts_are_indexed_listed_per_channel_newest_first_and_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("radiogate.db");
        let mut ix = Index::open(&db).unwrap();
        let a = ix.begin(&meta("ops", 1_000, false)).unwrap();
        ix.finish(a, 2_500, 9_000, "release").unwrap();
        // An emergency broadcast reaching two channels: one recording listed in both.
        let b = ix.begin(&meta("ops", 5_000, true)).unwrap();
        ix.add_channel(b, "gate").unwrap();
        ix.finish(b, 1_000, 4_000, "release").unwrap();
        let c = ix.begin(&meta("gate", 9_000, false)).unwrap();
        let ops = ix.list("ops", 10, None).unwrap();
        assert_eq!(ops.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(ops[0].channels, vec!["gate".to_string(), "ops".to_string()]);
        assert!(ops[0].emergency && ops[1].ended.as_deref() == Some("release"));
        assert_eq!(ix.list("gate", 1, None).unwrap()[0].id, c);
        assert_eq!(
            ix.list("gate", 10, Some(c)).unwrap()[0].id,
            b,
            "paging with before"
        );
        // c was never finished: a crash. The next start sees it.
        drop(ix);
        let mut ix = Index::open(&db).unwrap();
        assert_eq!(ix.interrupted().unwrap(), vec![c]);
        ix.finish(c, 300, 1_200, "interrupted").unwrap();
        assert!(ix.interrupted().unwrap().is_empty());
        assert_eq!(
            ix.get(c).unwrap().unwrap().ended.as_deref(),
            Some("interrupted")
        );
        assert_eq!(
            ix.oldest(10).unwrap(),
            vec![(a, 1_000, 9_000), (b, 5_000, 4_000), (c, 9_000, 1_200)]
        );
        ix.delete(a).unwrap();
        assert!(ix.get(a).unwrap().is_none());
        assert_eq!(ix.list("ops", 10, None).unwrap().len(), 1);
    }
}
