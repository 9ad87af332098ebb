//! Runs random sequences of operations against the spool and against a plain in-memory queue,
//! and checks after every step that the spool returns exactly the queue's front records.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use spool::{Position, RECORD_OVERHEAD, Spool, SpoolConfig, SpoolError};

const MAX_BYTES: u64 = 2048;
const SEGMENT_BYTES: u64 = 256;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Peek(usize),
    /// Acknowledge the record at this index (modulo its length) of the last peek.
    Ack(usize),
    Reopen,
    /// Append, then cut `1 + cut % batch size` bytes from the end of the last segment file, as a
    /// crash in the middle of writing the batch would, then reopen.
    TornAppend(Vec<Vec<u8>>, u64),
    /// Add this many zero bytes to the end of the last segment file, as a crash after the file
    /// grew but before its data reached the disk would, then reopen.
    ZeroTail(usize),
}

const MAX_RECORD: usize = 120;
const MAX_BATCH: usize = 5;
const MAX_BATCH_BYTES: u64 = MAX_BATCH as u64 * (RECORD_OVERHEAD + MAX_RECORD as u64);

fn batch() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..=MAX_RECORD),
        1..=MAX_BATCH,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => batch().prop_map(Op::Append),
        3 => (0usize..12).prop_map(Op::Peek),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => Just(Op::Reopen),
        1 => (batch(), any::<u64>()).prop_map(|(b, cut)| Op::TornAppend(b, cut)),
        1 => (1usize..64).prop_map(Op::ZeroTail),
    ]
}

fn frame_size(record: &[u8]) -> u64 {
    RECORD_OVERHEAD + record.len() as u64
}

fn open(dir: &Path) -> Spool {
    Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: MAX_BYTES,
        segment_bytes: SEGMENT_BYTES,
    })
    .expect("open")
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

struct Harness {
    dir: tempfile::TempDir,
    spool: Option<Spool>,
    /// Records appended and not acknowledged, with the id the test gave them.
    model: VecDeque<(u64, Vec<u8>)>,
    next_id: u64,
    /// What the last peek returned, and whether a reopen has made those positions stale.
    peeked: Vec<(Position, u64)>,
    peeked_stale: bool,
}

impl Harness {
    fn spool(&self) -> &Spool {
        self.spool.as_ref().expect("spool open")
    }

    /// Appends through the spool and the model; returns whether the spool took the batch.
    fn append(&mut self, batch: &[Vec<u8>]) -> bool {
        let size: u64 = batch.iter().map(|r| frame_size(r)).sum();
        let before = self.spool().bytes();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        match self.spool().append(&refs) {
            Ok(()) => {
                assert!(
                    before + size <= MAX_BYTES,
                    "took {size} bytes with {before} used"
                );
                assert_eq!(self.spool().bytes(), before + size);
                for record in batch {
                    self.model.push_back((self.next_id, record.clone()));
                    self.next_id += 1;
                }
                true
            }
            Err(SpoolError::Full { needed, used, max }) => {
                assert_eq!((needed, used, max), (size, before, MAX_BYTES));
                assert!(before + size > MAX_BYTES);
                assert_eq!(self.spool().bytes(), before);
                false
            }
            Err(e) => panic!("append failed: {e}"),
        }
    }

    fn reopen(&mut self) {
        self.spool = None;
        self.spool = Some(open(self.dir.path()));
        self.peeked_stale = true;
    }

    fn last_segment(&self) -> PathBuf {
        segment_files(self.dir.path())
            .pop()
            .expect("a segment file")
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(batch) => {
                self.append(batch);
            }
            Op::Peek(n) => {
                let got = self.spool().peek(*n).expect("peek");
                let want: Vec<&Vec<u8>> = self.model.iter().take(*n).map(|(_, d)| d).collect();
                let got_data: Vec<&Vec<u8>> = got.iter().map(|(_, d)| d).collect();
                assert_eq!(got_data, want);
                assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
                self.peeked = got
                    .iter()
                    .zip(&self.model)
                    .map(|((pos, _), (id, _))| (*pos, *id))
                    .collect();
                self.peeked_stale = false;
            }
            Op::Ack(k) => {
                if self.peeked.is_empty() {
                    return;
                }
                let (pos, id) = self.peeked[k % self.peeked.len()];
                let result = self.spool().ack(pos);
                if self.peeked_stale {
                    assert!(
                        matches!(result, Err(SpoolError::StalePosition)),
                        "{result:?}"
                    );
                } else {
                    result.expect("ack");
                    while self.model.front().is_some_and(|(front, _)| *front <= id) {
                        self.model.pop_front();
                    }
                }
            }
            Op::Reopen => {
                self.reopen();
                assert_eq!(self.spool().dropped_on_open(), 0);
            }
            Op::TornAppend(batch, cut) => {
                let sizes: Vec<u64> = batch.iter().map(|r| frame_size(r)).collect();
                let size: u64 = sizes.iter().sum();
                let model_before = self.model.len();
                if !self.append(batch) {
                    self.reopen();
                    return;
                }
                self.spool = None;
                let cut = 1 + cut % size;
                let last = self.last_segment();
                let len = fs::metadata(&last).unwrap().len();
                assert!(len >= size, "the batch is at the end of the last segment");
                let file = fs::File::options().write(true).open(&last).unwrap();
                file.set_len(len - cut).unwrap();
                drop(file);
                // Records wholly before the cut survive; the rest of the batch is gone.
                let kept_bytes = size - cut;
                let mut end = 0;
                let mut kept = 0;
                for s in &sizes {
                    if end + s > kept_bytes {
                        break;
                    }
                    end += s;
                    kept += 1;
                }
                self.model.truncate(model_before + kept);
                self.reopen();
                assert_eq!(self.spool().dropped_on_open(), kept_bytes - end);
            }
            Op::ZeroTail(n) => {
                self.spool = None;
                let last = self.last_segment();
                let mut bytes = fs::read(&last).unwrap();
                bytes.resize(bytes.len() + n, 0);
                fs::write(&last, &bytes).unwrap();
                self.reopen();
                assert_eq!(self.spool().dropped_on_open(), *n as u64);
            }
        }
    }

    /// What must hold between any two operations.
    fn check(&self) {
        let spool = self.spool();
        assert_eq!(spool.len(), self.model.len() as u64);
        assert_eq!(spool.is_empty(), self.model.is_empty());
        let all = spool.peek(usize::MAX).expect("peek all");
        let got: Vec<&Vec<u8>> = all.iter().map(|(_, d)| d).collect();
        let want: Vec<&Vec<u8>> = self.model.iter().map(|(_, d)| d).collect();
        assert_eq!(got, want);
        let on_disk: u64 = segment_files(self.dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(spool.bytes(), on_disk);
        assert!(spool.bytes() <= MAX_BYTES);
        // Consumed segments are deleted: only the segment the cursor is in can hold consumed
        // records, and a segment is never longer than SEGMENT_BYTES plus one batch.
        let pending: u64 = self.model.iter().map(|(_, d)| frame_size(d)).sum();
        assert!(
            spool.bytes() <= pending + SEGMENT_BYTES + MAX_BATCH_BYTES,
            "{} bytes on disk for {pending} pending",
            spool.bytes()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn spool_behaves_like_a_queue(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let mut harness = Harness {
            dir,
            spool: Some(spool),
            model: VecDeque::new(),
            next_id: 0,
            peeked: Vec::new(),
            peeked_stale: false,
        };
        for op in &ops {
            harness.apply(op);
            harness.check();
        }
        harness.reopen();
        harness.check();
    }
}
