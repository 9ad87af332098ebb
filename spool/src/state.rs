//! The spool's state behind the lock, and the operations on it.

use std::collections::VecDeque;
use std::fs::{self, File, TryLockError};
use std::io::{self, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::cursor::{self, Cursor};
use crate::durable::sync_dir;
use crate::segment::{self, RECORD_OVERHEAD};
use crate::{Position, SpoolConfig, SpoolError};

const LOCK_NAME: &str = "LOCK";

/// The highest segment number a spool uses: half the number space, which no
/// spool reaches one segment at a time.
const LAST_SEGMENT: u64 = u64::MAX / 2;

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    /// Bytes of complete, durable records in the file.
    len: u64,
}

/// An open segment file being read by `peek`, and where the next read starts.
#[derive(Debug)]
struct Reader {
    id: u64,
    file: BufReader<File>,
    pos: u64,
}

#[derive(Debug)]
pub(crate) struct State {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    epoch: u64,
    /// Segment files from the cursor's segment to the last one; never empty. The last one is
    /// the one appended to.
    segments: VecDeque<Segment>,
    /// The last segment, opened for appending.
    writer: File,
    /// A segment file was created and the folder has not been fsync'd since.
    dir_dirty: bool,
    /// Sum of `segments[..].len`.
    bytes: u64,
    /// First record not yet acknowledged (as stored in the cursor file).
    cursor: Cursor,
    /// `seq` of the record at `cursor`.
    head_seq: u64,
    /// `seq` the next appended record gets.
    tail_seq: u64,
    reader: Option<Reader>,
    /// An append failed and its partial write could not be removed.
    failed: bool,
    dropped_on_open: u64,
    /// Held for the exclusive lock on the folder.
    _lock: File,
}

fn corrupt(path: PathBuf, offset: u64, reason: &'static str) -> SpoolError {
    SpoolError::Corrupt {
        path,
        offset,
        reason,
    }
}

/// Creates `dir` if needed, making its entry in the parent durable.
fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl State {
    pub(crate) fn open(config: &SpoolConfig, epoch: u64) -> Result<State, SpoolError> {
        if config.max_bytes == 0 {
            return Err(SpoolError::InvalidConfig("max_bytes must be positive"));
        }
        if config.segment_bytes == 0 {
            return Err(SpoolError::InvalidConfig("segment_bytes must be positive"));
        }
        let dir = config.dir.clone();
        create_dir(&dir)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_NAME))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        remove_if_exists(&dir.join(cursor::TEMP_NAME))?;

        let ids = segment::list(&dir)?;
        let stored = cursor::load(&dir)?;
        // Segment numbers count up from 1 by one per segment: one past
        // LAST_SEGMENT is never reached, so a number beyond it is damage
        // (and `+ 1` on it could overflow).
        if let Some(&id) = ids.last().filter(|&&id| id > LAST_SEGMENT) {
            return Err(corrupt(
                segment::path(&dir, id),
                0,
                "segment number out of range",
            ));
        }
        if let Some(c) = stored.filter(|c| c.segment > LAST_SEGMENT) {
            let path = segment::path(&dir, c.segment);
            return Err(corrupt(
                path,
                c.offset,
                "cursor names a segment out of range",
            ));
        }
        let cursor = match (stored, ids.first(), ids.last()) {
            (None, first, _) => Cursor {
                segment: first.copied().unwrap_or(1),
                offset: 0,
            },
            (Some(c), Some(&first), Some(&last)) => {
                // One past the last segment is where an ack that started a new segment points;
                // everything before it is consumed.
                let next_new = c.segment == last + 1 && c.offset == 0;
                // Within the files' range, the cursor's own segment must be
                // there: a gap there is a file lost, not a segment consumed.
                let in_gap = (first..=last).contains(&c.segment) && !ids.contains(&c.segment);
                if c.segment < first || (c.segment > last && !next_new) || in_gap {
                    let path = segment::path(&dir, c.segment);
                    return Err(corrupt(path, c.offset, "cursor names a missing segment"));
                }
                c
            }
            (Some(c), _, _) => {
                if c.offset != 0 {
                    let path = segment::path(&dir, c.segment);
                    return Err(corrupt(path, c.offset, "cursor names a missing segment"));
                }
                c
            }
        };

        // Segments before the cursor's were consumed; an ack died before deleting them.
        let mut removed = false;
        for &id in ids.iter().filter(|&&id| id < cursor.segment) {
            remove_if_exists(&segment::path(&dir, id))?;
            removed = true;
        }
        let live: Vec<u64> = ids.into_iter().filter(|&id| id >= cursor.segment).collect();
        for pair in live.windows(2) {
            if pair[1] != pair[0] + 1 {
                let missing = segment::path(&dir, pair[0] + 1);
                return Err(corrupt(missing, 0, "segment file missing"));
            }
        }

        let mut segments = VecDeque::with_capacity(live.len());
        let mut pending = 0;
        let mut dropped_on_open = 0;
        for (i, &id) in live.iter().enumerate() {
            let from = if id == cursor.segment {
                cursor.offset
            } else {
                0
            };
            let scan = segment::scan(&dir, id, i + 1 == live.len(), from)?;
            if !scan.from_is_boundary {
                let path = segment::path(&dir, id);
                return Err(corrupt(path, from, "cursor is not at a record boundary"));
            }
            pending += scan.records_from;
            dropped_on_open += scan.torn_bytes;
            segments.push_back(Segment {
                id,
                len: scan.valid_len,
            });
        }
        let mut dir_dirty = removed;
        if segments.is_empty() {
            File::options()
                .append(true)
                .create_new(true)
                .open(segment::path(&dir, cursor.segment))?;
            segments.push_back(Segment {
                id: cursor.segment,
                len: 0,
            });
            dir_dirty = true;
        }
        if dir_dirty {
            sync_dir(&dir)?;
        }
        let last = *segments.back().expect("at least one segment");
        let writer = File::options()
            .append(true)
            .open(segment::path(&dir, last.id))?;

        let mut state = State {
            bytes: segments.iter().map(|s| s.len).sum(),
            dir,
            max_bytes: config.max_bytes,
            segment_bytes: config.segment_bytes,
            epoch,
            segments,
            writer,
            dir_dirty: false,
            cursor,
            head_seq: 0,
            tail_seq: pending,
            reader: None,
            failed: false,
            dropped_on_open,
            _lock: lock,
        };
        // Step past consumed segments left by an ack that died half way.
        state.commit_cursor(cursor, 0)?;
        Ok(state)
    }

    pub(crate) fn dropped_on_open(&self) -> u64 {
        self.dropped_on_open
    }

    pub(crate) fn len(&self) -> u64 {
        self.tail_seq - self.head_seq
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn last(&self) -> Segment {
        *self.segments.back().expect("at least one segment")
    }

    /// Creates the next segment file and makes it the one appended to. The folder is fsync'd
    /// later, before anything that depends on the new file is reported durable.
    fn start_segment(&mut self) -> io::Result<()> {
        let id = self.last().id + 1;
        let file = File::options()
            .append(true)
            .create_new(true)
            .open(segment::path(&self.dir, id))?;
        self.segments.push_back(Segment { id, len: 0 });
        self.writer = file;
        self.dir_dirty = true;
        Ok(())
    }

    pub(crate) fn append(&mut self, records: &[&[u8]]) -> Result<(), SpoolError> {
        if self.failed {
            return Err(SpoolError::Failed);
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut total = 0u64;
        for record in records {
            let size = RECORD_OVERHEAD + record.len() as u64;
            if size > self.max_bytes || u32::try_from(record.len()).is_err() {
                let max = self.max_bytes.min(RECORD_OVERHEAD + u64::from(u32::MAX));
                return Err(SpoolError::TooLarge { size, max });
            }
            total += size;
        }
        if total > self.max_bytes {
            return Err(SpoolError::TooLarge {
                size: total,
                max: self.max_bytes,
            });
        }
        if self.bytes + total > self.max_bytes {
            return Err(SpoolError::Full {
                needed: total,
                used: self.bytes,
                max: self.max_bytes,
            });
        }
        if self.last().len >= self.segment_bytes {
            self.start_segment()?;
        }
        let mut buf = Vec::with_capacity(total as usize);
        for record in records {
            segment::encode(&mut buf, record);
        }
        let old_len = self.last().len;
        let written = (|| {
            self.writer.write_all(&buf)?;
            self.writer.sync_data()?;
            if self.dir_dirty {
                sync_dir(&self.dir)?;
            }
            io::Result::Ok(())
        })();
        if let Err(e) = written {
            // Take the batch back out so that it is not delivered and its space is not used.
            let undone = self
                .writer
                .set_len(old_len)
                .and_then(|()| self.writer.sync_data());
            if undone.is_err() {
                self.failed = true;
            }
            return Err(e.into());
        }
        self.dir_dirty = false;
        self.segments.back_mut().expect("at least one segment").len += total;
        self.bytes += total;
        self.tail_seq += records.len() as u64;
        Ok(())
    }

    pub(crate) fn peek(&mut self, max: usize) -> Result<Vec<(Position, Vec<u8>)>, SpoolError> {
        let mut out = Vec::new();
        // Segments before the cursor's are only still listed if deleting them failed.
        let first = self.segments.front().expect("at least one segment").id;
        let mut index = (self.cursor.segment - first) as usize;
        let mut offset = self.cursor.offset;
        let mut seq = self.head_seq;
        while out.len() < max && seq < self.tail_seq {
            let Some(&seg) = self.segments.get(index) else {
                break;
            };
            if offset >= seg.len {
                index += 1;
                offset = 0;
                continue;
            }
            let (len, data) = self.read_record(seg, offset)?;
            let end = offset + RECORD_OVERHEAD + len;
            let position = Position {
                segment: seg.id,
                offset,
                end,
                seq,
                epoch: self.epoch,
            };
            out.push((position, data));
            offset = end;
            seq += 1;
        }
        Ok(out)
    }

    /// Reads the record at `offset` in `seg`, returning its length and bytes.
    fn read_record(&mut self, seg: Segment, offset: u64) -> Result<(u64, Vec<u8>), SpoolError> {
        let path = || segment::path(&self.dir, seg.id);
        let reader = match &mut self.reader {
            Some(r) if r.id == seg.id => r,
            slot => {
                let file = File::open(path())?;
                slot.insert(Reader {
                    id: seg.id,
                    file: BufReader::with_capacity(64 * 1024, file),
                    pos: 0,
                })
            }
        };
        if reader.pos != offset {
            reader.file.seek(SeekFrom::Start(offset))?;
            reader.pos = offset;
        }
        let mut header = [0u8; RECORD_OVERHEAD as usize];
        let read = reader.file.read_exact(&mut header);
        let (len, crc) = segment::decode_header(&header);
        let end = offset + RECORD_OVERHEAD + u64::from(len);
        if read.is_err() || end > seg.len {
            // The file is shorter, or the length is damaged: both mean the disk changed under us.
            self.reader = None;
            return Err(corrupt(
                path(),
                offset,
                "record runs past the end of its segment",
            ));
        }
        let mut data = vec![0u8; len as usize];
        let read = reader.file.read_exact(&mut data);
        if read.is_err() || segment::checksum(len, &data) != crc {
            self.reader = None;
            return Err(corrupt(path(), offset, "checksum mismatch"));
        }
        reader.pos = end;
        Ok((u64::from(len), data))
    }

    pub(crate) fn ack(&mut self, upto: Position) -> Result<(), SpoolError> {
        if upto.epoch != self.epoch {
            return Err(SpoolError::StalePosition);
        }
        if upto.seq < self.head_seq {
            // Already acknowledged; finish any deletion an earlier failed ack left undone.
            return self.delete_consumed();
        }
        let cursor = Cursor {
            segment: upto.segment,
            offset: upto.end,
        };
        self.commit_cursor(cursor, upto.seq + 1)
    }

    /// Moves the read cursor to `cursor` (the record numbered `seq`), storing it durably, then
    /// deletes the segments before it.
    fn commit_cursor(&mut self, mut cursor: Cursor, seq: u64) -> Result<(), SpoolError> {
        // A cursor at the end of a segment that is no longer appended to means the start of the
        // next one; that lets the consumed segment go.
        let first = self.segments.front().expect("at least one segment").id;
        while let Some(seg) = self.segments.get((cursor.segment - first) as usize) {
            if cursor.offset < seg.len || seg.id == self.last().id {
                break;
            }
            cursor = Cursor {
                segment: seg.id + 1,
                offset: 0,
            };
        }
        let last = self.last();
        let consumed_full = cursor.segment == last.id
            && cursor.offset == last.len
            && last.len >= self.segment_bytes;
        if consumed_full && !self.failed {
            self.start_segment()?;
            cursor = Cursor {
                segment: last.id + 1,
                offset: 0,
            };
        }
        if cursor != self.cursor {
            // Also makes the folder durable, covering a segment `start_segment` just created.
            cursor::store(&self.dir, cursor)?;
            self.dir_dirty = false;
            self.cursor = cursor;
        }
        self.head_seq = seq;
        self.delete_consumed()
    }

    /// Deletes segment files wholly before the cursor.
    fn delete_consumed(&mut self) -> Result<(), SpoolError> {
        while let Some(&seg) = self.segments.front() {
            if seg.id >= self.cursor.segment {
                break;
            }
            if self.reader.as_ref().is_some_and(|r| r.id == seg.id) {
                self.reader = None;
            }
            remove_if_exists(&segment::path(&self.dir, seg.id))?;
            self.segments.pop_front();
            self.bytes -= seg.len;
        }
        Ok(())
    }
}
