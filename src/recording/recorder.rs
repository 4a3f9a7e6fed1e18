//! The recorder (issue 14): one thread that turns the hub's talk spurt boundaries
//! ([`SpurtEvent`]) and the media path's routed uplink packets ([`Tap`]) into one Ogg Opus file
//! per spurt under the recordings directory (`ID.opus`) and a row in the [`Index`].
//!
//! Off the media path: both sources only `try_send` into one bounded queue
//! (`recording.queue`); what does not fit is dropped and counted ([`Recorder::dropped`]), never
//! waited for. An emergency broadcast's grants on several channels make one recording listed
//! in every channel it reached. After each spurt the retention rule ([`to_delete`]) removes the
//! oldest recordings over `recording.retention` or the byte budget `recording.max_bytes`. A new
//! spurt is not recorded while the file system has less than `recording.min_free_bytes` free
//! (paused, logged once, resumed by itself). At start, spurts a crash interrupted are closed
//! (`ended = "interrupted"`, duration read from the file's last page).

use super::index::{to_delete, Index, IndexError, SpurtMeta};
use super::ogg_opus::{SpurtWriter, PRE_SKIP};
use crate::hub::SpurtEvent;
use crate::sfu::routes::Tap;
use crate::state::disk::{free_bytes, nearly_full};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the recorder thread takes its queue while spurts are recorded (one wake-up per
/// batch instead of one per packet; a batch is 5 packets per talker at 20 ms packets).
const BATCH: Duration = Duration::from_millis(100);

/// How often the age limit is applied besides after each spurt: a quarter of `retention`,
/// between 100 ms and 1 min (a quiet channel's old recordings still go on time).
fn retain_every(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Errors starting the recorder.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The recordings directory cannot be created.
    #[error("recordings directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The index cannot be opened.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The thread cannot be started.
    #[error("recorder thread: {0}")]
    Thread(std::io::Error),
}

/// What the recorder needs: where, and the limits (`[recording]`).
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The recordings directory.
    pub dir: PathBuf,
    /// The state database (the index lives there).
    pub db: PathBuf,
    /// Byte budget of all recordings.
    pub max_bytes: u64,
    /// Age limit.
    pub retention: Duration,
    /// Free bytes below which new spurts are not recorded.
    pub min_free_bytes: u64,
    /// Queue length (messages).
    pub queue: usize,
}

enum Msg {
    Spurt(SpurtEvent, u64),
    /// The payload shares the packet's buffer (`Bytes`: a reference count, no copy).
    Packet {
        talker: u64,
        ts: u32,
        payload: bytes::Bytes,
    },
}

#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    recorded: AtomicU64,
    packets: AtomicU64,
    paused: AtomicBool,
    /// The recordings directory and `recording.min_free_bytes`, for [`Recorder::paused`].
    dir: PathBuf,
    min_free_bytes: u64,
}

/// The recorder's handle (cheap to clone). The thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Creates the directory, opens the index, closes interrupted spurts and starts the thread.
    ///
    /// # Errors
    /// [`RecorderError`] when the directory, the index or the thread cannot be made.
    pub fn start(cfg: RecorderConfig) -> Result<Self, RecorderError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| RecorderError::Dir {
            path: cfg.dir.clone(),
            source,
        })?;
        let mut index = Index::open(&cfg.db)?;
        recover(&mut index, &cfg.dir)?;
        let (tx, rx) = sync_channel(cfg.queue.max(16));
        let shared = Arc::new(Shared {
            dir: cfg.dir.clone(),
            min_free_bytes: cfg.min_free_bytes,
            ..Shared::default()
        });
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || Worker::new(cfg, index, s).run(rx))
            .map_err(RecorderError::Thread)?;
        Ok(Self { tx, shared })
    }

    fn send(&self, m: Msg) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A spurt started or ended (from the hub's outputs), at wall-clock `wall_ms`.
    pub fn spurt(&self, e: &SpurtEvent, wall_ms: u64) {
        self.send(Msg::Spurt(e.clone(), wall_ms));
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Audio packets written into recordings since start (silence fill not counted).
    pub fn packets(&self) -> u64 {
        self.shared.packets.load(Ordering::Relaxed)
    }

    /// Spurts recorded (finished) since start.
    pub fn recorded(&self) -> u64 {
        self.shared.recorded.load(Ordering::Relaxed)
    }

    /// Whether new spurts are not recorded for lack of free space. While paused, each call
    /// looks at the file system again (one `statvfs`), so `/healthz` says so no longer than
    /// the space is missing; the next spurt is then recorded.
    pub fn paused(&self) -> bool {
        let s = &self.shared;
        if !s.paused.load(Ordering::Relaxed) {
            return false;
        }
        let low = nearly_full(free_bytes(&s.dir), s.min_free_bytes);
        if !low && s.paused.swap(false, Ordering::Relaxed) {
            tracing::info!("recording resumed: free space is back");
        }
        low
    }
}

impl Tap for Recorder {
    fn packet(&self, talker: u64, packet: &rtc::rtp::Packet) {
        self.send(Msg::Packet {
            talker,
            ts: packet.header.timestamp,
            payload: packet.payload.clone(),
        });
    }
}

/// The file of recording `id`.
pub fn file_of(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("{id}.opus"))
}

/// Samples in a file: the granule position of its last page (0 if unreadable).
fn last_granule(path: &Path) -> u64 {
    let Ok(f) = File::open(path) else {
        return 0;
    };
    let mut r = ogg::reading::PacketReader::new(std::io::BufReader::new(f));
    let mut g = 0;
    while let Ok(Some(p)) = r.read_packet() {
        g = p.absgp_page();
    }
    g
}

fn duration_ms(samples: u64) -> u64 {
    samples.saturating_sub(u64::from(PRE_SKIP)) / 48
}

/// Closes the spurts a crash interrupted: duration from the file, `ended = "interrupted"`.
fn recover(index: &mut Index, dir: &Path) -> Result<(), IndexError> {
    for id in index.interrupted()? {
        let path = file_of(dir, id);
        match std::fs::metadata(&path) {
            Ok(m) => {
                index.finish(id, duration_ms(last_granule(&path)), m.len(), "interrupted")?;
                tracing::warn!(recording = id, "closed a recording interrupted by a stop");
            }
            Err(_) => index.delete(id)?,
        }
    }
    Ok(())
}

struct Open {
    id: i64,
    writer: SpurtWriter<File>,
    channels: BTreeSet<String>,
}

struct Worker {
    cfg: RecorderConfig,
    index: Index,
    shared: Arc<Shared>,
    open: HashMap<u64, Open>,
    /// Bytes of all finished recordings, when known (see [`Worker::retain`]).
    total: Option<u64>,
}

impl Worker {
    fn new(cfg: RecorderConfig, index: Index, shared: Arc<Shared>) -> Self {
        Self {
            cfg,
            index,
            shared,
            open: HashMap::new(),
            total: None,
        }
    }

    /// The thread's loop. Idle (no spurt open), it blocks until a message comes, waking at
    /// least every [`retain_every`] to apply the age limit; while spurts are recorded it
    /// wakes every [`BATCH`] and takes everything queued meanwhile, so the media thread's
    /// `try_send` never has a sleeping receiver to wake (no futex call per packet) and the
    /// recorder's work is done in batches.
    fn run(mut self, rx: Receiver<Msg>) {
        let every = retain_every(self.cfg.retention);
        self.retain(crate::clock::unix_ms());
        let mut retained = Instant::now();
        'run: loop {
            if self.open.is_empty() {
                match rx.recv_timeout(every) {
                    Ok(m) => self.handle(m),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break 'run,
                }
            } else {
                std::thread::sleep(BATCH);
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'run,
                }
            }
            if retained.elapsed() >= every {
                retained = Instant::now();
                self.total = None; // re-read: an administrator may have deleted recordings
                self.retain(crate::clock::unix_ms());
            }
        }
        for (_, o) in std::mem::take(&mut self.open) {
            self.finish(o, "shutdown");
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Packet {
                talker,
                ts,
                payload,
            } => {
                if let Some(o) = self.open.get_mut(&talker) {
                    // A payload that is not Opus is skipped; a write error ends the file.
                    match o.writer.push(ts, &payload) {
                        Ok(super::ogg_opus::Pushed::Written { .. }) => {
                            self.shared.packets.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_)
                        | Err(
                            super::ogg_opus::OggOpusError::NotOpus(_)
                            | super::ogg_opus::OggOpusError::NotOggOpus(_),
                        ) => {}
                        Err(super::ogg_opus::OggOpusError::Io(e)) => {
                            tracing::warn!(recording = o.id, error = %e, "recording write failed");
                        }
                    }
                }
            }
            Msg::Spurt(
                SpurtEvent::Start {
                    talker,
                    channel,
                    event,
                    user_id,
                    name,
                    role,
                    emergency,
                },
                wall_ms,
            ) => {
                if let Some(o) = self.open.get_mut(&talker) {
                    if o.channels.insert(channel.clone()) {
                        let _ = self.index.add_channel(o.id, &channel);
                    }
                    return;
                }
                if !self.space_left() {
                    return;
                }
                let meta = SpurtMeta {
                    event,
                    channel: channel.clone(),
                    user_id,
                    name,
                    role: role.as_str().to_string(),
                    conn: talker,
                    start_ms: wall_ms,
                    emergency,
                };
                if let Err(e) = self.begin(talker, meta, channel) {
                    tracing::warn!(error = %e, "recording not started");
                }
            }
            Msg::Spurt(
                SpurtEvent::End {
                    talker,
                    channel,
                    reason,
                },
                wall_ms,
            ) => {
                let done = self.open.get_mut(&talker).is_some_and(|o| {
                    o.channels.remove(&channel);
                    o.channels.is_empty()
                });
                if done {
                    if let Some(o) = self.open.remove(&talker) {
                        self.finish(o, &reason);
                        self.retain(wall_ms);
                    }
                }
            }
        }
    }

    /// Whether there is room for a new recording; logs the pause and the resume once each.
    fn space_left(&self) -> bool {
        let free = free_bytes(&self.cfg.dir);
        let low = nearly_full(free, self.cfg.min_free_bytes);
        let was = self.shared.paused.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::warn!(free_bytes = ?free, min_free_bytes = self.cfg.min_free_bytes,
                           "recording paused: too little free space (calls go on)");
        } else if !low && was {
            tracing::info!("recording resumed");
        }
        !low
    }

    fn begin(
        &mut self,
        talker: u64,
        meta: SpurtMeta,
        channel: String,
    ) -> Result<(), RecorderError> {
        let start_ms = meta.start_ms.to_string();
        let tags = [
            ("TALKER", meta.user_id.clone()),
            ("NAME", meta.name.clone()),
            ("CHANNEL", channel.clone()),
            ("EVENT", meta.event.clone()),
            ("START_MS", start_ms),
        ];
        let id = self.index.begin(&meta)?;
        let path = file_of(&self.cfg.dir, id);
        let file = File::create(&path).map_err(|source| RecorderError::Dir {
            path: path.clone(),
            source,
        })?;
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match SpurtWriter::new(file, id as u32, &tags) {
            Ok(writer) => {
                self.open.insert(
                    talker,
                    Open {
                        id,
                        writer,
                        channels: BTreeSet::from([channel]),
                    },
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.index.delete(id);
                let _ = std::fs::remove_file(&path);
                Err(RecorderError::Dir {
                    path,
                    source: std::io::Error::other(e.to_string()),
                })
            }
        }
    }

    fn finish(&mut self, o: Open, reason: &str) {
        let path = file_of(&self.cfg.dir, o.id);
        let samples = match o.writer.finish() {
            Ok((w, samples)) => {
                drop(w);
                samples
            }
            Err(e) => {
                tracing::warn!(recording = o.id, error = %e, "recording not closed cleanly");
                last_granule(&path)
            }
        };
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        match self.index.finish(o.id, duration_ms(samples), bytes, reason) {
            Ok(()) => self.total = self.total.map(|t| t + bytes),
            Err(e) => tracing::warn!(recording = o.id, error = %e, "recording not indexed"),
        }
        self.shared.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies the retention rule to the oldest recordings, a batch at a time, with the byte
    /// total kept here (added at each finish, read from the index at start and once per
    /// [`retain_every`], which also takes in recordings deleted by an administrator): the
    /// work per spurt does not grow with the number of recordings kept.
    fn retain(&mut self, now_ms: u64) {
        const BATCH_ROWS: u32 = 64;
        let total = match self.total {
            Some(t) => t,
            None => match self.index.total_bytes() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "recordings not measured for retention");
                    return;
                }
            },
        };
        let mut total = total;
        let retention = u64::try_from(self.cfg.retention.as_millis()).unwrap_or(u64::MAX);
        loop {
            let Ok(rows) = self.index.oldest(BATCH_ROWS) else {
                break;
            };
            // `to_delete` returns a prefix of `rows`.
            let gone = to_delete(&rows, total, now_ms, self.cfg.max_bytes, retention).len();
            for (id, _, bytes) in &rows[..gone] {
                let _ = std::fs::remove_file(file_of(&self.cfg.dir, *id));
                match self.index.delete(*id) {
                    Ok(()) => total = total.saturating_sub(*bytes),
                    Err(e) => {
                        tracing::warn!(recording = id, error = %e, "old recording not removed");
                        self.total = None;
                        return;
                    }
                }
            }
            if gone < rows.len() || rows.is_empty() {
                break;
            }
        }
        self.total = Some(total);
    }
}
