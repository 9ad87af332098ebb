-- name: crash_free_rate_by_build
-- purpose: Share of active machines without a crash, per day and OS build, over the last days.
-- params: days UInt32
--
-- day is a heartbeat's day (the machine's local day) or a crash's day of
-- receipt (UTC). Builds in version order (build_key), not in text order.
SELECT
    day,
    os_build_full,
    active_machines,
    crashed_machines,
    round(crash_free_rate, 4) AS crash_free
FROM crash_free_daily
WHERE day >= today() - {days:UInt32}
ORDER BY day, build_key, os_build_full
