//! Instant recall for desk consoles (issue 14 point 5): a channel's last finished
//! recording, read back as its Opus packets for the console's own speaker.

use super::index::{Index, IndexError};
use super::ogg_opus::{audio_packets, OggOpusError};
use super::recorder::file_of;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

/// The most packets replayed: 10 minutes of 20 ms packets (a talk spurt is bounded by the
/// time-out timer, far shorter).
pub const MAX_REPLAY_PACKETS: usize = 30_000;

/// Why a recording could not be recalled.
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    /// The index could not be read.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The recording's file could not be opened.
    #[error("recording {id}: {source}")]
    Open {
        /// The recording.
        id: i64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The recording's file could not be read back.
    #[error("recording {id}: {source}")]
    Read {
        /// The recording.
        id: i64,
        /// What was wrong.
        source: OggOpusError,
    },
}

/// A recalled transmission.
#[derive(Debug)]
pub struct Recalled {
    /// The recording's id.
    pub id: i64,
    /// The talker's display name.
    pub name: String,
    /// Its Opus packets in order, with their samples at 48 kHz (silence fill included).
    pub packets: Vec<(Vec<u8>, u32)>,
}

/// Reads recordings back (the sessions' index connection and the recordings directory).
#[derive(Clone)]
pub struct Recall {
    index: Arc<Mutex<Index>>,
    dir: PathBuf,
}

impl std::fmt::Debug for Recall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recall").field("dir", &self.dir).finish()
    }
}

impl Recall {
    /// Recall over `index` and the files in `dir`.
    pub fn new(index: Arc<Mutex<Index>>, dir: PathBuf) -> Self {
        Self { index, dir }
    }

    /// The newest finished recording of `channel` (a spurt still being recorded is passed
    /// over), or `None` when the channel has none.
    ///
    /// # Errors
    /// [`RecallError`] when the index or the file cannot be read.
    pub fn last(&self, channel: &str) -> Result<Option<Recalled>, RecallError> {
        let rows = self.index.lock().list(channel, 8, None)?;
        let Some(r) = rows.into_iter().find(|r| r.ended.is_some()) else {
            return Ok(None);
        };
        let file = std::fs::File::open(file_of(&self.dir, r.id))
            .map_err(|source| RecallError::Open { id: r.id, source })?;
        let packets = audio_packets(std::io::BufReader::new(file), MAX_REPLAY_PACKETS)
            .map_err(|source| RecallError::Read { id: r.id, source })?;
        Ok(Some(Recalled {
            id: r.id,
            name: r.name,
            packets,
        }))
    }
}
