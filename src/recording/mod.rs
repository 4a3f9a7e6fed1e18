//! Recording of talk spurts (issue 14). Built so far, pure and tested, not wired into the
//! gateway yet: [`ogg_opus`], the Ogg Opus writer of one spurt (RFC 7845) from the RTP payloads
//! as they arrive, and [`index`], the SQLite index of the recordings with the retention rule.
//! The hub emits each spurt's start and end (`hub::SpurtEvent`). Not built yet: the recorder
//! that taps the route table and writes the files, the free-space pause, `recording.list`,
//! `GET /recordings/ID.opus`, the admin search and the clients' history and Say again.

pub mod http;
pub mod index;
pub mod ogg_opus;
pub mod recorder;
