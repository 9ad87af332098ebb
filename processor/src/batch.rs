//! Rows waiting for their insert, the offsets they cover, and the two ways
//! a batch shrinks before it is written: rows of partitions this instance
//! no longer owns, and reports already in their table.
//!
//! The registry of raw tables lives here (`raw_tables!`): one line per
//! table names the message it comes from ([`Routed`]), its field in
//! [`Batch`] and its row type; the row type names its table in
//! [`schemas::tables`]. Batching, dropping a lost partition's rows and
//! writing iterate over that list, so a new report type is one line here
//! (and its row in `rows.rs`, and its arm in `route.rs`, which the compiler
//! asks for).

use std::collections::{BTreeMap, HashMap, HashSet};

use clickhouse::Row;
use schemas::erasure::ErasureRequest;
use schemas::tables::{RawTable, Topic};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::rows::{
    CrashRow, FeatureRequestRow, FeedbackRow, HeartbeatRow, OutcomeRow, ProcessingErrorRow,
    SignatureRow, Source,
};
use crate::store::StoreError;

/// (topic, partition).
pub type TopicPartition = (String, i32);

/// Declares the raw tables: for each, the [`Routed`] variant a message
/// becomes, the [`Batch`] field its rows wait in and their type, and
/// optionally a companion table whose rows go with them ([`Companion`]).
/// Everything that must name every table is generated from this list.
macro_rules! raw_tables {
    ($(
        $(#[$doc:meta])*
        $variant:ident($field:ident: $row:ty $(, $companions:ident: $companion:ty)?)
    ),* $(,)?) => {
        /// What one message turned into.
        #[derive(Debug)]
        pub enum Routed {
            $( $(#[$doc])* $variant($row $(, $companion)?), )*
            /// A machine's operator asked for its data to be erased.
            Erasure(ErasureRequest),
        }

        /// The rows read since the last write, table by table, and what
        /// else the write must do.
        #[derive(Debug, Default)]
        pub struct Batch {
            $( pub $field: Vec<$row>, $( pub $companions: Vec<$companion>, )? )*
            pub errors: Vec<ProcessingErrorRow>,
            /// Erasures, carried out after the rows (the consumer closes a
            /// batch on one, so no row of the batch was sent after it).
            pub erasures: Vec<Erasure>,
            /// (topic, partition) → offset of the next message to read, once
            /// this batch is in.
            pub next_offsets: BTreeMap<TopicPartition, i64>,
            pub messages: usize,
            pub started: Option<Instant>,
        }

        impl Batch {
            /// Adds what one message from `partition` turned into.
            pub fn push(&mut self, routed: Routed, partition: u32) {
                match routed {
                    $( Routed::$variant(row $(, $companions)?) => {
                        self.$field.push(row);
                        $( self.$companions.push($companions); )?
                    } )*
                    Routed::Erasure(request) => self.erasures.push(Erasure { request, partition }),
                }
            }

            /// Keeps the rows for which `keep(table, partition)` holds, and
            /// the companions of the rows kept.
            fn retain_rows(&mut self, keep: impl Fn(&RawTable, u32) -> bool) {
                $( self.$field.retain(|row| keep(<$row as Keyed>::TABLE, row.partition())); )*
                self.keep_companions();
            }

            /// Drops the companions whose row is no longer in the batch.
            pub(crate) fn keep_companions(&mut self) {
                $( $( keep_companions(&self.$field, &mut self.$companions); )? )*
            }

            /// Hands each raw table's rows to `visit`, in the order above.
            pub(crate) async fn each_table<V: EachTable>(
                &mut self,
                visit: &mut V,
            ) -> Result<(), StoreError> {
                $( visit.rows(&mut self.$field).await?; )*
                Ok(())
            }

            /// Hands each companion table's rows to `visit`.
            pub(crate) async fn each_companion<V: EachTable>(
                &mut self,
                visit: &mut V,
            ) -> Result<(), StoreError> {
                $( $( visit.companions(&mut self.$companions).await?; )? )*
                Ok(())
            }

            /// The rows of every raw table.
            pub fn rows(&self) -> usize {
                0 $( + self.$field.len() )*
            }
        }
    };
}

raw_tables! {
    Crash(crashes: CrashRow),
    /// With the request's clustering signature.
    FeatureRequest(feature_requests: FeatureRequestRow, signatures: SignatureRow),
    Feedback(feedback: FeedbackRow),
    Heartbeat(heartbeats: HeartbeatRow),
    Outcome(outcomes: OutcomeRow),
}

/// What the writer does with each table of a batch ([`Batch::each_table`]);
/// called once per table with its concrete row type, so nothing is
/// dispatched per row.
pub(crate) trait EachTable {
    async fn rows<T>(&mut self, rows: &mut Vec<T>) -> Result<(), StoreError>
    where
        T: Keyed + Insertable;

    async fn companions<C>(&mut self, _rows: &mut Vec<C>) -> Result<(), StoreError>
    where
        C: Companion + Insertable,
    {
        Ok(())
    }
}

/// A row the client can insert as it is.
pub trait Insertable: Row + Serialize + for<'a> Row<Value<'a> = Self> + std::fmt::Debug {}

impl<T> Insertable for T where T: Row + Serialize + for<'a> Row<Value<'a> = T> + std::fmt::Debug {}

/// A row of another table that goes with a raw row: written before it
/// (so the raw row is never stored without it), and only while the raw row
/// is new. A feature request's clustering signature is one.
pub trait Companion {
    const TABLE: &'static str;
    /// The id ([`Keyed::id`]) of the raw row it goes with.
    fn row_id(&self) -> Uuid;
}

impl Companion for SignatureRow {
    const TABLE: &'static str = schemas::tables::FEATURE_REQUEST_SIGNATURES;
    fn row_id(&self) -> Uuid {
        self.report_id
    }
}

fn keep_companions<T: Keyed, C: Companion>(rows: &[T], companions: &mut Vec<C>) {
    let ids: HashSet<Uuid> = rows.iter().map(Keyed::id).collect();
    companions.retain(|c| ids.contains(&c.row_id()));
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
/// from; stored in the raw table `TABLE`, which says which columns hold the
/// key.
pub trait Keyed {
    const TABLE: &'static RawTable;
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
        self.retain_rows(|table, partition| match table.topic() {
            Topic::Reports => !lost_reports.contains(&partition),
            Topic::Outcomes => !lost_outcomes.contains(&partition),
        });
        self.erasures
            .retain(|e| !lost_reports.contains(&e.partition));
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
