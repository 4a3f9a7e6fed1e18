//! Operations on the Pi: the Prometheus `/metrics` endpoint ([`metrics`]), systemd readiness
//! and watchdog ([`systemd`]), journal or terminal logging ([`init_logging`]), the version
//! string with the git revision ([`VERSION`]), returning freed heap memory after sessions leave
//! ([`memory`]). The state directory's checks live in
//! [`crate::state`], the wall clock in [`crate::clock`] (low-level modules the stores use).

pub mod backup;
pub mod bans_cli;
pub mod link_metrics;
pub mod log_escape;
pub mod memory;
pub mod metrics;
pub mod radio_metrics;
pub mod systemd;

/// `radiogate --version`: the package version and the git revision it was built from
/// (`unknown` when built from a tarball without `.git` and without `RADIOGATE_GIT_REV`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("RADIOGATE_GIT_REV"),
    ")"
);

/// The git revision the binary was built from (see [`VERSION`]).
pub const GIT_REV: &str = env!("RADIOGATE_GIT_REV");

/// When the binary's source was committed (or built), seconds since 1970 (build.rs): the wall
/// clock cannot truly be earlier.
pub const BUILD_UNIX: &str = env!("RADIOGATE_BUILD_UNIX");

/// How many seconds the wall clock (`now_unix`, seconds since 1970) is before [`BUILD_UNIX`],
/// or `None` when it is not: a Pi with no RTC and no network starts at an old time, and
/// tokens' `iat`/`exp` checks then refuse or accept the wrong tokens (issue 13).
pub fn clock_behind_build(now_unix: u64) -> Option<u64> {
    behind(now_unix, BUILD_UNIX.parse().unwrap_or(0))
}

fn behind(now: u64, built: u64) -> Option<u64> {
    (now < built).then(|| built - now)
}

/// Whether stderr is the systemd journal: `JOURNAL_STREAM` (set by systemd for
/// `StandardError=journal`) names the device and inode of stderr.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let v = v.to_string_lossy();
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Lines the stderr log writer queues before it drops (and counts) new ones.
pub const LOG_QUEUE_LINES: usize = 16_384;

/// Logging for `radiogate run`: under systemd (stderr is the journal) structured journal
/// entries (each tracing field a journal field, e.g. `F_ADDR=`, with the priority from the
/// level); otherwise human-readable lines on stderr, each escaped by
/// [`log_escape::EscapingWriter`] (no colours: escape sequences are escaped too), written by a
/// background thread through a queue of [`LOG_QUEUE_LINES`] lines, so a slow or blocked
/// reader of stderr never delays floor control (lines beyond the queue are dropped).
/// `RADIOGATE_LOG` sets the filter (the default keeps webrtc-rs's ICE and DTLS crates to
/// errors: each phone made them warn twice about things that need no action, e.g. "conn.remote_addr
/// is empty", "pingAllCandidates called with no candidate pairs"); `RADIOGATE_LOG_FORMAT=journal|text` overrides the choice.
///
/// Returns the writer's guard for the text format: keep it until exit; dropping it flushes
/// the queue.
pub fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RADIOGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(
            "info,webrtc=warn,rtc=warn,rtc_ice=error,rtc_dtls=error,rtc_srtp=warn,rtc_sctp=warn,rtc_interceptor=warn",
        ));
    let journal = match std::env::var("RADIOGATE_LOG_FORMAT").as_deref() {
        Ok("journal") => true,
        Ok("text") => false,
        _ => stderr_is_journal(),
    };
    if journal {
        if let Ok(layer) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(layer.with_syslog_identifier("radiogate".into()))
                .init();
            return None;
        }
    }
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("radiogate-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_escape::MakeEscaping(writer))
        .with_ansi(false)
        .init();
    Some(guard)
}

#[cfg(test)]
mod clock_tests {
    #[test]
    fn a_clock_before_the_build_is_reported() {
        assert_eq!(super::behind(100, 150), Some(50));
        assert_eq!(super::behind(150, 150), None);
        assert_eq!(super::behind(200, 150), None);
        assert!(super::BUILD_UNIX.parse::<u64>().unwrap() > 1_700_000_000);
        assert_eq!(super::clock_behind_build(u64::MAX), None);
    }
}
