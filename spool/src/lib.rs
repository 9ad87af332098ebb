//! Ingest's bounded, crash-safe, on-disk FIFO queue of accepted reports.
//!
//! # What flows in and out
//!
//! When Kafka is unreachable or too slow, ingest [`Spool::append`]s the reports it accepted
//! (opaque byte records, typically 0.5–5 KB of JSON) and answers the client "accepted" only once
//! `append` has returned `Ok`, which means the records are on disk and fsync'd. A forwarder
//! [`Spool::peek`]s the oldest records, produces them to Kafka, and then [`Spool::ack`]s the
//! last one it sent, which removes it and everything before it. One appender and one forwarder
//! may use the spool at the same time through `&self`; every method takes an internal lock and
//! does blocking file I/O, so call it from a blocking thread, not from an async task.
//!
//! ```
//! use spool::{Spool, SpoolConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let spool = Spool::open(SpoolConfig {
//!     dir: dir.path().join("spool"),
//!     max_bytes: 1 << 30,
//!     segment_bytes: 64 << 20,
//! })?;
//! spool.append(&[br#"{"report":1}"#, br#"{"report":2}"#])?; // durable: answer "accepted"
//!
//! // Forwarder: send the oldest records, then acknowledge the last one sent.
//! let batch = spool.peek(100)?;
//! assert_eq!(batch.len(), 2);
//! if let Some((last, _)) = batch.last() {
//!     spool.ack(*last)?;
//! }
//! assert!(spool.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! * Nothing `append` returned `Ok` for is lost by a crash of the process or the machine at any
//!   point: the segment data is fsync'd, and so is the folder whenever a segment file was
//!   created, before `append` returns.
//! * `append` is all or nothing: on any `Err` none of the batch is visible to `peek`, and a
//!   failed write is cut off the file again. Only when the process dies during an `append`, or
//!   the cut itself fails ([`SpoolError::Failed`]), can a prefix of the batch reappear after a
//!   reopen; no client was told "accepted" for it, so at worst it duplicates a retried report.
//! * Delivery is at least once: a record is delivered again after a reopen only if the process
//!   died after the forwarder sent it and before `ack` returned. Downstream dedups by report id.
//! * `peek` after a reopen continues exactly where the last successful `ack` left off.
//! * The spool never holds more than `max_bytes` of segment data: `append` fails with
//!   [`SpoolError::Full`] instead, and writes nothing.
//! * On Windows the same steps hold, with the folder flushed the way Windows allows (a
//!   directory handle opened with `FILE_FLAG_BACKUP_SEMANTICS` and write access; on NTFS this
//!   writes the metadata journal). A file system that cannot flush a folder (FAT32, exFAT, some
//!   network shares) leaves a just-created segment, the renamed cursor or a removal to its own
//!   schedule: after a power cut the folder may show the state before the last step, never half
//!   of one. What each platform promises is in `durable.rs`, the one place the steps differ.
//!
//! # On-disk format
//!
//! The folder holds:
//!
//! * Segment files `00000000000000000001.seg`, `00000000000000000002.seg`, … named by a
//!   zero-padded 20-digit sequence number with no gaps. Each is a run of records, each record
//!   being `u32 length (LE) | u32 CRC32 (LE) | length bytes`. The CRC32 covers the four length
//!   bytes followed by the data, so that a run of zeros never reads as a valid record. Records
//!   are only ever appended to the last segment; a batch is written to one segment in a single
//!   write. A new segment is started before an append when the last one has reached
//!   `segment_bytes`, so a segment can exceed `segment_bytes` by at most one batch.
//! * `cursor`: 20 bytes, `u64 segment (LE) | u64 offset (LE) | u32 CRC32 of those 16 bytes`,
//!   the position of the first record not yet acknowledged. It is replaced atomically (write
//!   `cursor.tmp`, fsync, rename, fsync the folder). With no cursor file, reading starts at the
//!   start of the first segment.
//! * `LOCK`: an empty file holding an exclusive lock while a [`Spool`] has the folder open, so
//!   that two processes never share one spool.
//!
//! # Recovery
//!
//! [`Spool::open`] reads every remaining segment and checks every checksum. In the last segment
//! a bad record (cut short, length past the end of the file, or checksum mismatch) that no valid
//! record follows is the torn tail of an append that never returned: the file is truncated there
//! ([`Spool::dropped_on_open`] tells how many bytes). A bad record anywhere else, a bad record in
//! the last segment that a valid record follows, a missing segment, or a cursor that does not
//! point at a record boundary is [`SpoolError::Corrupt`], naming the file and offset, and the
//! spool refuses to open rather than drop data silently. One damage cannot be told apart from a
//! torn write: the last record of the last segment going bad after it was made durable; it is
//! dropped like a torn tail. Opening reads all pending data once, so it takes time proportional
//! to the spool's size.
//!
//! # Space accounting
//!
//! [`Spool::bytes`] is the total length of the segment files, which is what counts against
//! `max_bytes` (the cursor and lock files are not counted). Acknowledged records free space only
//! when their whole segment is deleted: a partly consumed segment counts in full until every
//! record in it is acknowledged. When an `ack` consumes the last segment entirely and that
//! segment has reached `segment_bytes`, a fresh segment is started so the old one can be deleted;
//! a consumed last segment smaller than `segment_bytes` stays until appends fill it.

mod cursor;
mod durable;
mod segment;
mod state;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use segment::RECORD_OVERHEAD;
use state::State;

/// Where the spool lives and how big it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Folder holding the segment files and the cursor; created if missing.
    pub dir: PathBuf,
    /// Most bytes of segment files (records plus [`RECORD_OVERHEAD`] each) the spool may hold.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
}

/// Identifies one record returned by [`Spool::peek`]; pass it to [`Spool::ack`].
///
/// Positions order like the records they name. A position is only meaningful to the [`Spool`]
/// value whose `peek` returned it: after a reopen, peek again.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    segment: u64,
    offset: u64,
    /// Offset just past the record in its segment.
    end: u64,
    /// Index of the record among all records appended since this opening's start.
    seq: u64,
    /// Which opening of a spool produced this position.
    epoch: u64,
}

impl Position {
    fn key(&self) -> (u64, u64) {
        (self.segment, self.offset)
    }
}

impl PartialEq for Position {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Position {}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl std::hash::Hash for Position {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The batch would take the spool past `max_bytes`; nothing was written. Retry after the
    /// forwarder has acknowledged records.
    #[error("spool full: {needed} bytes needed, {used} of {max} bytes in use")]
    Full { needed: u64, used: u64, max: u64 },
    /// A file operation failed.
    #[error("spool I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Data on disk is damaged somewhere other than a torn tail; `offset` is a byte offset in
    /// `path`.
    #[error("spool corrupt: {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// A record, or a whole batch, is bigger (framing included) than the spool can ever hold.
    #[error("{size} bytes can never fit in the spool (limit {max} bytes)")]
    TooLarge { size: u64, max: u64 },
    /// The position came from another opening of the spool; peek again.
    #[error("position comes from an earlier opening of the spool")]
    StalePosition,
    /// Another process (or another `Spool` in this one) has the folder open.
    #[error("spool folder {} is in use by another spool", .0.display())]
    Locked(PathBuf),
    /// `max_bytes` or `segment_bytes` is zero.
    #[error("invalid spool config: {0}")]
    InvalidConfig(&'static str),
    /// An earlier append failed and its partial write could not be removed, or a thread
    /// panicked inside the spool. `peek` and `ack` still work; reopen the spool to append again.
    #[error("spool failed earlier and must be reopened to append")]
    Failed,
}

static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The on-disk queue. See the crate documentation.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    dropped_on_open: u64,
    state: Mutex<State>,
}

impl Spool {
    /// Opens (creating the folder if needed) and recovers the spool: finds the segments, drops a
    /// torn record at the tail of the last segment, and restores the read cursor.
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
        let state = State::open(&config, epoch)?;
        Ok(Spool {
            dir: config.dir,
            dropped_on_open: state.dropped_on_open(),
            state: Mutex::new(state),
        })
    }

    /// Appends `records` in order. When it returns `Ok` they are durable. All or nothing:
    /// [`SpoolError::Full`] if they would take the spool past `max_bytes`,
    /// [`SpoolError::TooLarge`] if they never could fit; in both cases nothing is written.
    /// An empty batch is a no-op.
    pub fn append(&self, records: &[&[u8]]) -> Result<(), SpoolError> {
        self.lock()?.append(records)
    }

    /// Up to `max` of the oldest records not yet acknowledged, in append order, with their
    /// positions. Does not remove them: the next `peek` returns them again until acknowledged.
    pub fn peek(&self, max: usize) -> Result<Vec<(Position, Vec<u8>)>, SpoolError> {
        self.lock()?.peek(max)
    }

    /// Marks everything up to and including `upto` as forwarded: durably advances the read
    /// cursor and deletes segment files that are wholly consumed. Acknowledging a position that
    /// is already acknowledged is a no-op. If `ack` returns an error, the cursor may or may not
    /// have moved; calling it again with the same position is safe.
    pub fn ack(&self, upto: Position) -> Result<(), SpoolError> {
        self.lock()?.ack(upto)
    }

    /// Records appended and not yet acknowledged.
    pub fn len(&self) -> u64 {
        self.lock_anyway().len()
    }

    /// Bytes of segment files on disk, which is what counts against `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.lock_anyway().bytes()
    }

    /// Whether no record is waiting to be acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The spool's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of torn tail that `open` cut from the last segment (0 after a clean shutdown).
    pub fn dropped_on_open(&self) -> u64 {
        self.dropped_on_open
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, SpoolError> {
        // A panic while holding the lock may have left the state half updated.
        self.state.lock().map_err(|_| SpoolError::Failed)
    }

    fn lock_anyway(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
