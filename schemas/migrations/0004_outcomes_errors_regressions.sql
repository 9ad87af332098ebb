-- outcomes: one row per report the edge refused or answered as a duplicate
-- (from the outcomes topic). No payload, no machine, no client address.
CREATE TABLE IF NOT EXISTS outcomes
(
    event_id         UUID,           -- id the edge gave the event; each counts once
    at               DateTime,       -- when the edge decided (UTC)
    outcome          String,         -- rejected | rate_limited | too_large | consent | duplicate
    reason           String,         -- the error code the client got, e.g. 'invalid', 'unknown_token'
    schema           String,         -- e.g. 'crash/1'; '' when the report named none the edge knows
    org_id           String,         -- organisation of the token; '' when the token was missing or unknown
    size             UInt64,         -- bytes of the report (or of the whole request when refused whole)
    field            String,         -- the field at fault, e.g. 'payload.frames[2].offset'; '' when none
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    inserted_at      DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(at)
ORDER BY (event_id);

-- processing_errors: one row per message the processor set aside on the
-- dead-letter topic.
CREATE TABLE IF NOT EXISTS processing_errors
(
    at               DateTime,       -- when the processor set it aside (UTC)
    topic            String,         -- topic the message came from
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    stage            String,         -- decode | place
    reason           String,         -- bounded code, e.g. 'undecodable_report'
    detail           String,         -- the error text, for operators
    size             UInt64          -- bytes of the message value
)
ENGINE = ReplacingMergeTree(at)
PARTITION BY toYYYYMMDD(at)
ORDER BY (topic, kafka_partition, kafka_offset);

-- crash_regressions: recomputed by the processor on a schedule. Each run
-- inserts a whole snapshot under one computed_at; the view shows the newest.
CREATE TABLE IF NOT EXISTS crash_regressions_runs
(
    computed_at      DateTime,       -- when the run computed this snapshot (UTC)
    os_build_full    String,         -- the build the regression is in
    build_key        UInt64,
    previous_build   String,         -- the build before it in version order; '' for the first
    grouping_version UInt16,
    signature        String,
    kind             String,         -- 'new': first seen in this build; 'rate_increase': more crashes per machine than before
    machines         UInt64,         -- distinct machines with this signature on this build (in the window)
    active_machines  UInt64,         -- distinct active machines on this build (in the window)
    rate_per_1000    Float64,        -- machines with the signature per 1,000 active machines
    previous_rate_per_1000 Float64   -- the same on the previous build; 0 when it was not seen there
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(computed_at)
ORDER BY (computed_at, build_key, signature);

-- analytics_runs: one row per completed scheduled computation, so that a
-- run that found nothing still replaces the previous snapshot.
CREATE TABLE IF NOT EXISTS analytics_runs
(
    job              String,         -- e.g. 'crash_regressions'
    computed_at      DateTime,       -- the snapshot's computed_at
    rows             UInt64          -- rows the run wrote
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(computed_at)
ORDER BY (job, computed_at);

CREATE VIEW IF NOT EXISTS crash_regressions AS
SELECT *
FROM crash_regressions_runs
WHERE computed_at = (SELECT max(computed_at) FROM analytics_runs WHERE job = 'crash_regressions');
