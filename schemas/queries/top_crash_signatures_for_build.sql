-- name: top_crash_signatures_for_build
-- purpose: The crash signatures that hit the most machines on one OS build in the last days.
-- params: build String, days UInt32, limit UInt32
--
-- Reads crash_daily_agg with the -Merge functions rather than summing the
-- crash_daily view: a machine that crashed on two days is one machine, and
-- only merging the uniqExact states over the whole range counts it once.
SELECT
    grouping_version,
    signature,
    uniqExactMerge(machines) AS machines,           -- distinct machines with this signature (exact)
    uniqExactMerge(reports) AS reports,             -- distinct crash reports (exact)
    uniqExactMerge(organisations) AS organisations  -- distinct organisations (exact)
FROM crash_daily_agg
WHERE os_build_full = {build:String}
  AND day >= today() - {days:UInt32}
GROUP BY grouping_version, signature
ORDER BY machines DESC, reports DESC, grouping_version DESC, signature
LIMIT {limit:UInt32}
