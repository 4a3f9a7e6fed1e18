//! The method permission matrix: every signaling method and the roles that may call it
//! (spec note 004: consulted before any handler runs, deny by default).

use crate::access::role::Role;

const ALL: &[Role] = &[Role::Admin, Role::Dispatch, Role::General];
const DISPATCH: &[Role] = &[Role::Dispatch];
const ADMIN: &[Role] = &[Role::Admin];

/// Every method the server implements, with the roles allowed to call it. A method missing
/// here is "method not found"; a role missing from a method's list is "permission denied".
/// GENERAL: channels, floor, WebRTC. DISPATCH adds priority talk and emergency broadcast.
/// ADMIN adds the admin methods; no talk priority, no broadcast (spec note 003).
pub const METHODS: &[(&str, &[Role])] = &[
    ("session.ping", ALL),
    ("session.renew", ALL),
    ("recording.list", ALL),
    ("channel.list", ALL),
    ("channel.join", ALL),
    ("channel.leave", ALL),
    ("floor.request", ALL),
    ("floor.release", ALL),
    // Any role, and only with the token's `link` claim (checked in the session, issue 16).
    ("link.hello", ALL),
    ("floor.priority_request", DISPATCH),
    ("broadcast.arm", DISPATCH),
    ("broadcast.start", DISPATCH),
    ("broadcast.stop", DISPATCH),
    ("webrtc.offer", ALL),
    ("webrtc.candidate", ALL),
    ("admin.status", ADMIN),
    ("admin.connections", ADMIN),
    ("admin.disconnect", ADMIN),
    ("device.revoke", ADMIN),
    ("admin.ban", ADMIN),
    ("admin.unban", ADMIN),
    ("admin.bans", ADMIN),
    ("admin.audit", ADMIN),
    ("admin.issueLink", ADMIN),
    ("admin.recordings", ADMIN),
    ("admin.recording_delete", ADMIN),
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
    fn unknown_is_not_found_and_roles_are_as_documented() {
        assert_eq!(check("nope.nope", Role::Admin), Access::NotFound);
        for (m, roles) in METHODS {
            for r in ALL {
                let expect = if roles.contains(r) {
                    Access::Allowed
                } else {
                    Access::Denied
                };
                assert_eq!(check(m, *r), expect, "{m} {r:?}");
            }
            if m.starts_with("admin.") || *m == "device.revoke" {
                assert_eq!(*roles, ADMIN, "{m} is admin-only");
            }
        }
        assert_eq!(check("floor.priority_request", Role::Admin), Access::Denied);
        assert_eq!(check("broadcast.start", Role::Admin), Access::Denied);
    }
}
