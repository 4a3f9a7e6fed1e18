//! SQLite side of the audit log: the writer loop and the filtered reader.

use super::{AuditError, Entry, Msg};
use crate::state::write_health::{WriteMonitor, RETRY_INTERVAL};
use parking_lot::Mutex;
use rusqlite::{params_from_iter, Connection};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL,
    event   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts_ms);
CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor, ts_ms);
";

/// Largest batch written in one transaction.
const BATCH: usize = 256;

/// Entries kept in memory while the database cannot be written (a full card), about 300 bytes
/// each; beyond this the oldest are dropped and counted (`stateWrites.audit.dropped`).
pub const BACKLOG_CAPACITY: usize = 8192;

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = crate::state::open_connection(path)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

pub(super) struct Writer {
    conn: Connection,
    retention: u64,
    health: WriteMonitor,
}

impl Writer {
    pub(super) fn open(
        path: &Path,
        retention: u64,
        health: WriteMonitor,
    ) -> Result<Self, AuditError> {
        Ok(Self {
            conn: open(path)?,
            retention,
            health,
        })
    }

    /// Drains the queue until every sender is gone. Entries whose write failed (a full or
    /// failing card) stay in `backlog`, oldest first, at most [`BACKLOG_CAPACITY`] (older ones
    /// are dropped and counted), and are written again every [`RETRY_INTERVAL`] and whenever
    /// new entries arrive after that.
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let mut backlog: VecDeque<Entry> = VecDeque::new();
        let mut acks = Vec::new();
        let mut retry_at: Option<Instant> = None;
        loop {
            let first = match retry_at {
                None => rx.recv().ok(),
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.write_backlog(&mut backlog);
                        return;
                    }
                },
            };
            if first.is_none() && retry_at.is_none() {
                return; // every sender is gone and nothing is kept
            }
            let mut next = first;
            while let Some(msg) = next {
                match msg {
                    Msg::Entry(e) => backlog.push_back(*e),
                    Msg::Flush(ack) => acks.push(ack),
                }
                next = if backlog.len() < BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if retry_at.is_none_or(|at| Instant::now() >= at) {
                retry_at = if self.write_backlog(&mut backlog) {
                    None
                } else {
                    Some(Instant::now() + RETRY_INTERVAL)
                };
            }
            if backlog.len() > BACKLOG_CAPACITY {
                let excess = backlog.len() - BACKLOG_CAPACITY;
                backlog.drain(..excess);
                self.health.dropped(excess);
            }
            if retry_at.is_some() {
                self.health.set_pending(backlog.len());
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    /// Writes the backlog in batches of [`BATCH`]; returns whether it is now empty. A failure
    /// keeps the rest and is reported to the monitor.
    fn write_backlog(&mut self, backlog: &mut VecDeque<Entry>) -> bool {
        while !backlog.is_empty() {
            let n = backlog.len().min(BATCH);
            let batch: Vec<&Entry> = backlog.iter().take(n).collect();
            match self.write(&batch) {
                Ok(()) => {
                    backlog.drain(..n);
                    self.health.succeeded(backlog.len());
                }
                Err(e) => {
                    self.health.failed(&e, backlog.len());
                    return false;
                }
            }
        }
        true
    }

    fn write(&mut self, batch: &[&Entry]) -> Result<(), rusqlite::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit (ts_ms, actor, role, event, action, target, outcome, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in batch {
                stmt.execute(rusqlite::params![
                    e.ts_ms as i64,
                    e.actor,
                    e.role,
                    e.event,
                    e.action.name(),
                    e.target,
                    e.outcome,
                    e.details.to_string(),
                ])?;
            }
            tx.execute(
                "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1",
                [self.retention as i64],
            )?;
        }
        tx.commit()
    }
}

/// Filters for [`super::Audit::query`]; every field optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditQuery {
    /// Only entries whose actor or target is this user id.
    pub user_id: Option<String>,
    /// Only this action name (e.g. `"FLOOR_GRANTED"`).
    pub action: Option<String>,
    /// Only entries at or after this time, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Only entries before this time, ms since the Unix epoch.
    pub until_ms: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// One stored entry as returned by queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    /// Row id (increasing).
    pub id: i64,
    /// ms since the Unix epoch.
    pub ts_ms: i64,
    /// Who acted.
    pub actor: String,
    /// Actor's role.
    pub role: String,
    /// Event id.
    pub event: String,
    /// Action name.
    pub action: String,
    /// Target.
    pub target: String,
    /// Outcome.
    pub outcome: String,
    /// Details (JSON).
    pub details: serde_json::Value,
    /// The entry as a sentence ([`super::sentence::sentence`]).
    pub text: String,
}

pub(super) struct Reader {
    conn: Mutex<Connection>,
}

impl Reader {
    pub(super) fn open(path: &Path) -> Result<Self, AuditError> {
        Ok(Self {
            conn: Mutex::new(open(path)?),
        })
    }

    pub(super) fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, AuditError> {
        let mut sql = String::from(
            "SELECT id, ts_ms, actor, role, event, action, target, outcome, details FROM audit WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(u) = &q.user_id {
            sql.push_str(" AND (actor = ? OR target = ?)");
            args.push(u.clone().into());
            args.push(u.clone().into());
        }
        if let Some(a) = &q.action {
            sql.push_str(" AND action = ?");
            args.push(a.clone().into());
        }
        if let Some(s) = q.since_ms {
            sql.push_str(" AND ts_ms >= ?");
            args.push((s as i64).into());
        }
        if let Some(u) = q.until_ms {
            sql.push_str(" AND ts_ms < ?");
            args.push((u as i64).into());
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(i64::from(q.limit.unwrap_or(100).min(1000)).into());
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            let details: String = r.get(8)?;
            Ok(AuditRow {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                actor: r.get(2)?,
                role: r.get(3)?,
                event: r.get(4)?,
                action: r.get(5)?,
                target: r.get(6)?,
                outcome: r.get(7)?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                text: String::new(),
            })
        })?;
        let mut rows = rows.collect::<Result<Vec<_>, _>>()?;
        for r in &mut rows {
            r.text = super::sentence::sentence(r);
        }
        Ok(rows)
    }
}
