//! Rows waiting for their insert, the offsets they cover, and the two ways
//! a batch shrinks before it is written: rows of partitions this instance
//! no longer owns, and reports already in their table.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemas::erasure::ErasureRequest;
use tokio::time::Instant;
use uuid::Uuid;

use crate::rows::{
    CrashRow, FeatureRequestRow, FeedbackRow, HeartbeatRow, OutcomeRow, ProcessingErrorRow,
    SignatureRow, Source,
};

/// (topic, partition).
pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
pub struct Batch {
    pub crashes: Vec<CrashRow>,
    pub feature_requests: Vec<FeatureRequestRow>,
    pub signatures: Vec<SignatureRow>,
    pub feedback: Vec<FeedbackRow>,
    pub heartbeats: Vec<HeartbeatRow>,
    pub outcomes: Vec<OutcomeRow>,
    pub errors: Vec<ProcessingErrorRow>,
    /// Erasures, carried out after the rows (the consumer closes a batch on
    /// one, so no row of the batch was sent after it).
    pub erasures: Vec<Erasure>,
    /// (topic, partition) → offset of the next message to read, once this
    /// batch is in.
    pub next_offsets: BTreeMap<TopicPartition, i64>,
    pub messages: usize,
    pub started: Option<Instant>,
}

/// An erasure request and the reports-topic partition it came from.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub request: ErasureRequest,
    pub partition: u32,
}

/// What a stored row is unique by: its id, and the machine hash for
/// reports (two machines may send one report id); `""` for rows unique by id
/// alone.
pub type RowKey = (Uuid, String);

/// Rows that carry the key they are unique by, and the partition they came
/// from; stored in `TABLE`, where the id is the column `ID_COLUMN`.
pub trait Keyed {
    const TABLE: &'static str;
    const ID_COLUMN: &'static str;
    /// SQL for the machine part of the key: a column, or `''`.
    const MACHINE_SQL: &'static str;
    /// SQL for what the table's views count the row by
    /// ([`schemas::report_key`]); the id where no view reads the table.
    const COUNTED_SQL: &'static str;
    fn id(&self) -> Uuid;
    fn machine(&self) -> &str;
    fn key(&self) -> RowKey {
        (self.id(), self.machine().to_string())
    }
    /// The Kafka partition and offset of the message the row came from.
    fn partition(&self) -> u32;
    fn offset(&self) -> u64;
    /// Orders rows by the table or view partition they fall in, where a
    /// machine's value chooses it (a heartbeat's day); 0 where the edge's
    /// clock does.
    fn partition_order(&self) -> i32 {
        0
    }
}

/// A raw report table's row: unique by report id and machine, counted by
/// its report key.
macro_rules! report_keyed {
    ($row:ty, $table:literal) => {
        report_keyed!($row, $table, |_row| 0);
    };
    ($row:ty, $table:literal, |$r:ident| $order:expr) => {
        impl Keyed for $row {
            const TABLE: &'static str = $table;
            const ID_COLUMN: &'static str = "report_id";
            const MACHINE_SQL: &'static str = "machine_hash";
            const COUNTED_SQL: &'static str = "report_key";
            fn id(&self) -> Uuid {
                self.report_id
            }
            fn machine(&self) -> &str {
                &self.machine_hash
            }
            fn partition(&self) -> u32 {
                self.kafka_partition
            }
            fn offset(&self) -> u64 {
                self.kafka_offset
            }
            fn partition_order(&self) -> i32 {
                let $r = self;
                $order
            }
        }
    };
}

report_keyed!(CrashRow, "crash_reports");
report_keyed!(FeatureRequestRow, "feature_requests");
report_keyed!(FeedbackRow, "feedback");
report_keyed!(HeartbeatRow, "heartbeats", |row| row.day.to_julian_day());

/// An outcome is unique by the id the edge gave it; no view reads it.
impl Keyed for OutcomeRow {
    const TABLE: &'static str = "outcomes";
    const ID_COLUMN: &'static str = "event_id";
    const MACHINE_SQL: &'static str = "''";
    const COUNTED_SQL: &'static str = "event_id";
    fn id(&self) -> Uuid {
        self.event_id
    }
    fn machine(&self) -> &str {
        ""
    }
    fn partition(&self) -> u32 {
        self.kafka_partition
    }
    fn offset(&self) -> u64 {
        self.kafka_offset
    }
}

impl Batch {
    pub fn note(&mut self, topic: &str, source: Source) {
        self.next_offsets
            .insert((topic.to_string(), source.partition), source.offset + 1);
        self.messages += 1;
        self.started.get_or_insert_with(Instant::now);
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Forgets everything read from partitions this instance lost in a
    /// rebalance: their new owner reads those messages again from the last
    /// committed offset, so writing them here too could count them twice.
    pub fn drop_partitions(&mut self, lost: &[TopicPartition], reports_topic: &str) {
        if lost.is_empty() {
            return;
        }
        let lost_reports: HashSet<u32> = lost
            .iter()
            .filter(|(t, _)| t == reports_topic)
            .filter_map(|(_, p)| u32::try_from(*p).ok())
            .collect();
        let lost_outcomes: HashSet<u32> = lost
            .iter()
            .filter(|(t, _)| t != reports_topic)
            .filter_map(|(_, p)| u32::try_from(*p).ok())
            .collect();
        let requests_before: HashSet<Uuid> =
            self.feature_requests.iter().map(|r| r.report_id).collect();
        self.crashes
            .retain(|r| !lost_reports.contains(&r.partition()));
        self.feature_requests
            .retain(|r| !lost_reports.contains(&r.partition()));
        self.feedback
            .retain(|r| !lost_reports.contains(&r.partition()));
        self.heartbeats
            .retain(|r| !lost_reports.contains(&r.partition()));
        self.outcomes
            .retain(|r| !lost_outcomes.contains(&r.partition()));
        self.erasures
            .retain(|e| !lost_reports.contains(&e.partition));
        let kept: HashSet<Uuid> = self.feature_requests.iter().map(|r| r.report_id).collect();
        self.signatures
            .retain(|s| !requests_before.contains(&s.report_id) || kept.contains(&s.report_id));
        self.errors.retain(|e| {
            !lost
                .iter()
                .any(|(t, p)| *t == e.topic && u32::try_from(*p).ok() == Some(e.kafka_partition))
        });
        for key in lost {
            self.next_offsets.remove(key);
        }
    }
}

/// Keeps the first row of each key and drops rows whose key is in
/// `existing`; returns how many were dropped.
pub fn keep_new<T: Keyed, V>(rows: &mut Vec<T>, existing: &HashMap<RowKey, V>) -> usize {
    let before = rows.len();
    let mut seen = HashSet::with_capacity(rows.len());
    rows.retain(|row| {
        let key = row.key();
        !existing.contains_key(&key) && seen.insert(key)
    });
    before - rows.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn outcome(id: Uuid, partition: u32) -> OutcomeRow {
        OutcomeRow {
            event_id: id,
            at: OffsetDateTime::UNIX_EPOCH,
            outcome: "rejected".into(),
            reason: "invalid".into(),
            schema: String::new(),
            org_id: String::new(),
            size: 1,
            field: String::new(),
            kafka_partition: partition,
            kafka_offset: 0,
            inserted_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_batch_covers_the_offset_after_its_last_message() {
        let mut batch = Batch::default();
        batch.note(
            "r",
            Source {
                partition: 1,
                offset: 10,
            },
        );
        batch.note(
            "r",
            Source {
                partition: 1,
                offset: 11,
            },
        );
        batch.note(
            "o",
            Source {
                partition: 1,
                offset: 5,
            },
        );
        assert_eq!(
            batch.next_offsets,
            BTreeMap::from([(("o".to_string(), 1), 6), (("r".to_string(), 1), 12)])
        );
        assert_eq!(batch.messages, 3);
    }

    #[test]
    fn lost_partitions_leave_the_batch() {
        let mut batch = Batch::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        batch.outcomes = vec![outcome(a, 0), outcome(b, 1)];
        batch.note(
            "o",
            Source {
                partition: 0,
                offset: 1,
            },
        );
        batch.note(
            "o",
            Source {
                partition: 1,
                offset: 1,
            },
        );
        batch.drop_partitions(&[("o".to_string(), 1)], "r");
        assert_eq!(batch.outcomes.len(), 1);
        assert_eq!(batch.outcomes[0].event_id, a);
        assert!(!batch.next_offsets.contains_key(&("o".to_string(), 1)));
        assert!(batch.next_offsets.contains_key(&("o".to_string(), 0)));
    }

    #[test]
    fn only_new_ids_are_kept_once() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut rows = vec![outcome(a, 0), outcome(b, 0), outcome(a, 0), outcome(c, 0)];
        let dropped = keep_new(&mut rows, &HashMap::from([((b, String::new()), b)]));
        assert_eq!(dropped, 2);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        assert_eq!(ids, vec![a, c]);
    }

    #[test]
    fn one_report_id_from_two_machines_is_two_reports() {
        let row = |id: Uuid, machine: &str| {
            let mut row = crate::rows::tests::heartbeat_row();
            row.report_id = id;
            row.machine_hash = machine.to_string();
            row
        };
        let (shared, other) = (Uuid::new_v4(), Uuid::new_v4());
        let mut rows = vec![
            row(shared, "ab12"),
            row(shared, "cd34"),
            row(shared, "ab12"),
            row(other, "ab12"),
        ];
        let stored = HashMap::from([((other, "ab12".to_string()), other)]);
        assert_eq!(keep_new(&mut rows, &stored), 2);
        let keys: Vec<RowKey> = rows.iter().map(Keyed::key).collect();
        assert_eq!(
            keys,
            vec![(shared, "ab12".to_string()), (shared, "cd34".to_string())]
        );
    }
}
