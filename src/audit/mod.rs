//! The audit log: every security- and operations-relevant action, in SQLite, written off the
//! request path (spec note 002: "fire-and-forget, core operations never blocked").
//!
//! [`Audit::record`] puts an entry on a bounded queue (`try_send`: a full queue never blocks a
//! call; the entry is dropped and counted in [`Audit::dropped`]). A writer thread drains the
//! queue in batches into the `audit` table of `STATE_DIR/radiogate.db` (its own connection; WAL
//! lets readers and the permission store work at the same time). [`Audit::query`] reads with
//! filters for the admin `admin.audit` method.
//!
//! A write that fails (a full or failing card) does not lose the entries: the writer keeps them
//! in memory (at most [`BACKLOG_CAPACITY`], oldest dropped first and counted), retries
//! every [`crate::state::write_health::RETRY_INTERVAL`], and reports to [`Audit::write_health`]
//! (counted, logged at most once a minute, shown in `/healthz` `stateWrites.audit`).

pub mod sentence;
mod store;

pub use store::{AuditQuery, AuditRow, BACKLOG_CAPACITY};

use crate::state::write_health::WriteMonitor;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

/// Entries the queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite failed (open, write, query).
    #[error("audit log: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread could not be started.
    #[error("audit log: cannot start writer: {0}")]
    Thread(std::io::Error),
}

/// What happened. Stored as the SCREAMING_SNAKE_CASE name (e.g. `FLOOR_GRANTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Action {
    AuthSuccess,
    AuthFailure,
    Connect,
    Disconnect,
    ChannelJoin,
    ChannelLeave,
    ChannelJoinDenied,
    FloorGranted,
    FloorDenied,
    FloorReleased,
    FloorRevoked,
    FloorPreempted,
    BroadcastStart,
    BroadcastStop,
    PermissionDenied,
    PermissionChange,
    Ban,
    Unban,
    ForceDisconnect,
    RateLimited,
    /// A join link issued from the admin panel (`admin.issueLink`, issue 13).
    TokenIssued,
    /// A session's token renewed (`session.renew`, issue 12).
    TokenRenewed,
    /// A recording deleted by an admin (`admin.recording_delete`, issue 14).
    RecordingDeleted,
}

impl Action {
    /// Every action, for tests and documentation.
    pub const ALL: [Action; 23] = [
        Action::AuthSuccess,
        Action::AuthFailure,
        Action::Connect,
        Action::Disconnect,
        Action::ChannelJoin,
        Action::ChannelLeave,
        Action::ChannelJoinDenied,
        Action::FloorGranted,
        Action::FloorDenied,
        Action::FloorReleased,
        Action::FloorRevoked,
        Action::FloorPreempted,
        Action::BroadcastStart,
        Action::BroadcastStop,
        Action::PermissionDenied,
        Action::PermissionChange,
        Action::Ban,
        Action::Unban,
        Action::ForceDisconnect,
        Action::RateLimited,
        Action::TokenIssued,
        Action::TokenRenewed,
        Action::RecordingDeleted,
    ];

    /// The stored name, e.g. `"FLOOR_GRANTED"`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Who acted: a user id, a remote address for unauthenticated attempts, or `"system"`.
    pub actor: String,
    /// The actor's role (`"ADMIN"`, ...) or empty when unknown.
    pub role: String,
    /// The event id, or empty.
    pub event: String,
    /// What happened.
    pub action: Action,
    /// What it happened to: a channel id, a user id, a method name; may be empty.
    pub target: String,
    /// `"ok"`, `"denied"`, `"error"` or a short reason code.
    pub outcome: String,
    /// Free-form JSON details.
    pub details: serde_json::Value,
}

impl Entry {
    /// An entry stamped now with empty role/event/target, outcome `"ok"` and no details.
    pub fn new(actor: impl Into<String>, action: Action) -> Self {
        Self {
            ts_ms: crate::clock::unix_ms(),
            ..Self::unstamped(actor, action)
        }
    }

    /// Like [`Entry::new`] with `ts_ms` 0, for pure code that reads no clock (the hub): the
    /// shell that records it stamps the wall clock.
    pub fn unstamped(actor: impl Into<String>, action: Action) -> Self {
        Self {
            ts_ms: 0,
            actor: actor.into(),
            role: String::new(),
            event: String::new(),
            action,
            target: String::new(),
            outcome: "ok".into(),
            details: serde_json::Value::Null,
        }
    }

    /// Sets role and event.
    pub fn who(mut self, role: impl ToString, event: impl Into<String>) -> Self {
        self.role = role.to_string();
        self.event = event.into();
        self
    }

    /// Sets the target.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Handle on the audit log; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    reader: Arc<store::Reader>,
    health: WriteMonitor,
}

enum Msg {
    Entry(Box<Entry>),
    Flush(std::sync::mpsc::Sender<()>),
}

impl Audit {
    /// Opens the audit table in the database file and starts the writer thread.
    /// `retention` entries at most are kept (older ones are deleted as new ones arrive).
    ///
    /// # Errors
    /// [`AuditError`] when the database cannot be opened or the thread cannot start.
    pub fn open(path: &Path, retention: u64) -> Result<Self, AuditError> {
        let health = WriteMonitor::new("audit");
        let writer = store::Writer::open(path, retention, health.clone())?;
        let reader = Arc::new(store::Reader::open(path)?);
        let (tx, rx) = sync_channel::<Msg>(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(AuditError::Thread)?;
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            reader,
            health,
        })
    }

    /// Queues an entry; never blocks. A full queue drops the entry and counts it.
    pub fn record(&self, entry: Entry) {
        tracing::debug!(action = ?entry.action, actor = %entry.actor, target = %entry.target,
                        outcome = %entry.outcome, "audit");
        match self.tx.try_send(Msg::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Entries dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (blocking, at most `limit`) until everything queued before this call has been
    /// handed to the database (written, or kept in memory for a retry when the write failed:
    /// see [`Audit::write_health`]). Used at shutdown and by tests.
    pub fn flush(&self, limit: std::time::Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(limit).is_ok()
    }

    /// Failed writes of the audit log (counters, entries kept in memory, since when).
    pub fn write_health(&self) -> &WriteMonitor {
        &self.health
    }

    /// Reads entries matching `q`, newest first.
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] when the query fails.
    pub fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, AuditError> {
        self.reader.query(q)
    }
}

#[cfg(test)]
mod tests;
