//! Loopback ports for peers a test starts itself (rigctld, redis-server). Shared by the hal
//! crate's tests and the gateway's (`tests/common/mod.rs` includes this file by path).

use std::net::SocketAddr;
use std::sync::Mutex;

/// Lowest and one past the highest port handed out: below Linux's default ephemeral range
/// (32768-60999), so no outgoing connection of a test running in parallel can be given the
/// port while the peer is stopped for a restart on the same port.
const RANGE: (u16, u16) = (20000, 32000);

/// A loopback TCP port nobody listens on right now, never the same twice in this process.
/// Panics when the whole range is taken (the test cannot run then).
pub fn free_port() -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    let span = RANGE.1 - RANGE.0;
    // Start somewhere different per process so that test binaries run back to back do not
    // reuse each other's ports while a lingering peer still exits.
    let mut port = next.unwrap_or(RANGE.0 + (std::process::id() % u32::from(span)) as u16);
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= RANGE.1 {
            RANGE.0
        } else {
            port + 1
        };
        if bindable(candidate) {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free loopback port in {}..{}", RANGE.0, RANGE.1);
}

/// Whether a TCP socket can bind 127.0.0.1:`port`. The probe socket is bound but never
/// listens: a listening probe could be kept open past its close by a child process another
/// test forks at that moment (until the child's exec), accept the connection a test makes to
/// the port "where nothing runs yet" and then reset it.
fn bindable(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .and_then(|s| s.bind(&addr.into()))
        .is_ok()
}
