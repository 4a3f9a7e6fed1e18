//! The state directory at start: one gateway per directory, and the database checked before
//! anything writes to it.
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL`: a crash or power cut never corrupts
//! the database (a transaction is in the main file or the `-wal` file, or not at all, and
//! SQLite replays or discards a leftover `-wal`/`-shm` at the next open); a power cut may
//! lose the last transactions that were still only in the page cache (a kill of the process
//! does not). What remains: an SD card that corrupted pages (checked here with
//! `PRAGMA quick_check`, with a message naming the file and what to do), and a second
//! gateway on the same directory (refused here by an advisory lock that the kernel drops when
//! the holder dies, so it is never left stale by a crash or power cut).

pub mod disk;
pub mod write_health;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the state directory's lock.
    #[error(
        "state directory {dir} is in use by another radiogate (lock file {lock}); stop it first \
         (`systemctl stop radiogate`, or find it with `fuser {lock}`), or give this one another \
         state.dir"
    )]
    InUse {
        /// The state directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file cannot be created.
    #[error("cannot create lock file {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database is corrupt (failed its integrity check, or is not an SQLite file).
    #[error(
        "database {path} is damaged ({detail}). The gateway does not start on a damaged \
         database. To recover: stop radiogate, keep a copy of {path} (and its -wal and -shm \
         files) for analysis, then either salvage it with `sqlite3 {path} .recover | sqlite3 \
         {path}.new && mv {path}.new {path}` or move it aside to start with an empty one (bans, \
         audit log and permissions set with `radiogate permissions` are then lost; Redis \
         permissions come back at the next sync)"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// The database stayed locked by another process beyond the busy timeout.
    #[error(
        "database {path} stayed locked for {secs} s by another process ({detail}); stop the \
         other process using it (`fuser {path}`), then start radiogate again"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The busy timeout, seconds.
        secs: u64,
        /// What SQLite reported.
        detail: String,
    },
    /// Another SQLite error (permissions, disk full, I/O).
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
}

/// Held for the gateway's life: the state directory's lock (`STATE_DIR/radiogate.lock`).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Opens a connection to the state database with the gateway's settings: 5 s busy timeout,
/// WAL journal, `synchronous=NORMAL` (durable across a process crash; the last commits may be
/// lost on a power cut, never corrupted).
///
/// # Errors
/// The SQLite error when the file cannot be opened or the pragmas cannot be set.
pub fn open_connection(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Takes the state directory's exclusive advisory lock, refusing when another process
/// holds it. The kernel releases it when the process exits in any way.
///
/// # Errors
/// [`StateError::InUse`] when held elsewhere, [`StateError::Lock`] when it cannot be created.
pub fn lock_dir(dir: &Path) -> Result<DirLock, StateError> {
    let path = dir.join("radiogate.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StateError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StateError::InUse {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StateError::Lock { path, source }),
    }
}

/// How long [`check_database`] waits for another process's lock on the database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database (when it exists), which replays or discards a leftover `-wal` from a
/// crash, and runs `PRAGMA quick_check`.
///
/// # Errors
/// [`StateError::Corrupt`], [`StateError::Locked`] or [`StateError::Sqlite`], each naming
/// the file and what to do.
pub fn check_database(path: &Path) -> Result<(), StateError> {
    if !path.exists() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let classify = |e: rusqlite::Error| -> StateError {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::NotADatabase | C::DatabaseCorrupt) => StateError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
            Some(C::DatabaseBusy | C::DatabaseLocked) => StateError::Locked {
                path: path.to_path_buf(),
                secs: BUSY_TIMEOUT.as_secs(),
                detail: e.to_string(),
            },
            _ => StateError::Sqlite {
                path: path.to_path_buf(),
                source: e,
            },
        }
    };
    let conn = rusqlite::Connection::open(path).map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    let problems: Vec<String> = {
        let mut stmt = conn.prepare("PRAGMA quick_check").map_err(classify)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(classify)?;
        rows.collect::<Result<_, _>>().map_err(classify)?
    };
    if problems.len() != 1 || problems[0] != "ok" {
        let mut detail = problems.into_iter().take(3).collect::<Vec<_>>().join("; ");
        if detail.is_empty() {
            detail = "quick_check returned nothing".into();
        }
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("integrity check: {detail}"),
        });
    }
    tracing::info!(
        path = %path.display(),
        ms = started.elapsed().as_millis() as u64,
        "database integrity check ok"
    );
    Ok(())
}

/// Creates the state directory (and its parents) if needed and returns it.
///
/// # Errors
/// The I/O error when it cannot be created.
pub fn ensure_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_released_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("radiogate.lock"));
        drop(first);
        lock_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_database_is_fine_and_a_healthy_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("radiogate.db");
        check_database(&db).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        check_database(&db).unwrap();
    }

    #[test]
    fn garbage_is_reported_as_damaged_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("radiogate.db");
        std::fs::write(&db, vec![0x5a; 8192]).unwrap();
        let err = check_database(&db).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&db.display().to_string()) && msg.contains(".recover"),
            "{msg}"
        );
    }

    #[test]
    fn a_damaged_page_fails_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("radiogate.db");
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(
                "CREATE TABLE t(x TEXT); CREATE INDEX ti ON t(x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
                 INSERT INTO t SELECT printf('row-%08d', i) FROM n;",
            )
            .unwrap();
        }
        // Scribble over a page in the middle (keeping the header page intact).
        let mut bytes = std::fs::read(&db).unwrap();
        let page = 4096;
        assert!(bytes.len() > 4 * page);
        for b in &mut bytes[3 * page..3 * page + 600] {
            *b = 0xff;
        }
        std::fs::write(&db, bytes).unwrap();
        let err = check_database(&db).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_database_held_exclusively_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("radiogate.db");
        let holder = rusqlite::Connection::open(&db).unwrap();
        holder
            .execute_batch("CREATE TABLE t(x); PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        let started = std::time::Instant::now();
        let err = check_database(&db).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(started.elapsed() >= BUSY_TIMEOUT - Duration::from_millis(100));
    }
}
