//! SQLite side of the audit log: the writer loop and the filtered reader.

use super::{AuditError, Entry, Msg};
use parking_lot::Mutex;
use rusqlite::{params_from_iter, Connection};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::mpsc::Receiver;

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

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = crate::state::open_connection(path)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

pub(super) struct Writer {
    conn: Connection,
    retention: u64,
}

impl Writer {
    pub(super) fn open(path: &Path, retention: u64) -> Result<Self, AuditError> {
        Ok(Self {
            conn: open(path)?,
            retention,
        })
    }

    /// Drains the queue until every sender is gone.
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        let mut acks = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Entry(e) => batch.push(*e),
                    Msg::Flush(ack) => acks.push(ack),
                }
                next = if batch.len() < BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if let Err(e) = self.write(&batch) {
                tracing::error!(error = %e, lost = batch.len(), "audit write failed");
            }
            batch.clear();
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    fn write(&mut self, batch: &[Entry]) -> Result<(), rusqlite::Error> {
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
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
