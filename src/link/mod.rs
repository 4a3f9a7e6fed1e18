//! SHELL. Linked sites (issue 16, README "Linked sites"): this gateway's channels joined to
//! the same channels of an upstream gateway, as a site is joined to a reflector (SvxLink's
//! SvxReflector: one talker at a time per talk group, decided at the reflector).
//!
//! Per linked channel, a task ([`client`]) keeps one session open at the upstream, over
//! radiogate's own protocol, with a token carrying the `link` claim: `link.hello` (site names,
//! loop check), `channel.join`, `webrtc.offer` (one audio stream each way, [`media`]). At this
//! site the link is one participant of the hub (the "link participant"), joined to the channel:
//!
//! - **The upstream decides.** While linked, the hub refuses local floor requests
//!   ([`crate::hub::HubError::Linked`]); a session's request goes up through [`Links::request`]
//!   (`floor.request` with `onBehalfOf`, or `floor.priority_request` for Dispatch) and is
//!   granted here only when the upstream grants ([`crate::hub::Hub::link_grant`]). The
//!   upstream's `floor.taken` for a talker elsewhere becomes a local grant to the link
//!   participant, shown as `"NAME @ SITE"`; its `floor.revoke` and `floor.idle` revoke or free
//!   the local floor. A local floor going idle (release, disconnect) is released upstream.
//! - **Island mode.** When the upstream cannot be reached the channel is unlinked: local
//!   floors, site only (`admin.status` `links[].state`), and the task retries after 1, 2, 4,
//!   8, 16, then every 30 s. A relink takes effect at the next idle local floor, so a talk in
//!   progress is never cut.
//! - **No loops.** `link.hello` carries this site's name and the names above it; a gateway
//!   refuses a site whose path already contains it ([`Site::loop_with`]), and a site refuses an
//!   upstream whose chain contains it; both log it.
//!
//! - **Radio and console ports** at a site ask through [`Links::ask`] (their threads poll the
//!   answer) and share [`apply_decision`] with the sessions.
//! - **Emergency broadcast.** The upstream's comes down as `floor.taken` with `emergency` on
//!   each linked channel and one `broadcast.started` per event
//!   ([`crate::hub::Hub::link_broadcast_started`]); one started here goes up
//!   ([`Links::broadcast_up`]: `broadcast.start` with `onBehalfOf`). A talker the upstream
//!   names as this site's own ("Dan @ north", or the holder here already) is not applied again.

pub mod client;
pub mod media;
pub mod tls;

use crate::floor::Priority;
use crate::hub::{ConnId, Hub};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long a session waits for the upstream's floor decision.
pub const DECISION_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors of a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The upstream cannot be reached, or the connection ended.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream refused the link (token, permission, a loop).
    #[error("refused by the upstream: {0}")]
    Refused(String),
    /// Linking would close a loop of gateways.
    #[error("link loop: {0}")]
    Loop(String),
    /// The upstream denied a floor request; `holder` is who talks ("Ana @ north-gate").
    #[error("{message}")]
    Denied {
        /// The talker holding the floor, if named.
        holder: Option<String>,
        /// The upstream's text.
        message: String,
    },
    /// The upstream did not answer in time, or the link is not up.
    #[error("the upstream gateway did not answer")]
    NoAnswer,
    /// This site's hub refused to apply the decision (the talker left, or is not a member).
    #[error(transparent)]
    Local(#[from] crate::hub::HubError),
}

/// This gateway among linked gateways: its name, and the chains of gateways above it that its
/// links reported (for the loop check).
#[derive(Debug)]
pub struct Site {
    /// `[site] name`.
    pub name: String,
    /// By (link name, channel): the upstream's chain (its name, then the gateways above it).
    above: Mutex<BTreeMap<(String, String), Vec<String>>>,
}

impl Site {
    /// A site named `name`, with no link up yet.
    pub fn new(name: String) -> Self {
        Self {
            name,
            above: Mutex::new(BTreeMap::new()),
        }
    }

    /// This site's path upwards: its name, then every gateway above it (deduplicated).
    pub fn path(&self) -> Vec<String> {
        self.path_without(None)
    }

    /// The path this site tells the upstream of `link` (`link.hello`): as [`Site::path`]
    /// without what that link itself reported, which names the upstream (the upstream would
    /// find itself in the path and refuse a link that is no loop).
    pub fn path_for(&self, link: &str) -> Vec<String> {
        self.path_without(Some(link))
    }

    fn path_without(&self, link: Option<&str>) -> Vec<String> {
        let mut v = vec![self.name.clone()];
        for ((l, _), chain) in self.above.lock().iter() {
            if Some(l.as_str()) == link {
                continue;
            }
            for n in chain {
                if !v.contains(n) {
                    v.push(n.clone());
                }
            }
        }
        v
    }

    /// Records the chain above this site that `link`'s `channel` reported (`None`: down).
    pub fn set_above(&self, link: &str, channel: &str, chain: Option<Vec<String>>) {
        let mut a = self.above.lock();
        let key = (link.to_string(), channel.to_string());
        match chain {
            Some(c) => {
                a.insert(key, c);
            }
            None => {
                a.remove(&key);
            }
        }
    }

    /// Whether accepting a site whose path upwards is `site_path` (its name first) closes a
    /// loop: this gateway, or one above it, is already in that path. Returns the gateway met.
    pub fn loop_with(&self, site_path: &[String]) -> Option<String> {
        self.path().into_iter().find(|n| site_path.contains(n))
    }
}

/// A request a session or port hands to its channel's link.
#[derive(Debug)]
pub(crate) struct Request {
    /// The local talker's display name.
    name: String,
    /// What is asked.
    ask: Ask,
    /// The decision.
    reply: oneshot::Sender<Result<(), LinkError>>,
}

/// What a [`Request`] asks of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// The floor, with the talker's priority (Dispatch: pre-emptive, relayed as
    /// `floor.priority_request`).
    Floor(Priority),
    /// An emergency broadcast started here goes up and out (`broadcast.start` with
    /// `onBehalfOf`).
    Broadcast,
}

/// One link's state for `admin.status` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// The link's name (`[[link]] name`, else the upstream URL).
    pub name: String,
    /// The upstream URL.
    pub upstream: String,
    /// The linked channel.
    pub channel: String,
    /// `"linked"`, `"relinking"` (up, waiting for the local floor to be idle), `"site only"`.
    pub state: &'static str,
    /// The upstream's site name, once it said hello.
    pub upstream_site: Option<String>,
    /// Last WebSocket round trip (`link.hello`, every 5 s), ms.
    pub rtt_ms: Option<f64>,
    /// Why the link last went down or was refused.
    pub last_error: Option<String>,
    /// RTP packets received from the upstream.
    pub packets_down: u64,
    /// RTP packets sent to the upstream.
    pub packets_up: u64,
    /// Times the link came up.
    pub connects: u64,
}

/// One linked channel's handle.
#[derive(Debug)]
pub struct LinkChannel {
    requests: mpsc::Sender<Request>,
    status: Mutex<LinkStatus>,
    audio: Arc<media::AudioStats>,
}

impl LinkChannel {
    /// The link's state now.
    pub fn status(&self) -> LinkStatus {
        let mut s = self.status.lock().clone();
        s.packets_down = self
            .audio
            .packets_down
            .load(std::sync::atomic::Ordering::Relaxed);
        s.packets_up = self
            .audio
            .packets_up
            .load(std::sync::atomic::Ordering::Relaxed);
        s
    }
}

/// Every linked channel of this gateway, by channel id. Empty without `[[link]]`.
#[derive(Debug, Default)]
pub struct Links {
    by_channel: HashMap<String, Arc<LinkChannel>>,
}

impl Links {
    /// Whether no channel is linked.
    pub fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }

    /// Every link's state, by channel.
    pub fn status(&self) -> Vec<LinkStatus> {
        let mut v: Vec<LinkStatus> = self.by_channel.values().map(|l| l.status()).collect();
        v.sort_by(|a, b| a.channel.cmp(&b.channel));
        v
    }

    /// Asks the upstream of `channel` for the floor on behalf of local talker `name`; waits
    /// for the decision at most [`DECISION_TIMEOUT`].
    ///
    /// # Errors
    /// [`LinkError::Denied`] (someone talks: the holder named), [`LinkError::NoAnswer`]
    /// (timeout, or the link went down: the caller may then decide locally).
    pub async fn request(
        &self,
        channel: &str,
        name: &str,
        priority: Priority,
    ) -> Result<(), LinkError> {
        let rx = self.ask(channel, name, priority)?;
        match tokio::time::timeout(DECISION_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(LinkError::NoAnswer),
        }
    }

    /// Hands a floor request for `channel` (local talker `name`) to its link without waiting:
    /// the decision arrives on the returned receiver (for the radio and console ports, whose
    /// threads poll it; the caller bounds the wait, [`DECISION_TIMEOUT`]).
    ///
    /// # Errors
    /// [`LinkError::NoAnswer`] when `channel` has no link or its request queue is full.
    pub fn ask(
        &self,
        channel: &str,
        name: &str,
        priority: Priority,
    ) -> Result<oneshot::Receiver<Result<(), LinkError>>, LinkError> {
        self.send(channel, name, Ask::Floor(priority))
    }

    /// An emergency broadcast by local Dispatch user `name` started on `channels` (its
    /// event's): it goes up through the first of them that is linked, and the upstream
    /// broadcasts it to its channels and sites (issue 16). Returns the channel it went up
    /// through; `None` when none is linked, or its queue is full (logged: the broadcast then
    /// stays at this site).
    pub fn broadcast_up(&self, channels: &[String], name: &str) -> Option<String> {
        let channel = channels.iter().find(|c| self.by_channel.contains_key(*c))?;
        match self.send(channel, name, Ask::Broadcast) {
            Ok(_) => Some(channel.clone()),
            Err(e) => {
                tracing::warn!(channel = ?channel, error = %e, "emergency broadcast not sent up the link: it stays at this site");
                None
            }
        }
    }

    fn send(
        &self,
        channel: &str,
        name: &str,
        ask: Ask,
    ) -> Result<oneshot::Receiver<Result<(), LinkError>>, LinkError> {
        let link = self.by_channel.get(channel).ok_or(LinkError::NoAnswer)?;
        let (reply, rx) = oneshot::channel();
        link.requests
            .try_send(Request {
                name: name.to_string(),
                ask,
                reply,
            })
            .map_err(|_| LinkError::NoAnswer)?;
        Ok(rx)
    }
}

/// A floor request that [`Hub::floor_request_site`] sent up a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked<'a> {
    /// The local participant asking.
    pub id: ConnId,
    /// The linked channel.
    pub channel: &'a str,
    /// Its priority.
    pub priority: Priority,
    /// The talker as shown, if not the participant's own name.
    pub shown: Option<String>,
    /// The channel's link participant when the request went up.
    pub link: ConnId,
}

/// Applies the upstream's answer `res` to floor request `asked` (sessions, radio and console
/// ports share it). If the link went down meanwhile, the channel is site only and the
/// request is decided here. Returns the time-out timer's duration, ms.
///
/// # Errors
/// [`LinkError::Denied`] (the upstream named who talks); [`LinkError::NoAnswer`] (no answer
/// in time while the link stays up: try again); [`LinkError::Local`] when this hub refuses
/// (the talker left, a local holder is not pre-empted once decided here).
pub fn apply_decision(
    hub: &mut Hub,
    asked: Asked<'_>,
    res: Result<(), LinkError>,
    now: Instant,
) -> Result<u64, LinkError> {
    let Asked {
        id,
        channel,
        priority,
        shown,
        link,
    } = asked;
    if let Err(e @ LinkError::Denied { .. }) = res {
        return Err(e);
    }
    if hub.linked(channel) != Some(link) {
        return Ok(hub.floor_request_as(id, channel, priority, shown, now)?);
    }
    match res {
        Ok(()) => Ok(hub.link_grant(id, channel, priority, shown, false, now)?),
        Err(_) => Err(LinkError::NoAnswer),
    }
}

/// The display name of a talker elsewhere: as the upstream names it when it already names a
/// site (`"Ana @ north-gate"`), else with the upstream's site (`"Bob @ central"`).
pub fn remote_name(name: &str, upstream_site: &str) -> String {
    if name.contains(" @ ") {
        name.to_string()
    } else {
        format!("{name} @ {upstream_site}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_through_this_gateway_is_a_loop() {
        let hub = Site::new("hub".into());
        assert_eq!(hub.loop_with(&["a".into()]), None);
        assert_eq!(
            hub.loop_with(&["a".into(), "hub".into()]),
            Some("hub".into())
        );
        // A links up to B: B's path is then [b, a]; a site whose path holds a is refused.
        let b = Site::new("b".into());
        b.set_above("to-a", "ops", Some(vec!["a".into()]));
        b.set_above("to-a", "gate", Some(vec!["a".into()]));
        assert_eq!(b.path(), vec!["b".to_string(), "a".to_string()]);
        // What b tells a: not a's own chain (a would find itself), for every channel.
        assert_eq!(b.path_for("to-a"), vec!["b".to_string()]);
        b.set_above("to-c", "ops", Some(vec!["c".into()]));
        assert_eq!(b.path_for("to-a"), vec!["b".to_string(), "c".to_string()]);
        b.set_above("to-c", "ops", None);
        b.set_above("to-a", "gate", None);
        assert_eq!(b.loop_with(&["a".into()]), Some("a".into()));
        b.set_above("to-a", "ops", None);
        assert_eq!(b.loop_with(&["a".into()]), None);
    }

    #[test]
    fn remote_talkers_are_named_with_their_site() {
        assert_eq!(remote_name("Ana @ north", "hub"), "Ana @ north");
        assert_eq!(remote_name("Bob", "hub"), "Bob @ hub");
    }
}
