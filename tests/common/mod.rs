//! Test harness: the real `radiogate` binary as a child process on 127.0.0.1:0 with a temporary
//! state directory, real WebSocket clients (tokio-tungstenite) and real WebRTC clients
//! (webrtc-rs) sending Opus-encoded speech.
#![allow(dead_code)]

#[path = "../../hal/tests/common/peers.rs"]
mod peers;
#[allow(unused_imports)] // not every test binary starts a peer
pub use peers::{spawn_pulse, spawn_rigctld};
#[path = "../../hal/tests/common/ports.rs"]
mod ports;
pub mod radio;
pub mod redis_server;
pub mod rtc_client;
#[path = "../../hal/tests/common/wait.rs"]
mod wait;
#[allow(unused_imports)] // not every test binary starts a peer
pub use ports::free_port;
pub use wait::wait_for;

use futures_util::{SinkExt, StreamExt};
use radiogate::access::role::Role;
use radiogate::access::token::{Claims, KeyMaterial, TokenMinter};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// HS256 secret the test gateways use.
pub const SECRET: &str = "test-secret-0123456789-0123456789-abcdef";
/// Bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running gateway process.
pub struct Gateway {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its state directory (kept alive for the process's life).
    pub dir: tempfile::TempDir,
    /// Every log line it printed so far, and a condition variable signalled on each.
    pub log: Arc<(Mutex<Vec<String>>, std::sync::Condvar)>,
}

/// Put in a test's extra TOML to run with the shipped `[limits]` defaults (the harness lifts
/// `limits.connections_per_minute` otherwise).
pub const DEFAULT_LIMITS: &str = "# default limits\n";

impl Gateway {
    /// Starts the gateway with the test defaults plus `extra` TOML (sections appended; keys in
    /// `[floor]`, `[channels]` may be given through `floor_ms` and `extra_channels`).
    pub fn start(extra: &str) -> Self {
        Self::start_with("", extra)
    }

    /// Like [`Gateway::start`], with `server_extra` keys added to the `[server]` table (the
    /// test default `max_frame_bytes = 4096` unless `server_extra` sets it).
    pub fn start_with(server_extra: &str, extra: &str) -> Self {
        Self::start_in_with(tempfile::tempdir().expect("tempdir"), server_extra, extra)
    }

    /// Stops this gateway (SIGKILL) and starts a new one on the same state directory and
    /// configuration.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let cfg = std::fs::read_to_string(dir.path().join("radiogate.toml")).expect("config");
        let extra = cfg
            .split_once("udp_bind_ip = \"127.0.0.1\"\n")
            .map(|(_, e)| e.to_string());
        let server_extra = cfg
            .split_once("listen = \"127.0.0.1:0\"\n")
            .and_then(|(_, r)| r.split_once("[state]"))
            .map(|(s, _)| s.trim_end().to_string());
        Self::start_in_with(
            dir,
            &server_extra.unwrap_or_default(),
            &extra.unwrap_or_default(),
        )
    }

    /// Starts the gateway with its state and config in `dir`.
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Self {
        let state = dir.path().join("state");
        Self::launch_full(dir, &state, "", extra, &[])
    }

    /// Starts the gateway with its state and config in `dir` and extra environment variables
    /// (e.g. `PULSE_SERVER` and `HOME` for a test's own PulseAudio and ~/.asoundrc).
    pub fn start_in_env(dir: tempfile::TempDir, extra: &str, env: &[(&str, String)]) -> Self {
        let state = dir.path().join("state");
        Self::launch_full(dir, &state, "", extra, env)
    }

    /// Starts the gateway with its state and config in `dir` and `server_extra` keys in
    /// `[server]`.
    pub fn start_in_with(dir: tempfile::TempDir, server_extra: &str, extra: &str) -> Self {
        let state = dir.path().join("state");
        Self::launch_with(dir, &state, server_extra, extra)
    }

    /// Starts the gateway with its config in `dir` and its state in `state`.
    pub fn launch(dir: tempfile::TempDir, state: &std::path::Path, extra: &str) -> Self {
        Self::launch_with(dir, state, "", extra)
    }

    /// Starts the gateway with its config in `dir`, its state in `state` and `server_extra`
    /// keys in `[server]`.
    pub fn launch_with(
        dir: tempfile::TempDir,
        state: &std::path::Path,
        server_extra: &str,
        extra: &str,
    ) -> Self {
        Self::launch_full(dir, state, server_extra, extra, &[])
    }

    /// [`Gateway::launch_with`] with extra environment variables for the child.
    pub fn launch_full(
        dir: tempfile::TempDir,
        state: &std::path::Path,
        server_extra: &str,
        extra: &str,
        env: &[(&str, String)],
    ) -> Self {
        // Every test connects from 127.0.0.1: lift the per-address connection limit unless the
        // test sets it, or asks for the shipped defaults with the comment `# default limits`.
        let extra = if extra.contains(DEFAULT_LIMITS) {
            extra.to_string()
        } else {
            let mut extra = if extra.contains("[limits]") {
                extra.to_string()
            } else {
                format!("{extra}\n[limits]\n")
            };
            for key in ["connections_per_minute", "user_connections_per_minute"] {
                if !extra.contains(&format!("\n{key}")) {
                    extra = extra.replace("[limits]\n", &format!("[limits]\n{key} = 10000\n"));
                }
            }
            extra
        };
        let frame = if server_extra.contains("max_frame_bytes") {
            ""
        } else {
            "max_frame_bytes = 4096\n"
        };
        // Keys of a `[state]` table in `extra` go into the harness's own `[state]` table.
        let (extra, state_extra) = match extra.find("[state]\n") {
            Some(at) => {
                let body = &extra[at + "[state]\n".len()..];
                let end = body.find("\n[").map_or(body.len(), |e| e + 1);
                (
                    format!("{}{}", &extra[..at], &body[end..]),
                    body[..end].to_string(),
                )
            }
            None => (extra, String::new()),
        };
        // A test that needs a fixed address (a linked site's upstream) sets `listen` itself.
        let listen = if server_extra.contains("listen =") {
            ""
        } else {
            "listen = \"127.0.0.1:0\"\n"
        };
        let cfg = format!(
            "[server]\n{listen}{frame}{server_extra}\n\
             [state]\ndir = \"{}\"\n{state_extra}[auth]\nsecret = \"{SECRET}\"\n\
             [sfu]\nudp_bind_ip = \"127.0.0.1\"\n{extra}",
            state.display()
        );
        // Written aside and renamed into place: a restart rewrites the file while other
        // processes of the test (the `radiogate permissions` CLI) may be reading it.
        let cfg_path = dir.path().join("radiogate.toml");
        let tmp = dir.path().join("radiogate.toml.new");
        std::fs::write(&tmp, cfg).expect("write config");
        std::fs::rename(&tmp, &cfg_path).expect("rename config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_radiogate"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RADIOGATE_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn radiogate");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new((Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                log2.0.lock().unwrap().push(line);
                log2.1.notify_all();
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("gateway did not log its address");
        Self {
            child,
            addr,
            dir,
            log,
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    #[allow(dead_code)]
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the gateway process, KiB ([`rss_kib`]).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit (bounded), returning its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for(limit, || self.child.try_wait().ok().flatten())
    }

    /// HTTP GET on the gateway, returning (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path).await
    }

    /// Whether a log line containing `needle` is printed (waits for it, at most [`WAIT`]).
    pub fn logged(&self, needle: &str) -> bool {
        !self.wait_lines(&[needle], 1).is_empty()
    }

    /// The log lines containing every one of `needles`, once there are `n` of them or
    /// [`WAIT`] has passed (then fewer, maybe none).
    pub fn wait_lines(&self, needles: &[&str], n: usize) -> Vec<String> {
        let (lines, cv) = &*self.log;
        let matching = |l: &Vec<String>| -> Vec<String> {
            l.iter()
                .filter(|l| needles.iter().all(|x| l.contains(x)))
                .cloned()
                .collect()
        };
        let guard = lines.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |l| matching(l).len() < n)
            .unwrap();
        matching(&guard)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded, polling `recording.list` 20 times a second for at most 5 s) until
/// `channel` lists at least `n` recordings, all finished; returns them, newest first. Panics
/// when they are not listed in time.
pub async fn finished_recordings(ws: &mut WsClient, channel: &str, n: usize) -> Vec<Value> {
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..100 {
        poll.tick().await;
        let r = ws
            .call("recording.list", json!({"channelId": channel}))
            .await
            .expect("recording.list");
        let list = r["recordings"].as_array().expect("recordings").clone();
        if list.len() >= n && list.iter().all(|x| !x["ended"].is_null()) {
            return list;
        }
    }
    panic!("{channel}: {n} finished recordings not listed within 5 s");
}

/// HTTP GET on a gateway listening (plain HTTP) on `addr` (`host:port`), returning
/// (status, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Mints an HS256 token with the test secret.
pub fn token(user: &str, role: Role, event: &str, channels: &[&str]) -> String {
    token_with(user, role, event, channels, 3600)
}

/// A DISPATCH token of event `ev1` with the `link` claim `site` (user `site-SITE`, device
/// `gw-SITE`), for a site gateway's `[[link]]` to an upstream test gateway (issue 16).
pub fn link_token(site: &str, channels: &[&str]) -> String {
    let now = radiogate::clock::unix_secs();
    TokenMinter::new(&KeyMaterial::Hs256 {
        secret: SECRET.as_bytes().to_vec(),
    })
    .expect("minter")
    .mint(&Claims {
        sub: format!("site-{site}"),
        name: site.into(),
        event: "ev1".into(),
        role: Role::Dispatch,
        channels: channels.iter().map(|c| c.to_string()).collect(),
        device: Some(format!("gw-{site}")),
        link: Some(site.into()),
        iat: now - 60,
        exp: now + 3600,
    })
    .expect("link token")
}

/// utime + stime of process `pid` (all its threads), in clock ticks (1/100 s), from
/// /proc/PID/stat: the benchmarks' CPU per unit of work.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// utime + stime, in clock ticks (1/100 s), from a /proc `stat` file (a process's, or a
/// thread's such as /proc/thread-self/stat).
pub fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// Resident set size of process `pid`, KiB (from /proc/PID/status VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Pins every thread of process `pid` to CPU `cpu` (`taskset -a -p -c`); threads it creates
/// later inherit it. Panics when taskset fails (a benchmark's figures would be meaningless).
pub fn pin(pid: u32, cpu: u32) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -a -p -c {cpu} {pid}");
}

/// Mints an HS256 token valid for `ttl_secs` (negative: already expired).
pub fn token_with(user: &str, role: Role, event: &str, channels: &[&str], ttl_secs: i64) -> String {
    let now = radiogate::clock::unix_secs();
    let minter = TokenMinter::new(&KeyMaterial::Hs256 {
        secret: SECRET.as_bytes().to_vec(),
    })
    .expect("minter");
    minter
        .mint(&Claims {
            sub: user.into(),
            name: format!("Name {user}"),
            event: event.into(),
            role,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            device: None,
            link: None,
            iat: now.saturating_sub(7200),
            exp: (now as i64 + ttl_secs) as u64,
        })
        .expect("mint")
}

/// What the server sent, as seen by [`WsClient`].
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A JSON text frame.
    Json(Value),
    /// The close frame's code and reason.
    Closed(Option<u16>, String),
}

/// A signaling client.
pub struct WsClient {
    out: mpsc::UnboundedSender<Message>,
    /// Cancelled by [`WsClient::freeze`]: the client stops reading (and so answering pings).
    frozen: tokio_util::sync::CancellationToken,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    pending: Vec<Value>,
    next_id: u64,
    /// Close code and reason once the server closed.
    pub closed: Option<(Option<u16>, String)>,
}

/// Connects to `/ws` with the token in the query string, or fails with the HTTP status and body.
pub async fn connect(gw: &Gateway, token: &str) -> Result<WsClient, (u16, String)> {
    connect_url(&format!("ws://{}/ws?token={token}", gw.addr)).await
}

/// Connects to a full ws:// URL.
pub async fn connect_url(url: &str) -> Result<WsClient, (u16, String)> {
    let (ws, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            return Err((resp.status().as_u16(), body));
        }
        Err(e) => return Err((0, e.to_string())),
    };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let frozen = tokio_util::sync::CancellationToken::new();
    let freeze = frozen.clone();
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                m = stream.next() => m,
                _ = freeze.cancelled() => {
                    // Keep the socket open (the task owns it) and never read again: a phone
                    // that vanished.
                    std::future::pending::<()>().await;
                    return;
                }
            };
            let Some(m) = m else { break };
            match m {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sent JSON");
                    let _ = in_tx.send(Incoming::Json(v));
                }
                Ok(Message::Close(f)) => {
                    let _ = in_tx.send(Incoming::Closed(
                        f.as_ref().map(|f| u16::from(f.code)),
                        f.map(|f| f.reason.to_string()).unwrap_or_default(),
                    ));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = in_tx.send(Incoming::Closed(None, e.to_string()));
                    return;
                }
            }
        }
        let _ = in_tx.send(Incoming::Closed(None, "eof".into()));
    });
    Ok(WsClient {
        out: out_tx,
        frozen,
        inbox: in_rx,
        pending: Vec::new(),
        next_id: 1,
        closed: None,
    })
}

impl WsClient {
    /// Sends a raw text frame.
    pub fn send_text(&self, text: &str) {
        let _ = self.out.send(Message::Text(text.to_string().into()));
    }

    /// Sends a raw message.
    pub fn send_raw(&self, m: Message) {
        let _ = self.out.send(m);
    }

    async fn recv(&mut self) -> Option<Value> {
        match tokio::time::timeout(WAIT, self.inbox.recv()).await {
            Ok(Some(Incoming::Json(v))) => Some(v),
            Ok(Some(Incoming::Closed(code, reason))) => {
                self.closed = Some((code, reason));
                None
            }
            Ok(None) => None,
            Err(_) => panic!("no message from the server within {WAIT:?}"),
        }
    }

    /// Sends a request and waits for its reply: `Ok(result)` or `Err(error)`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        self.reply_to(json!(id)).await
    }

    /// Waits for the reply with `id`, keeping notifications for later.
    pub async fn reply_to(&mut self, id: Value) -> Result<Value, Value> {
        loop {
            let v = self.recv().await.unwrap_or_else(|| {
                panic!("closed while waiting for reply {id}: {:?}", self.closed)
            });
            if v.get("id") == Some(&id) && v.get("method").is_none() {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
            self.pending.push(v);
        }
    }

    /// Waits for the next notification named `method` (earlier ones that arrived are used first).
    pub async fn notification(&mut self, method: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|v| v["method"] == method) {
            return self.pending.remove(i)["params"].clone();
        }
        loop {
            let v = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {method}: {:?}", self.closed));
            if v["method"] == method {
                return v["params"].clone();
            }
            self.pending.push(v);
        }
    }

    /// The methods of the notifications read but not taken yet, in arrival order (those that
    /// arrived before the replies waited for).
    pub fn pending_methods(&self) -> Vec<String> {
        self.pending
            .iter()
            .map(|v| v["method"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Whether a notification named `method` has already arrived (without waiting).
    pub fn has_pending(&mut self, method: &str) -> bool {
        while let Ok(m) = self.inbox.try_recv() {
            match m {
                Incoming::Json(v) => self.pending.push(v),
                Incoming::Closed(c, r) => self.closed = Some((c, r)),
            }
        }
        self.pending.iter().any(|v| v["method"] == method)
    }

    /// Waits for the server to close the connection; returns (code, reason).
    pub async fn wait_closed(&mut self) -> (Option<u16>, String) {
        loop {
            if let Some(c) = self.closed.clone() {
                return c;
            }
            if let Some(v) = self.recv().await {
                self.pending.push(v);
            }
        }
    }

    /// Stops reading for good, keeping the connection open: no more pongs, no more replies
    /// seen (a phone that left the Wi-Fi without closing its socket).
    pub fn freeze(&self) {
        self.frozen.cancel();
    }

    /// Closes from the client side.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}
