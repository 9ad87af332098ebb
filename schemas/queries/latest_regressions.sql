-- name: latest_regressions
-- purpose: The crash regressions the processor's scheduled job found in its newest run.
-- params: none
--
-- The crash_regressions view shows one snapshot: the newest run recorded in
-- analytics_runs (every analytics.interval_secs, over analytics.window_days).
-- kind 'new': first seen on this build, by at least
-- analytics.new_signature_min_machines machines; 'rate_increase': machines
-- per 1,000 active machines rose by analytics.rate_increase_factor from the
-- previous build with activity.
SELECT
    os_build_full,
    previous_build,
    kind,
    grouping_version,
    signature,
    machines,
    active_machines,
    round(rate_per_1000, 1) AS rate,
    round(previous_rate_per_1000, 1) AS previous_rate
FROM crash_regressions
ORDER BY build_key DESC, kind, machines DESC, signature
