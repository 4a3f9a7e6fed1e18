//! The connection registry: who is connected, from where, since when (spec note 004).
//!
//! Pure data: the hub keeps what it knows of each participant (a signaling session, a radio
//! or console port); the shells keep the I/O handles (outbound queues, media links) by the
//! same [`ConnId`].

use crate::access::role::Role;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Connection id, unique for the life of the process (assigned at upgrade, starting at 1).
/// Also the floor-control participant id.
pub type ConnId = u64;

/// What the registry knows of one participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Peer address of the TCP connection (0.0.0.0:0 for radio and console ports).
    pub remote_addr: SocketAddr,
    /// Wall-clock connect time, milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
}

/// Connections by id, with lookups by user and device.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    by_id: HashMap<ConnId, ConnectionInfo>,
}

impl Registry {
    /// Adds (or replaces) a connection.
    pub fn add(&mut self, info: ConnectionInfo) {
        self.by_id.insert(info.conn_id, info);
    }

    /// Removes a connection; returns what was known of it.
    pub fn remove(&mut self, id: ConnId) -> Option<ConnectionInfo> {
        self.by_id.remove(&id)
    }

    /// The connection's info.
    pub fn get(&self, id: ConnId) -> Option<&ConnectionInfo> {
        self.by_id.get(&id)
    }

    /// Every connection, ordered by id.
    pub fn all(&self) -> Vec<ConnectionInfo> {
        let mut v: Vec<_> = self.by_id.values().cloned().collect();
        v.sort_by_key(|i| i.conn_id);
        v
    }

    /// Connection ids of a user, ascending.
    pub fn by_user(&self, user_id: &str) -> Vec<ConnId> {
        self.ids_where(|i| i.user_id == user_id)
    }

    /// Connection ids of a device (every connection carrying that `device` claim), ascending.
    pub fn by_device(&self, device_id: &str) -> Vec<ConnId> {
        self.ids_where(|i| i.device_id.as_deref() == Some(device_id))
    }

    /// Connection ids of an event, ascending.
    pub fn by_event(&self, event: &str) -> Vec<ConnId> {
        self.ids_where(|i| i.event == event)
    }

    /// Number of connections per role.
    pub fn count_by_role(&self, role: Role) -> usize {
        self.by_id.values().filter(|i| i.role == role).count()
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
            .filter(|i| f(i))
            .map(|i| i.conn_id)
            .collect();
        v.sort_unstable();
        v
    }
}
