-- name: ingestion_volume_per_org_per_day
-- purpose: Reports stored per organisation and day of receipt (UTC), by report type.
-- params: days UInt32
--
-- Counts distinct reports (report_key: one per machine and report id) in
-- the four raw tables (raw retention, 90 days
-- by default). day is the day the edge received the report, for heartbeats too.
SELECT
    day,
    org_id,
    uniqExactIf(report_key, type = 'crash') AS crashes,
    uniqExactIf(report_key, type = 'feature_request') AS feature_requests,
    uniqExactIf(report_key, type = 'feedback') AS feedback_reports,
    uniqExactIf(report_key, type = 'heartbeat') AS heartbeats,
    crashes + feature_requests + feedback_reports + heartbeats AS reports
FROM
(
    SELECT toDate(received_at) AS day, org_id, report_key, 'crash' AS type
    FROM crash_reports WHERE toDate(received_at) >= today() - {days:UInt32}
    UNION ALL
    SELECT toDate(received_at) AS day, org_id, report_key, 'feature_request' AS type
    FROM feature_requests WHERE toDate(received_at) >= today() - {days:UInt32}
    UNION ALL
    SELECT toDate(received_at) AS day, org_id, report_key, 'feedback' AS type
    FROM feedback WHERE toDate(received_at) >= today() - {days:UInt32}
    UNION ALL
    SELECT toDate(received_at) AS day, org_id, report_key, 'heartbeat' AS type
    FROM heartbeats WHERE toDate(received_at) >= today() - {days:UInt32}
)
GROUP BY day, org_id
ORDER BY day, org_id
