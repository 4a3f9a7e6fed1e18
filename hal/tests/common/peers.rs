//! Peer programs the real-peer tests start: hamlib's rigctld and PulseAudio. Shared by the hal
//! crate's tests and the gateway's (`tests/common/mod.rs` includes this file by path).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts hamlib's rigctld with the dummy rig (`-m 1`, PTT by CAT command `-P RIG`) listening
/// on 127.0.0.1:`port`. Does not wait for it to listen.
pub fn spawn_rigctld(port: u16) -> Child {
    Command::new("rigctld")
        .args([
            "-m",
            "1",
            "-P",
            "RIG",
            "-t",
            &port.to_string(),
            "-T",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rigctld is not installed: run tests/setup-debian.sh (libhamlib-utils)")
}

/// Starts PulseAudio with a null sink for each of `sinks` and its native protocol on the
/// socket `DIR/native`, with `dir` as its runtime directory and HOME (as root it needs its own,
/// and no idle exit), and waits, at most 15 s, until `pactl` lists every sink. Returns the
/// daemon and the `PULSE_SERVER` value for clients. Panics, after killing the daemon, when it
/// does not come up in time.
// The child is handed to the caller, whose drop guard kills and waits for it.
#[allow(clippy::zombie_processes)]
pub fn spawn_pulse(dir: &Path, sinks: &[&str]) -> (Child, String) {
    let socket = dir.join("native");
    let mut cmd = Command::new("pulseaudio");
    cmd.args([
        "--daemonize=no",
        "--exit-idle-time=-1",
        "-n",
        "--use-pid-file=no",
        "--disable-shm=yes",
    ])
    .arg(format!(
        "--load=module-native-protocol-unix socket={} auth-anonymous=1",
        socket.display()
    ));
    for s in sinks {
        cmd.arg(format!("--load=module-null-sink sink_name={s}"));
    }
    let mut child = cmd
        .env("XDG_RUNTIME_DIR", dir)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pulseaudio is not installed: run tests/setup-debian.sh (pulseaudio)");
    let server = format!("unix:{}", socket.display());
    let listed = super::wait::wait_for(Duration::from_secs(15), || {
        let o = Command::new("pactl")
            .args(["list", "short", "sinks"])
            .env("PULSE_SERVER", &server)
            .output()
            .ok()?;
        let out = String::from_utf8_lossy(&o.stdout);
        (o.status.success() && sinks.iter().all(|s| out.contains(s))).then_some(())
    });
    if listed.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("pulseaudio with null sinks {sinks:?} did not come up within 15 s");
    }
    (child, server)
}
