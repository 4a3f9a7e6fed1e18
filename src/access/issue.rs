//! Join links issued from the admin panel (issue 13, `admin.issueLink`): a token for a user of
//! the admin's own event, on channels picked from that event's channels, with a TTL capped by
//! `auth.max_ttl` (the admin methods make the link and its QR code), and renewals
//! (`session.renew`, issue 12).
//!
//! Pure: the caller passes the event's channels, the link base and the time. Only a gateway
//! that holds a signing key (HS256 secret, or `auth.private_key_file` for RS256/EdDSA) is an
//! issuer; with only a control plane's public key there is no [`LinkIssuer`].

use super::role::Role;
use super::token::{parse_ttl, Claims, KeyMaterial, ParseTtlError, TokenError, TokenMinter};
use serde::Deserialize;
use std::time::Duration;

/// Longest user id, display name or channel id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Why a link was not issued. `Display` is a sentence for the admin.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The user id is empty, too long or has control characters.
    #[error("user id must be 1 to {MAX_ID_BYTES} bytes without control characters")]
    BadUserId,
    /// The name is too long or has control characters.
    #[error("name must be at most {MAX_ID_BYTES} bytes without control characters")]
    BadName,
    /// No channel picked.
    #[error("pick at least one channel")]
    NoChannels,
    /// A channel that is not one of the event's.
    #[error("channel {0:?} is not a channel of this event")]
    NotInEvent(String),
    /// The TTL does not parse.
    #[error("ttl: {0}")]
    Ttl(#[from] ParseTtlError),
    /// The TTL is longer than `auth.max_ttl`.
    #[error("ttl: {asked_secs} s is longer than auth.max_ttl ({max_secs} s)")]
    TtlTooLong {
        /// The TTL asked for, seconds.
        asked_secs: u64,
        /// `auth.max_ttl`, seconds.
        max_secs: u64,
    },
    /// Signing failed.
    #[error("signing: {0}")]
    Mint(#[from] TokenError),
    /// The base URL has no `https://` or `http://` scheme, or has spaces or control characters.
    #[error("base URL must start with https:// (or http://) and have no spaces")]
    BadBaseUrl,
}

/// What the admin asks for (`admin.issueLink` params).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LinkRequest {
    /// The new token's `sub`.
    pub user_id: String,
    /// Display name; empty or missing means the user id.
    #[serde(default)]
    pub name: String,
    /// The role.
    pub role: Role,
    /// Channel ids, each one of the event's; order kept (the first is where the phone starts).
    pub channels: Vec<String>,
    /// Lifetime like `"8h"`, `"30m"`, `"2d"` or seconds; missing means `auth.default_ttl`.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Where the phone opens the gateway, e.g. `"https://pi.local:8443"` (the admin panel
    /// sends the address it was opened at); missing means the gateway's first join URL.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// An issued token: what the admin methods turn into a link and a QR code.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed token.
    pub token: String,
    /// The link base to put before `/?token=` (checked: `https://` or `http://`).
    pub base: String,
    /// The claims signed.
    pub claims: Claims,
}

/// Signs links for one gateway.
#[derive(Debug, Clone)]
pub struct LinkIssuer {
    minter: TokenMinter,
    default_ttl: Duration,
    max_ttl: Duration,
}

fn clean(s: &str) -> bool {
    s.len() <= MAX_ID_BYTES && !s.chars().any(char::is_control)
}

impl LinkIssuer {
    /// An issuer signing with `minter`; `default_ttl` and `max_ttl` are `auth.default_ttl` and
    /// `auth.max_ttl`.
    pub fn new(minter: TokenMinter, default_ttl: Duration, max_ttl: Duration) -> Self {
        Self {
            minter,
            default_ttl,
            max_ttl,
        }
    }

    /// An issuer for `key` when it can sign (HS256, or RS256/EdDSA with the private key);
    /// `None` for a verify-only key (tokens come from the control plane).
    pub fn for_key(key: &KeyMaterial, default_ttl: Duration, max_ttl: Duration) -> Option<Self> {
        TokenMinter::new(key)
            .ok()
            .map(|m| Self::new(m, default_ttl, max_ttl))
    }

    /// A fresh token for a session's `claims` (`session.renew`, issue 12): the same claims with
    /// `iat` = `now_secs` and `exp` = `now_secs` + `auth.default_ttl`. Returns the token and its
    /// claims.
    ///
    /// # Errors
    /// [`IssueError::Mint`] if signing fails.
    pub fn renew(&self, claims: &Claims, now_secs: u64) -> Result<(String, Claims), IssueError> {
        let mut c = claims.clone();
        c.iat = now_secs;
        c.exp = now_secs + self.default_ttl.as_secs();
        Ok((self.minter.mint(&c)?, c))
    }

    /// `auth.default_ttl`.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// `auth.max_ttl`.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Issues a link for `req` in `event`, whose channels are `event_channels`, opened at
    /// `req.base_url` or else `base` (e.g. `https://pi.local:8443`), at `now_secs` (seconds
    /// since the Unix epoch).
    ///
    /// # Errors
    /// [`IssueError`]: a bad user id or name, no channel, a channel not in `event_channels`,
    /// a TTL that does not parse or exceeds `auth.max_ttl`, a base URL without a scheme, a
    /// signing failure.
    pub fn issue(
        &self,
        event: &str,
        event_channels: &[String],
        req: LinkRequest,
        base: &str,
        now_secs: u64,
    ) -> Result<Issued, IssueError> {
        let base = req.base_url.as_deref().unwrap_or(base);
        if !(base.starts_with("https://") || base.starts_with("http://"))
            || base.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(IssueError::BadBaseUrl);
        }
        let user = req.user_id.trim().to_string();
        if user.is_empty() || !clean(&user) {
            return Err(IssueError::BadUserId);
        }
        let name = req.name.trim().to_string();
        if !clean(&name) {
            return Err(IssueError::BadName);
        }
        let mut channels: Vec<String> = Vec::new();
        for c in req.channels {
            if !event_channels.contains(&c) {
                return Err(IssueError::NotInEvent(c));
            }
            if !channels.contains(&c) {
                channels.push(c);
            }
        }
        if channels.is_empty() {
            return Err(IssueError::NoChannels);
        }
        let ttl = match req.ttl.as_deref().map(str::trim) {
            None | Some("") => self.default_ttl,
            Some(t) => parse_ttl(t)?,
        };
        if ttl > self.max_ttl {
            return Err(IssueError::TtlTooLong {
                asked_secs: ttl.as_secs(),
                max_secs: self.max_ttl.as_secs(),
            });
        }
        let claims = Claims {
            name: if name.is_empty() { user.clone() } else { name },
            sub: user,
            event: event.to_string(),
            role: req.role,
            channels,
            device: None,
            link: None,
            iat: now_secs,
            exp: now_secs + ttl.as_secs(),
        };
        let token = self.minter.mint(&claims)?;
        Ok(Issued {
            token,
            base: base.to_string(),
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TokenVerifier;

    fn issuer() -> (LinkIssuer, TokenVerifier) {
        let key = KeyMaterial::Hs256 {
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        };
        (
            LinkIssuer::new(
                TokenMinter::new(&key).unwrap(),
                Duration::from_secs(8 * 3600),
                Duration::from_secs(7 * 86_400),
            ),
            TokenVerifier::new(&key, 0).unwrap(),
        )
    }

    fn req(channels: &[&str], ttl: Option<&str>) -> LinkRequest {
        LinkRequest {
            user_id: " late-arrival ".into(),
            name: "".into(),
            role: Role::General,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ttl: ttl.map(String::from),
            base_url: None,
        }
    }

    fn event() -> Vec<String> {
        vec!["gate".into(), "ops".into()]
    }

    #[test]
    fn issues_a_verifiable_link_in_channel_order_with_the_default_ttl() {
        let (i, v) = issuer();
        let now = 1_800_000_000;
        let l = i
            .issue(
                "ev",
                &event(),
                req(&["ops", "gate", "ops"], None),
                "https://pi:8443/",
                now,
            )
            .unwrap();
        assert_eq!(l.base, "https://pi:8443/");
        let c = v.verify(&l.token, now).unwrap();
        assert_eq!(c.sub, "late-arrival");
        assert_eq!(c.name, "late-arrival");
        assert_eq!(c.event, "ev");
        assert_eq!(c.channels, vec!["ops".to_string(), "gate".to_string()]);
        assert_eq!(c.exp - c.iat, 8 * 3600);
        assert_eq!(l.claims, c);
    }

    #[test]
    fn renewal_keeps_the_claims_and_moves_exp() {
        let (i, v) = issuer();
        let now = 1_800_000_000;
        let old = i
            .issue(
                "ev",
                &event(),
                req(&["gate"], Some("10m")),
                "https://pi",
                now,
            )
            .unwrap();
        let (token, c) = i.renew(&old.claims, now + 300).unwrap();
        let back = v.verify(&token, now + 300).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            (c.sub.as_str(), c.channels.clone()),
            ("late-arrival", vec!["gate".to_string()])
        );
        assert_eq!((c.iat, c.exp), (now + 300, now + 300 + 8 * 3600));
    }

    #[test]
    fn a_verify_only_key_issues_nothing() {
        let day = Duration::from_secs(86_400);
        let public = KeyMaterial::EdDsa {
            public_pem: "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n".into(),
            private_pem: None,
        };
        assert!(LinkIssuer::for_key(&public, day, day).is_none());
        let secret = KeyMaterial::Hs256 {
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        };
        assert!(LinkIssuer::for_key(&secret, day, day).is_some());
    }

    #[test]
    fn refuses_what_the_cli_refuses() {
        let (i, _) = issuer();
        let now = 1_800_000_000;
        let err = |r: LinkRequest| i.issue("ev", &event(), r, "https://pi", now).unwrap_err();
        assert!(matches!(err(req(&[], None)), IssueError::NoChannels));
        assert!(matches!(err(req(&["other"], None)), IssueError::NotInEvent(c) if c == "other"));
        assert!(matches!(
            err(req(&["ops"], Some("8d"))),
            IssueError::TtlTooLong { .. }
        ));
        assert!(matches!(
            err(req(&["ops"], Some("soon"))),
            IssueError::Ttl(_)
        ));
        let mut r = req(&["ops"], None);
        r.user_id = "  ".into();
        assert!(matches!(err(r), IssueError::BadUserId));
        let mut r = req(&["ops"], None);
        r.user_id = "x\u{1b}[2J".into();
        assert!(matches!(err(r), IssueError::BadUserId));
        let mut r = req(&["ops"], None);
        r.name = "n".repeat(MAX_ID_BYTES + 1);
        assert!(matches!(err(r), IssueError::BadName));
        let mut r = req(&["ops"], None);
        r.base_url = Some("pi.local:8443".into());
        assert!(matches!(err(r), IssueError::BadBaseUrl));
        assert!(i
            .issue("ev", &event(), req(&["ops"], Some("7d")), "https://pi", now)
            .is_ok());
    }
}
