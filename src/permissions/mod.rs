//! Who may use which channel: the [`PermissionStore`] trait and its SQLite implementation.
//!
//! In standalone mode (no control plane) a user's permitted channels are the ones in their
//! token, recorded here at connect (`set_user_channels`), together with the channel-to-event
//! association. With `[redis] url` set, the control plane's Redis is the source ([`sync`],
//! [`redis_source`], the pure [`policy`]); SQLite stays the local copy the gateway serves from
//! when the uplink is down (spec notes 001, 002). [`cli`] is `radiogate permissions`.

pub mod cli;
pub mod policy;
pub mod redis_source;
mod sqlite;
pub mod sync;

pub use sqlite::{Source, SqliteStore, UserRecord};
pub use sync::{PermissionSync, SyncError};

/// Errors from a permission store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite database failed (I/O, corruption, locked beyond the busy timeout).
    #[error("permission store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The state directory could not be created.
    #[error("permission store: cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Source of channel permissions and of the channel-to-event association.
///
/// Channel, event and user ids are opaque strings from the control plane (or the token).
/// Implementations must be cheap to call from async code for reads (a local lookup).
pub trait PermissionStore: Send + Sync {
    /// The channel ids `user` may use in `event`, sorted, without duplicates.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read.
    fn user_channels(&self, event: &str, user: &str) -> Result<Vec<String>, StoreError>;

    /// Replaces the channel ids `user` may use in `event` and associates each channel with
    /// `event` (a channel already associated with another event keeps its association).
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    fn set_user_channels(
        &self,
        event: &str,
        user: &str,
        channels: &[String],
    ) -> Result<(), StoreError>;

    /// The event a channel belongs to, if known.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read.
    fn channel_event(&self, channel: &str) -> Result<Option<String>, StoreError>;
}
