//! The `radiogate` command line: run the gateway, print or check configuration, mint tokens.

// No unsafe code in the radiogate crate, and no allow can bring it back (Cargo.toml lints).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use radiogate::access::role::Role;
use radiogate::access::token::{parse_ttl, Claims, TokenMinter};
use radiogate::app::{existing_key_material, Gateway};
use radiogate::config::{Config, EMBEDDED_DEFAULT};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "radiogate", version = radiogate::ops::VERSION, about = "Edge push-to-talk radio gateway")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (embedded default configuration without --config).
    Run {
        /// Configuration file (TOML); see `radiogate print-config`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the documented default configuration.
    PrintConfig,
    /// Check a configuration file the way `run` does before it binds (ranges, TLS files and
    /// pair, token keys, state); creates nothing. Exits 1 naming the bad key or file.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Unkey every configured radio PTT output (for systemd `ExecStopPost=` after a crash);
    /// exits 0 when all are unkeyed or none is configured, 1 when one could not be reached.
    Unkey {
        /// Configuration file (default: embedded configuration, which has no radios).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Mint a token signed with the configured key (for a site without a control plane).
    Token {
        /// User id (`sub`).
        #[arg(long)]
        user: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// ADMIN, DISPATCH or GENERAL.
        #[arg(long)]
        role: Role,
        /// Event id.
        #[arg(long)]
        event: String,
        /// Permitted channel id (repeat for several).
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// Device id, for hardware clients.
        #[arg(long)]
        device: Option<String>,
        /// Site name, for the token a linked site gateway uses at this (upstream) gateway
        /// (`[[link]] token`; README "Linked sites").
        #[arg(long)]
        link: Option<String>,
        /// Lifetime, e.g. 8h, 30m, 2d (default: auth.default_ttl; at most auth.max_ttl).
        #[arg(long)]
        ttl: Option<String>,
        /// Configuration file naming the key (default: embedded configuration).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the join link BASE/?token=... instead of the bare token
        /// (BASE e.g. https://192.168.1.20:8080).
        #[arg(long, value_name = "BASE")]
        url: Option<String>,
        /// Also print the join link (or the token) as a QR code for phones to scan.
        #[arg(long)]
        qr: bool,
    },
    /// List and set users' and events' channels in the local SQLite copy.
    Permissions(radiogate::permissions::cli::PermissionsArgs),
    /// List, add and lift bans (works with the gateway running: it disconnects a newly
    /// banned user within 2 s).
    Bans(radiogate::ops::bans_cli::BansArgs),
    /// Write the state that phones depend on (CA and server key, token secret, SQLite
    /// database) to FILE, a tar archive (mode 0600); works while the gateway runs.
    Backup {
        /// The archive to write.
        file: PathBuf,
        /// Configuration file naming the state directory (default: embedded configuration).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Restore a `radiogate backup` archive into the state directory (gateway stopped).
    Restore {
        /// The archive to read.
        file: PathBuf,
        /// Configuration file naming the state directory (default: embedded configuration).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Replace an existing database and secret.
        #[arg(long)]
        force: bool,
    },
}

/// `--url BASE` must be an absolute http(s) URL: a phone cannot open a link without one.
fn check_base_url(base: &str) -> Result<(), String> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("--url {base:?}: needs the scheme, e.g. https://{base} (phones open the link as given)")
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("--url {base:?}: no host after the scheme"));
    }
    Ok(())
}

fn load(config: Option<&PathBuf>) -> Result<Config, String> {
    Config::for_command(config.map(PathBuf::as_path))
}

fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    // The journal (structured) under systemd, readable lines on a terminal.
    radiogate::ops::init_logging()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Permissions(args) => radiogate::permissions::cli::run(args),
        Cmd::Bans(args) => radiogate::ops::bans_cli::run(args),
        Cmd::PrintConfig => {
            print!("{EMBEDDED_DEFAULT}");
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig { file } => {
            let checked = Config::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|cfg| radiogate::app::preflight(&cfg).map_err(|e| e.to_string()));
            match checked {
                Ok(warnings) => {
                    for w in warnings {
                        println!("note: {w}");
                    }
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Backup { file, config } => {
            let result = load(config.as_ref()).and_then(|cfg| {
                radiogate::ops::backup::backup(&cfg.state.dir, &file).map_err(|e| e.to_string())
            });
            match result {
                Ok(members) => {
                    println!("{}: {}", file.display(), members.join(" "));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("radiogate backup: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Restore {
            file,
            config,
            force,
        } => {
            let result = load(config.as_ref()).and_then(|cfg| {
                radiogate::ops::backup::restore(&file, &cfg.state.dir, force)
                    .map(|m| (cfg.state.dir.clone(), m))
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok((dir, members)) => {
                    println!("restored into {}: {}", dir.display(), members.join(" "));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("radiogate restore: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Unkey { config } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("radiogate unkey: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (lines, ok) = radiogate::bridge::unkey_all(&cfg.radio);
            for l in &lines {
                println!("{l}");
            }
            if lines.is_empty() {
                println!("no radio configured: nothing to unkey");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Token {
            user,
            name,
            role,
            event,
            channels,
            device,
            link,
            ttl,
            config,
            url,
            qr,
        } => {
            if let Some(base) = &url {
                if let Err(e) = check_base_url(base) {
                    eprintln!("radiogate token: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if channels.is_empty() {
                eprintln!(
                    "radiogate token: warning: no --channel: the user can join no channel unless \
                     the permission store (radiogate permissions, Redis) grants some"
                );
            }
            let result = load(config.as_ref()).and_then(|cfg| {
                let ttl = parse_ttl(ttl.as_deref().unwrap_or(&cfg.auth.default_ttl))
                    .map_err(|e| format!("--ttl: {e}"))?;
                let max = cfg.max_ttl().map_err(|e| e.to_string())?;
                if ttl > max {
                    return Err(format!(
                        "--ttl: {} s is longer than auth.max_ttl {:?} ({} s); a shorter link, \
                         or raise auth.max_ttl in the configuration",
                        ttl.as_secs(),
                        cfg.auth.max_ttl,
                        max.as_secs()
                    ));
                }
                let key = existing_key_material(&cfg).map_err(|e| e.to_string())?;
                let minter = TokenMinter::new(&key).map_err(|e| e.to_string())?;
                let now = radiogate::clock::unix_secs();
                minter
                    .mint(&Claims {
                        sub: user,
                        name,
                        event,
                        role,
                        channels,
                        device,
                        link,
                        iat: now,
                        exp: now + ttl.as_secs(),
                    })
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(t) => {
                    let text = match url {
                        Some(base) => radiogate::web::join_url(&base, &t),
                        None => t,
                    };
                    if qr {
                        match radiogate::web::qr_terminal(&text) {
                            Ok(code) => print!("{code}"),
                            Err(e) => {
                                eprintln!("radiogate token: --qr: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    }
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("radiogate token: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run { config } => {
            // Held until `main` returns: dropping it flushes the queued log lines.
            let _log = init_logging();
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("configuration: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("tokio runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let gw = Gateway::new(cfg).map_err(|e| e.to_string())?;
    let token = gw.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received");
        radiogate::ops::systemd::stopping();
        token.cancel();
    });
    // systemd: READY=1 once the listener is up, then watchdog pings while alive.
    let (hub, shutdown) = (Arc::clone(&gw.hub), gw.shutdown.clone());
    gw.serve(move |addr| {
        radiogate::ops::systemd::ready(addr);
        tokio::spawn(radiogate::ops::systemd::watchdog(hub, shutdown));
    })
    .await
    .map_err(|e| e.to_string())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
