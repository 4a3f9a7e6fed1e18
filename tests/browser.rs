//! The web client and HTTPS: the listener with a generated certificate (trusted explicitly by
//! a rustls client), the plain-HTTP policy, the connect probe, `radiogate token --url --qr`,
//! and the end-to-end browser test (tests/browser/e2e.mjs in headless Chromium).

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{token, token_with, Gateway, WAIT};
use futures_util::StreamExt;
use radiogate::access::role::Role;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn state_dir(gw: &Gateway) -> PathBuf {
    gw.dir.path().join("state")
}

fn port(gw: &Gateway) -> u16 {
    gw.addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// A TLS connection to the gateway trusting only its generated CA, for `server_name`.
async fn tls_connect(
    gw: &Gateway,
    server_name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = std::fs::read(state_dir(gw).join("tls/ca.pem")).expect("generated CA exists");
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(&gw.addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("name");
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("the certificate verifies against the generated CA")
}

/// One HTTP/1.1 request on any stream; returns the whole response text.
async fn raw_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .ok();
    String::from_utf8_lossy(&buf).to_string()
}

#[tokio::test]
async fn https_with_generated_certificate() {
    let gw = Gateway::start("");
    let p = port(&gw);
    for name in ["localhost", "127.0.0.1"] {
        let mut s = tls_connect(&gw, name).await;
        let resp = raw_get(&mut s, &format!("{name}:{p}"), "/").await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.contains("id=\"ptt\""),
            "the web client is served over HTTPS"
        );
        assert!(resp
            .to_ascii_lowercase()
            .contains("content-security-policy"));
    }
    // The CA is downloadable for phones and is the one the certificate chains to.
    let mut s = tls_connect(&gw, "localhost").await;
    let resp = raw_get(&mut s, &format!("localhost:{p}"), "/radiogate-ca.crt").await;
    let ca = std::fs::read_to_string(state_dir(&gw).join("tls/ca.pem")).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with(&ca), "{resp}");

    // The signaling WebSocket over TLS (wss://).
    let s = tls_connect(&gw, "localhost").await;
    let tok = token("alice", Role::General, "ev", &["ch1"]);
    let url = format!("wss://localhost:{p}/ws?token={tok}");
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, s))
        .await
        .expect("upgrade in time")
        .expect("wss upgrade");
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("first frame in time")
        .expect("a frame")
        .expect("frame ok");
    let v: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["method"], "channel.list", "{v}");

    // Plain HTTP from loopback is still served on the same port (the default policy).
    let (status, body) = gw.http_get("/app.js").await;
    assert_eq!(status, 200);
    assert!(body.contains("floor.request"));

    // A restart keeps the CA and the server certificate (phones trusted them once).
    let pem = std::fs::read_to_string(state_dir(&gw).join("tls/server.pem")).unwrap();
    assert!(pem.ends_with(&ca), "the chain ends with the CA");
    assert!(
        gw.logged("tls=\"on"),
        "the listening line names the TLS mode"
    );
}

#[tokio::test]
async fn plain_http_refused_is_redirected_to_https() {
    let gw = Gateway::start_with("plain_http = \"none\"", "");
    let mut s = TcpStream::connect(&gw.addr).await.unwrap();
    let resp = raw_get(&mut s, &gw.addr, "/?token=abc").await;
    assert!(resp.starts_with("HTTP/1.1 308"), "{resp}");
    assert!(
        resp.contains(&format!("Location: https://{}/?token=abc", gw.addr)),
        "{resp}"
    );
    // HTTPS keeps working.
    let mut t = tls_connect(&gw, "127.0.0.1").await;
    let resp = raw_get(&mut t, &gw.addr, "/healthz").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn tls_off_serves_plain_http_only() {
    let gw = Gateway::start_with("tls = \"off\"", "");
    let (status, body) = gw.http_get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"ptt\""));
    assert!(!state_dir(&gw).join("tls").exists(), "no certificate made");
    let (status, _) = gw.http_get("/radiogate-ca.crt").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn ws_probe_tells_why_a_connect_is_refused() {
    let gw = Gateway::start("");
    let expired = token_with("old", Role::General, "ev", &["ch1"], -3600);
    let (status, body) = gw.http_get(&format!("/ws?token={expired}")).await;
    assert_eq!(status, 401);
    assert!(body.starts_with("unauthorized: token expired"), "{body}");
    let ok = token("alice", Role::General, "ev", &["ch1"]);
    let (status, body) = gw.http_get(&format!("/ws?token={ok}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok"), "{body}");
    let (status, _) = gw.http_get("/ws").await;
    assert_eq!(status, 401);
}

#[test]
fn token_command_prints_join_link_and_qr() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("radiogate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[state]\ndir = \"{}\"\n[auth]\nsecret = \"{}\"\n",
            dir.path().join("state").display(),
            common::SECRET
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args([
            "token", "--user", "u1", "--name", "Una", "--role", "GENERAL",
        ])
        .args([
            "--event",
            "ev",
            "--channel",
            "ch1",
            "--url",
            "https://10.0.0.5:8080/",
        ])
        .arg("--qr")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let link = lines.last().unwrap();
    assert!(
        link.starts_with("https://10.0.0.5:8080/?token=ey"),
        "{link}"
    );
    assert!(lines.len() > 15, "a QR code precedes the link:\n{text}");
    assert!(lines[0].contains('\u{2588}'), "{text}");
}

fn chromium_and_playwright(root: &Path) {
    let missing = |what: &str| -> ! {
        panic!("{what} is missing: run tests/setup-debian.sh (it installs chromium, node and the npm packages of tests/browser)")
    };
    if !Path::new("/usr/bin/chromium").exists() {
        missing("/usr/bin/chromium");
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        missing("tests/browser/node_modules/playwright-core");
    }
    let node = Command::new("node").arg("--version").output();
    if !node.map(|o| o.status.success()).unwrap_or(false) {
        missing("node");
    }
}

/// The browser tests run one at a time: two headless Chromiums with WebRTC on a 2-core machine
/// make each other's timings meaningless (the reconnect time is measured).
static ONE_BROWSER_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `node tests/browser/SCRIPT` with `env`; at most 300 s.
fn run_node(root: &Path, script: &str, env: &[(&str, String)]) -> std::process::ExitStatus {
    let _one = ONE_BROWSER_TEST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .current_dir(root.join("tests/browser"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn node");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(st) = child.try_wait().expect("wait node") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn browser_end_to_end() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    chromium_and_playwright(&root);
    // 3 slots keep the SDP small; a long time-out timer so nobody is revoked mid-test. Channel
    // ops is linked to an upstream that cannot be reached (port 9): it stays site only.
    let gw = Gateway::start_with(
        "max_frame_bytes = 65536",
        &format!(
            "[channels]\nmax_channels_per_user = 3\n[floor]\ntime_out_timer_ms = 60000\n\
             [channel_names]\nops = \"Operations\"\n\
             [[link]]\nupstream = \"ws://127.0.0.1:9\"\nchannels = [\"ops\"]\nname = \"hq\"\n\
             token = \"{}\"\n",
            token("hq", Role::Dispatch, "ev", &["ops"])
        ),
    );
    let tokens = serde_json::json!({
        "A": token("A", Role::General, "ev", &["ch1", "ch2", "ops"]),
        "B": token("B", Role::General, "ev", &["ch1"]),
        "C": token("C", Role::General, "ev", &["ch2"]),
        "D": token("D", Role::General, "ev", &["ch1"]),
        "E": token_with("E", Role::General, "ev", &["ch1"], -3600),
        "F": token("F", Role::General, "ev", &["ch1"]),
        "P": token("P", Role::Dispatch, "ev", &["ch1"]),
        "Z": token("Z", Role::Admin, "ev", &["ch1"]),
        "R": token_with("R", Role::General, "ev", &["ch1"], 20 * 60),
        "O": token("O", Role::General, "ev", &["ops", "ch1"]),
    });
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let status = run_node(
        &root,
        "e2e.mjs",
        &[
            ("RADIOGATE_PORT", port(&gw).to_string()),
            ("RADIOGATE_TOKENS", tokens.to_string()),
            (
                "RADIOGATE_SERVER_CERT",
                state_dir(&gw).join("tls/server.pem").display().to_string(),
            ),
            (
                "RADIOGATE_SPEECH",
                root.join("tests/fixtures/speech.wav").display().to_string(),
            ),
            ("RADIOGATE_ARTIFACTS", artifacts.display().to_string()),
        ],
    );
    if !status.success() {
        let log = gw.log.0.lock().unwrap().join("\n");
        panic!(
            "browser end-to-end test failed ({status}); artifacts in {}\ngateway log:\n{log}",
            artifacts.display()
        );
    }
    for shot in [
        "talk-idle-390x844.png",
        "talk-talking-390x844.png",
        "dispatch-priority-talking-390x844.png",
        "dispatch-emergency-countdown-390x844.png",
        "dispatch-broadcasting-390x844.png",
        "admin-390x844.png",
    ] {
        assert!(artifacts.join(shot).exists(), "screenshot {shot} taken");
    }
}

/// Loss of service and recovery in the web client (issue 12, tests/browser/service.mjs): the
/// script runs the gateway itself on a fixed port so it can kill and restart it. Tokens are
/// EdDSA, signed here; the gateway has only the public key, so it cannot renew them.
#[test]
fn browser_loss_of_service_and_recovery() {
    use radiogate::access::{Claims, KeyMaterial, TokenMinter};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    chromium_and_playwright(&root);
    let dir = tempfile::tempdir().unwrap();
    let keys = root.join("tests/fixtures/keys");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("radiogate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 500\n\
             [state]\ndir = \"state\"\n\
             [auth]\nalgorithm = \"EdDSA\"\npublic_key_file = {:?}\n\
             [sfu]\nudp_bind_ip = \"127.0.0.1\"\n\
             [channels]\nmax_channels_per_user = 3\n\
             [limits]\nconnections_per_minute = 10000\nuser_connections_per_minute = 10000\n\
             max_sessions_per_user = 1\n",
            keys.join("ed25519_public.pem").display().to_string()
        ),
    )
    .unwrap();
    let minter = TokenMinter::new(&KeyMaterial::EdDsa {
        public_pem: std::fs::read_to_string(keys.join("ed25519_public.pem")).unwrap(),
        private_pem: Some(std::fs::read_to_string(keys.join("ed25519_private.pem")).unwrap()),
    })
    .unwrap();
    let now = radiogate::clock::unix_secs();
    let mint = |user: &str, ttl: u64| {
        minter
            .mint(&Claims {
                sub: user.into(),
                name: format!("Name {user}"),
                event: "ev".into(),
                role: Role::General,
                channels: vec!["ch1".into()],
                device: None,
                link: None,
                iat: now - 60,
                exp: now + ttl,
            })
            .unwrap()
    };
    let tokens = serde_json::json!({
        "A": mint("A", 3600), "B": mint("B", 3600), "C": mint("C", 3600),
        "W": mint("W", 14 * 60), "M": mint("M", 3600), "N": mint("N", 3600),
    });
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-service-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let status = run_node(
        &root,
        "service.mjs",
        &[
            ("RADIOGATE_BIN", env!("CARGO_BIN_EXE_radiogate").to_string()),
            ("RADIOGATE_CONFIG", cfg.display().to_string()),
            ("RADIOGATE_PORT", port.to_string()),
            ("RADIOGATE_TOKENS", tokens.to_string()),
            (
                "RADIOGATE_SPEECH",
                root.join("tests/fixtures/speech.wav").display().to_string(),
            ),
            ("RADIOGATE_ARTIFACTS", artifacts.display().to_string()),
        ],
    );
    assert!(
        status.success(),
        "service.mjs failed ({status}); artifacts in {}",
        artifacts.display()
    );
    for shot in [
        "expiry-warning-390x844.png",
        "no-media-390x844.png",
        "offline-390x844.png",
        "back-online-390x844.png",
    ] {
        assert!(artifacts.join(shot).exists(), "screenshot {shot} taken");
    }
}
