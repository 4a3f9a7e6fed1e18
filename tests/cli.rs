//! The command line as a site technician uses it (issue 13): run from another directory, the
//! commands that never create state fail naming the path and what to do; `check-config` makes
//! the checks `run` makes before binding; durations and host names in the file; `token`'s
//! checks; `run` prints the join URLs and the mint command; backup and restore.

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn radiogate(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run radiogate")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const TOKEN_ARGS: [&str; 10] = [
    "--user",
    "u1",
    "--name",
    "User",
    "--role",
    "GENERAL",
    "--event",
    "ev",
    "--channel",
    "c1",
];

/// A `radiogate run` child and the log lines up to the mint command.
struct Run {
    child: Child,
    addr: String,
    lines: Vec<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `radiogate run --config cfg` in `cwd` and reads its log until the mint command line
/// (bounded by [`common::WAIT`]).
fn run(cfg: &Path, cwd: &Path) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_radiogate"))
        .args(["run", "--config"])
        .arg(cfg)
        .current_dir(cwd)
        .env("RADIOGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + common::WAIT;
    let mut lines = Vec::new();
    let mut addr = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no mint command logged; log so far: {lines:#?}"));
        if let Some(rest) = line.split("listening addr=").nth(1) {
            addr = rest.split_whitespace().next().unwrap().to_string();
        }
        let done = line.contains("mint a join link");
        lines.push(line);
        if done {
            break;
        }
    }
    Run { child, addr, lines }
}

#[test]
fn token_and_permissions_from_another_directory_fail_and_create_nothing() {
    let site = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = site.path().join("radiogate.toml");
    std::fs::write(&cfg, "[state]\ndir = \"state\"\n").unwrap();
    let cfg_s = cfg.to_str().unwrap();

    let mut args = vec!["token", "--config", cfg_s];
    args.extend(TOKEN_ARGS);
    let o = radiogate(elsewhere.path(), &args);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "token must fail: {out} {err}");
    assert!(out.is_empty(), "no token printed: {out}");
    let secret = site.path().join("state").join("jwt-secret");
    assert!(
        err.contains(secret.to_str().unwrap()),
        "names the path: {err}"
    );
    assert!(
        err.contains(&format!("radiogate run --config {cfg_s}")) && err.contains("auth.secret"),
        "says what to do: {err}"
    );

    let o = radiogate(
        elsewhere.path(),
        &["permissions", "--config", cfg_s, "list"],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success(), "permissions list must fail: {err}");
    let db = site.path().join("state").join("radiogate.db");
    assert!(err.contains(db.to_str().unwrap()), "{err}");

    // The embedded default (no --config) resolves against the working directory, and does
    // not create it either.
    let mut args = vec!["token"];
    args.extend(TOKEN_ARGS);
    let o = radiogate(elsewhere.path(), &args);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("radiogate-state/jwt-secret"), "{err}");

    assert_eq!(
        entries(elsewhere.path()),
        Vec::<String>::new(),
        "nothing created"
    );
    assert_eq!(
        entries(site.path()),
        vec!["radiogate.toml"],
        "nothing created"
    );
}

#[test]
fn relative_state_follows_the_config_file_and_run_prints_the_join_urls() {
    let site = tempfile::tempdir().unwrap();
    let cwd1 = tempfile::tempdir().unwrap();
    let cwd2 = tempfile::tempdir().unwrap();
    let cfg = site.path().join("radiogate.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_names = [\"radio.site.test\"]\n\
         [state]\ndir = \"state\"\n[sfu]\nudp_bind_ip = \"127.0.0.1\"\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let gw = run(&cfg, cwd1.path());
    let port = gw.addr.rsplit(':').next().unwrap().to_string();
    let log = gw.lines.join("\n");
    assert!(
        log.contains(&format!("url=https://radio.site.test:{port}/")),
        "join URL per certificate name: {log}"
    );
    assert!(
        !log.contains(&format!("url=https://localhost:{port}/")),
        "no loopback URL for phones: {log}"
    );
    assert!(
        log.contains(&format!("radiogate token --config {cfg_s} --user USER")),
        "mint command: {log}"
    );
    assert!(site.path().join("state/jwt-secret").exists());
    assert!(site.path().join("state/tls/ca.pem").exists());

    let mut args = vec!["token", "--config", cfg_s];
    args.extend(TOKEN_ARGS);
    let o = radiogate(cwd2.path(), &args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.trim().split('.').count(), 3, "a JWT: {out}");
    let o = radiogate(cwd2.path(), &["permissions", "--config", cfg_s, "list"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(entries(cwd1.path()).is_empty() && entries(cwd2.path()).is_empty());
}

#[test]
fn check_config_makes_the_checks_run_makes() {
    let site = tempfile::tempdir().unwrap();
    let cfg = site.path().join("radiogate.toml");
    let check = |toml: &str| {
        std::fs::write(&cfg, toml).unwrap();
        let o = radiogate(site.path(), &["check-config", cfg.to_str().unwrap()]);
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };
    let (code, _, err) = check(
        "[server]\ntls = \"files\"\ntls_cert_file = \"missing.pem\"\ntls_key_file = \"k.pem\"\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("server.tls_cert_file"), "names the key: {err}");
    assert!(
        err.contains(site.path().join("missing.pem").to_str().unwrap()),
        "{err}"
    );

    // A certificate and a key that are not a pair: refused as `run` refuses them.
    let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
    std::fs::write(site.path().join("c.pem"), a.cert.pem()).unwrap();
    std::fs::write(site.path().join("k.pem"), b.signing_key.serialize_pem()).unwrap();
    let files = "[server]\ntls = \"files\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n";
    let (code, _, err) = check(files);
    assert_eq!(code, Some(1), "mismatched pair: {err}");
    assert!(err.contains("server.tls"), "{err}");
    std::fs::write(site.path().join("k.pem"), a.signing_key.serialize_pem()).unwrap();
    let (code, out, err) = check(files);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok"), "{out}");

    // Durations as strings and a host name in listen.
    let (code, out, err) = check(
        "[server]\nlisten = \"localhost:8080\"\nshutdown_grace_ms = \"4s\"\n\
         [floor]\ntime_out_timer_ms = \"60s\"\n[limits]\nauth_failure_window_secs = \"15m\"\n\
         [redis]\nrefresh_interval_ms = \"30s\"\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok"), "{out}");
    let (code, _, err) = check("[floor]\ntime_out_timer_ms = \"soon\"\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("time_out_timer_ms"), "{err}");
    let (code, _, err) = check("[floor]\ntime_out_timer_ms = \"500ms\"\n");
    assert_eq!(code, Some(1), "range still applies");
    assert!(err.contains("floor.time_out_timer_ms"), "{err}");

    // An RS256 public key file that is missing is named.
    let (code, _, err) = check("[auth]\nalgorithm = \"RS256\"\npublic_key_file = \"pub.pem\"\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("auth.public_key_file"), "{err}");

    // check-config creates nothing.
    assert!(!site.path().join("radiogate-state").exists());
    let mut left = entries(site.path());
    left.retain(|n| !["radiogate.toml", "c.pem", "k.pem"].contains(&n.as_str()));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn token_checks_the_url_the_channels_and_the_ttl() {
    let site = tempfile::tempdir().unwrap();
    let cfg = site.path().join("radiogate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\nsecret = \"{}\"\nmax_ttl = \"2d\"\n",
            common::SECRET
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let base = [
        "token", "--config", cfg_s, "--user", "u", "--name", "U", "--role", "GENERAL",
    ];

    let mut args = base.to_vec();
    args.extend([
        "--event",
        "ev",
        "--channel",
        "c1",
        "--url",
        "192.168.1.20:8080",
    ]);
    let o = radiogate(site.path(), &args);
    let (out, err) = text(&o);
    assert!(!o.status.success() && out.is_empty(), "{out}");
    assert!(
        err.contains("https://192.168.1.20:8080"),
        "suggests the scheme: {err}"
    );

    let mut args = base.to_vec();
    args.extend(["--event", "ev", "--channel", "c1", "--ttl", "400d"]);
    let o = radiogate(site.path(), &args);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("auth.max_ttl"), "{err}");

    let mut args = base.to_vec();
    args.extend([
        "--event",
        "ev",
        "--ttl",
        "2d",
        "--url",
        "https://radio.site:8080",
    ]);
    let o = radiogate(site.path(), &args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: no --channel"), "{err}");
    assert!(out.starts_with("https://radio.site:8080/?token="), "{out}");
}

#[tokio::test]
async fn backup_and_restore_keep_tokens_and_the_ca() {
    let site = tempfile::tempdir().unwrap();
    let cfg = site.path().join("radiogate.toml");
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n[sfu]\nudp_bind_ip = \"127.0.0.1\"\n";
    std::fs::write(&cfg, format!("{base}[state]\ndir = \"state\"\n")).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let archive = site.path().join("backup.tar");

    // No state yet: nothing to back up, and nothing created.
    let o = radiogate(
        site.path(),
        &["backup", archive.to_str().unwrap(), "--config", cfg_s],
    );
    assert!(!o.status.success());
    assert!(!archive.exists() && !site.path().join("state").exists());

    let gw = run(&cfg, site.path());
    let mut args = vec!["token", "--config", cfg_s];
    args.extend(TOKEN_ARGS);
    let o = radiogate(site.path(), &args);
    assert!(o.status.success(), "{:?}", text(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    // Backed up while the gateway runs (SQLite's online backup).
    let o = radiogate(
        site.path(),
        &["backup", archive.to_str().unwrap(), "--config", cfg_s],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for m in [
        "radiogate.db",
        "jwt-secret",
        "tls/ca.pem",
        "tls/ca.key",
        "tls/server.key",
    ] {
        assert!(out.contains(m), "{m} in {out}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the archive holds secrets: {mode:o}");
    drop(gw);

    // A fresh state directory (the new SD card).
    let new_site = tempfile::tempdir().unwrap();
    let new_cfg = new_site.path().join("radiogate.toml");
    std::fs::write(&new_cfg, format!("{base}[state]\ndir = \"state\"\n")).unwrap();
    let new_s = new_cfg.to_str().unwrap();
    let o = radiogate(
        new_site.path(),
        &["restore", archive.to_str().unwrap(), "--config", new_s],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    for f in ["tls/ca.pem", "tls/ca.key", "jwt-secret"] {
        assert_eq!(
            std::fs::read(site.path().join("state").join(f)).unwrap(),
            std::fs::read(new_site.path().join("state").join(f)).unwrap(),
            "{f} restored"
        );
    }
    // Restoring again over existing state needs --force.
    let o = radiogate(
        new_site.path(),
        &["restore", archive.to_str().unwrap(), "--config", new_s],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("--force"), "{err}");

    // The token minted before the backup connects to the gateway on the restored state.
    let gw = run(&new_cfg, new_site.path());
    let ws = common::connect_url(&format!("ws://{}/ws?token={token}", gw.addr)).await;
    assert!(ws.is_ok(), "{:?}", ws.err());
    // Refused while the gateway holds the state directory.
    let o = radiogate(
        new_site.path(),
        &[
            "restore",
            archive.to_str().unwrap(),
            "--config",
            new_s,
            "--force",
        ],
    );
    assert!(!o.status.success());
}

/// `radiogate bans` while the gateway runs (issue 13): a ban added on the Pi's shell closes the
/// user's session (4003 with the reason) and refuses reconnects; `list` shows it; `remove`
/// lets the user back in; both are audited.
#[tokio::test]
async fn bans_from_the_cli_act_on_the_running_gateway() {
    use common::{connect, token};
    use radiogate::access::role::Role;
    use std::time::Duration;
    let gw = common::Gateway::start("");
    let cfg = gw.dir.path().join("radiogate.toml");
    let cfg = cfg.to_str().unwrap();
    let eve_token = token("eve", Role::General, "ev1", &["c1"]);
    let mut eve = connect(&gw, &eve_token).await.unwrap();
    eve.notification("channel.list").await;

    let o = radiogate(
        gw.dir.path(),
        &[
            "bans",
            "--config",
            cfg,
            "add",
            "--user",
            "eve",
            "--reason",
            "left the site",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let closed = tokio::time::timeout(Duration::from_secs(10), eve.wait_closed())
        .await
        .expect("closed within the reload interval");
    assert_eq!(
        closed,
        (
            Some(4003),
            "Account is suspended: left the site".to_string()
        )
    );
    let refused = connect(&gw, &eve_token).await.err().expect("refused");
    assert_eq!(refused.0, 403, "{refused:?}");
    let (out, _) = text(&radiogate(
        gw.dir.path(),
        &["bans", "--config", cfg, "list"],
    ));
    assert!(out.starts_with("eve\tleft the site\tcli:"), "{out}");

    let o = radiogate(
        gw.dir.path(),
        &["bans", "--config", cfg, "remove", "--user", "eve"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("lifted the ban on eve"));
    let mut back = None;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    for _ in 0..50 {
        poll.tick().await;
        if let Ok(c) = connect(&gw, &eve_token).await {
            back = Some(c);
            break;
        }
    }
    assert!(back.is_some(), "eve connects again after the ban is lifted");

    // Audited with the CLI as the actor.
    let mut admin = connect(&gw, &token("root", Role::Admin, "ev1", &[]))
        .await
        .unwrap();
    let r = admin
        .call("admin.audit", serde_json::json!({"userId": "eve"}))
        .await
        .unwrap();
    let actions: Vec<(String, String)> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        actions
            .iter()
            .any(|(a, by)| a == "BAN" && by.starts_with("cli:")),
        "{actions:?}"
    );
    assert!(actions.iter().any(|(a, _)| a == "UNBAN"), "{actions:?}");

    // Never creates state: a config whose state directory does not exist fails.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("r.toml"), "[state]\ndir = \"nowhere\"\n").unwrap();
    let o = radiogate(empty.path(), &["bans", "--config", "r.toml", "list"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("no database at"), "{:?}", text(&o));
    assert!(!empty.path().join("nowhere").exists());
}
