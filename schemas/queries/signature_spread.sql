-- name: signature_spread
-- purpose: Where one crash signature occurs: machines and reports per organisation and OS build.
-- params: signature String, days UInt32
--
-- Reads the raw crash_reports (the aggregates do not keep organisations
-- apart), so it reaches back at most the raw retention (90 days by default).
SELECT
    org_id,
    os_build_full,
    uniqExact(machine_hash) AS machines,
    uniqExact(report_key) AS reports
FROM crash_reports
WHERE signature = {signature:String}
  AND toDate(received_at) >= today() - {days:UInt32}
GROUP BY org_id, os_build_full, build_key
ORDER BY org_id, build_key, os_build_full
