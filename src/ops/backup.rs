//! `radiogate backup FILE` and `radiogate restore FILE`: the state that cannot be re-created
//! without every phone noticing, in one tar file (issue 13: a dead SD card meant every phone
//! re-installs the CA and every link is re-issued).
//!
//! The archive holds `radiogate.db` (copied with SQLite's online backup API, so the gateway may
//! keep running), `jwt-secret` (the HS256 token secret when generated) and `tls/` (the local
//! CA's certificate and key, the server certificate and key). Restore refuses while a gateway
//! holds the state directory, and refuses to overwrite existing state without `force`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The files an archive may hold, relative to the state directory; anything else in an
/// archive is refused. The database comes first.
pub const MEMBERS: [&str; 7] = [
    "radiogate.db",
    "jwt-secret",
    "tls/ca.pem",
    "tls/ca.key",
    "tls/server.pem",
    "tls/server.key",
    "tls/server.names",
];

/// Members that hold secrets: written with mode 0600.
const SECRET: [&str; 3] = ["jwt-secret", "tls/ca.key", "tls/server.key"];

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be copied.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// There is no state to back up.
    #[error(
        "no database at {0}: nothing to back up (wrong --config, or the gateway never ran with it)"
    )]
    NoDatabase(PathBuf),
    /// The archive is not a radiogate backup.
    #[error("{path} is not a radiogate backup: {reason}")]
    NotABackup {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state directory already holds state, and `force` was not given.
    #[error("{0} already holds state (radiogate.db or jwt-secret); add --force to replace it")]
    Exists(PathBuf),
    /// A gateway is running on the state directory.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

fn create_private(path: &Path) -> Result<std::fs::File, BackupError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io("cannot write", path))
}

/// Writes the archive of `state_dir` to `file` (mode 0600: it holds the secrets). Returns the
/// members written.
///
/// # Errors
/// [`BackupError::NoDatabase`] when `state_dir` has no `radiogate.db`; I/O and SQLite errors
/// naming the file.
pub fn backup(state_dir: &Path, file: &Path) -> Result<Vec<&'static str>, BackupError> {
    let db = state_dir.join("radiogate.db");
    if !db.exists() {
        return Err(BackupError::NoDatabase(db));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".radiogate-backup")
        .tempdir_in(
            file.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(io("cannot create a temporary directory next to", file))?;
    let copy = tmp.path().join("radiogate.db");
    {
        let sqlite = |source| BackupError::Sqlite {
            path: db.clone(),
            source,
        };
        // Not read-only: a WAL database's reader needs its -shm; nothing is written.
        let src = rusqlite::Connection::open(&db).map_err(sqlite)?;
        src.busy_timeout(crate::state::BUSY_TIMEOUT)
            .map_err(sqlite)?;
        let mut dst = rusqlite::Connection::open(&copy).map_err(sqlite)?;
        let b = rusqlite::backup::Backup::new(&src, &mut dst).map_err(sqlite)?;
        b.run_to_completion(256, Duration::from_millis(10), None)
            .map_err(sqlite)?;
    }
    let out = create_private(file)?;
    let mut tar = tar::Builder::new(out);
    let mut written = Vec::new();
    for m in MEMBERS {
        let src = if m == "radiogate.db" {
            copy.clone()
        } else {
            state_dir.join(m)
        };
        if !src.exists() {
            continue;
        }
        tar.append_path_with_name(&src, m)
            .map_err(io("cannot add to the archive", &src))?;
        written.push(m);
    }
    let mut out = tar.into_inner().map_err(io("cannot write", file))?;
    out.flush().map_err(io("cannot write", file))?;
    out.sync_all().map_err(io("cannot write", file))?;
    Ok(written)
}

/// Restores the archive `file` into `state_dir` (created if missing), refusing while a
/// gateway holds the directory and, without `force`, when it already holds a database or a
/// secret. A leftover `-wal`/`-shm` of a replaced database is removed. Returns the members
/// restored.
///
/// # Errors
/// [`BackupError::State`] when a gateway runs on the directory; [`BackupError::Exists`];
/// [`BackupError::NotABackup`] when the archive holds an unknown member or no database.
pub fn restore(file: &Path, state_dir: &Path, force: bool) -> Result<Vec<String>, BackupError> {
    std::fs::create_dir_all(state_dir).map_err(io("cannot create", state_dir))?;
    let _lock = crate::state::lock_dir(state_dir)?;
    if !force && (state_dir.join("radiogate.db").exists() || state_dir.join("jwt-secret").exists())
    {
        return Err(BackupError::Exists(state_dir.to_path_buf()));
    }
    let not_backup = |reason: String| BackupError::NotABackup {
        path: file.to_path_buf(),
        reason,
    };
    let staging = tempfile::Builder::new()
        .prefix(".restore")
        .tempdir_in(state_dir)
        .map_err(io("cannot create a temporary directory in", state_dir))?;
    let input = std::fs::File::open(file).map_err(io("cannot read", file))?;
    let mut archive = tar::Archive::new(input);
    let mut found = Vec::new();
    for entry in archive.entries().map_err(io("cannot read", file))? {
        let mut entry = entry.map_err(io("cannot read", file))?;
        let name = entry
            .path()
            .map_err(io("cannot read", file))?
            .to_string_lossy()
            .into_owned();
        let Some(m) = MEMBERS.iter().find(|m| **m == name) else {
            return Err(not_backup(format!("unexpected member {name:?}")));
        };
        let dst = staging.path().join(m);
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(io("cannot create", d))?;
        }
        let mut out = create_private(&dst)?;
        std::io::copy(&mut entry, &mut out).map_err(io("cannot write", &dst))?;
        found.push(m.to_string());
    }
    if !found.iter().any(|m| m == "radiogate.db") {
        return Err(not_backup("no radiogate.db in it".into()));
    }
    crate::state::check_database(&staging.path().join("radiogate.db"))?;
    for suffix in ["-wal", "-shm"] {
        let p = state_dir.join(format!("radiogate.db{suffix}"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(io("cannot remove", &p))?;
        }
    }
    for m in &found {
        let (from, to) = (staging.path().join(m), state_dir.join(m));
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io("cannot create", d))?;
        }
        if !SECRET.contains(&m.as_str()) {
            set_mode(&from, 0o644)?;
        }
        std::fs::rename(&from, &to).map_err(io("cannot write", &to))?;
    }
    Ok(found)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot set the mode of", path))?;
    }
    Ok(())
}
