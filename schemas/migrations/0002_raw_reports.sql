-- The raw tables of the other report types: one row per accepted report,
-- kept for the raw retention period. Every raw table starts with the same
-- envelope columns as crash_reports:
--   report_id, received_at, sent_at, org_id, machine_hash, consent,
--   os_product, os_version, os_build, os_revision, os_locale, os_arch,
--   os_build_full, build_key
-- and ends with scrubbed_total, kafka_partition, kafka_offset, inserted_at.
-- Their meaning is documented once, in 0001_crash_reports.sql.

-- feature_requests: one row per accepted feature_request/1 report.
CREATE TABLE IF NOT EXISTS feature_requests
(
    report_id        UUID,
    received_at      DateTime,
    sent_at          DateTime,
    org_id           String,
    machine_hash     String,
    consent          String,
    os_product       String,
    os_version       String,
    os_build         UInt32,
    os_revision      UInt32,
    os_locale        String,
    os_arch          String,
    os_build_full    String,
    build_key        UInt64,
    title            String,         -- the request's one-line title, as written (after scrubbing)
    body             String,         -- the longer text; '' when none was given
    category         String,         -- product area chosen by the sender, e.g. 'shell.taskbar'
    language         String,         -- BCP 47 tag the client gave for the text; '' when unknown
    cluster_id       UInt64,         -- the cluster of requests saying the same thing (stable once given)
    cluster_similarity Float32,      -- estimated similarity to the cluster it joined; 1 for a new cluster
    scrubbed_total   UInt32,
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    inserted_at      DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id);

-- feedback: one row per accepted feedback/1 report.
CREATE TABLE IF NOT EXISTS feedback
(
    report_id        UUID,
    received_at      DateTime,
    sent_at          DateTime,
    org_id           String,
    machine_hash     String,
    consent          String,
    os_product       String,
    os_version       String,
    os_build         UInt32,
    os_revision      UInt32,
    os_locale        String,
    os_arch          String,
    os_build_full    String,
    build_key        UInt64,
    rating           UInt8,          -- 1 (worst) to 5 (best)
    text             String,         -- free text (after scrubbing); '' when none was given
    category         String,         -- product area rated, e.g. 'update'
    scrubbed_total   UInt32,
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    inserted_at      DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id);

-- heartbeats: one row per accepted heartbeat/1 report; a machine sends one
-- per day it was active. The denominator of crash-free rates.
CREATE TABLE IF NOT EXISTS heartbeats
(
    report_id        UUID,
    received_at      DateTime,
    sent_at          DateTime,
    org_id           String,
    machine_hash     String,
    consent          String,
    os_product       String,
    os_version       String,
    os_build         UInt32,
    os_revision      UInt32,
    os_locale        String,
    os_arch          String,
    os_build_full    String,
    build_key        UInt64,
    day              Date,             -- the machine's local day it was active
    uptime_minutes   Nullable(UInt32), -- minutes up that day; NULL when the client did not say
    scrubbed_total   UInt32,
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    inserted_at      DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id);
