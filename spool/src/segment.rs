//! Segment files: naming, record framing, and the recovery scan run by `Spool::open`.

use std::fs::{self, File};
use std::io::{self, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::SpoolError;

/// Bytes of framing in front of every record: `u32` length and `u32` CRC32, both little-endian.
pub const RECORD_OVERHEAD: u64 = 8;

const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;

/// File name of segment `id`: the id zero-padded to 20 digits, then `.seg`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:0SEGMENT_DIGITS$}{SEGMENT_SUFFIX}")
}

pub(crate) fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(file_name(id))
}

/// Parses a segment file name back to its id; `None` for any other file.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Ids of the segment files in `dir`, ascending.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The checksum stored in a record's header. It covers the length field as well as the bytes,
/// so that a run of zeros (what some file systems show for a file extended by a write that never
/// reached the disk) never reads as a valid empty record.
pub(crate) fn checksum(len: u32, data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(data);
    hasher.finalize()
}

/// Appends the framed form of `data` to `buf`. The caller has checked that it fits a `u32`.
pub(crate) fn encode(buf: &mut Vec<u8>, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("record length checked by the caller");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, data).to_le_bytes());
    buf.extend_from_slice(data);
}

/// Splits a record header into (length, checksum).
pub(crate) fn decode_header(header: &[u8; RECORD_OVERHEAD as usize]) -> (u32, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

/// What one attempt to read a record from a stream found.
enum Frame {
    /// A whole record with a matching checksum, `len` bytes of data.
    Valid { len: u32 },
    /// The stream ended exactly here.
    End,
    /// Fewer than [`RECORD_OVERHEAD`] bytes remain.
    ShortHeader,
    /// The length runs past the end of the file.
    PastEnd,
    /// The whole record is there but its checksum does not match; `len` is its claimed length.
    BadChecksum { len: u32 },
}

/// Reads up to `buf.len()` bytes, stopping early only at end of file. Returns how many were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the record at `offset` of a file `file_len` bytes long; `data` receives its bytes.
fn read_frame(
    reader: &mut impl Read,
    offset: u64,
    file_len: u64,
    data: &mut Vec<u8>,
) -> io::Result<Frame> {
    let mut header = [0u8; RECORD_OVERHEAD as usize];
    match read_full(reader, &mut header)? {
        0 => return Ok(Frame::End),
        n if n < header.len() => return Ok(Frame::ShortHeader),
        _ => {}
    }
    let (len, crc) = decode_header(&header);
    if offset + RECORD_OVERHEAD + u64::from(len) > file_len {
        return Ok(Frame::PastEnd);
    }
    data.resize(len as usize, 0);
    if read_full(reader, data)? < data.len() {
        // The file shrank while being read; nothing else touches it, but be safe.
        return Ok(Frame::PastEnd);
    }
    if checksum(len, data) != crc {
        return Ok(Frame::BadChecksum { len });
    }
    Ok(Frame::Valid { len })
}

/// What the recovery scan learned about one segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Length of the file once a torn tail (if any) is cut away.
    pub valid_len: u64,
    /// Bytes cut away as a torn tail (only ever non-zero for the last segment).
    pub torn_bytes: u64,
    /// Records that start at or after the `from` offset given to [`scan`].
    pub records_from: u64,
    /// Whether `from` is a record boundary (a record start, or `valid_len`).
    pub from_is_boundary: bool,
}

/// Reads every record of segment `id`, checking each checksum.
///
/// In the last segment a bad record that nothing valid follows is a torn write from an append
/// that never returned: the file is truncated (and fsync'd) at its start. A bad record anywhere
/// else, or one in the last segment that is followed by a valid record, is corruption.
pub(crate) fn scan(dir: &Path, id: u64, is_last: bool, from: u64) -> Result<Scan, SpoolError> {
    let path = path(dir, id);
    let file = File::options().read(true).write(is_last).open(&path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, &file);
    let mut data = Vec::new();
    let mut offset = 0u64;
    let mut records_from = 0u64;
    let mut from_is_boundary = false;
    let corrupt = |offset: u64, reason: &'static str| SpoolError::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    loop {
        if offset == from {
            from_is_boundary = true;
        }
        let frame = read_frame(&mut reader, offset, file_len, &mut data)?;
        let reason = match frame {
            Frame::Valid { len } => {
                if offset >= from {
                    records_from += 1;
                }
                offset += RECORD_OVERHEAD + u64::from(len);
                continue;
            }
            Frame::End => {
                return Ok(Scan {
                    valid_len: offset,
                    torn_bytes: 0,
                    records_from,
                    from_is_boundary,
                });
            }
            Frame::ShortHeader => "incomplete record header",
            Frame::PastEnd => "record length runs past the end of the file",
            Frame::BadChecksum { len } => {
                // A record that is whole but damaged, and followed by a good record, is not
                // the tail of an interrupted append: refuse to drop what follows it.
                let next = offset + RECORD_OVERHEAD + u64::from(len);
                if is_last
                    && next < file_len
                    && let Frame::Valid { .. } = read_frame(&mut reader, next, file_len, &mut data)?
                {
                    return Err(corrupt(offset, "checksum mismatch before a valid record"));
                }
                "checksum mismatch"
            }
        };
        if !is_last {
            return Err(corrupt(offset, reason));
        }
        drop(reader);
        file.set_len(offset)?;
        file.sync_all()?;
        // A `from` inside the cut-away bytes is caught by the caller via `from_is_boundary`.
        return Ok(Scan {
            valid_len: offset,
            torn_bytes: file_len - offset,
            records_from,
            from_is_boundary,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("1.seg"), None);
        assert_eq!(parse_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_name("00000000000000000001.tmp"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn zeros_are_not_a_valid_record() {
        let (len, crc) = decode_header(&[0; 8]);
        assert_ne!(checksum(len, &[]), crc);
    }

    #[test]
    fn encode_then_decode() {
        let mut buf = Vec::new();
        encode(&mut buf, b"hello");
        assert_eq!(buf.len() as u64, RECORD_OVERHEAD + 5);
        let (len, crc) = decode_header(buf[..8].try_into().unwrap());
        assert_eq!(len, 5);
        assert_eq!(crc, checksum(5, b"hello"));
        assert_eq!(&buf[8..], b"hello");
    }
}
