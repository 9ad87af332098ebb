-- The idempotency key becomes (report_id, machine_hash): a report id that
-- two machines send (a WER report copied with a disk image, a client that
-- makes poor ids) is two reports, not one.
--
-- Every raw table is rebuilt ordered by (report_id, machine_hash), since a
-- ReplacingMergeTree keeps one row per sorting key and the old key was
-- report_id alone. Each gains report_key: the identity the aggregates count
-- in their uniqExact(UUID) states. The processor writes the UUIDv5 of the
-- machine hash under the report id (schemas::report_key); rows written
-- before this migration keep report_key = report_id, which is what the
-- aggregates already counted them by, so no aggregate state is rebuilt and
-- a redelivered old report still counts once. A writer that leaves
-- report_key out gets report_id, the old meaning, for the same reason.
--
-- Run with every processor stopped (the migration runs when the first new
-- processor starts, before it consumes). Each table is copied, then swapped
-- in by RENAME; every step may be run again after a crash, except a crash
-- inside a RENAME, which leaves <table>_v4 and <table>_v5 to be renamed by
-- hand. The materialised views are bound to their source table, so they
-- are dropped first and made again last, counting report_key.

DROP TABLE IF EXISTS crash_signatures_mv;
DROP TABLE IF EXISTS crash_daily_mv;
DROP TABLE IF EXISTS machine_days_heartbeats_mv;
DROP TABLE IF EXISTS machine_days_crashes_mv;
DROP TABLE IF EXISTS feature_request_clusters_mv;
DROP TABLE IF EXISTS feedback_daily_mv;

-- crash_reports
DROP TABLE IF EXISTS crash_reports_v5;
CREATE TABLE crash_reports_v5
(
    report_id        UUID,
    report_key       UUID DEFAULT report_id,  -- counted by the aggregates; see above
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
    app_name         String,
    app_version      String,
    exception_code   String,
    module_name      String,
    module_version   String,
    module_offset    String,
    frame_modules    Array(String),
    frame_functions  Array(String),
    frame_offsets    Array(String),
    grouping_version UInt16,
    bucket           String,
    signature        String,
    scrubbed_total   UInt32,
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    inserted_at      DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id, machine_hash);
INSERT INTO crash_reports_v5
SELECT report_id, report_id AS report_key, received_at, sent_at, org_id,
       machine_hash, consent, os_product, os_version, os_build, os_revision,
       os_locale, os_arch, os_build_full, build_key, app_name, app_version,
       exception_code, module_name, module_version, module_offset,
       frame_modules, frame_functions, frame_offsets, grouping_version, bucket,
       signature, scrubbed_total, kafka_partition, kafka_offset, inserted_at
FROM crash_reports;
DROP TABLE IF EXISTS crash_reports_v4;
RENAME TABLE crash_reports TO crash_reports_v4, crash_reports_v5 TO crash_reports;
DROP TABLE crash_reports_v4;

-- feature_requests
DROP TABLE IF EXISTS feature_requests_v5;
CREATE TABLE feature_requests_v5
(
    report_id          UUID,
    report_key         UUID DEFAULT report_id,
    received_at        DateTime,
    sent_at            DateTime,
    org_id             String,
    machine_hash       String,
    consent            String,
    os_product         String,
    os_version         String,
    os_build           UInt32,
    os_revision        UInt32,
    os_locale          String,
    os_arch            String,
    os_build_full      String,
    build_key          UInt64,
    title              String,
    body               String,
    category           String,
    language           String,
    cluster_id         UInt64,
    cluster_similarity Float32,
    scrubbed_total     UInt32,
    kafka_partition    UInt32,
    kafka_offset       UInt64,
    inserted_at        DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id, machine_hash);
INSERT INTO feature_requests_v5
SELECT report_id, report_id AS report_key, received_at, sent_at, org_id,
       machine_hash, consent, os_product, os_version, os_build, os_revision,
       os_locale, os_arch, os_build_full, build_key, title, body, category,
       language, cluster_id, cluster_similarity, scrubbed_total,
       kafka_partition, kafka_offset, inserted_at
FROM feature_requests;
DROP TABLE IF EXISTS feature_requests_v4;
RENAME TABLE feature_requests TO feature_requests_v4, feature_requests_v5 TO feature_requests;
DROP TABLE feature_requests_v4;

-- feedback
DROP TABLE IF EXISTS feedback_v5;
CREATE TABLE feedback_v5
(
    report_id       UUID,
    report_key      UUID DEFAULT report_id,
    received_at     DateTime,
    sent_at         DateTime,
    org_id          String,
    machine_hash    String,
    consent         String,
    os_product      String,
    os_version      String,
    os_build        UInt32,
    os_revision     UInt32,
    os_locale       String,
    os_arch         String,
    os_build_full   String,
    build_key       UInt64,
    rating          UInt8,
    text            String,
    category        String,
    scrubbed_total  UInt32,
    kafka_partition UInt32,
    kafka_offset    UInt64,
    inserted_at     DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id, machine_hash);
INSERT INTO feedback_v5
SELECT report_id, report_id AS report_key, received_at, sent_at, org_id,
       machine_hash, consent, os_product, os_version, os_build, os_revision,
       os_locale, os_arch, os_build_full, build_key, rating, text, category,
       scrubbed_total, kafka_partition, kafka_offset, inserted_at
FROM feedback;
DROP TABLE IF EXISTS feedback_v4;
RENAME TABLE feedback TO feedback_v4, feedback_v5 TO feedback;
DROP TABLE feedback_v4;

-- heartbeats
DROP TABLE IF EXISTS heartbeats_v5;
CREATE TABLE heartbeats_v5
(
    report_id       UUID,
    report_key      UUID DEFAULT report_id,
    received_at     DateTime,
    sent_at         DateTime,
    org_id          String,
    machine_hash    String,
    consent         String,
    os_product      String,
    os_version      String,
    os_build        UInt32,
    os_revision     UInt32,
    os_locale       String,
    os_arch         String,
    os_build_full   String,
    build_key       UInt64,
    day             Date,
    uptime_minutes  Nullable(UInt32),
    scrubbed_total  UInt32,
    kafka_partition UInt32,
    kafka_offset    UInt64,
    inserted_at     DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id, machine_hash);
INSERT INTO heartbeats_v5
SELECT report_id, report_id AS report_key, received_at, sent_at, org_id,
       machine_hash, consent, os_product, os_version, os_build, os_revision,
       os_locale, os_arch, os_build_full, build_key, day, uptime_minutes,
       scrubbed_total, kafka_partition, kafka_offset, inserted_at
FROM heartbeats;
DROP TABLE IF EXISTS heartbeats_v4;
RENAME TABLE heartbeats TO heartbeats_v4, heartbeats_v5 TO heartbeats;
DROP TABLE heartbeats_v4;

-- The views again, as in 0003_aggregates.sql, counting report_key.
CREATE MATERIALIZED VIEW IF NOT EXISTS crash_signatures_mv TO crash_signatures_agg AS
SELECT
    grouping_version,
    signature,
    toStartOfMonth(received_at) AS month,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen,
    argMinState(os_build_full, build_key) AS first_build,
    uniqExactState(report_key) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
GROUP BY grouping_version, signature, month;

CREATE MATERIALIZED VIEW IF NOT EXISTS crash_daily_mv TO crash_daily_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    grouping_version,
    signature,
    uniqExactState(report_key) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
GROUP BY day, os_build_full, build_key, grouping_version, signature;

CREATE MATERIALIZED VIEW IF NOT EXISTS machine_days_heartbeats_mv TO machine_days_agg AS
SELECT
    day,
    os_build_full,
    build_key,
    uniqExactState(machine_hash) AS active,
    uniqExactStateIf(machine_hash, 0) AS crashed
FROM heartbeats
GROUP BY day, os_build_full, build_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS machine_days_crashes_mv TO machine_days_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    uniqExactState(machine_hash) AS active,
    uniqExactState(machine_hash) AS crashed
FROM crash_reports
GROUP BY day, os_build_full, build_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS feature_request_clusters_mv TO feature_request_clusters_agg AS
SELECT
    cluster_id,
    toStartOfMonth(received_at) AS month,
    argMinState(title, received_at) AS title,
    uniqExactState(report_key) AS requests,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations,
    groupUniqArrayState(category) AS categories,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen
FROM feature_requests
GROUP BY cluster_id, month;

CREATE MATERIALIZED VIEW IF NOT EXISTS feedback_daily_mv TO feedback_daily_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    category,
    uniqExactStateIf(report_key, rating = 1) AS rated_1,
    uniqExactStateIf(report_key, rating = 2) AS rated_2,
    uniqExactStateIf(report_key, rating = 3) AS rated_3,
    uniqExactStateIf(report_key, rating = 4) AS rated_4,
    uniqExactStateIf(report_key, rating = 5) AS rated_5,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM feedback
GROUP BY day, os_build_full, build_key, category;
