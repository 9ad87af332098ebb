//! Making folder entries durable: the one durability step that differs by
//! platform.
//!
//! Record data is made durable the same way everywhere: `File::sync_data`
//! and `File::sync_all` are `fdatasync`/`fsync` on Unix and
//! `FlushFileBuffers` on Windows, which writes the file's data and its own
//! metadata (its size) to the device and asks the device to flush its cache.
//! What differs is the folder: a created segment, the renamed cursor and a
//! removed segment are entries of the spool's folder, and
//!
//! * **Unix**: `fsync` on the folder, opened like a file, makes its entries
//!   durable; POSIX promises nothing about them before that.
//! * **Windows**: a folder cannot be opened like a file at all: `CreateFileW`
//!   refuses a directory with `ERROR_ACCESS_DENIED` unless it is asked for
//!   with `FILE_FLAG_BACKUP_SEMANTICS`, and `FlushFileBuffers` refuses a
//!   handle opened without write access, again with `ERROR_ACCESS_DENIED`
//!   (that was the "Access denied (os error 5)" at the end of every flush).
//!   So the folder is opened with `FILE_FLAG_BACKUP_SEMANTICS` and read and
//!   write access, and flushed. NTFS accepts the flush: it writes its
//!   metadata journal, in which creations, renames and removals are logged
//!   in order, up to that point. A file system that has no such flush (FAT32,
//!   exFAT, some network redirectors) refuses it with `ERROR_INVALID_FUNCTION`
//!   or `ERROR_NOT_SUPPORTED`; that refusal is taken as "nothing more can be
//!   done" and not as a failure, since no other call would do better. Opening
//!   the folder can still fail (it was removed, access was taken away): that
//!   is an error.
//!
//! What Windows does not give, and the spool does not need: a rename that
//! replaces a file another process holds open without `FILE_SHARE_DELETE`
//! fails (`ERROR_ACCESS_DENIED` or `ERROR_SHARING_VIOLATION`), and so does
//! removing such a file. The spool opens its own files with the standard
//! library's default sharing (read, write and delete), never holds the
//! cursor open, and closes a segment's reader before removing it; a scanner
//! that holds one of its files without delete sharing makes that `ack` fail,
//! which is safe to repeat (see [`crate::Spool::ack`]).

use std::io;
use std::path::Path;

/// Makes the entries of folder `dir` (files created, renamed or removed in
/// it) durable.
#[cfg(not(windows))]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes the entries of folder `dir` (files created, renamed or removed in
/// it) durable, as far as the file system can; see the module docs.
#[cfg(windows)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    use std::os::windows::fs::OpenOptionsExt;

    /// `CreateFileW` opens a directory only with this flag.
    const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
    const ERROR_INVALID_FUNCTION: i32 = 1;
    const ERROR_NOT_SUPPORTED: i32 = 50;

    let folder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(dir)?;
    match folder.sync_all() {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(ERROR_INVALID_FUNCTION | ERROR_NOT_SUPPORTED)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_can_be_synced_after_its_entries_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        sync_dir(dir.path()).unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        sync_dir(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }
}
