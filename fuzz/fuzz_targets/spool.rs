//! Spool recovery: `Spool::open` on a folder of segment files and a cursor
//! made of arbitrary bytes, framed records, or both (the on-disk format is
//! the one `spool/src/lib.rs` documents, written here independently).
//!
//! Holds:
//! - opening never panics: it recovers, or refuses with an error;
//! - a folder of whole records and a cursor on a record boundary opens, and
//!   `peek` gives exactly the records from the cursor on, in order;
//! - what opened once opens again with the same records and nothing more
//!   to cut; acknowledging everything and appending leaves exactly what was
//!   appended, across another reopen.

#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spool::{Spool, SpoolConfig};

#[derive(Debug, Arbitrary)]
struct Folder {
    /// Id of the first segment file.
    first_id: u8,
    segments: Vec<Vec<Piece>>,
    /// A segment left out (a gap in the numbering).
    missing: Option<u8>,
    cursor: Cursor,
    segment_bytes: u8,
    appended: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Piece {
    /// A framed record: length, CRC32 of length and bytes, bytes.
    Record(Vec<u8>),
    /// Bytes as they are: a torn write, garbage, zeros.
    Raw(Vec<u8>),
    /// A framed record with one bit flipped somewhere.
    Damaged { data: Vec<u8>, bit: u16 },
}

#[derive(Debug, Arbitrary)]
enum Cursor {
    Absent,
    /// Before record `record` of segment `segment` (indices into the
    /// written ones; one past the last record is the segment's end).
    Boundary {
        segment: u8,
        record: u8,
    },
    /// A well-formed cursor anywhere, up to segment 2^64 - 1.
    Anywhere {
        segment: u64,
        offset: u64,
    },
    Raw(Vec<u8>),
}

struct Written {
    /// Segment id and its records' end offsets, per segment.
    ids: Vec<u64>,
    ends: Vec<Vec<u64>>,
    records: Vec<Vec<Vec<u8>>>,
    /// Only whole records, no gap, and a cursor on a boundary.
    clean: bool,
    /// Where the cursor points: (segment index, record index).
    start: (usize, usize),
    /// The cursor names a segment with no file, between two that have one.
    cursor_in_gap: bool,
}

fuzz_target!(|folder: Folder| {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::Builder::new()
        .prefix("fuzz-spool")
        .tempdir_in(base)
        .expect("temporary folder");
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir(&spool_dir).expect("spool folder");
    let written = write(&spool_dir, &folder);
    let config = SpoolConfig {
        dir: spool_dir.clone(),
        max_bytes: 1 << 24,
        segment_bytes: u64::from(folder.segment_bytes).max(1) * 16,
    };

    let opened = Spool::open(config.clone());
    if written.cursor_in_gap {
        // A cursor naming a lost segment between two others is damage.
        assert!(opened.is_err(), "a cursor in a gap must be refused");
    }
    if written.clean {
        let spool = opened.as_ref().expect("a clean folder opens");
        let expected: Vec<Vec<u8>> = written
            .records
            .iter()
            .enumerate()
            .flat_map(|(s, records)| {
                let skip = if s == written.start.0 {
                    written.start.1
                } else {
                    0
                };
                let take = if s < written.start.0 {
                    0
                } else {
                    records.len()
                };
                records.iter().take(take).skip(skip).cloned()
            })
            .collect();
        assert_eq!(peek_all(spool), expected, "records of a clean folder");
        assert_eq!(spool.dropped_on_open(), 0);
    }
    let Ok(spool) = opened else {
        return;
    };
    let records = peek_all(&spool);
    assert_eq!(records.len() as u64, spool.len());
    drop(spool);

    let spool = Spool::open(config.clone()).expect("what opened once opens again");
    assert_eq!(spool.dropped_on_open(), 0, "a second open cut more");
    assert_eq!(
        peek_all(&spool),
        records,
        "a second open read other records"
    );

    if let Some((last, _)) = spool.peek(usize::MAX).expect("peek").last() {
        spool.ack(*last).expect("ack everything");
    }
    assert!(spool.is_empty());
    let appended: Vec<&[u8]> = folder.appended.chunks(7).collect();
    spool.append(&appended).expect("append after recovery");
    drop(spool);
    let spool = Spool::open(config).expect("reopen after append");
    let after: Vec<Vec<u8>> = peek_all(&spool);
    assert_eq!(after, appended, "what was appended after recovery");
});

fn peek_all(spool: &Spool) -> Vec<Vec<u8>> {
    spool
        .peek(usize::MAX)
        .expect("peek")
        .into_iter()
        .map(|(_, record)| record)
        .collect()
}

fn frame(out: &mut Vec<u8>, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("small record");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(data);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(data);
}

fn write(dir: &Path, folder: &Folder) -> Written {
    let mut written = Written {
        ids: Vec::new(),
        ends: Vec::new(),
        records: Vec::new(),
        clean: true,
        start: (0, 0),
        cursor_in_gap: false,
    };
    let mut files = Vec::new();
    for (index, pieces) in folder.segments.iter().take(4).enumerate() {
        let id = u64::from(folder.first_id) + index as u64;
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut records = Vec::new();
        for piece in pieces.iter().take(8) {
            match piece {
                Piece::Record(data) => {
                    frame(&mut bytes, data);
                    ends.push(bytes.len() as u64);
                    records.push(data.clone());
                }
                Piece::Raw(data) => {
                    written.clean = false;
                    bytes.extend_from_slice(data);
                }
                Piece::Damaged { data, bit } => {
                    written.clean = false;
                    let at = bytes.len();
                    frame(&mut bytes, data);
                    let bit = usize::from(*bit) % ((bytes.len() - at) * 8);
                    bytes[at + bit / 8] ^= 1 << (bit % 8);
                }
            }
        }
        if folder.missing.is_some_and(|m| usize::from(m) == index) {
            written.clean = false;
        } else {
            std::fs::write(dir.join(format!("{id:020}.seg")), &bytes).expect("segment");
            files.push(id);
        }
        written.ids.push(id);
        written.ends.push(ends);
        written.records.push(records);
    }
    let cursor = match &folder.cursor {
        Cursor::Absent => None,
        Cursor::Boundary { segment, record } if !written.ids.is_empty() => {
            let s = usize::from(*segment) % written.ids.len();
            let r = usize::from(*record) % (written.ends[s].len() + 1);
            let offset = if r == 0 { 0 } else { written.ends[s][r - 1] };
            written.start = (s, r);
            Some(cursor_bytes(written.ids[s], offset))
        }
        Cursor::Boundary { .. } => {
            written.clean = false;
            Some(cursor_bytes(0, 0))
        }
        Cursor::Anywhere { segment, offset } => {
            written.clean = false;
            Some(cursor_bytes(*segment, *offset))
        }
        Cursor::Raw(bytes) => {
            written.clean = false;
            Some(bytes.clone())
        }
    };
    if let Some(bytes) = cursor {
        if let Some(id) = cursor_segment(&bytes) {
            written.cursor_in_gap = !files.contains(&id)
                && files.iter().any(|&f| f < id)
                && files.iter().any(|&f| f > id);
        }
        std::fs::write(dir.join("cursor"), bytes).expect("cursor");
    }
    written
}

fn cursor_bytes(segment: u64, offset: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&segment.to_le_bytes());
    bytes.extend_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The segment a well-formed cursor file names.
fn cursor_segment(bytes: &[u8]) -> Option<u64> {
    let (fields, crc) = bytes.split_at_checked(16)?;
    let crc: [u8; 4] = crc.try_into().ok()?;
    (crc32fast::hash(fields) == u32::from_le_bytes(crc))
        .then(|| u64::from_le_bytes(fields[..8].try_into().expect("8 bytes")))
}
