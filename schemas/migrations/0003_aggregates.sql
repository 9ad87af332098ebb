-- Aggregates analysts read, kept exact under redelivery: every count is a
-- uniqExact over report ids or machine hashes, so a report that reaches a
-- table twice still counts once. Each aggregate is an AggregatingMergeTree
-- fed by a materialised view on a raw table, and read through a plain view
-- of the same name without the _agg suffix. Partitioned by month so that
-- retention can drop whole months.

-- crash_signatures: one row per (grouping_version, signature).
CREATE TABLE IF NOT EXISTS crash_signatures_agg
(
    grouping_version UInt16,
    signature        String,
    month            Date,
    first_seen       AggregateFunction(min, DateTime),
    last_seen        AggregateFunction(max, DateTime),
    first_build      AggregateFunction(argMin, String, UInt64),
    reports          AggregateFunction(uniqExact, UUID),
    machines         AggregateFunction(uniqExact, String),
    organisations    AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(month)
ORDER BY (grouping_version, signature, month);

CREATE MATERIALIZED VIEW IF NOT EXISTS crash_signatures_mv TO crash_signatures_agg AS
SELECT
    grouping_version,
    signature,
    toStartOfMonth(received_at) AS month,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen,
    argMinState(os_build_full, build_key) AS first_build,
    uniqExactState(report_id) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
GROUP BY grouping_version, signature, month;

CREATE VIEW IF NOT EXISTS crash_signatures AS
SELECT
    grouping_version,                               -- grouping algorithm version
    signature,                                      -- 'module!function | ...' of the top frames
    minMerge(first_seen) AS first_seen,             -- first report received (UTC)
    maxMerge(last_seen) AS last_seen,               -- last report received (UTC)
    argMinMerge(first_build) AS first_build,        -- lowest OS build (in version order) it was seen on
    uniqExactMerge(reports) AS reports,             -- distinct reports (exact)
    uniqExactMerge(machines) AS machines,           -- distinct machines (exact)
    uniqExactMerge(organisations) AS organisations  -- distinct organisations (exact)
FROM crash_signatures_agg
GROUP BY grouping_version, signature;

-- crash_daily: one row per (day, OS build, signature); day of receipt, UTC.
CREATE TABLE IF NOT EXISTS crash_daily_agg
(
    day              Date,
    os_build_full    String,
    build_key        UInt64,
    grouping_version UInt16,
    signature        String,
    reports          AggregateFunction(uniqExact, UUID),
    machines         AggregateFunction(uniqExact, String),
    organisations    AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, build_key, os_build_full, grouping_version, signature);

CREATE MATERIALIZED VIEW IF NOT EXISTS crash_daily_mv TO crash_daily_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    grouping_version,
    signature,
    uniqExactState(report_id) AS reports,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM crash_reports
GROUP BY day, os_build_full, build_key, grouping_version, signature;

CREATE VIEW IF NOT EXISTS crash_daily AS
SELECT
    day,                                            -- day the reports were received (UTC)
    os_build_full,                                  -- e.g. '10.0.19045.3570'
    build_key,                                      -- os_build_full as a number that sorts in version order
    grouping_version,
    signature,
    uniqExactMerge(reports) AS reports,             -- distinct reports that day (exact)
    uniqExactMerge(machines) AS machines,           -- distinct machines that day (exact)
    uniqExactMerge(organisations) AS organisations  -- distinct organisations that day (exact)
FROM crash_daily_agg
GROUP BY day, os_build_full, build_key, grouping_version, signature;

-- crash_free_daily: one row per (day, OS build). A machine is active on a
-- day it sent a heartbeat or a crash report, and crashed if it sent a crash
-- report; both are counted per machine, not per report.
CREATE TABLE IF NOT EXISTS machine_days_agg
(
    day              Date,
    os_build_full    String,
    build_key        UInt64,
    active           AggregateFunction(uniqExact, String),
    crashed          AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, build_key, os_build_full);

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

CREATE VIEW IF NOT EXISTS crash_free_daily AS
SELECT
    day,                                            -- heartbeat day (machine's local day) or crash receipt day (UTC)
    os_build_full,
    build_key,
    active_machines,                                -- machines active that day (exact)
    crashed_machines,                               -- machines with at least one crash that day (exact)
    1 - crashed_machines / active_machines AS crash_free_rate  -- share of active machines without a crash
FROM
(
    SELECT day, os_build_full, build_key,
           uniqExactMerge(active) AS active_machines,
           uniqExactMerge(crashed) AS crashed_machines
    FROM machine_days_agg
    GROUP BY day, os_build_full, build_key
);

-- feature_request_signatures: the MinHash signature of every clustered
-- request, kept as long as the aggregates, from which each processor
-- rebuilds its clustering index at start (and refreshes it with what other
-- instances clustered), so that cluster ids stay stable.
CREATE TABLE IF NOT EXISTS feature_request_signatures
(
    cluster_id       UInt64,         -- the cluster the request joined or founded
    report_id        UUID,
    received_at      DateTime,
    minhash          String,         -- MinHash signature of the normalised text (bytes)
    inserted_at      DateTime        -- when the processor wrote it; instances refresh by it
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (cluster_id, report_id);

-- feature_request_clusters: one row per cluster of requests saying the same
-- thing, in whatever wording.
CREATE TABLE IF NOT EXISTS feature_request_clusters_agg
(
    cluster_id       UInt64,
    month            Date,
    title            AggregateFunction(argMin, String, DateTime),
    requests         AggregateFunction(uniqExact, UUID),
    machines         AggregateFunction(uniqExact, String),
    organisations    AggregateFunction(uniqExact, String),
    categories       AggregateFunction(groupUniqArray, String),
    first_seen       AggregateFunction(min, DateTime),
    last_seen        AggregateFunction(max, DateTime)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(month)
ORDER BY (cluster_id, month);

CREATE MATERIALIZED VIEW IF NOT EXISTS feature_request_clusters_mv TO feature_request_clusters_agg AS
SELECT
    cluster_id,
    toStartOfMonth(received_at) AS month,
    argMinState(title, received_at) AS title,
    uniqExactState(report_id) AS requests,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations,
    groupUniqArrayState(category) AS categories,
    minState(received_at) AS first_seen,
    maxState(received_at) AS last_seen
FROM feature_requests
GROUP BY cluster_id, month;

CREATE VIEW IF NOT EXISTS feature_request_clusters AS
SELECT
    cluster_id,                                     -- stable id of the cluster
    argMinMerge(title) AS title,                    -- representative title: the request that founded the cluster
    uniqExactMerge(requests) AS requests,           -- distinct requests (exact)
    uniqExactMerge(machines) AS machines,           -- distinct machines (exact)
    uniqExactMerge(organisations) AS organisations, -- distinct organisations (exact): the main ranking signal
    groupUniqArrayMerge(categories) AS categories,  -- categories the requests were filed under
    minMerge(first_seen) AS first_seen,
    maxMerge(last_seen) AS last_seen
FROM feature_request_clusters_agg
GROUP BY cluster_id;

-- feedback_daily: ratings per (day, OS build, category), exact under
-- redelivery: each rating value counts distinct report ids.
CREATE TABLE IF NOT EXISTS feedback_daily_agg
(
    day              Date,
    os_build_full    String,
    build_key        UInt64,
    category         String,
    rated_1          AggregateFunction(uniqExact, UUID),
    rated_2          AggregateFunction(uniqExact, UUID),
    rated_3          AggregateFunction(uniqExact, UUID),
    rated_4          AggregateFunction(uniqExact, UUID),
    rated_5          AggregateFunction(uniqExact, UUID),
    machines         AggregateFunction(uniqExact, String),
    organisations    AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, build_key, os_build_full, category);

CREATE MATERIALIZED VIEW IF NOT EXISTS feedback_daily_mv TO feedback_daily_agg AS
SELECT
    toDate(received_at) AS day,
    os_build_full,
    build_key,
    category,
    uniqExactStateIf(report_id, rating = 1) AS rated_1,
    uniqExactStateIf(report_id, rating = 2) AS rated_2,
    uniqExactStateIf(report_id, rating = 3) AS rated_3,
    uniqExactStateIf(report_id, rating = 4) AS rated_4,
    uniqExactStateIf(report_id, rating = 5) AS rated_5,
    uniqExactState(machine_hash) AS machines,
    uniqExactState(org_id) AS organisations
FROM feedback
GROUP BY day, os_build_full, build_key, category;

CREATE VIEW IF NOT EXISTS feedback_daily AS
SELECT
    day,                                            -- day received (UTC)
    os_build_full,
    build_key,
    category,                                       -- product area rated
    r1 + r2 + r3 + r4 + r5 AS ratings,              -- distinct feedback reports (exact)
    (r1 + 2 * r2 + 3 * r3 + 4 * r4 + 5 * r5) / ratings AS average_rating,  -- 1 to 5
    r1 AS rated_1, r2 AS rated_2, r3 AS rated_3, r4 AS rated_4, r5 AS rated_5,
    machines,
    organisations
FROM
(
    SELECT day, os_build_full, build_key, category,
           uniqExactMerge(rated_1) AS r1, uniqExactMerge(rated_2) AS r2,
           uniqExactMerge(rated_3) AS r3, uniqExactMerge(rated_4) AS r4,
           uniqExactMerge(rated_5) AS r5,
           uniqExactMerge(machines) AS machines,
           uniqExactMerge(organisations) AS organisations
    FROM feedback_daily_agg
    GROUP BY day, os_build_full, build_key, category
);
