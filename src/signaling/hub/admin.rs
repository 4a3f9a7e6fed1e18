//! Admin views of the hub: status and force-disconnect (spec notes 000, 004).

use super::Hub;
use crate::access::role::Role;
use crate::signaling::protocol::close;
use crate::signaling::registry::{ConnId, Outbound};
use serde_json::{json, Value};

impl Hub {
    /// Connections by role, channels with members and floor holders, counters.
    pub fn status(&self) -> Value {
        let mut channels: Vec<Value> = self
            .channels
            .iter()
            .map(|(name, c)| {
                let members: Vec<Value> = c
                    .members
                    .iter()
                    .filter_map(|m| self.registry.get(*m))
                    .map(|i| json!({"connId": i.conn_id, "userId": i.user_id, "name": i.name}))
                    .collect();
                json!({"channelId": name, "event": c.event, "members": members,
                       "talker": c.floor.holder().map(|t| self.talker_value(t))})
            })
            .collect();
        channels.sort_by(|a, b| a["channelId"].as_str().cmp(&b["channelId"].as_str()));
        let by_role: serde_json::Map<String, Value> = Role::ALL
            .iter()
            .map(|r| (r.to_string(), json!(self.registry.count_by_role(*r))))
            .collect();
        json!({
            "connections": self.registry.len(),
            "connectionsByRole": by_role,
            "channels": channels,
            "broadcasts": self.broadcasts.keys().collect::<Vec<_>>(),
            "counters": self.counters,
        })
    }

    /// Closes each of `ids` with close code 4003 and `reason`; returns how many were open.
    pub fn force_disconnect(&self, ids: &[ConnId], reason: &str) -> usize {
        let mut n = 0;
        for id in ids {
            if self.registry.get(*id).is_some() {
                self.send(*id, Outbound::Close(close::FORCED, reason.to_string()));
                n += 1;
            }
        }
        n
    }
}
