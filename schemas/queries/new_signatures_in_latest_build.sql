-- name: new_signatures_in_latest_build
-- purpose: Crash signatures never seen before the newest OS build that has any activity.
-- params: none
--
-- The newest build is the highest build_key with an active machine (a
-- heartbeat or a crash). A signature is new there when the lowest build it
-- was ever seen on, in the aggregates' retention (730 days by default), is
-- that build.
SELECT
    first_build AS build,
    grouping_version,
    signature,
    machines,
    reports,
    organisations
FROM crash_signatures
WHERE first_build = (SELECT argMax(os_build_full, build_key) FROM machine_days_agg)
ORDER BY machines DESC, reports DESC, grouping_version DESC, signature
