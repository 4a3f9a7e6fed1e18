//! Access control: JWT verification and minting, and user roles.
//!
//! - [`Role`]: `ADMIN`, `DISPATCH`, `GENERAL`, as carried in the token.
//! - [`TokenVerifier`]: pure verification of role-aware JWTs (HS256, RS256 or
//!   EdDSA; exactly one algorithm per gateway), with the current time passed in
//!   as seconds since the Unix epoch.
//! - [`TokenMinter`]: signing, for the `radiogate token` CLI and tests.
//! - [`TokenError`]: typed refusal reasons whose `Display` is safe for a 401 body.
//! - [`parse_ttl`]: `--ttl` values such as `8h`, `30m`, `90s`, `2d`, `3600`.
//! - [`issue`]: join links issued from the admin panel.
//! - [`bans`]: banned users, in SQLite.
//! - [`limits`]: connection, failed-authentication and message rate limits.

pub mod bans;
pub mod issue;
pub mod limits;
pub mod role;
pub mod token;

pub use role::{ParseRoleError, Role};
pub use token::{
    parse_ttl, Claims, KeyMaterial, ParseTtlError, TokenError, TokenMinter, TokenVerifier,
    MAX_TOKEN_LEN,
};

#[cfg(test)]
mod tests;
