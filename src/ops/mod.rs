//! Operations on the Pi: the Prometheus `/metrics` endpoint ([`metrics`]), systemd readiness
//! and watchdog ([`systemd`]), journal or terminal logging ([`init_logging`]), the version
//! string with the git revision ([`VERSION`]), returning freed heap memory after sessions leave
//! ([`memory`]). The state directory's checks live in
//! [`crate::state`], the wall clock in [`crate::clock`] (low-level modules the stores use).

pub mod memory;
pub mod metrics;
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
/// level); otherwise human-readable lines on stderr (coloured on a terminal), written by a
/// background thread through a queue of [`LOG_QUEUE_LINES`] lines, so a slow or blocked
/// reader of stderr never delays floor control (lines beyond the queue are dropped).
/// `RADIOGATE_LOG` sets the filter; `RADIOGATE_LOG_FORMAT=journal|text` overrides the choice.
///
/// Returns the writer's guard for the text format: keep it until exit; dropping it flushes
/// the queue.
pub fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RADIOGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(
            "info,webrtc=warn,rtc=warn,rtc_ice=warn,rtc_dtls=warn,rtc_srtp=warn,rtc_sctp=warn,rtc_interceptor=warn",
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
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Some(guard)
}
