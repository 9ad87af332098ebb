//! Rows of the raw tables, made from accepted reports.
//!
//! Every raw table has the same envelope columns around its own; the
//! `raw_row!` macro writes them once, in the order the migrations give,
//! and names the row's table in the registry ([`schemas::tables`]).

use clickhouse::Row;
use clustering::Assignment;
use grouping::Signer;
use schemas::build::BuildVersion;
use schemas::tables::RawTable;
use schemas::{
    AcceptedReport, CrashPayload, FeatureRequestPayload, FeedbackPayload, HeartbeatPayload,
    OutcomeEvent,
};
use serde::Serialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::batch::Keyed;

/// Where a message came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

/// The envelope columns' values, shared by every raw row of one report.
struct Envelope<'a> {
    report: &'a AcceptedReport<()>,
    source: Source,
    now: OffsetDateTime,
}

/// A raw row of one report type: its struct, with the envelope columns
/// around its own, and its [`Keyed`] impl naming its table in
/// [`schemas::tables`] (unique by report id and machine; `by` orders rows
/// for inserts, see [`Keyed::partition_order`]).
macro_rules! raw_row {
    (
        $(#[$meta:meta])*
        $name:ident in $table:ident $(, by |$r:ident| ($order:expr))?
        { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Row, Serialize)]
        pub struct $name {
            #[serde(with = "clickhouse::serde::uuid")]
            pub report_id: Uuid,
            /// What the views count the report by: [`schemas::report_key`].
            #[serde(with = "clickhouse::serde::uuid")]
            pub report_key: Uuid,
            #[serde(with = "clickhouse::serde::time::datetime")]
            pub received_at: OffsetDateTime,
            #[serde(with = "clickhouse::serde::time::datetime")]
            pub sent_at: OffsetDateTime,
            pub org_id: String,
            pub machine_hash: String,
            pub consent: String,
            pub os_product: String,
            pub os_version: String,
            pub os_build: u32,
            pub os_revision: u32,
            pub os_locale: String,
            pub os_arch: String,
            pub os_build_full: String,
            pub build_key: u64,
            $( $(#[$fmeta])* pub $field: $ty, )*
            pub scrubbed_total: u32,
            pub kafka_partition: u32,
            pub kafka_offset: u64,
            #[serde(with = "clickhouse::serde::time::datetime")]
            pub inserted_at: OffsetDateTime,
        }

        impl $name {
            fn from_parts(e: Envelope<'_>, own: ($($ty,)*)) -> Self {
                let ($($field,)*) = own;
                let r = e.report;
                let (os_build_full, build_key) = build_of(r);
                $name {
                    report_id: r.report_id,
                    report_key: schemas::report_key(r.report_id, &r.machine_hash),
                    received_at: storable(r.received_at),
                    sent_at: storable(r.sent_at),
                    org_id: r.org_id.clone(),
                    machine_hash: r.machine_hash.clone(),
                    consent: r.consent.as_str().to_string(),
                    os_product: r.os.product.clone(),
                    os_version: r.os.version.clone(),
                    os_build: r.os.build,
                    os_revision: r.os.revision,
                    os_locale: r.os.locale.clone(),
                    os_arch: r.os.arch.clone(),
                    os_build_full,
                    build_key,
                    $( $field, )*
                    scrubbed_total: r.scrubbed.values().sum(),
                    kafka_partition: u32::try_from(e.source.partition).unwrap_or_default(),
                    kafka_offset: u64::try_from(e.source.offset).unwrap_or_default(),
                    inserted_at: e.now,
                }
            }
        }

        impl Keyed for $name {
            const TABLE: &'static RawTable = &schemas::tables::$table;
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
            $(
                fn partition_order(&self) -> i32 {
                    let $r = self;
                    $order
                }
            )?
        }
    };
}

raw_row!(
    /// One row of `crash_reports`.
    CrashRow in CRASH_REPORTS {
        app_name: String,
        app_version: String,
        exception_code: String,
        module_name: String,
        module_version: String,
        module_offset: String,
        frame_modules: Vec<String>,
        frame_functions: Vec<String>,
        frame_offsets: Vec<String>,
        grouping_version: u16,
        bucket: String,
        signature: String,
    }
);

raw_row!(
    /// One row of `feature_requests`.
    FeatureRequestRow in FEATURE_REQUESTS {
        title: String,
        body: String,
        category: String,
        language: String,
        cluster_id: u64,
        cluster_similarity: f32,
    }
);

raw_row!(
    /// One row of `feedback`.
    FeedbackRow in FEEDBACK {
        rating: u8,
        text: String,
        category: String,
    }
);

raw_row!(
    /// One row of `heartbeats`, inserted in the order of the machine's
    /// day (the partition of the view it feeds).
    HeartbeatRow in HEARTBEATS, by |row| (row.day.to_julian_day()) {
        #[serde(with = "clickhouse::serde::time::date")]
        day: Date,
        uptime_minutes: Option<u32>,
    }
);

/// The first and last instants a ClickHouse `DateTime` holds (seconds
/// since the epoch in a `UInt32`, on every server version).
const FIRST_DATETIME: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;
const LAST_DATETIME: OffsetDateTime = time::macros::datetime!(2106-02-07 06:28:15 UTC);

/// A machine's clock as a `DateTime` column can hold it. A report sent by
/// a machine whose clock is before 1970 (a dead clock battery) is a real
/// report: it is kept, with `sent_at` at 1970-01-01 00:00:00, which no
/// working clock sends; one past 2106 (refused by the edge as clock skew)
/// at the last second. `received_at` is the edge's clock and always fits.
pub fn storable(at: OffsetDateTime) -> OffsetDateTime {
    at.clamp(FIRST_DATETIME, LAST_DATETIME)
}

/// `10.0.19045` + revision 3570 → (`10.0.19045.3570`, its sort key). A
/// version the schema let through but that does not parse sorts first.
fn build_of(report: &AcceptedReport<()>) -> (String, u64) {
    match BuildVersion::parse(&report.os.version, report.os.revision) {
        Some(build) => (build.to_string(), build.sort_key()),
        None => (format!("{}.{}", report.os.version, report.os.revision), 0),
    }
}

impl CrashRow {
    pub fn new(
        report: &AcceptedReport<()>,
        crash: CrashPayload,
        grouping: &Signer,
        source: Source,
        now: OffsetDateTime,
    ) -> Self {
        let group = grouping::group_with(&crash, grouping);
        let (frame_modules, (frame_functions, frame_offsets)) = crash
            .frames
            .into_iter()
            .map(|f| {
                (
                    f.module,
                    (
                        f.function.unwrap_or_default(),
                        schemas::hex::normalise(&f.offset),
                    ),
                )
            })
            .unzip();
        let envelope = Envelope {
            report,
            source,
            now,
        };
        Self::from_parts(
            envelope,
            (
                crash.app.name,
                crash.app.version,
                schemas::hex::normalise(&crash.exception_code),
                crash.module.name,
                crash.module.version,
                schemas::hex::normalise(&crash.module.offset),
                frame_modules,
                frame_functions,
                frame_offsets,
                group.version,
                group.bucket,
                group.signature,
            ),
        )
    }
}

/// The text a feature request is clustered by: its title and body.
pub fn clustering_text(request: &FeatureRequestPayload) -> String {
    match &request.body {
        Some(body) if !body.trim().is_empty() => format!("{}\n{}", request.title, body),
        _ => request.title.clone(),
    }
}

impl FeatureRequestRow {
    pub fn new(
        report: &AcceptedReport<()>,
        request: FeatureRequestPayload,
        cluster: &Assignment,
        source: Source,
        now: OffsetDateTime,
    ) -> Self {
        let envelope = Envelope {
            report,
            source,
            now,
        };
        let similarity = if cluster.is_new {
            1.0
        } else {
            cluster.similarity
        };
        Self::from_parts(
            envelope,
            (
                request.title,
                request.body.unwrap_or_default(),
                request.category,
                request.language.unwrap_or_default(),
                cluster.cluster_id,
                similarity,
            ),
        )
    }
}

/// One row of `feature_request_signatures`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct SignatureRow {
    pub cluster_id: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub report_id: Uuid,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub received_at: OffsetDateTime,
    /// Bytes, stored in a String column (ClickHouse strings are bytes).
    #[serde(serialize_with = "bytes_as_string")]
    pub minhash: Vec<u8>,
    /// The 8-bit sentence embedding, when clustered by meaning; else empty.
    pub embedding: Vec<i8>,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub inserted_at: OffsetDateTime,
}

fn bytes_as_string<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// One row of `outcomes`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct OutcomeRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub at: OffsetDateTime,
    pub outcome: String,
    pub reason: String,
    pub schema: String,
    pub org_id: String,
    pub size: u64,
    pub field: String,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub inserted_at: OffsetDateTime,
}

/// An outcome is unique by the id the edge gave it.
impl Keyed for OutcomeRow {
    const TABLE: &'static RawTable = &schemas::tables::OUTCOMES;
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

impl OutcomeRow {
    pub fn new(event: OutcomeEvent, source: Source, now: OffsetDateTime) -> Self {
        OutcomeRow {
            event_id: event.event_id,
            at: event.at,
            outcome: event.outcome.as_str().to_string(),
            reason: event.reason,
            schema: event.schema.unwrap_or_default(),
            org_id: event.org_id.unwrap_or_default(),
            size: event.size,
            field: event.field.unwrap_or_default(),
            kafka_partition: u32::try_from(source.partition).unwrap_or_default(),
            kafka_offset: u64::try_from(source.offset).unwrap_or_default(),
            inserted_at: now,
        }
    }
}

/// One row of `processing_errors`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct ProcessingErrorRow {
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub at: OffsetDateTime,
    pub topic: String,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
    pub stage: String,
    pub reason: String,
    pub detail: String,
    pub size: u64,
}

impl FeedbackRow {
    pub fn new(
        report: &AcceptedReport<()>,
        feedback: FeedbackPayload,
        source: Source,
        now: OffsetDateTime,
    ) -> Self {
        let envelope = Envelope {
            report,
            source,
            now,
        };
        Self::from_parts(
            envelope,
            (
                feedback.rating,
                feedback.text.unwrap_or_default(),
                feedback.category,
            ),
        )
    }
}

/// A heartbeat whose `day` is not a calendar date.
#[derive(Debug, thiserror::Error)]
#[error("heartbeat day {0:?} is not a YYYY-MM-DD date")]
pub struct BadDay(String);

impl HeartbeatRow {
    pub fn new(
        report: &AcceptedReport<()>,
        heartbeat: HeartbeatPayload,
        source: Source,
        now: OffsetDateTime,
    ) -> Result<Self, BadDay> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let day = Date::parse(&heartbeat.day, format).map_err(|_| BadDay(heartbeat.day))?;
        let envelope = Envelope {
            report,
            source,
            now,
        };
        Ok(Self::from_parts(envelope, (day, heartbeat.uptime_minutes)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use schemas::{Envelope as Sent, Payload, SchemaId, fixtures};
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-11-20 08:15:32 UTC);
    const SOURCE: Source = Source {
        partition: 3,
        offset: 42,
    };

    fn accepted(text: &str) -> (AcceptedReport<()>, Payload) {
        let sent: Sent = serde_json::from_str(text).expect("fixture");
        let schema: SchemaId = sent.schema.parse().expect("known schema");
        let mut report = sent.accept(
            schema,
            "grid".into(),
            "ab".repeat(16),
            datetime!(2026-11-20 08:15:31 UTC),
        );
        report.scrubbed = [("email".to_string(), 2), ("ipv4".to_string(), 1)].into();
        let payload = Payload::decode(schema, &report.payload).expect("payload");
        (report.with_payload(()), payload)
    }

    /// A heartbeat row made from the fixture, for tests elsewhere.
    pub(crate) fn heartbeat_row() -> HeartbeatRow {
        let (report, Payload::Heartbeat(heartbeat)) = accepted(fixtures::HEARTBEAT) else {
            panic!("fixture is a heartbeat");
        };
        HeartbeatRow::new(&report, heartbeat, SOURCE, NOW).expect("valid day")
    }

    #[test]
    fn a_crash_report_becomes_one_flat_row() {
        let (report, Payload::Crash(crash)) = accepted(fixtures::CRASH) else {
            panic!("fixture is a crash");
        };
        let row = CrashRow::new(
            &report,
            crash,
            &Signer::new(&grouping::SignatureConfig::default()),
            SOURCE,
            NOW,
        );
        assert_eq!(row.org_id, "grid");
        assert_eq!(
            row.report_key,
            schemas::report_key(report.report_id, &"ab".repeat(16))
        );
        assert_eq!(row.os_build_full, "10.0.19045.3570");
        assert!(row.build_key > 0);
        assert_eq!(row.grouping_version, grouping::GROUPING_VERSION);
        assert_eq!(row.bucket.len(), 32);
        assert_eq!(
            row.signature,
            "shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc | user32.dll!UserCallWinProcCheckWow"
        );
        assert_eq!(row.os_build, 19045);
        assert_eq!(row.module_name, "shell32.dll");
        assert_eq!(row.exception_code, "0xC0000005");
        assert_eq!(
            row.module_offset, "0xA1B2C",
            "spelled as grouping hashed it"
        );
        assert_eq!(row.frame_modules.len(), 7);
        assert_eq!(row.frame_functions[4], "");
        assert_eq!(row.frame_offsets[6], "0x52651");
        assert_eq!(row.scrubbed_total, 3);
        assert_eq!((row.kafka_partition, row.kafka_offset), (3, 42));
        assert_eq!(row.inserted_at, NOW);
    }

    #[test]
    fn other_reports_fill_their_own_columns() {
        let (report, Payload::FeatureRequest(request)) = accepted(fixtures::FEATURE_REQUEST) else {
            panic!("fixture is a feature request");
        };
        let mut clusterer =
            clustering::Clusterer::new(clustering::ClusterConfig::default()).expect("config");
        let assignment = clusterer.assign(&clustering_text(&request));
        let row = FeatureRequestRow::new(&report, request, &assignment, SOURCE, NOW);
        assert_eq!(row.cluster_id, assignment.cluster_id);
        assert_eq!(row.cluster_similarity, 1.0, "a new cluster");
        assert_eq!(row.category, "shell.taskbar");
        assert_eq!(row.language, "zh-CN");
        assert!(row.title.starts_with("希望"));

        let (report, Payload::Feedback(feedback)) = accepted(fixtures::FEEDBACK) else {
            panic!("fixture is feedback");
        };
        let row = FeedbackRow::new(&report, feedback, SOURCE, NOW);
        assert_eq!((row.rating, row.category.as_str()), (4, "update"));

        let (report, Payload::Heartbeat(heartbeat)) = accepted(fixtures::HEARTBEAT) else {
            panic!("fixture is a heartbeat");
        };
        let row = HeartbeatRow::new(&report, heartbeat, SOURCE, NOW).expect("valid day");
        assert_eq!(row.day, date!(2026 - 11 - 20));
        assert_eq!(row.uptime_minutes, Some(540));
    }

    #[test]
    fn a_clock_no_column_can_hold_is_kept_at_the_edge_of_the_range() {
        let (mut report, Payload::Feedback(feedback)) = accepted(fixtures::FEEDBACK) else {
            panic!("fixture is feedback");
        };
        report.sent_at = datetime!(1969-12-31 23:59:59 UTC);
        let row = FeedbackRow::new(&report, feedback.clone(), SOURCE, NOW);
        assert_eq!(row.sent_at, OffsetDateTime::UNIX_EPOCH);
        report.sent_at = datetime!(2200-01-01 00:00:00 UTC);
        let row = FeedbackRow::new(&report, feedback.clone(), SOURCE, NOW);
        assert_eq!(row.sent_at, LAST_DATETIME);
        report.sent_at = datetime!(2026-11-20 08:00:00 UTC);
        let row = FeedbackRow::new(&report, feedback, SOURCE, NOW);
        assert_eq!(
            row.sent_at,
            datetime!(2026-11-20 08:00:00 UTC),
            "a working clock is kept as it is"
        );
    }

    #[test]
    fn impossible_days_are_refused() {
        let (report, _) = accepted(fixtures::HEARTBEAT);
        let heartbeat = HeartbeatPayload {
            day: "2026-02-30".into(),
            uptime_minutes: None,
        };
        assert!(HeartbeatRow::new(&report, heartbeat, SOURCE, NOW).is_err());
    }
}
