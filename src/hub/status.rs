//! Read-only views of the hub for the admin status, `/healthz` and the channel list sent on
//! connect. Typed; the signaling shell serializes them.

use super::{ConnId, Hub, HubCounters, TalkerRef};
use crate::access::role::Role;
use serde::Serialize;
use std::collections::BTreeMap;

/// One channel of a participant's channel list (`channel.list` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelEntry {
    /// The channel id.
    pub channel_id: String,
    /// Whether the participant has joined it.
    pub joined: bool,
    /// Its downlink slot, if joined and one was free.
    pub slot: Option<usize>,
    /// The floor holder, if any.
    pub talker: Option<TalkerRef>,
    /// Its display name (`[channel_names]`), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// On a channel this gateway links to an upstream (issue 16): `"linked"` or
    /// `"site only"`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<&'static str>,
}

/// Puts `entries` in the order of `first` (the token's channel order: the first is where a
/// phone starts talking, issue 12), then the rest by id; gives each its display name from
/// `names`.
pub fn arrange(
    entries: &mut [ChannelEntry],
    first: &[String],
    names: &std::collections::BTreeMap<String, String>,
) {
    let rank = |id: &str| first.iter().position(|c| c == id).unwrap_or(usize::MAX);
    entries.sort_by(|a, b| {
        rank(&a.channel_id)
            .cmp(&rank(&b.channel_id))
            .then_with(|| a.channel_id.cmp(&b.channel_id))
    });
    for e in entries {
        e.name = names.get(&e.channel_id).cloned();
    }
}

/// One row of `admin.connections`: what the registry knows of a participant and the
/// channels it has joined, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRow {
    /// The registry's entry (flattened into the row).
    #[serde(flatten)]
    pub info: super::ConnectionInfo,
    /// Joined channel ids, sorted.
    pub channels: Vec<String>,
}

/// One channel in the admin status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    /// The channel id.
    pub channel_id: String,
    /// Its event.
    pub event: String,
    /// Its members, by connection id.
    pub members: Vec<TalkerRef>,
    /// The floor holder, if any.
    pub talker: Option<TalkerRef>,
}

/// The hub part of `admin.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStatus {
    /// Registered participants.
    pub connections: usize,
    /// Participants per role name (`"ADMIN"`, `"DISPATCH"`, `"GENERAL"`).
    pub connections_by_role: BTreeMap<String, usize>,
    /// Channels with members, sorted by id.
    pub channels: Vec<ChannelStatus>,
    /// Connection ids of the participants broadcasting.
    pub broadcasts: Vec<ConnId>,
    /// Floor counters.
    pub counters: HubCounters,
}

impl Hub {
    /// The channel list of a participant: every permitted channel, every joined one and
    /// `also` (for an ADMIN, every channel of its event from the permission store: issue 13),
    /// sorted, without duplicates.
    pub fn channel_list(&self, id: ConnId, also: &[String]) -> Vec<ChannelEntry> {
        let Some(s) = self.sessions.get(&id) else {
            return Vec::new();
        };
        let ids: std::collections::BTreeSet<&String> = s
            .permitted
            .iter()
            .chain(s.joined.keys())
            .chain(also.iter())
            .collect();
        ids.into_iter()
            .map(|c| {
                let joined = s.joined.get(c);
                ChannelEntry {
                    channel_id: c.clone(),
                    joined: joined.is_some(),
                    slot: joined.copied().flatten(),
                    talker: self.holder_ref(c),
                    name: None,
                    link: self.link_state(c),
                }
            })
            .collect()
    }

    /// Every registered participant with the channels it has joined (`admin.connections`),
    /// ordered by connection id.
    pub fn connections(&self) -> Vec<ConnectionRow> {
        self.registry
            .all()
            .into_iter()
            .map(|info| ConnectionRow {
                channels: self
                    .sessions
                    .get(&info.conn_id)
                    .map(|s| s.joined.keys().cloned().collect())
                    .unwrap_or_default(),
                info,
            })
            .collect()
    }

    fn holder_ref(&self, channel: &str) -> Option<TalkerRef> {
        self.channels
            .get(channel)
            .and_then(|c| c.floor.holder())
            .map(|t| self.talker_ref(t.id, &t.name))
    }

    /// Participants by role, channels with members and floor holders, broadcasts, counters.
    pub fn status(&self) -> HubStatus {
        let mut channels: Vec<ChannelStatus> = self
            .channels
            .iter()
            .map(|(name, c)| ChannelStatus {
                channel_id: name.clone(),
                event: c.event.clone(),
                members: c
                    .members
                    .iter()
                    .filter(|m| self.registry.get(**m).is_some())
                    .map(|m| self.participant_ref(*m))
                    .collect(),
                talker: self.holder_ref(name),
            })
            .collect();
        channels.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
        HubStatus {
            connections: self.registry.len(),
            connections_by_role: Role::ALL
                .iter()
                .map(|r| (r.to_string(), self.registry.count_by_role(*r)))
                .collect(),
            channels,
            broadcasts: self.broadcasters(),
            counters: self.counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> ChannelEntry {
        ChannelEntry {
            channel_id: id.into(),
            joined: false,
            slot: None,
            talker: None,
            name: None,
            link: None,
        }
    }

    #[test]
    fn token_order_first_then_by_id_with_names() {
        let mut v: Vec<ChannelEntry> = ["a", "gate", "ops", "z"].into_iter().map(entry).collect();
        let names = [("ops".to_string(), "Operations".to_string())].into();
        arrange(&mut v, &["ops".into(), "gate".into()], &names);
        let ids: Vec<&str> = v.iter().map(|e| e.channel_id.as_str()).collect();
        assert_eq!(ids, ["ops", "gate", "a", "z"]);
        assert_eq!(v[0].name.as_deref(), Some("Operations"));
        assert_eq!(v[1].name, None);
    }
}
