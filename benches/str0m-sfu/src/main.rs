//! The str0m side of issue 11's comparison: the same job as radiogate's media engine (one
//! thread, one UDP socket for every peer connection, each uplink RTP packet written to every
//! other connected peer, the copies sent with `sendmmsg` in batches of 64), built on str0m's
//! sans-IO `Rtc` in RTP mode, so that the fan-out bench measures the library's per-copy cost
//! against `rtc`'s under the same load.
//!
//! Signaling: a TCP listener on 127.0.0.1; a client writes its SDP offer and shuts its write
//! side; the answer comes back and the connection closes. At start the process prints one line
//! `udp=PORT tcp=PORT` on stdout. No floor control: the peer that sends RTP is the talker.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::collections::HashMap;
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Copies queued before a `sendmmsg` (radiogate's `FLUSH_EVERY`).
const FLUSH_EVERY: usize = 64;

struct Offer {
    sdp: String,
    reply: mpsc::Sender<String>,
}

struct Client {
    rtc: Rtc,
    timeout: Instant,
    connected: bool,
    /// The audio m-line's mid (from `MediaAdded`).
    mid: Option<str0m::media::Mid>,
}

#[derive(Default)]
struct Batch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<Option<SockaddrStorage>>,
}

impl Batch {
    fn push(&mut self, sock: &UdpSocket, to: SocketAddr, data: Vec<u8>) {
        self.bufs.push(data);
        self.addrs.push(Some(SockaddrStorage::from(to)));
        if self.bufs.len() >= FLUSH_EVERY {
            self.flush(sock);
        }
    }

    fn flush(&mut self, sock: &UdpSocket) {
        let mut at = 0;
        while at < self.bufs.len() {
            let iovs: Vec<[IoSlice<'_>; 1]> =
                self.bufs[at..].iter().map(|b| [IoSlice::new(b)]).collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), None);
            match sendmmsg(
                sock.as_raw_fd(),
                &mut headers,
                &iovs,
                &self.addrs[at..],
                [],
                MsgFlags::empty(),
            ) {
                Ok(r) => at += r.count().max(1),
                Err(_) => at += 1,
            }
        }
        self.bufs.clear();
        self.addrs.clear();
    }
}

/// Drains `c`'s output: datagrams onto the batch, uplink RTP into `uplink`.
fn drain(
    c: &mut Client,
    sock: &UdpSocket,
    batch: &mut Batch,
    uplink: &mut Vec<str0m::rtp::RtpPacket>,
) {
    loop {
        match c.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                c.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => batch.push(sock, t.destination, t.contents.into()),
            Ok(Output::Event(Event::Connected)) => c.connected = true,
            Ok(Output::Event(Event::RtpPacket(p))) => uplink.push(p),
            Ok(Output::Event(Event::MediaAdded(m))) => c.mid = Some(m.mid),
            Ok(Output::Event(_)) => {}
            Err(e) => {
                eprintln!("rtc: {e}");
                c.timeout = Instant::now() + Duration::from_secs(3600);
                return;
            }
        }
    }
}

fn signaling(listener: TcpListener, offers: mpsc::Sender<Offer>, waker: UnixDatagram) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut sdp = String::new();
        if conn.read_to_string(&mut sdp).is_err() {
            continue;
        }
        let (tx, rx) = mpsc::channel();
        if offers.send(Offer { sdp, reply: tx }).is_err() {
            return;
        }
        let _ = waker.send(&[1]);
        if let Ok(answer) = rx.recv() {
            let _ = conn.write_all(answer.as_bytes());
        }
    }
}

fn main() {
    str0m::crypto::from_feature_flags().install_process_default();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_nonblocking(true).expect("nonblocking");
    let local = sock.local_addr().expect("udp addr");
    let listener = TcpListener::bind("127.0.0.1:0").expect("tcp");
    println!(
        "udp={} tcp={}",
        local.port(),
        listener.local_addr().expect("tcp addr").port()
    );
    let (offers_tx, offers) = mpsc::channel::<Offer>();
    let (waker_tx, waker) = UnixDatagram::pair().expect("waker");
    waker.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || signaling(listener, offers_tx, waker_tx));

    let mut clients: Vec<Client> = Vec::new();
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut batch = Batch::default();
    let mut uplink = Vec::new();
    let mut buf = vec![0u8; 2000];
    loop {
        let now = Instant::now();
        let next = clients
            .iter()
            .map(|c| c.timeout)
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        let ms = next
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000)
            .min(1000) as u16;
        if ms > 0 {
            let mut fds = [
                PollFd::new(sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(waker.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        while waker.recv(&mut [0u8; 16]).is_ok() {}
        while let Ok(o) = offers.try_recv() {
            let now = Instant::now();
            let mut rtc = Rtc::builder()
                .set_rtp_mode(true)
                .set_ice_lite(true)
                .build(now);
            rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
            let answer = SdpOffer::from_sdp_string(&o.sdp)
                .map_err(|e| e.to_string())
                .and_then(|offer| rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string()));
            match answer {
                Ok(a) => {
                    let _ = o.reply.send(a.to_sdp_string());
                    let mut c = Client {
                        rtc,
                        timeout: now,
                        connected: false,
                        mid: None,
                    };
                    drain(&mut c, &sock, &mut batch, &mut uplink);
                    clients.push(c);
                }
                Err(e) => {
                    eprintln!("offer refused: {e}");
                    let _ = o.reply.send(String::new());
                }
            }
        }
        for _ in 0..512 {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(_) => break,
            };
            let now = Instant::now();
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: local,
                    contents,
                },
            );
            let idx = match by_addr.get(&from) {
                Some(i) => *i,
                None => match clients.iter().position(|c| c.rtc.accepts(&input)) {
                    Some(i) => {
                        by_addr.insert(from, i);
                        i
                    }
                    None => continue,
                },
            };
            let c = &mut clients[idx];
            if c.rtc.handle_input(input).is_err() {
                continue;
            }
            drain(c, &sock, &mut batch, &mut uplink);
            let ups = std::mem::take(&mut uplink);
            for p in &ups {
                for (j, l) in clients.iter_mut().enumerate() {
                    if j == idx || !l.connected {
                        continue;
                    }
                    let Some(mid) = l.mid else { continue };
                    let mut api = l.rtc.direct_api();
                    let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                        continue;
                    };
                    tx.write_rtp(
                        RtpWrite::new(
                            p.header.payload_type,
                            p.seq_no,
                            p.header.timestamp,
                            p.timestamp,
                            p.payload.clone(),
                        )
                        .marker(p.header.marker),
                    );
                    drain(l, &sock, &mut batch, &mut uplink);
                    uplink.clear();
                }
            }
            uplink = ups;
            uplink.clear();
        }
        let now = Instant::now();
        for c in clients.iter_mut().filter(|c| c.timeout <= now) {
            let _ = c.rtc.handle_input(Input::Timeout(now));
            drain(c, &sock, &mut batch, &mut uplink);
            uplink.clear();
        }
        batch.flush(&sock);
    }
}
