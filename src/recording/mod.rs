//! Recording of talk spurts (issue 14). So far: [`ogg_opus`], the pure Ogg Opus writer of one
//! spurt (RFC 7845) from the RTP payloads as they arrive. The recorder that taps the route
//! table, the index, retention and replay are not built yet.

pub mod ogg_opus;
