//! `radiogate permissions`: list and set users' channels and events' channels in the local
//! SQLite copy (the standalone authority; with Redis configured, Redis wins at the next sync).

use super::{Source, SqliteStore};
use crate::config::Config;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// `radiogate permissions [--config FILE] COMMAND`.
#[derive(Debug, Args)]
pub struct PermissionsArgs {
    /// Configuration file naming the state directory (default: embedded configuration).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: PermissionsCmd,
}

/// The `permissions` subcommands.
#[derive(Debug, Subcommand)]
pub enum PermissionsCmd {
    /// List recorded users: event, user, source (redis, token, local), channels.
    List {
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
    },
    /// Set a user's channels in an event (source `local`: wins over the token standalone).
    Set {
        /// Event id.
        #[arg(long)]
        event: String,
        /// User id.
        #[arg(long)]
        user: String,
        /// Permitted channel id (repeat; none = no channel).
        #[arg(long = "channel")]
        channels: Vec<String>,
    },
    /// Forget a user's recorded channels (standalone: the token's channels apply again).
    Clear {
        /// Event id.
        #[arg(long)]
        event: String,
        /// User id.
        #[arg(long)]
        user: String,
    },
    /// List the channels associated with an event.
    EventList {
        /// Event id.
        #[arg(long)]
        event: String,
    },
    /// Make the given channels exactly the channels of an event.
    EventSet {
        /// Event id.
        #[arg(long)]
        event: String,
        /// Channel id (repeat).
        #[arg(long = "channel")]
        channels: Vec<String>,
    },
}

fn valid_id(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > super::redis_source::MAX_ID_BYTES
        || s.chars().any(char::is_control)
    {
        return Err(format!(
            "{what} {s:?}: must be 1..=256 bytes without control characters"
        ));
    }
    Ok(())
}

/// Runs a `permissions` subcommand; prints to stdout, errors to stderr.
pub fn run(args: PermissionsArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("radiogate permissions: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: PermissionsArgs) -> Result<(), String> {
    let cfg = Config::for_command(args.config.as_deref())?;
    // Never creates state (issue 13).
    let db = cfg.existing_database()?;
    let store = SqliteStore::open(&db).map_err(|e| e.to_string())?;
    let warn_redis = || {
        if cfg.redis.enabled() {
            eprintln!(
                "warning: redis.url is configured: the control plane's Redis is the authority \
                 and replaces this at the next sync"
            );
        }
    };
    let now = crate::clock::unix_ms();
    match args.cmd {
        PermissionsCmd::List { event, user } => {
            let recs = store
                .user_records(event.as_deref())
                .map_err(|e| e.to_string())?;
            for r in recs
                .iter()
                .filter(|r| user.as_ref().is_none_or(|u| *u == r.user))
            {
                let src = serde_json::to_value(r.source)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                println!("{}\t{}\t{}\t{}", r.event, r.user, src, r.channels.join(","));
            }
        }
        PermissionsCmd::Set {
            event,
            user,
            channels,
        } => {
            valid_id("event", &event)?;
            valid_id("user", &user)?;
            for c in &channels {
                valid_id("channel", c)?;
            }
            warn_redis();
            store
                .record_users(
                    &[(event.clone(), user.clone(), channels)],
                    &[],
                    Source::Local,
                    now,
                )
                .map_err(|e| e.to_string())?;
            let rec = store
                .user_record(&event, &user)
                .map_err(|e| e.to_string())?;
            let chs = rec.map(|r| r.channels.join(",")).unwrap_or_default();
            println!("{event}\t{user}\tlocal\t{chs}");
        }
        PermissionsCmd::Clear { event, user } => {
            warn_redis();
            let had = store.clear_user(&event, &user).map_err(|e| e.to_string())?;
            println!("{}", if had { "cleared" } else { "nothing recorded" });
        }
        PermissionsCmd::EventList { event } => {
            for c in store.event_channels(&event).map_err(|e| e.to_string())? {
                println!("{c}");
            }
        }
        PermissionsCmd::EventSet { event, channels } => {
            valid_id("event", &event)?;
            for c in &channels {
                valid_id("channel", c)?;
            }
            warn_redis();
            store
                .set_event_channels(&event, &channels)
                .map_err(|e| e.to_string())?;
            println!("{event}\t{}", channels.join(","));
        }
    }
    Ok(())
}
