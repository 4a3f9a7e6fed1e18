//! SHELL: the engine's one UDP socket (bound in the configured port range) and its batched
//! sends (`sendmmsg`, one system call for up to [`BATCH`] datagrams).

use super::MediaError;
use bytes::BytesMut;
use nix::sys::socket::{sendmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per `sendmmsg` call.
pub const BATCH: usize = 256;
/// Socket send and receive buffer asked for, bytes (a fan-out burst of 2,000 copies of a
/// 150-byte SRTP packet is about 300 KB).
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds the media socket on `ip`: port 0 (ephemeral) when `lo` is 0, else the first free port
/// of `lo..=hi`. Non-blocking, with large kernel buffers (forced if the process may, e.g. as
/// root; else capped by `net.core.{w,r}mem_max`).
///
/// # Errors
/// [`MediaError::NoPort`] when no port of the range is free; [`MediaError::Io`] otherwise.
pub fn bind(ip: IpAddr, lo: u16, hi: u16) -> Result<UdpSocket, MediaError> {
    let sock = if lo == 0 {
        UdpSocket::bind((ip, 0))?
    } else {
        (lo..=hi)
            .find_map(|p| UdpSocket::bind((ip, p)).ok())
            .ok_or(MediaError::NoPort(lo, hi))?
    };
    sock.set_nonblocking(true)?;
    if setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    if setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    Ok(sock)
}

/// Datagrams waiting to be sent, flushed with `sendmmsg`.
pub struct Batch {
    bufs: Vec<BytesMut>,
    addrs: Vec<Option<SockaddrStorage>>,
    /// Datagrams the kernel refused (buffer full after a short wait, or an error), since start.
    pub dropped: u64,
    /// `sendmmsg` calls made, since start.
    pub calls: u64,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            bufs: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
            dropped: 0,
            calls: 0,
        }
    }
}

impl Batch {
    /// Queues `data` for `to`; flushes first if the batch is full.
    pub fn push(&mut self, sock: &UdpSocket, to: SocketAddr, data: BytesMut) {
        if self.bufs.len() == BATCH {
            self.flush(sock);
        }
        self.bufs.push(data);
        self.addrs.push(Some(SockaddrStorage::from(to)));
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Sends everything queued. A full socket buffer is waited for up to 2 ms per attempt
    /// (then the rest is dropped and counted in [`Batch::dropped`]).
    pub fn flush(&mut self, sock: &UdpSocket) {
        let mut at = 0usize;
        let mut stalls = 0;
        while at < self.bufs.len() {
            let n = self.bufs.len() - at;
            let iovs: Vec<[IoSlice<'_>; 1]> =
                self.bufs[at..].iter().map(|b| [IoSlice::new(b)]).collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
            self.calls += 1;
            let res = sendmmsg(
                sock.as_raw_fd(),
                &mut headers,
                &iovs,
                &self.addrs[at..],
                [],
                MsgFlags::empty(),
            )
            .map(|r| r.count());
            match res {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => {
                    stalls += 1;
                    if stalls > 3 || !wait_writable(sock) {
                        break;
                    }
                }
                Ok(sent) => at += sent,
                // A destination that cannot be reached fails the first message of the call:
                // skip it and carry on with the rest.
                Err(_) => {
                    self.dropped += 1;
                    at += 1;
                }
            }
        }
        self.dropped += (self.bufs.len() - at) as u64;
        self.bufs.clear();
        self.addrs.clear();
    }
}

fn wait_writable(sock: &UdpSocket) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::from(2u8)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reaches_its_destinations_in_one_call() {
        let a = bind("127.0.0.1".parse().unwrap(), 0, 0).unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        let mut b = Batch::default();
        for i in 0..10u8 {
            b.push(&a, to, BytesMut::from(&[i; 20][..]));
        }
        b.flush(&a);
        assert_eq!((b.calls, b.dropped), (1, 0));
        let mut buf = [0u8; 64];
        for i in 0..10u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 20]);
        }
    }

    #[test]
    fn binds_the_first_free_port_of_the_range() {
        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        assert!(matches!(
            bind("127.0.0.1".parse().unwrap(), port, port),
            Err(MediaError::NoPort(..))
        ));
        drop(busy);
        let s = bind("127.0.0.1".parse().unwrap(), port, port).unwrap();
        assert_eq!(s.local_addr().unwrap().port(), port);
    }
}
