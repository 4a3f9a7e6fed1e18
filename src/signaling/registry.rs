//! The connection registry: who is connected, from where, since when (spec note 004).
//!
//! Later issues (admin force-disconnect, permission push) find sessions here by connection,
//! user or device id.

use crate::access::role::Role;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Connection id, unique for the life of the process (assigned at upgrade, starting at 1).
pub type ConnId = u64;

/// What the registry knows of one signaling connection.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Connection id (also the floor-control participant id).
    pub conn_id: ConnId,
    /// User id (`sub` claim).
    pub user_id: String,
    /// Display name (`name` claim).
    pub name: String,
    /// Device id (`device` claim) for hardware clients, if any.
    pub device_id: Option<String>,
    /// Role from the token.
    pub role: Role,
    /// Event id from the token.
    pub event: String,
    /// Peer address of the TCP connection.
    pub remote_addr: SocketAddr,
    /// Wall-clock connect time, milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
}

impl ConnectionInfo {
    /// Milliseconds since the Unix epoch for `t` (0 before the epoch).
    pub fn epoch_ms(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A message for a session's WebSocket writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A text frame (a JSON-RPC reply or notification).
    Frame(String),
    /// Close the WebSocket with this code and reason, then end the session.
    Close(u16, String),
}

/// Sending half of a session's outbound queue.
pub type OutboundTx = mpsc::UnboundedSender<Outbound>;

/// Connections by id, with indexes by user and device.
#[derive(Default)]
pub struct Registry {
    by_id: HashMap<ConnId, (ConnectionInfo, OutboundTx)>,
}

impl Registry {
    /// Adds a connection.
    pub fn add(&mut self, info: ConnectionInfo, tx: OutboundTx) {
        self.by_id.insert(info.conn_id, (info, tx));
    }

    /// Removes a connection; returns what was known of it.
    pub fn remove(&mut self, id: ConnId) -> Option<ConnectionInfo> {
        self.by_id.remove(&id).map(|(i, _)| i)
    }

    /// The connection's info.
    pub fn get(&self, id: ConnId) -> Option<&ConnectionInfo> {
        self.by_id.get(&id).map(|(i, _)| i)
    }

    /// Queues a message for one connection (ignored if it is gone).
    pub fn send(&self, id: ConnId, msg: Outbound) {
        if let Some((_, tx)) = self.by_id.get(&id) {
            let _ = tx.send(msg);
        }
    }

    /// Every connection, ordered by id.
    pub fn all(&self) -> Vec<ConnectionInfo> {
        let mut v: Vec<_> = self.by_id.values().map(|(i, _)| i.clone()).collect();
        v.sort_by_key(|i| i.conn_id);
        v
    }

    /// Connection ids of a user.
    pub fn by_user(&self, user_id: &str) -> Vec<ConnId> {
        self.ids_where(|i| i.user_id == user_id)
    }

    /// Connection ids of a device (every connection carrying that `device` claim).
    pub fn by_device(&self, device_id: &str) -> Vec<ConnId> {
        self.ids_where(|i| i.device_id.as_deref() == Some(device_id))
    }

    /// Number of connections per role.
    pub fn count_by_role(&self, role: Role) -> usize {
        self.by_id.values().filter(|(i, _)| i.role == role).count()
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn ids_where(&self, f: impl Fn(&ConnectionInfo) -> bool) -> Vec<ConnId> {
        let mut v: Vec<_> = self
            .by_id
            .values()
            .filter(|(i, _)| f(i))
            .map(|(i, _)| i.conn_id)
            .collect();
        v.sort_unstable();
        v
    }
}
