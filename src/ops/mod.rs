//! Operations on the Pi: the Prometheus `/metrics` endpoint ([`metrics`]), systemd readiness
//! and watchdog ([`systemd`]), journal or terminal logging ([`init_logging`]), the version
//! string with the git revision ([`VERSION`]) and the state directory's checks at start
//! ([`state`]: one gateway per state directory, database integrity).

pub mod metrics;
pub mod state;
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

/// Logging for `radiogate run`: under systemd (stderr is the journal) structured journal
/// entries (each tracing field a journal field, e.g. `F_ADDR=`, with the priority from the
/// level); otherwise human-readable lines on stderr (coloured on a terminal).
/// `RADIOGATE_LOG` sets the filter; `RADIOGATE_LOG_FORMAT=journal|text` overrides the choice.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RADIOGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,webrtc=warn,rtc=warn"));
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
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
