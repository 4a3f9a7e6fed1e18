//! Free space on the state directory's file system (issue 13: `/healthz` says "degraded"
//! while the disk is nearly full, before SQLite writes start to fail).

use serde::Serialize;
use std::path::PathBuf;

/// `/healthz` `degraded` reason: free space on the state file system is below
/// `state.min_free_bytes`.
pub const DEGRADED_DISK: &str = "state disk nearly full";

/// What is checked: the state directory and `state.min_free_bytes`.
#[derive(Debug, Clone)]
pub struct DiskCheck {
    /// The state directory.
    pub dir: PathBuf,
    /// `state.min_free_bytes` (0: never nearly full).
    pub min_free_bytes: u64,
}

/// The state file system's free space as `/healthz` reports it (`stateDisk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskStatus {
    /// Bytes available to the gateway's user (`statvfs` `f_bavail * f_frsize`); `None` when
    /// the file system could not be read.
    pub free_bytes: Option<u64>,
    /// `state.min_free_bytes`.
    pub min_free_bytes: u64,
    /// Whether `free_bytes` is below `min_free_bytes`.
    pub nearly_full: bool,
}

/// Bytes available to this process's user on the file system of `dir` (`statvfs`
/// `f_bavail * f_frsize`), or `None` when it cannot be read.
// `fsblkcnt_t` and `c_ulong` are 32-bit on armv7 (the Pi's 32-bit OS): the conversions are
// needed there.
#[allow(clippy::useless_conversion)]
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(dir)
        .ok()
        .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

impl DiskCheck {
    /// Reads the file system (one `statvfs`).
    pub fn status(&self) -> DiskStatus {
        let free_bytes = free_bytes(&self.dir);
        DiskStatus {
            free_bytes,
            min_free_bytes: self.min_free_bytes,
            nearly_full: nearly_full(free_bytes, self.min_free_bytes),
        }
    }
}

/// Whether `free` bytes is below `min` (an unreadable file system is not reported as full:
/// failing writes are, by the write monitors).
pub fn nearly_full(free: Option<u64>, min: u64) -> bool {
    free.is_some_and(|f| f < min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_floor_is_nearly_full() {
        assert!(nearly_full(Some(10), 11));
        assert!(!nearly_full(Some(11), 11));
        assert!(!nearly_full(Some(0), 0));
        assert!(!nearly_full(None, 100));
        let tmp = tempfile::tempdir().unwrap();
        let s = DiskCheck {
            dir: tmp.path().into(),
            min_free_bytes: u64::MAX,
        }
        .status();
        assert!(s.free_bytes.is_some_and(|f| f > 0) && s.nearly_full);
    }
}
