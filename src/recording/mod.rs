//! Recording and instant recall of talk spurts (issue 14; docs/PROTOCOL.md "Recordings").
//!
//! - [`ogg_opus`] (pure): one spurt as an Ogg Opus stream (RFC 7845) from the RTP payloads as
//!   they arrive, and reading one back;
//! - [`index`]: the SQLite index of the recordings, with the retention rule;
//! - [`recorder`] (shell): the thread fed by the hub's spurt boundaries (`hub::SpurtEvent`) and
//!   the route table's tap, writing the files, applying retention, pausing when the disk is
//!   nearly full;
//! - [`http`]: `GET /recordings/ID.opus` with `Range`, and the export of a time range;
//! - [`recall`]: a channel's last recording read back, for the consoles' double press.

pub mod http;
pub mod index;
pub mod ogg_opus;
pub mod recall;
pub mod recorder;
