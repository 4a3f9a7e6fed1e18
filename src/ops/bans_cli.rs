//! `radiogate bans`: list, add and lift bans in the state directory's database from the Pi's
//! shell (issue 13). It works while the gateway runs (the same SQLite file in WAL mode): the
//! gateway picks a change up within [`crate::access::bans::RELOAD_INTERVAL`], closes a newly banned
//! user's sessions (4003, "Account is suspended: REASON") and audits it. Like `permissions`,
//! it never creates state.

use crate::access::bans::{Ban, BanList};
use crate::config::Config;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// `radiogate bans [--config FILE] COMMAND`.
#[derive(Debug, Args)]
pub struct BansArgs {
    /// Configuration file naming the state directory (default: embedded configuration).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: BansCmd,
}

/// The `bans` subcommands.
#[derive(Debug, Subcommand)]
pub enum BansCmd {
    /// List bans: user, reason, by, when (UTC).
    List,
    /// Ban a user: refused at connect (403) and, with the gateway running, disconnected.
    Add {
        /// User id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Why (shown to the user and in the admin panel).
        #[arg(long, default_value = "banned by the site technician")]
        reason: String,
    },
    /// Lift a user's ban.
    Remove {
        /// User id.
        #[arg(long)]
        user: String,
    },
}

/// Runs a `bans` subcommand; prints to stdout, errors to stderr.
pub fn run(args: BansArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("radiogate bans: {e}");
            ExitCode::FAILURE
        }
    }
}

fn valid_user(u: &str) -> Result<(), String> {
    if u.is_empty() || u.len() > 256 || u.chars().any(char::is_control) {
        return Err(format!(
            "user {u:?}: must be 1..=256 bytes without control characters"
        ));
    }
    Ok(())
}

fn run_inner(args: BansArgs) -> Result<(), String> {
    let cfg = Config::for_command(args.config.as_deref())?;
    let db = cfg.existing_database()?;
    let bans = BanList::open(&db).map_err(|e| e.to_string())?;
    match args.cmd {
        BansCmd::List => {
            for b in bans.list() {
                let at = utc(b.at_ms);
                println!("{}\t{}\t{}\t{at}", b.user_id, b.reason, b.by);
            }
        }
        BansCmd::Add { user, reason } => {
            valid_user(&user)?;
            if reason.chars().any(char::is_control) {
                return Err("reason: no control characters".into());
            }
            let who = std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "unknown".into());
            bans.ban(Ban {
                user_id: user.clone(),
                reason,
                by: format!("cli:{who}"),
                at_ms: crate::clock::unix_ms(),
            })
            .map_err(|e| e.to_string())?;
            if bans.write_health().status().pending > 0 {
                return Err(format!(
                    "{user}: the database refused the write (disk full?)"
                ));
            }
            println!("banned {user} (a running gateway disconnects them within 2 s)");
        }
        BansCmd::Remove { user } => {
            valid_user(&user)?;
            let was = bans.unban(&user).map_err(|e| e.to_string())?;
            if bans.write_health().status().pending > 0 {
                return Err(format!(
                    "{user}: the database refused the write (disk full?)"
                ));
            }
            if was {
                println!("lifted the ban on {user}");
            } else {
                println!("{user} was not banned");
            }
        }
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for ms since the Unix epoch.
fn utc(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::utc(951_782_400_000 + 3_723_000),
            "2000-02-29T01:02:03Z"
        );
    }
}
