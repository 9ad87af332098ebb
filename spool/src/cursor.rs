//! The cursor file: where the next unacknowledged record starts.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::SpoolError;
use crate::durable::sync_dir;

pub(crate) const FILE_NAME: &str = "cursor";
pub(crate) const TEMP_NAME: &str = "cursor.tmp";
const LEN: usize = 20;

/// Segment id and byte offset in it of the next record not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

impl Cursor {
    fn encode(self) -> [u8; LEN] {
        let mut buf = [0u8; LEN];
        buf[..8].copy_from_slice(&self.segment.to_le_bytes());
        buf[8..16].copy_from_slice(&self.offset.to_le_bytes());
        let crc = crc32fast::hash(&buf[..16]);
        buf[16..].copy_from_slice(&crc.to_le_bytes());
        buf
    }

    fn decode(buf: &[u8]) -> Option<Cursor> {
        let buf: &[u8; LEN] = buf.try_into().ok()?;
        let crc = u32::from_le_bytes(buf[16..].try_into().ok()?);
        if crc32fast::hash(&buf[..16]) != crc {
            return None;
        }
        Some(Cursor {
            segment: u64::from_le_bytes(buf[..8].try_into().ok()?),
            offset: u64::from_le_bytes(buf[8..16].try_into().ok()?),
        })
    }
}

/// Reads the cursor file; `None` if there is none yet (nothing was ever acknowledged).
pub(crate) fn load(dir: &Path) -> Result<Option<Cursor>, SpoolError> {
    let path = dir.join(FILE_NAME);
    match fs::read(&path) {
        Ok(buf) => Cursor::decode(&buf).map(Some).ok_or(SpoolError::Corrupt {
            path,
            offset: 0,
            reason: "cursor file has a bad length or checksum",
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Durably replaces the cursor file: write a temporary file, fsync it, rename it over the old
/// one, fsync the folder. A crash at any point leaves either the old or the new cursor.
pub(crate) fn store(dir: &Path, cursor: Cursor) -> Result<(), SpoolError> {
    let temp = dir.join(TEMP_NAME);
    let mut file = File::create(&temp)?;
    file.write_all(&cursor.encode())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(FILE_NAME))?;
    sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let c = Cursor {
            segment: 7,
            offset: 1234,
        };
        store(dir.path(), c).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(c));
        assert!(!dir.path().join(TEMP_NAME).exists());

        let mut bytes = fs::read(dir.path().join(FILE_NAME)).unwrap();
        bytes[3] ^= 1;
        fs::write(dir.path().join(FILE_NAME), &bytes).unwrap();
        assert!(matches!(load(dir.path()), Err(SpoolError::Corrupt { .. })));
    }
}
