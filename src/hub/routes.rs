//! The route set: who hears whom, derived from the hub's state. The shell turns it into the
//! media path's immutable route table (`sfu::routes`) whenever it changes.

use super::registry::ConnId;
use std::collections::BTreeMap;

/// One listener of a talker: the member `listener` hears the talker's uplink on its downlink
/// slot `slot`, as talk spurt number `grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The listening participant.
    pub listener: ConnId,
    /// The listener's downlink slot (transceiver index) for the channel.
    pub slot: usize,
    /// The floor grant number (identifies the talk spurt for the stream rewriter).
    pub grant: u64,
}

/// Every talker holding a floor, with its listeners (sorted). A talker with no listener has an
/// empty list. A talker holding several floors (an emergency broadcast) has the listeners of all.
pub type RouteSet = BTreeMap<ConnId, Vec<Route>>;
