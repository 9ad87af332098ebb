-- name: regressions_between_builds
-- purpose: Every crash signature on two named OS builds, with machines per 1,000 active machines on each.
-- params: from_build String, to_build String, days UInt32
--
-- change: 'new' when no machine on from_build had it; 'gone' when none on
-- to_build has it; 'rate_increase' when the rate on to_build is at least 1.5
-- times the rate on from_build (the processor's default factor); else
-- 'no_rise'. Unlike the scheduled crash_regressions job there is no minimum
-- number of machines: judge small numbers yourself.
SELECT
    grouping_version,
    signature,
    from_machines,
    from_active,
    to_machines,
    to_active,
    round(if(from_active = 0, 0, from_machines * 1000 / from_active), 1) AS from_rate_per_1000,
    round(if(to_active = 0, 0, to_machines * 1000 / to_active), 1) AS to_rate_per_1000,
    multiIf(
        from_machines = 0, 'new',
        to_machines = 0, 'gone',
        to_rate_per_1000 >= 1.5 * from_rate_per_1000 AND to_rate_per_1000 > from_rate_per_1000, 'rate_increase',
        'no_rise') AS change
FROM
(
    SELECT
        grouping_version,
        signature,
        sumIf(machines, os_build_full = {from_build:String}) AS from_machines,
        sumIf(machines, os_build_full = {to_build:String}) AS to_machines,
        (SELECT uniqExactMerge(active) FROM machine_days_agg
         WHERE os_build_full = {from_build:String} AND day >= today() - {days:UInt32}) AS from_active,
        (SELECT uniqExactMerge(active) FROM machine_days_agg
         WHERE os_build_full = {to_build:String} AND day >= today() - {days:UInt32}) AS to_active
    FROM
    (
        SELECT os_build_full, grouping_version, signature, uniqExactMerge(machines) AS machines
        FROM crash_daily_agg
        WHERE os_build_full IN ({from_build:String}, {to_build:String})
          AND day >= today() - {days:UInt32}
        GROUP BY os_build_full, grouping_version, signature
    )
    GROUP BY grouping_version, signature
)
ORDER BY to_rate_per_1000 - from_rate_per_1000 DESC, grouping_version DESC, signature
