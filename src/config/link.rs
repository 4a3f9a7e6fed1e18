//! `[site]` and `[[link]]` (issue 16, README "Linked sites"): this gateway's site name and the
//! upstream gateways its channels are linked to.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[site]`: who this gateway is among linked gateways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// This gateway's site name ("north-gate"): the name its own talkers are shown with at
    /// linked sites (`"Ana @ north-gate"`) and the name a link loop is detected by. 1..=64
    /// characters, no control characters, no `@`. Empty (the default): the host name.
    pub name: String,
}

impl SiteConfig {
    /// Whether nothing is set (left out of `print-config`).
    pub fn is_default(&self) -> bool {
        self.name.is_empty()
    }

    /// The configured name, else the host name (`/proc/sys/kernel/hostname`), else
    /// `"radiogate"`.
    pub fn resolved_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().replace('@', "-"))
            .filter(|h| crate::access::token::valid_site_name(h))
            .unwrap_or_else(|| "radiogate".to_string())
    }
}

/// Which channels a link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LinkChannels {
    /// `"event"`: every channel of the link token's event in the permission store.
    Event(String),
    /// The channel ids.
    List(Vec<String>),
}

/// One `[[link]]`: an upstream gateway and the channels linked to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The upstream's WebSocket URL: `ws://HOST:PORT` or `wss://HOST:PORT` (the path `/ws`
    /// is added when the URL has none).
    pub upstream: String,
    /// The token this site uses at the upstream: signed by the upstream's key, with the
    /// `link` claim (`radiogate token --link SITE` there). Or `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the token (read at start; surrounding whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The channel ids to link, or `"event"` for every channel of the token's event.
    pub channels: LinkChannels,
    /// A name for this link in logs and `admin.status` (default: the upstream URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `wss://`: a PEM file with the certificate(s) to trust for the upstream (its
    /// self-signed certificate, or the CA that signed it). Required for `wss://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Why a `[site]` or `[[link]]` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkConfigError {
    /// `[site] name` is not a valid site name.
    #[error("site.name: 1..=64 characters without control characters or '@'")]
    SiteName,
    /// A link's URL is not `ws://` or `wss://`.
    #[error("link[{0}].upstream: must start with ws:// or wss://")]
    Url(usize),
    /// Neither or both of `token` and `token_file`.
    #[error("link[{0}]: give exactly one of token and token_file")]
    Token(usize),
    /// `wss://` without `ca_file`.
    #[error("link[{0}].ca_file: required for a wss:// upstream")]
    CaFile(usize),
    /// An empty channel list, an empty id, or a string other than `"event"`.
    #[error("link[{0}].channels: a list of channel ids or \"event\"")]
    Channels(usize),
    /// A channel is linked by two links.
    #[error("link[{0}].channels: {1:?} is linked by an earlier link too")]
    Twice(usize, String),
}

/// Checks `[site]` and every `[[link]]`.
///
/// # Errors
/// The first [`LinkConfigError`].
pub fn validate(site: &SiteConfig, links: &[LinkConfig]) -> Result<(), LinkConfigError> {
    if !site.name.is_empty() && !crate::access::token::valid_site_name(&site.name) {
        return Err(LinkConfigError::SiteName);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, l) in links.iter().enumerate() {
        let tls = l.upstream.starts_with("wss://");
        if !tls && !l.upstream.starts_with("ws://") {
            return Err(LinkConfigError::Url(i));
        }
        if l.token.is_some() == l.token_file.is_some() {
            return Err(LinkConfigError::Token(i));
        }
        if tls && l.ca_file.is_none() {
            return Err(LinkConfigError::CaFile(i));
        }
        match &l.channels {
            LinkChannels::Event(s) if s == "event" => {}
            LinkChannels::List(v)
                if !v.is_empty() && v.iter().all(|c| !c.trim().is_empty() && c.len() <= 256) =>
            {
                for c in v {
                    if !seen.insert(c.clone()) {
                        return Err(LinkConfigError::Twice(i, c.clone()));
                    }
                }
            }
            _ => return Err(LinkConfigError::Channels(i)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(up: &str, channels: LinkChannels) -> LinkConfig {
        LinkConfig {
            upstream: up.into(),
            token: Some("t".into()),
            token_file: None,
            channels,
            name: None,
            ca_file: None,
        }
    }

    #[test]
    fn checks_urls_tokens_and_channels() {
        let site = SiteConfig::default();
        let ok = link("ws://10.0.0.1:8443", LinkChannels::List(vec!["ops".into()]));
        assert_eq!(validate(&site, std::slice::from_ref(&ok)), Ok(()));
        let ev = link("ws://h:1", LinkChannels::Event("event".into()));
        assert_eq!(validate(&site, &[ev]), Ok(()));
        let bad = link("http://h", LinkChannels::List(vec!["ops".into()]));
        assert_eq!(validate(&site, &[bad]), Err(LinkConfigError::Url(0)));
        let wss = link("wss://h:1", LinkChannels::List(vec!["a".into()]));
        assert_eq!(validate(&site, &[wss]), Err(LinkConfigError::CaFile(0)));
        let odd = link("ws://h:1", LinkChannels::Event("all".into()));
        assert_eq!(
            validate(&site, &[odd]),
            Err(LinkConfigError::Channels(1 - 1))
        );
        let twice = [ok.clone(), ok];
        assert_eq!(
            validate(&site, &twice),
            Err(LinkConfigError::Twice(1, "ops".into()))
        );
        let named = SiteConfig { name: "a@b".into() };
        assert_eq!(validate(&named, &[]), Err(LinkConfigError::SiteName));
    }
}
