//! User roles carried in the JWT `role` claim.

use std::fmt;
use std::str::FromStr;

/// The role of a user within one event, as granted by the control plane.
///
/// On the wire (JWT claims, JSON messages) a role is the upper-case string
/// `"ADMIN"`, `"DISPATCH"` or `"GENERAL"`; deserialization is exact (upper case
/// only). Parsing with [`FromStr`] (config files, CLI flags) is case-insensitive.
///
/// Meaning (see the design brief):
/// - [`Role::Admin`]: manages the gateway; no talk priority.
/// - [`Role::Dispatch`]: pre-empts `GENERAL` talkers and may start an emergency broadcast.
/// - [`Role::General`]: ordinary event staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// Remote administrator (`"ADMIN"`).
    Admin,
    /// Dispatcher (`"DISPATCH"`).
    Dispatch,
    /// Ordinary event staff (`"GENERAL"`).
    General,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Dispatch, Role::General];

    /// The canonical wire name: `"ADMIN"`, `"DISPATCH"` or `"GENERAL"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Dispatch => "DISPATCH",
            Role::General => "GENERAL",
        }
    }
}

impl fmt::Display for Role {
    /// Writes the canonical wire name, e.g. `ADMIN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned by [`Role::from_str`] for a string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {input:?} (expected ADMIN, DISPATCH or GENERAL)")]
pub struct ParseRoleError {
    /// The rejected input, as given.
    pub input: String,
}

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Parses `"ADMIN"`, `"DISPATCH"` or `"GENERAL"`, ignoring ASCII case and
    /// surrounding whitespace.
    ///
    /// # Errors
    /// [`ParseRoleError`] for anything else (including the empty string).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseRoleError {
                input: s.to_owned(),
            })
    }
}
