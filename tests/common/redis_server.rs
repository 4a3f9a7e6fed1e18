//! A real `redis-server` on a free loopback port for the permission-sync tests (killed with
//! SIGKILL to simulate an uplink outage, restarted on the same port), and gateway helpers.

use super::{free_port, Gateway, WAIT};
use serde_json::Value;

use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

/// A running (or killed) redis-server.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server on a free port (no persistence) and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts redis-server with extra command-line arguments (kept for restarts).
    pub async fn start_with(extra: &[String]) -> Self {
        let mut s = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.to_vec(),
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (apt install redis-server; tests/setup-debian.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut c) = self.try_conn().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn try_conn(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// Runs one command and returns its reply.
    pub async fn cmd(&self, args: &[&str]) -> redis::Value {
        let mut c = self.try_conn().await.expect("redis connection");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await.expect("redis command")
    }

    /// PUBLISH on the updates channel.
    pub async fn publish(&self, payload: &str) {
        self.cmd(&["PUBLISH", "vp:membership_updates", payload])
            .await;
    }

    /// Kills the server with SIGKILL (an uplink outage).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`) to the server process.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Freezes the server with SIGSTOP (a hung control plane: connections stay open, nothing
    /// answers).
    pub fn stop(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts the server again on the same port (empty data).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `[redis]` TOML for a gateway following `redis` with a heartbeat of `refresh_ms`.
pub fn redis_toml(redis: &RedisServer, refresh_ms: u64) -> String {
    format!(
        "[redis]\nurl = \"{}\"\nrefresh_interval_ms = {refresh_ms}\nconnect_timeout_ms = 1000\nresponse_timeout_ms = 1000\n",
        redis.url()
    )
}

/// Starts the gateway with its SQLite state in `state` (kept across restarts).
pub fn start_gateway_in(state: &std::path::Path, extra: &str) -> Gateway {
    Gateway::launch(tempfile::tempdir().expect("tempdir"), state, extra)
}

/// The `permissionSync` object of `/healthz`.
pub async fn sync_status(gw: &Gateway) -> Value {
    let (code, body) = gw.http_get("/healthz").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("healthz JSON");
    v["permissionSync"].clone()
}

/// Waits (bounded by `limit`) until `/healthz` `permissionSync` satisfies `pred`.
pub async fn wait_sync(gw: &Gateway, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = sync_status(gw).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "permission sync condition not met within {limit:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the gateway logged a line containing `needle`.
pub async fn wait_logged(gw: &Gateway, needle: &str) {
    assert!(gw.logged(needle), "not logged within {WAIT:?}: {needle}");
}

/// Number of log lines containing `needle`.
pub fn count_logged(gw: &Gateway, needle: &str) -> usize {
    gw.log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}
