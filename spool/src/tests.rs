use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{RECORD_OVERHEAD, Spool, SpoolConfig, SpoolError};

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
    }
}

fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Spool {
    Spool::open(config(dir, max_bytes, segment_bytes)).unwrap()
}

fn record(i: usize) -> Vec<u8> {
    format!("{{\"report\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 7)).into_bytes()
}

fn append_all(spool: &Spool, records: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    spool.append(&refs).unwrap();
}

fn data(peeked: &[(crate::Position, Vec<u8>)]) -> Vec<Vec<u8>> {
    peeked.iter().map(|(_, d)| d.clone()).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn disk_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn append_peek_ack_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    assert!(spool.is_empty());
    assert!(spool.peek(10).unwrap().is_empty());
    let records: Vec<Vec<u8>> = (0..10).map(record).collect();
    append_all(&spool, &records[..4]);
    append_all(&spool, &records[4..]);
    assert_eq!(spool.len(), 10);
    let expected: u64 = records
        .iter()
        .map(|r| RECORD_OVERHEAD + r.len() as u64)
        .sum();
    assert_eq!(spool.bytes(), expected);
    assert_eq!(disk_bytes(dir.path()), expected);

    let first = spool.peek(3).unwrap();
    assert_eq!(data(&first), records[..3]);
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
    // Peeking does not consume.
    assert_eq!(data(&spool.peek(3).unwrap()), records[..3]);
    assert!(spool.peek(0).unwrap().is_empty());

    spool.ack(first[1].0).unwrap();
    assert_eq!(spool.len(), 8);
    assert_eq!(data(&spool.peek(100).unwrap()), records[2..]);
    // Acknowledging an already acknowledged position changes nothing.
    spool.ack(first[0].0).unwrap();
    assert_eq!(spool.len(), 8);
    assert_eq!(data(&spool.peek(1).unwrap()), records[2..3]);

    let rest = spool.peek(100).unwrap();
    spool.ack(rest.last().unwrap().0).unwrap();
    assert!(spool.is_empty());
    assert!(spool.peek(10).unwrap().is_empty());
    // Empty records and empty batches are fine.
    spool.append(&[]).unwrap();
    spool.append(&[b"", b"z"]).unwrap();
    assert_eq!(
        data(&spool.peek(5).unwrap()),
        vec![b"".to_vec(), b"z".to_vec()]
    );
}

#[test]
fn full_leaves_spool_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 100, 40);
    spool.append(&[&[1u8; 30], &[2u8; 30]]).unwrap(); // 76 bytes
    let before = (spool.len(), spool.bytes(), disk_bytes(dir.path()));
    let files = segment_files(dir.path());
    // 25 more bytes would take 76 past 100.
    let err = spool.append(&[&[3u8; 8], &[4u8; 1]]).unwrap_err();
    assert!(
        matches!(
            err,
            SpoolError::Full {
                needed: 25,
                used: 76,
                max: 100
            }
        ),
        "{err:?}"
    );
    assert_eq!((spool.len(), spool.bytes(), disk_bytes(dir.path())), before);
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(
        data(&spool.peek(10).unwrap()),
        vec![vec![1u8; 30], vec![2u8; 30]]
    );
    // Exactly filling the spool is allowed.
    spool.append(&[&[5u8; 16]]).unwrap();
    assert_eq!(spool.bytes(), 100);
    drop(spool);
    let spool = open(dir.path(), 100, 40);
    assert_eq!(spool.len(), 3);
}

#[test]
fn too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 64, 32);
    let big = vec![0u8; 57];
    let err = spool.append(&[b"ok", &big]).unwrap_err();
    assert!(
        matches!(err, SpoolError::TooLarge { size: 65, max: 64 }),
        "{err:?}"
    );
    // Each record fits, the batch never can.
    let err = spool.append(&[&[0u8; 30], &[0u8; 30]]).unwrap_err();
    assert!(
        matches!(err, SpoolError::TooLarge { size: 76, .. }),
        "{err:?}"
    );
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    spool.append(&[&[0u8; 56]]).unwrap();
    assert_eq!(spool.bytes(), 64);
}

#[test]
fn reopen_after_ack_resumes_at_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..20).map(record).collect();
    {
        let spool = open(dir.path(), 1 << 20, 100);
        append_all(&spool, &records);
        let peeked = spool.peek(7).unwrap();
        spool.ack(peeked[6].0).unwrap();
    }
    let spool = open(dir.path(), 1 << 20, 100);
    assert_eq!(spool.len(), 13);
    assert_eq!(spool.dropped_on_open(), 0);
    let peeked = spool.peek(100).unwrap();
    assert_eq!(data(&peeked), records[7..]);
    spool.ack(peeked[0].0).unwrap();
    drop(spool);
    let spool = open(dir.path(), 1 << 20, 100);
    assert_eq!(data(&spool.peek(100).unwrap()), records[8..]);
}

#[test]
fn positions_from_an_earlier_opening_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    spool.append(&[b"a", b"b"]).unwrap();
    let pos = spool.peek(1).unwrap()[0].0;
    drop(spool);
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    assert!(matches!(spool.ack(pos), Err(SpoolError::StalePosition)));
    assert_eq!(spool.len(), 2);
    // The same record gets an equal position.
    assert_eq!(spool.peek(1).unwrap()[0].0, pos);
}

#[test]
fn segments_roll_over_and_are_deleted_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 40);
    for i in 0..10u8 {
        spool.append(&[&[i; 40]]).unwrap(); // 48 bytes: one record per segment
    }
    assert_eq!(segment_files(dir.path()).len(), 10);
    let name = segment_files(dir.path())[0].file_name().unwrap().to_owned();
    assert_eq!(name, "00000000000000000001.seg");
    assert_eq!(spool.bytes(), 480);

    let peeked = spool.peek(4).unwrap();
    spool.ack(peeked[3].0).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 6);
    assert_eq!(spool.bytes(), 6 * 48);
    assert_eq!(disk_bytes(dir.path()), spool.bytes());

    // Acknowledging everything also frees the last segment once it is full.
    let rest = spool.peek(100).unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].1, vec![4u8; 40]);
    spool.ack(rest[5].0).unwrap();
    assert_eq!(spool.bytes(), 0);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(disk_bytes(dir.path()), 0);
    drop(spool);

    let spool = open(dir.path(), 1 << 20, 40);
    assert!(spool.is_empty());
    spool.append(&[b"after"]).unwrap();
    assert_eq!(data(&spool.peek(10).unwrap()), vec![b"after".to_vec()]);
}

#[test]
fn partly_consumed_segment_counts_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1000);
    spool.append(&[&[1u8; 92], &[2u8; 92]]).unwrap();
    let peeked = spool.peek(1).unwrap();
    spool.ack(peeked[0].0).unwrap();
    assert_eq!(spool.len(), 1);
    assert_eq!(spool.bytes(), 200);
}

#[test]
fn torn_tail_is_dropped_and_the_rest_survives() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..12).map(record).collect();
    {
        let spool = open(dir.path(), 1 << 20, 200);
        for chunk in records.chunks(3) {
            append_all(&spool, chunk);
        }
        let peeked = spool.peek(2).unwrap();
        spool.ack(peeked[1].0).unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 1, "test needs several segments");
    let last = files.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    fs::File::options()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let spool = open(dir.path(), 1 << 20, 200);
    assert_eq!(
        spool.dropped_on_open(),
        RECORD_OVERHEAD + records[11].len() as u64 - 3
    );
    assert_eq!(data(&spool.peek(100).unwrap()), records[2..11]);
    assert_eq!(spool.len(), 9);
    assert_eq!(disk_bytes(dir.path()), spool.bytes());
    // Appending after recovery continues cleanly behind the cut.
    spool.append(&[b"new"]).unwrap();
    drop(spool);
    let spool = open(dir.path(), 1 << 20, 200);
    assert_eq!(spool.dropped_on_open(), 0);
    let peeked = data(&spool.peek(100).unwrap());
    assert_eq!(peeked.last().unwrap(), b"new");
    assert_eq!(peeked.len(), 10);
}

#[test]
fn zeros_after_the_last_record_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 1 << 16);
        spool.append(&[b"one", b"two"]).unwrap();
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&last, &bytes).unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    assert_eq!(spool.dropped_on_open(), 4096);
    assert_eq!(
        data(&spool.peek(10).unwrap()),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    fs::write(path, &bytes).unwrap();
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 100);
        for i in 0..9 {
            spool.append(&[&record(i), &record(i + 100)]).unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let middle = &files[1];
    flip_byte(middle, RECORD_OVERHEAD as usize + 2);
    match Spool::open(config(dir.path(), 1 << 20, 100)) {
        Err(SpoolError::Corrupt { path, offset, .. }) => {
            assert_eq!(&path, middle);
            assert_eq!(offset, 0);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was removed.
    assert_eq!(segment_files(dir.path()), files);
}

#[test]
fn flipped_byte_in_a_middle_record_of_the_last_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..5).map(record).collect();
    {
        let spool = open(dir.path(), 1 << 20, 1 << 16);
        append_all(&spool, &records);
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let len_before = fs::metadata(&last).unwrap().len();
    let second = RECORD_OVERHEAD as usize + records[0].len();
    flip_byte(&last, second + RECORD_OVERHEAD as usize + 1);
    match Spool::open(config(dir.path(), 1 << 20, 1 << 16)) {
        Err(SpoolError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, last);
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::metadata(&last).unwrap().len(), len_before);
}

#[test]
fn damage_found_while_peeking_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    spool.append(&[b"first record", b"second record"]).unwrap();
    let last = segment_files(dir.path()).pop().unwrap();
    flip_byte(&last, RECORD_OVERHEAD as usize + 3);
    assert!(matches!(
        spool.peek(1),
        Err(SpoolError::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn missing_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 10);
        for i in 0..3 {
            spool.append(&[&record(i)]).unwrap();
        }
    }
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).unwrap();
    assert!(matches!(
        Spool::open(config(dir.path(), 1 << 20, 10)),
        Err(SpoolError::Corrupt { .. })
    ));
}

#[test]
fn a_second_opening_of_the_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    assert!(matches!(
        Spool::open(config(dir.path(), 1 << 20, 1 << 16)),
        Err(SpoolError::Locked(_))
    ));
    drop(spool);
    open(dir.path(), 1 << 20, 1 << 16);
}

#[test]
fn creates_nested_folder_and_rejects_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/spool");
    let spool = open(&nested, 1 << 20, 1 << 16);
    spool.append(&[b"x"]).unwrap();
    assert!(nested.join("00000000000000000001.seg").is_file());
    assert!(matches!(
        Spool::open(config(&dir.path().join("c"), 0, 10)),
        Err(SpoolError::InvalidConfig(_))
    ));
    assert!(matches!(
        Spool::open(config(&dir.path().join("d"), 10, 0)),
        Err(SpoolError::InvalidConfig(_))
    ));
}

#[test]
fn one_appender_and_one_forwarder_concurrently() {
    const TOTAL: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(dir.path(), 64 * 1024, 4096));
    let appender = {
        let spool = Arc::clone(&spool);
        std::thread::spawn(move || {
            let mut i = 0;
            while i < TOTAL {
                let batch: Vec<Vec<u8>> = (i..(i + 5).min(TOTAL)).map(record).collect();
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                match spool.append(&refs) {
                    Ok(()) => i += batch.len(),
                    Err(SpoolError::Full { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    let mut received = Vec::with_capacity(TOTAL);
    while received.len() < TOTAL {
        let peeked = spool.peek(17).unwrap();
        match peeked.last() {
            Some((pos, _)) => {
                spool.ack(*pos).unwrap();
                received.extend(peeked.into_iter().map(|(_, d)| d));
            }
            None => std::thread::yield_now(),
        }
    }
    appender.join().unwrap();
    let expected: Vec<Vec<u8>> = (0..TOTAL).map(record).collect();
    assert_eq!(received, expected);
    assert!(spool.is_empty());
    assert!(spool.bytes() < 4096 + 5 * 64);
    assert_eq!(disk_bytes(dir.path()), spool.bytes());
}

#[test]
fn open_finishes_an_ack_that_died_half_way() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 40);
    for i in 0..4u8 {
        spool.append(&[&[i; 40]]).unwrap(); // one record per segment
    }
    let files = segment_files(dir.path());
    let first_copy = fs::read(&files[0]).unwrap();
    let peeked = spool.peek(2).unwrap();
    spool.ack(peeked[1].0).unwrap();
    drop(spool);
    // The cursor was stored but the process died before deleting the first segment.
    fs::write(&files[0], &first_copy).unwrap();
    let spool = open(dir.path(), 1 << 20, 40);
    assert!(!files[0].exists());
    assert_eq!(spool.bytes(), 2 * 48);
    assert_eq!(
        data(&spool.peek(10).unwrap()),
        vec![vec![2u8; 40], vec![3u8; 40]]
    );
}

#[test]
fn cursor_at_the_end_of_a_segment_moves_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 40);
        spool.append(&[&[1u8; 40]]).unwrap();
        spool.append(&[&[2u8; 40]]).unwrap();
    }
    // An ack that started a new segment died before deleting the old one: the cursor still
    // names the end of segment 1.
    crate::cursor::store(
        dir.path(),
        crate::cursor::Cursor {
            segment: 1,
            offset: 48,
        },
    )
    .unwrap();
    let spool = open(dir.path(), 1 << 20, 40);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(data(&spool.peek(10).unwrap()), vec![vec![2u8; 40]]);
    drop(spool);

    // The cursor names a segment after the last one, whose creation was lost.
    crate::cursor::store(
        dir.path(),
        crate::cursor::Cursor {
            segment: 3,
            offset: 0,
        },
    )
    .unwrap();
    let spool = open(dir.path(), 1 << 20, 40);
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    spool.append(&[b"next"]).unwrap();
    assert!(dir.path().join("00000000000000000003.seg").is_file());
    drop(spool);

    // A cursor inside a record is corruption.
    crate::cursor::store(
        dir.path(),
        crate::cursor::Cursor {
            segment: 3,
            offset: 5,
        },
    )
    .unwrap();
    assert!(matches!(
        Spool::open(config(dir.path(), 1 << 20, 40)),
        Err(SpoolError::Corrupt { offset: 5, .. })
    ));
}

#[test]
fn a_failed_deletion_is_retried_by_the_next_ack() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 40);
    for i in 0..3u8 {
        spool.append(&[&[i; 40]]).unwrap(); // one record per segment
    }
    let peeked = spool.peek(3).unwrap();
    // A folder in place of the first segment cannot be removed as a file.
    let first = segment_files(dir.path()).remove(0);
    fs::remove_file(&first).unwrap();
    fs::create_dir(&first).unwrap();
    fs::write(first.join("keep"), b"x").unwrap();

    assert!(matches!(spool.ack(peeked[0].0), Err(SpoolError::Io(_))));
    // The cursor moved anyway, and reading goes on from the second segment.
    assert_eq!(spool.len(), 2);
    assert_eq!(
        data(&spool.peek(10).unwrap()),
        vec![vec![1u8; 40], vec![2u8; 40]]
    );
    assert_eq!(spool.bytes(), 3 * 48);

    fs::remove_dir_all(&first).unwrap();
    spool.ack(peeked[0].0).unwrap();
    assert_eq!(spool.bytes(), 2 * 48);
    assert_eq!(spool.len(), 2);
}

#[test]
fn a_cursor_naming_a_lost_segment_between_two_others_is_refused_not_a_panic() {
    // Found by fuzzing: segments 1 and 3 on disk, the cursor at the start of
    // segment 2, whose file is gone.
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 40);
        for i in 0..3u8 {
            spool.append(&[&[i; 40]]).unwrap();
        }
    }
    assert_eq!(segment_files(dir.path()).len(), 3);
    fs::remove_file(dir.path().join("00000000000000000002.seg")).unwrap();
    crate::cursor::store(
        dir.path(),
        crate::cursor::Cursor {
            segment: 2,
            offset: 0,
        },
    )
    .unwrap();
    assert!(matches!(
        Spool::open(config(dir.path(), 1 << 20, 40)),
        Err(SpoolError::Corrupt { .. })
    ));
}

#[test]
fn a_segment_number_no_spool_reaches_is_refused_not_an_overflow() {
    // Found by fuzzing: a well-formed cursor naming segment 2^64 - 1 opened
    // once, created that segment, and the next open overflowed `last + 1`.
    let dir = tempfile::tempdir().unwrap();
    crate::cursor::store(
        dir.path(),
        crate::cursor::Cursor {
            segment: u64::MAX,
            offset: 0,
        },
    )
    .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            Spool::open(config(dir.path(), 1 << 20, 40)),
            Err(SpoolError::Corrupt { .. })
        ));
    }
    assert!(segment_files(dir.path()).is_empty(), "nothing was created");
}
