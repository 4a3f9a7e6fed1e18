//! Radio-port test helpers: the gateway in-process (so the tests reach the simulated devices of
//! `type = "sim"` ports), real-time audio feeders and bounded condition waits.

use super::free_port;
use super::rtc_client::speech_pcm;
use super::SECRET;
use radiogate::app::Gateway;
use radiogate::config::Config;
use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A gateway running inside the test process.
pub struct InProcess {
    /// `host:port` it listens on.
    pub addr: String,
    /// The gateway.
    pub gw: Arc<Gateway>,
    _dir: tempfile::TempDir,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Starts the gateway with the test defaults plus `extra` TOML (e.g. `[[radio]]` sections).
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n[auth]\nsecret = \"{SECRET}\"\n\
             [sfu]\nudp_bind_ip = \"127.0.0.1\"\n[limits]\nconnections_per_minute = 10000\n{extra}",
            dir.path().join("state").display()
        );
        let cfg = Config::from_toml(&text).expect("test config");
        let gw = Gateway::new(cfg).expect("gateway");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let g = Arc::clone(&gw);
        let task = tokio::spawn(async move {
            let _ = g
                .serve(move |a| {
                    let _ = tx.send(a);
                })
                .await;
        });
        let addr = tokio::time::timeout(super::WAIT, rx)
            .await
            .expect("gateway bound in time")
            .expect("bound address")
            .to_string();
        Self {
            addr,
            gw,
            _dir: dir,
            task: Some(task),
        }
    }

    /// Connects a signaling client with `token`.
    pub async fn connect(&self, token: &str) -> super::WsClient {
        super::connect_url(&format!("ws://{}/ws?token={token}", self.addr))
            .await
            .expect("connect")
    }

    /// HTTP GET on this gateway, returning (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        super::http_get(&self.addr, path).await
    }

    /// The status of the port named `name`.
    pub fn port(&self, name: &str) -> radiogate::bridge::PortStatus {
        self.gw
            .radio
            .status()
            .into_iter()
            .find(|p| p.name == name)
            .expect("port configured")
    }

    /// Graceful shutdown (as on SIGTERM); waits for it, at most 10 s.
    pub async fn shutdown(mut self) {
        self.gw.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.gw.shutdown.cancel();
    }
}

/// The committed speech clip as 48 kHz mono `f32`.
pub fn speech_f32() -> Vec<f32> {
    speech_pcm()
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect()
}

/// Pushes `samples` into a simulated capture in real time (10 ms chunks) from a task; the
/// returned handle stops it when aborted.
pub fn feed(
    src: radiogate_hal::audio::SimSourceHandle,
    samples: Vec<f32>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        // Like a sound card: a 10 ms chunk is delivered once it has been captured.
        tick.tick().await;
        for chunk in samples.chunks(480) {
            tick.tick().await;
            src.push(chunk);
        }
    })
}

/// Whether `cond` holds within `limit`: [`super::wait_for`] from an async test on the
/// multi-thread runtime (`block_in_place`: when called on a worker thread, its other tasks move
/// to another thread while this one polls and sleeps).
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    tokio::task::block_in_place(|| super::wait_for(limit, || cond().then_some(())).is_some())
}

/// A hamlib rigctld dummy rig (`-m 1 -P RIG`) on a free loopback port, killed on drop.
pub struct Rig {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts rigctld and waits (bounded) until it answers `t`.
pub fn start_rig() -> Rig {
    let port = free_port();
    let child = super::spawn_rigctld(port);
    let rig = Rig {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    assert!(
        super::wait_for(super::WAIT, || rig_ptt(&rig.addr)).is_some(),
        "rigctld did not come up"
    );
    rig
}

/// The dummy rig's PTT read with `t` on a fresh connection; `None` if rigctld is not there.
pub fn rig_ptt(addr: &str) -> Option<bool> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"t\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    match line.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Polls `t` every 10 ms on one connection from a thread, recording (when, keyed).
pub struct PttWatch {
    log: Arc<Mutex<Vec<(Instant, bool)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PttWatch {
    /// Starts polling rigctld at `addr`.
    pub fn start(addr: &str) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (Arc::clone(&log), Arc::clone(&stop));
        let mut s = std::net::TcpStream::connect(addr).expect("rigctld");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let mut line = String::new();
                if s.write_all(b"t\n").is_err() || r.read_line(&mut line).is_err() {
                    break;
                }
                l.lock().unwrap().push((Instant::now(), line.trim() == "1"));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the record.
    pub fn stop(mut self) -> Vec<(Instant, bool)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.log.lock().unwrap().clone()
    }
}
