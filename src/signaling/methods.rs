//! The method permission matrix: every signaling method and the roles that may call it
//! (spec note 004: consulted before any handler runs, deny by default).

use crate::access::role::Role;

const ALL: &[Role] = &[Role::Admin, Role::Dispatch, Role::General];

/// Every method the server implements, with the roles allowed to call it. A method missing
/// here is "method not found"; a role missing from a method's list is "permission denied".
pub const METHODS: &[(&str, &[Role])] = &[
    ("session.ping", ALL),
    ("channel.list", ALL),
    ("channel.join", ALL),
    ("channel.leave", ALL),
    ("floor.request", ALL),
    ("floor.release", ALL),
    ("webrtc.offer", ALL),
    ("webrtc.candidate", ALL),
];

/// Outcome of looking a method up for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The role may call the method.
    Allowed,
    /// The method exists but the role may not call it.
    Denied,
    /// No such method.
    NotFound,
}

/// Looks `method` up in [`METHODS`] for `role`.
pub fn check(method: &str, role: Role) -> Access {
    match METHODS.iter().find(|(m, _)| *m == method) {
        None => Access::NotFound,
        Some((_, roles)) if roles.contains(&role) => Access::Allowed,
        Some(_) => Access::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_not_found_known_is_allowed() {
        assert_eq!(check("nope.nope", Role::Admin), Access::NotFound);
        for (m, _) in METHODS {
            for r in ALL {
                assert_eq!(check(m, *r), Access::Allowed, "{m} {r:?}");
            }
        }
    }
}
