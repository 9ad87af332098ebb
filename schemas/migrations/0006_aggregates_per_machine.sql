-- Aggregates keep one row per machine, so that erasing a machine is exact
-- at any age: every aggregate table gains machine_hash at the end of its
-- sorting key, an erasure deletes the machine's rows there as in the raw
-- tables (ALTER TABLE ... DELETE), and the views, which merge over every
-- machine, count what is left. Without it, a machine's hash stays inside
-- merged uniqExact states that only a rebuild from raw rows could remove,
-- and raw rows are kept 90 days while aggregates are kept two years.
--
-- Each aggregate table is rebuilt, per machine, from the raw tables for
-- every period (day or month, as the table is kept) that the raw tables
-- cover whole: a period where the aggregate counts more reports (or active
-- machines) than the raw rows still hold, because raw retention dropped
-- some, is copied as it was, merged, under machine_hash = ''. Such rows
-- cannot be erased per machine; they age out with aggregate retention.
--
-- Run with every processor stopped, like migration 5; every step may run
-- again after a crash, except a crash inside a RENAME (see migration 5).
-- The views are dropped first and made again last, grouping by machine.

DROP TABLE IF EXISTS crash_signatures_mv;
DROP TABLE IF EXISTS crash_daily_mv;
DROP TABLE IF EXISTS machine_days_heartbeats_mv;
DROP TABLE IF EXISTS machine_days_crashes_mv;
DROP TABLE IF EXISTS feature_request_clusters_mv;
DROP TABLE IF EXISTS feedback_daily_mv;

-- crash_signatures_agg
DROP TABLE IF EXISTS crash_signatures_agg_v6;
CREATE TABLE crash_signatures_agg_v6
(
    grouping_version UInt16,
    signature        String,
    month            Date,
    machine_hash     String,
    first_seen       AggregateFunction(min, DateTime),
    last_seen        AggregateFunction(max, DateTime),
    first_build      AggregateFunction(argMin, String, UInt64),
    reports          AggregateFunction(uniqExact, UUID),
    machines         AggregateFunction(uniqExact, String),
    organisations    AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(month)
ORDER BY (grouping_version, signature, month, machine_hash);
-- Periods the raw tables no longer hold whole: copied as they are.
INSERT INTO crash_signatures_agg_v6
SELECT grouping_version, signature, month, '' AS machine_hash, first_seen,
       last_seen, first_build, reports, machines, organisations
FROM crash_signatures_agg
WHERE month IN (
    SELECT period FROM
    (SELECT month AS period, uniqExactMerge(reports) AS aggregated FROM crash_signatures_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toStartOfMonth(received_at) AS period, uniqExact(report_key) AS stored FROM crash_reports GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
);
-- Every other period: per machine, from the raw rows.
INSERT INTO crash_signatures_agg_v6
SELECT
    grouping_version,
    signature,
    toStartOfMonth(received_at) AS month,
    machine_hash,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen,
    argMinState(os_build_full, build_key) AS first_build,
    uniqExactState(report_key) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
WHERE toStartOfMonth(received_at) NOT IN (
    SELECT period FROM
    (SELECT month AS period, uniqExactMerge(reports) AS aggregated FROM crash_signatures_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toStartOfMonth(received_at) AS period, uniqExact(report_key) AS stored FROM crash_reports GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
)
GROUP BY grouping_version, signature, month, machine_hash;
DROP TABLE IF EXISTS crash_signatures_agg_v5;
RENAME TABLE crash_signatures_agg TO crash_signatures_agg_v5,
             crash_signatures_agg_v6 TO crash_signatures_agg;
DROP TABLE crash_signatures_agg_v5;

-- crash_daily_agg
DROP TABLE IF EXISTS crash_daily_agg_v6;
CREATE TABLE crash_daily_agg_v6
(
    day              Date,
    os_build_full    String,
    build_key        UInt64,
    grouping_version UInt16,
    signature        String,
    machine_hash     String,
    reports          AggregateFunction(uniqExact, UUID),
    machines         AggregateFunction(uniqExact, String),
    organisations    AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, build_key, os_build_full, grouping_version, signature, machine_hash);
-- Periods the raw tables no longer hold whole: copied as they are.
INSERT INTO crash_daily_agg_v6
SELECT day, os_build_full, build_key, grouping_version, signature, '' AS
       machine_hash, reports, machines, organisations
FROM crash_daily_agg
WHERE day IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(reports) AS aggregated FROM crash_daily_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toDate(received_at) AS period, uniqExact(report_key) AS stored FROM crash_reports GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
);
-- Every other period: per machine, from the raw rows.
INSERT INTO crash_daily_agg_v6
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    grouping_version,
    signature,
    machine_hash,
    uniqExactState(report_key) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
WHERE toDate(received_at) NOT IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(reports) AS aggregated FROM crash_daily_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toDate(received_at) AS period, uniqExact(report_key) AS stored FROM crash_reports GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
)
GROUP BY day, os_build_full, build_key, grouping_version, signature, machine_hash;
DROP TABLE IF EXISTS crash_daily_agg_v5;
RENAME TABLE crash_daily_agg TO crash_daily_agg_v5,
             crash_daily_agg_v6 TO crash_daily_agg;
DROP TABLE crash_daily_agg_v5;

-- machine_days_agg
DROP TABLE IF EXISTS machine_days_agg_v6;
CREATE TABLE machine_days_agg_v6
(
    day           Date,
    os_build_full String,
    build_key     UInt64,
    machine_hash  String,
    active        AggregateFunction(uniqExact, String),
    crashed       AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, build_key, os_build_full, machine_hash);
-- Periods the raw tables no longer hold whole: copied as they are.
INSERT INTO machine_days_agg_v6
SELECT day, os_build_full, build_key, '' AS machine_hash, active, crashed
FROM machine_days_agg
WHERE day IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(active) AS aggregated FROM machine_days_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT period, uniqExact(machine_hash) AS stored FROM
        (SELECT day AS period, machine_hash FROM heartbeats
         UNION ALL
         SELECT toDate(received_at) AS period, machine_hash FROM crash_reports)
     GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
);
-- Every other period: per machine, from the raw rows.
INSERT INTO machine_days_agg_v6
SELECT
    day,
    os_build_full,
    build_key,
    machine_hash,
    uniqExactState(machine_hash) AS active,
    uniqExactStateIf(machine_hash, 0) AS crashed
FROM heartbeats
WHERE day NOT IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(active) AS aggregated FROM machine_days_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT period, uniqExact(machine_hash) AS stored FROM
        (SELECT day AS period, machine_hash FROM heartbeats
         UNION ALL
         SELECT toDate(received_at) AS period, machine_hash FROM crash_reports)
     GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
)
GROUP BY day, os_build_full, build_key, machine_hash;
-- Every other period: per machine, from the raw rows.
INSERT INTO machine_days_agg_v6
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    machine_hash,
    uniqExactState(machine_hash) AS active,
    uniqExactState(machine_hash) AS crashed
FROM crash_reports
WHERE toDate(received_at) NOT IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(active) AS aggregated FROM machine_days_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT period, uniqExact(machine_hash) AS stored FROM
        (SELECT day AS period, machine_hash FROM heartbeats
         UNION ALL
         SELECT toDate(received_at) AS period, machine_hash FROM crash_reports)
     GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
)
GROUP BY day, os_build_full, build_key, machine_hash;
DROP TABLE IF EXISTS machine_days_agg_v5;
RENAME TABLE machine_days_agg TO machine_days_agg_v5,
             machine_days_agg_v6 TO machine_days_agg;
DROP TABLE machine_days_agg_v5;

-- feature_request_clusters_agg
DROP TABLE IF EXISTS feature_request_clusters_agg_v6;
CREATE TABLE feature_request_clusters_agg_v6
(
    cluster_id    UInt64,
    month         Date,
    machine_hash  String,
    title         AggregateFunction(argMin, String, DateTime),
    requests      AggregateFunction(uniqExact, UUID),
    machines      AggregateFunction(uniqExact, String),
    organisations AggregateFunction(uniqExact, String),
    categories    AggregateFunction(groupUniqArray, String),
    first_seen    AggregateFunction(min, DateTime),
    last_seen     AggregateFunction(max, DateTime)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(month)
ORDER BY (cluster_id, month, machine_hash);
-- Periods the raw tables no longer hold whole: copied as they are.
INSERT INTO feature_request_clusters_agg_v6
SELECT cluster_id, month, '' AS machine_hash, title, requests, machines,
       organisations, categories, first_seen, last_seen
FROM feature_request_clusters_agg
WHERE month IN (
    SELECT period FROM
    (SELECT month AS period, uniqExactMerge(requests) AS aggregated FROM feature_request_clusters_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toStartOfMonth(received_at) AS period, uniqExact(report_key) AS stored FROM feature_requests GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
);
-- Every other period: per machine, from the raw rows.
INSERT INTO feature_request_clusters_agg_v6
SELECT
    cluster_id,
    toStartOfMonth(received_at) AS month,
    machine_hash,
    argMinState(title, received_at) AS title,
    uniqExactState(report_key) AS requests,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations,
    groupUniqArrayState(category) AS categories,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen
FROM feature_requests
WHERE toStartOfMonth(received_at) NOT IN (
    SELECT period FROM
    (SELECT month AS period, uniqExactMerge(requests) AS aggregated FROM feature_request_clusters_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toStartOfMonth(received_at) AS period, uniqExact(report_key) AS stored FROM feature_requests GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
)
GROUP BY cluster_id, month, machine_hash;
DROP TABLE IF EXISTS feature_request_clusters_agg_v5;
RENAME TABLE feature_request_clusters_agg TO feature_request_clusters_agg_v5,
             feature_request_clusters_agg_v6 TO feature_request_clusters_agg;
DROP TABLE feature_request_clusters_agg_v5;

-- feedback_daily_agg
DROP TABLE IF EXISTS feedback_daily_agg_v6;
CREATE TABLE feedback_daily_agg_v6
(
    day           Date,
    os_build_full String,
    build_key     UInt64,
    category      String,
    machine_hash  String,
    rated_1       AggregateFunction(uniqExact, UUID),
    rated_2       AggregateFunction(uniqExact, UUID),
    rated_3       AggregateFunction(uniqExact, UUID),
    rated_4       AggregateFunction(uniqExact, UUID),
    rated_5       AggregateFunction(uniqExact, UUID),
    machines      AggregateFunction(uniqExact, String),
    organisations AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, build_key, os_build_full, category, machine_hash);
-- Periods the raw tables no longer hold whole: copied as they are.
INSERT INTO feedback_daily_agg_v6
SELECT day, os_build_full, build_key, category, '' AS machine_hash, rated_1,
       rated_2, rated_3, rated_4, rated_5, machines, organisations
FROM feedback_daily_agg
WHERE day IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(rated_1) + uniqExactMerge(rated_2) + uniqExactMerge(rated_3) + uniqExactMerge(rated_4) + uniqExactMerge(rated_5) AS aggregated FROM feedback_daily_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toDate(received_at) AS period, uniqExact(report_key) AS stored FROM feedback GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
);
-- Every other period: per machine, from the raw rows.
INSERT INTO feedback_daily_agg_v6
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    category,
    machine_hash,
    uniqExactStateIf(report_key, rating = 1) AS rated_1,
    uniqExactStateIf(report_key, rating = 2) AS rated_2,
    uniqExactStateIf(report_key, rating = 3) AS rated_3,
    uniqExactStateIf(report_key, rating = 4) AS rated_4,
    uniqExactStateIf(report_key, rating = 5) AS rated_5,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM feedback
WHERE toDate(received_at) NOT IN (
    SELECT period FROM
    (SELECT day AS period, uniqExactMerge(rated_1) + uniqExactMerge(rated_2) + uniqExactMerge(rated_3) + uniqExactMerge(rated_4) + uniqExactMerge(rated_5) AS aggregated FROM feedback_daily_agg GROUP BY period) AS aggregate
    ANY LEFT JOIN
    (SELECT toDate(received_at) AS period, uniqExact(report_key) AS stored FROM feedback GROUP BY period) AS raw
    USING period
    WHERE aggregated > stored
)
GROUP BY day, os_build_full, build_key, category, machine_hash;
DROP TABLE IF EXISTS feedback_daily_agg_v5;
RENAME TABLE feedback_daily_agg TO feedback_daily_agg_v5,
             feedback_daily_agg_v6 TO feedback_daily_agg;
DROP TABLE feedback_daily_agg_v5;

-- erasures: one row per machine erased on its operator's request. Names
-- the organisation that asked, never the machine.
CREATE TABLE IF NOT EXISTS erasures
(
    erasure_id       UUID,           -- id the edge gave the request
    org_id           String,         -- organisation whose token asked
    requested_at     DateTime,       -- when the edge took the request (UTC)
    completed_at     DateTime,       -- when every table had finished deleting (UTC)
    raw_rows         UInt64,         -- rows removed from the raw tables
    aggregate_rows   UInt64,         -- per-machine rows removed from the aggregate tables
    merged_rows      UInt64          -- rows from before migration 6 that may still count the machine (machine_hash = '')
)
ENGINE = ReplacingMergeTree(completed_at)
PARTITION BY toYYYYMM(requested_at)
ORDER BY (erasure_id);

-- The views again, as in migration 5, grouping by machine.
CREATE MATERIALIZED VIEW IF NOT EXISTS crash_signatures_mv TO crash_signatures_agg AS
SELECT
    grouping_version,
    signature,
    toStartOfMonth(received_at) AS month,
    machine_hash,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen,
    argMinState(os_build_full, build_key) AS first_build,
    uniqExactState(report_key) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
GROUP BY grouping_version, signature, month, machine_hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS crash_daily_mv TO crash_daily_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    grouping_version,
    signature,
    machine_hash,
    uniqExactState(report_key) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
GROUP BY day, os_build_full, build_key, grouping_version, signature, machine_hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS machine_days_heartbeats_mv TO machine_days_agg AS
SELECT
    day,
    os_build_full,
    build_key,
    machine_hash,
    uniqExactState(machine_hash) AS active,
    uniqExactStateIf(machine_hash, 0) AS crashed
FROM heartbeats
GROUP BY day, os_build_full, build_key, machine_hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS machine_days_crashes_mv TO machine_days_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    machine_hash,
    uniqExactState(machine_hash) AS active,
    uniqExactState(machine_hash) AS crashed
FROM crash_reports
GROUP BY day, os_build_full, build_key, machine_hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS feature_request_clusters_mv TO feature_request_clusters_agg AS
SELECT
    cluster_id,
    toStartOfMonth(received_at) AS month,
    machine_hash,
    argMinState(title, received_at) AS title,
    uniqExactState(report_key) AS requests,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations,
    groupUniqArrayState(category) AS categories,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen
FROM feature_requests
GROUP BY cluster_id, month, machine_hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS feedback_daily_mv TO feedback_daily_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    category,
    machine_hash,
    uniqExactStateIf(report_key, rating = 1) AS rated_1,
    uniqExactStateIf(report_key, rating = 2) AS rated_2,
    uniqExactStateIf(report_key, rating = 3) AS rated_3,
    uniqExactStateIf(report_key, rating = 4) AS rated_4,
    uniqExactStateIf(report_key, rating = 5) AS rated_5,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM feedback
GROUP BY day, os_build_full, build_key, category, machine_hash;
