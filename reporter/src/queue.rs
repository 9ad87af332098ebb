//! The durable queue: reports wait here, on disk and fsync'd, until ingest
//! has them.
//!
//! The queue folder holds:
//!
//! * `spool/`: a [`spool::Spool`] (crash-safe FIFO) of [`Queued`] records,
//!   JSON: `{"queued_at": RFC 3339, "envelope": {...}}`;
//! * `machine_id`: the machine's random id, made once;
//! * `imported`: the ledger of WER report ids already imported, one a line;
//! * `stats.json`: counters of reports dropped, and when the last batch went.
//!
//! Bounds: the spool's `max_bytes` (the queue's size on disk) and an age.
//! Queueing never refuses a report for room: the oldest reports are dropped
//! (and counted) until the new one fits. Reports older than the age bound are
//! dropped from the head on every queue and flush, and any met during a
//! flush; the counts are kept in `stats.json`.
//!
//! The spool only removes a prefix, so [`Queue::settle`] handles a batch
//! whose reports fared differently: the ones to try again are appended anew
//! (durably) before the batch is acknowledged. A crash between the two sends
//! them twice at worst, which ingest and the processor deduplicate by id.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use schemas::Envelope;
use serde::{Deserialize, Serialize};
use spool::{Position, Spool, SpoolConfig, SpoolError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;
use crate::config::QueueBounds;
use crate::fault;

/// One queued report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    pub envelope: Envelope,
}

/// A queued report and where it sits in the spool.
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: Position,
    /// `None` when the record on disk does not decode (it is dropped).
    pub report: Option<Queued>,
}

/// Counters kept across runs in `stats.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Oldest reports dropped to make room for new ones.
    pub dropped_full: u64,
    /// Reports dropped for being older than `max_age_days`.
    pub dropped_expired: u64,
    /// Reports ingest refused for good (`rejected` with a final error code).
    pub dropped_rejected: u64,
    /// Reports of a type the organisation's policy switched off.
    pub dropped_disabled: u64,
    /// Records on disk that did not decode.
    pub dropped_corrupt: u64,
    /// Queued reports the consent in force no longer covers (it was lowered
    /// after they were queued).
    pub dropped_consent: u64,
    /// Reports ingest accepted (or had already).
    pub sent: u64,
    /// The organisation's consent cap as the last flush found it.
    pub consent_cap: Option<schemas::Consent>,
    /// The last day (`YYYY-MM-DD`, UTC) `reporter run` queued a heartbeat for.
    pub heartbeat_day: Option<String>,
    /// When the last batch was sent (for the policy's `min_interval_secs`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_batch_at: Option<OffsetDateTime>,
}

/// What queueing one report did besides queueing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Oldest reports dropped to make room.
    pub dropped_full: u64,
    /// Reports dropped for their age.
    pub dropped_expired: u64,
}

/// The queue folder, opened (and locked) by one process at a time.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    spool: Spool,
    bounds: QueueBounds,
    stats: Stats,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
}

impl Queue {
    /// Opens the queue in `dir`, creating it if needed.
    pub fn open(dir: &Path, bounds: QueueBounds) -> Result<Queue, Error> {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let spool = Spool::open(SpoolConfig {
            dir: dir.join("spool"),
            max_bytes: bounds.max_bytes,
            // Space comes back a whole segment at a time: small segments let
            // dropping the oldest report free room soon.
            segment_bytes: (bounds.max_bytes / 16).max(4096),
        })
        .map_err(|e| match e {
            SpoolError::Locked(_) => Error::Config(format!(
                "the queue in {} is in use by another reporter",
                dir.display()
            )),
            other => Error::Queue(other),
        })?;
        let stats = match fs::read(dir.join("stats.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Stats::default(),
        };
        Ok(Queue {
            dir: dir.to_path_buf(),
            spool,
            bounds,
            stats,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reports waiting.
    pub fn len(&self) -> u64 {
        self.spool.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spool.is_empty()
    }

    /// Bytes of queue files on disk (what counts against `max_bytes`).
    pub fn bytes(&self) -> u64 {
        self.spool.bytes()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Changes the counters and saves them.
    pub fn update_stats(&mut self, change: impl FnOnce(&mut Stats)) -> Result<(), Error> {
        change(&mut self.stats);
        let bytes = serde_json::to_vec_pretty(&self.stats).expect("stats encode");
        write_atomic(&self.dir.join("stats.json"), &bytes)
    }

    /// Queues `envelope` durably. Drops expired reports first, then the
    /// oldest ones while the new one does not fit.
    pub fn push(&mut self, envelope: Envelope, now: OffsetDateTime) -> Result<Pushed, Error> {
        let record = serde_json::to_vec(&Queued {
            queued_at: now,
            envelope,
        })
        .expect("a report encodes");
        self.push_records(&[record], now)
    }

    /// Appends already encoded records; see [`Queue::push`].
    fn push_records(&mut self, records: &[Vec<u8>], now: OffsetDateTime) -> Result<Pushed, Error> {
        let mut pushed = Pushed {
            dropped_expired: self.expire(now)?,
            ..Pushed::default()
        };
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let result = loop {
            match self.spool.append(&refs) {
                Ok(()) => break Ok(()),
                Err(SpoolError::Full { .. }) if !self.spool.is_empty() => {
                    let oldest = self.spool.peek(1)?;
                    if let Some((position, _)) = oldest.first() {
                        self.spool.ack(*position)?;
                        pushed.dropped_full += 1;
                    }
                }
                Err(SpoolError::Full { needed, max, .. })
                | Err(SpoolError::TooLarge { size: needed, max }) => {
                    break Err(Error::Invalid(format!(
                        "the report ({needed} bytes) is too large for the queue (queue.max_bytes = {max})"
                    )));
                }
                Err(other) => break Err(Error::Queue(other)),
            }
        };
        if pushed.dropped_full > 0 {
            let n = pushed.dropped_full;
            self.update_stats(|s| s.dropped_full += n)?;
        }
        result.map(|()| pushed)
    }

    /// Whether `queued_at` is past the age bound at `now`.
    pub fn is_expired(&self, queued_at: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.bounds.max_age_days > 0
            && now - queued_at > time::Duration::days(i64::from(self.bounds.max_age_days))
    }

    /// Drops expired (and undecodable) reports from the head of the queue,
    /// oldest first; returns how many expired.
    pub fn expire(&mut self, now: OffsetDateTime) -> Result<u64, Error> {
        let (mut expired, mut corrupt) = (0u64, 0u64);
        loop {
            let head = self.peek(64)?;
            let mut last = None;
            for entry in &head {
                match &entry.report {
                    Some(q) if !self.is_expired(q.queued_at, now) => break,
                    Some(_) => expired += 1,
                    None => corrupt += 1,
                }
                last = Some(entry.position);
            }
            match last {
                Some(position) => self.spool.ack(position)?,
                None => break,
            }
            if head.len() < 64 {
                break;
            }
        }
        if expired + corrupt > 0 {
            self.update_stats(|s| {
                s.dropped_expired += expired;
                s.dropped_corrupt += corrupt;
            })?;
        }
        Ok(expired)
    }

    /// Up to `max` of the oldest reports, without removing them.
    pub fn peek(&self, max: usize) -> Result<Vec<Entry>, Error> {
        Ok(self
            .spool
            .peek(max)?
            .into_iter()
            .map(|(position, bytes)| Entry {
                position,
                report: serde_json::from_slice(&bytes).ok(),
            })
            .collect())
    }

    /// Every queued report, oldest first.
    pub fn all(&self) -> Result<Vec<Entry>, Error> {
        self.peek(usize::try_from(self.len()).unwrap_or(usize::MAX))
    }

    /// The ids of every queued report.
    pub fn report_ids(&self) -> Result<HashSet<Uuid>, Error> {
        Ok(self
            .all()?
            .into_iter()
            .filter_map(|e| e.report.map(|q| q.envelope.report_id))
            .collect())
    }

    /// Removes `batch` (a prefix of the queue, as [`Queue::peek`] gave it)
    /// except `retry`, which go to the back of the queue, queued_at kept.
    ///
    /// Crash-safe at every step (the [`crate::fault`] points): the copies to
    /// retry are appended (fsync'd) before the batch is acknowledged, so a
    /// crash in between queues them twice at worst. When the queue has no
    /// room for the copies, only the reports before the first one to retry
    /// are acknowledged, and the copies are tried once more; if there is
    /// still no room, the rest of the batch stays where it is, to be sent
    /// again (its done reports then come back as duplicates). Nothing is
    /// acknowledged before its copy, if it needs one, is on disk.
    pub fn settle(&mut self, batch: &[Entry], retry: &[Queued]) -> Result<(), Error> {
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(());
        };
        fault::point("settle:start");
        let records: Vec<Vec<u8>> = retry
            .iter()
            .map(|q| serde_json::to_vec(q).expect("a report encodes"))
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        if !refs.is_empty() {
            match self.spool.append(&refs) {
                Ok(()) => {}
                Err(SpoolError::Full { .. }) => {
                    let retried: HashSet<Uuid> =
                        retry.iter().map(|q| q.envelope.report_id).collect();
                    let first = batch.iter().position(|e| {
                        e.report
                            .as_ref()
                            .is_some_and(|q| retried.contains(&q.envelope.report_id))
                    });
                    let Some(first) = first else {
                        return Err(Error::Invalid(
                            "settle: a report to retry is not in its batch".into(),
                        ));
                    };
                    if first > 0 {
                        self.spool.ack(batch[first - 1].position)?;
                        fault::point("settle:prefix-acked");
                    }
                    match self.spool.append(&refs) {
                        Ok(()) => {}
                        Err(SpoolError::Full { .. }) => return Ok(()),
                        Err(other) => return Err(Error::Queue(other)),
                    }
                }
                Err(other) => return Err(Error::Queue(other)),
            }
            fault::point("settle:appended");
        }
        self.spool.ack(last)?;
        fault::point("settle:acked");
        Ok(())
    }

    /// The machine's id, made (random, 32 hex digits after `m-`) and kept in
    /// the `machine_id` file on first use.
    pub fn machine_id(&self) -> Result<String, Error> {
        let path = self.dir.join("machine_id");
        if let Ok(text) = fs::read_to_string(&path) {
            let id = text.trim();
            if id.len() >= 8 {
                return Ok(id.to_string());
            }
        }
        let id = format!("m-{}", Uuid::new_v4().simple());
        write_atomic(&path, format!("{id}\n").as_bytes())?;
        Ok(id)
    }

    /// WER report ids imported before.
    pub fn imported(&self) -> Result<HashSet<Uuid>, Error> {
        match fs::read_to_string(self.dir.join("imported")) {
            Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(io("reading the imported ledger")(e)),
        }
    }

    /// Adds `id` to the `imported` ledger (appended, fsync'd).
    pub fn mark_imported(&self, id: Uuid) -> Result<(), Error> {
        let path = self.dir.join("imported");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        writeln!(file, "{id}")
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing {}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::sample_envelope;

    fn bounds(max_bytes: u64, max_age_days: u32) -> QueueBounds {
        QueueBounds {
            max_bytes,
            max_age_days,
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), bounds(64 * 1024, 0)).unwrap();
        let now = OffsetDateTime::now_utc();
        let mut ids = Vec::new();
        let mut dropped = 0;
        for _ in 0..400 {
            let envelope = sample_envelope();
            ids.push(envelope.report_id);
            dropped += queue.push(envelope, now).unwrap().dropped_full;
        }
        assert!(dropped > 0, "400 reports of ~450 bytes exceed 64 KiB");
        assert!(queue.bytes() <= 64 * 1024);
        assert_eq!(queue.stats().dropped_full, dropped);
        assert_eq!(queue.len() + dropped, 400, "nothing lost uncounted");
        // What is left is the newest reports, in order.
        let left: Vec<Uuid> = queue
            .all()
            .unwrap()
            .into_iter()
            .map(|e| e.report.unwrap().envelope.report_id)
            .collect();
        assert_eq!(left, ids[ids.len() - left.len()..]);
        // The counts survive a reopen.
        drop(queue);
        let queue = Queue::open(dir.path(), bounds(64 * 1024, 0)).unwrap();
        assert_eq!(queue.stats().dropped_full, dropped);
    }

    #[test]
    fn old_reports_are_dropped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), bounds(1 << 20, 7)).unwrap();
        let now = OffsetDateTime::now_utc();
        let days = |n| now - time::Duration::days(n);
        queue.push(sample_envelope(), days(10)).unwrap();
        queue.push(sample_envelope(), days(9)).unwrap();
        assert_eq!(queue.len(), 2, "not expired when they were queued");
        let fresh = sample_envelope();
        let fresh_id = fresh.report_id;
        let pushed = queue.push(fresh, days(1)).unwrap();
        assert_eq!(pushed.dropped_expired, 2);
        assert_eq!(queue.stats().dropped_expired, 2);
        let pushed = queue.push(sample_envelope(), now).unwrap();
        assert_eq!(pushed.dropped_expired, 0);
        let first = queue.peek(1).unwrap().remove(0).report.unwrap();
        assert_eq!(first.envelope.report_id, fresh_id);
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn settle_requeues_only_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), bounds(1 << 20, 0)).unwrap();
        let now = OffsetDateTime::now_utc();
        for _ in 0..4 {
            queue.push(sample_envelope(), now).unwrap();
        }
        let batch = queue.peek(3).unwrap();
        let retry = vec![batch[1].report.clone().unwrap()];
        queue.settle(&batch, &retry).unwrap();
        let left: Vec<Uuid> = queue
            .all()
            .unwrap()
            .into_iter()
            .map(|e| e.report.unwrap().envelope.report_id)
            .collect();
        assert_eq!(left.len(), 2);
        assert_eq!(
            left[1], retry[0].envelope.report_id,
            "retry goes to the back"
        );
    }

    /// Fills the spool until not one more record fits.
    fn fill(queue: &mut Queue) {
        let now = OffsetDateTime::now_utc();
        loop {
            let record = serde_json::to_vec(&Queued {
                queued_at: now,
                envelope: sample_envelope(),
            })
            .unwrap();
            match queue.spool.append(&[&record]) {
                Ok(()) => {}
                Err(SpoolError::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn ids(queue: &Queue) -> Vec<Uuid> {
        queue
            .all()
            .unwrap()
            .into_iter()
            .map(|e| e.report.unwrap().envelope.report_id)
            .collect()
    }

    #[test]
    fn settle_in_a_full_queue_never_acknowledges_a_report_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), bounds(16 * 1024, 0)).unwrap();
        fill(&mut queue);
        let before = ids(&queue);
        let batch = queue.peek(4).unwrap();
        let retry = vec![batch[2].report.clone().unwrap()];
        queue.settle(&batch, &retry).unwrap();
        // No room for the copy even after acknowledging the two before it
        // (space comes back a segment at a time): the rest stays queued.
        assert_eq!(ids(&queue), before[2..]);
        drop(queue);
        let queue = Queue::open(dir.path(), bounds(16 * 1024, 0)).unwrap();
        assert_eq!(ids(&queue), before[2..], "the same after a reopen");
    }

    #[test]
    fn settle_in_a_full_queue_requeues_once_acknowledging_freed_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), bounds(16 * 1024, 0)).unwrap();
        fill(&mut queue);
        let before = ids(&queue);
        // More than a 4 KiB segment of ~450-byte reports before the retry.
        let batch = queue.peek(12).unwrap();
        let retry = vec![batch[11].report.clone().unwrap()];
        queue.settle(&batch, &retry).unwrap();
        let mut expected = before[12..].to_vec();
        expected.push(before[11]);
        assert_eq!(ids(&queue), expected, "the copy went to the back");
    }

    #[test]
    fn settle_interrupted_at_any_step_keeps_every_report_to_retry() {
        let points = [
            "settle:start",
            "settle:prefix-acked",
            "settle:appended",
            "settle:acked",
        ];
        for full in [false, true] {
            for point in points {
                let dir = tempfile::tempdir().unwrap();
                let b = bounds(16 * 1024, 0);
                let mut queue = Queue::open(dir.path(), b).unwrap();
                if full {
                    fill(&mut queue);
                } else {
                    for _ in 0..14 {
                        queue
                            .push(sample_envelope(), OffsetDateTime::now_utc())
                            .unwrap();
                    }
                }
                let before = ids(&queue);
                let batch = queue.peek(12).unwrap();
                let retry: Vec<Queued> = [3, 11]
                    .iter()
                    .map(|&i| batch[i].report.clone().unwrap())
                    .collect();
                fault::panic_at(Some(point));
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    queue.settle(&batch, &retry)
                }));
                fault::panic_at(None);
                drop(queue);
                let queue = Queue::open(dir.path(), b).unwrap();
                let left = ids(&queue);
                let case = format!("full {full}, {point}, panicked {}", result.is_err());
                for q in &retry {
                    assert!(left.contains(&q.envelope.report_id), "{case}: lost");
                }
                assert!(
                    before[12..].iter().all(|id| left.contains(id)),
                    "{case}: a report outside the batch went"
                );
                assert!(left.iter().all(|id| before.contains(id)), "{case}");
            }
        }
    }

    #[test]
    fn machine_id_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), QueueBounds::default()).unwrap();
        let id = queue.machine_id().unwrap();
        assert!(id.len() >= 8);
        assert_eq!(queue.machine_id().unwrap(), id);
        let id2 = Uuid::new_v4();
        queue.mark_imported(id2).unwrap();
        assert!(queue.imported().unwrap().contains(&id2));
    }
}
