//! Benchmark: the kernel's floor for the fan-out, what one UDP datagram out costs with no SFU
//! in front of it: the lower bound under the media engine's CPU per forwarded copy
//! (`cargo bench --bench fanout`).
//!
//! Run: `cargo bench --bench udp_floor` (N = 100, 1000, 2000) or
//! `cargo bench --bench udp_floor -- 1000`; `--bursts B` (default 500); `--unpaced` sends the
//! bursts back to back instead of one per 20 ms (warm caches: the best case).
//!
//! One thread pinned to CPU 0 sends, from one unconnected non-blocking UDP socket on
//! 127.0.0.1 (as the engine's), a burst of N datagrams of 128 bytes (an SRTP copy of a 100-byte
//! Opus payload: 12-byte RTP header, 16-byte tag) to N receiver sockets, one datagram each,
//! every 20 ms, with `sendmmsg` in batches of 64 (the engine's flush size), buffers and
//! message headers allocated once. A second thread pinned to CPU 1 drains the N sockets.
//! Reported per N: the sender thread's CPU (utime + stime from /proc/thread-self/stat) per
//! datagram, and the wall time of a burst (what the last of N listeners waits for its copy
//! at this floor, before any SRTP or routing).
//!
//! On loopback the receive side's kernel work (socket lookup, queueing, wake-up) runs inside
//! the sender's `sendmmsg` unless receive packet steering moves it to another CPU; run it
//! both ways: `echo 2 > /sys/class/net/lo/queues/rx-0/rps_cpus` (as root; `echo 0` restores).

// Bench code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use nix::unistd::Pid;
use std::io::IoSlice;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per datagram: an SRTP copy of a 100-byte Opus payload.
const DATAGRAM: usize = 128;
/// Datagrams per `sendmmsg` (the engine's `FLUSH_EVERY`).
const BATCH: usize = 64;
/// Time between bursts (one 20 ms voice frame).
const FRAME: Duration = Duration::from_millis(20);

fn pin_self(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &set).unwrap();
}

/// This thread's CPU time (utime + stime), in clock ticks.
fn thread_ticks() -> u64 {
    common::stat_ticks("/proc/thread-self/stat")
}

/// Clock ticks per second in /proc/*/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

fn run(n: usize, bursts: usize, paced: bool) {
    let rx: Vec<UdpSocket> = (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let dests: Vec<Option<SockaddrStorage>> = rx
        .iter()
        .map(|s| Some(SockaddrStorage::from(s.local_addr().unwrap())))
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let (received, done) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            pin_self(1);
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                let mut got = 0;
                for s in &rx {
                    while s.recv(&mut buf).is_ok() {
                        got += 1;
                    }
                }
                received.fetch_add(got, Ordering::Relaxed);
                if got == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    let sender = std::thread::spawn(move || {
        pin_self(0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let payloads: Vec<[u8; DATAGRAM]> = (0..n).map(|i| [i as u8; DATAGRAM]).collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let (mut sent, mut refused, mut burst_wall) = (0u64, 0u64, Vec::with_capacity(bursts));
        let t0 = thread_ticks();
        let mut next = Instant::now();
        for _ in 0..bursts {
            let start = Instant::now();
            let mut at = 0;
            while at < n {
                let end = (at + BATCH).min(n);
                let iovs: Vec<[IoSlice<'_>; 1]> = payloads[at..end]
                    .iter()
                    .map(|p| [IoSlice::new(p)])
                    .collect();
                match sendmmsg(
                    tx.as_raw_fd(),
                    &mut headers,
                    &iovs,
                    &dests[at..end],
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(r) => {
                        let k = r.count();
                        sent += k as u64;
                        at += k.max(1);
                    }
                    Err(_) => {
                        refused += 1;
                        at += 1;
                    }
                }
            }
            burst_wall.push(start.elapsed());
            next += FRAME;
            if !paced {
                continue;
            }
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        let ticks = thread_ticks() - t0;
        (sent, refused, ticks, burst_wall)
    });
    let (sent, refused, ticks, mut walls) = sender.join().unwrap();
    // The last datagrams are in the receivers' queues by now; give the drain a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::yield_now();
    }
    done.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    walls.sort();
    let cpu = ticks as f64 / TICKS_PER_SEC;
    let pct = |q: f64| walls[((walls.len() as f64 * q) as usize).min(walls.len() - 1)];
    println!(
        "N={n:>5}{}: datagrams {sent} sent, {} received, {refused} refused; sender CPU {cpu:.2} s = \
         {:.2} us/datagram; burst wall p50 {:.3} ms p99 {:.3} ms",
        if paced { "" } else { " unpaced" },
        received.load(Ordering::Relaxed),
        cpu * 1e6 / sent.max(1) as f64,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut ns = Vec::new();
    let (mut bursts, mut paced) = (500, true);
    while let Some(a) = args.next() {
        if a == "--unpaced" {
            paced = false;
        } else if a == "--bursts" {
            bursts = args.next().and_then(|b| b.parse().ok()).unwrap_or(bursts);
        } else if let Ok(n) = a.parse::<usize>() {
            ns.push(n);
        }
    }
    if ns.is_empty() {
        ns = vec![100, 1000, 2000];
    }
    for n in ns {
        run(n, bursts, paced);
    }
}
