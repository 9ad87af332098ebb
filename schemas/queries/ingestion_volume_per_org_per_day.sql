-- name: ingestion_volume_per_org_per_day
-- purpose: Reports stored per organisation and day of receipt (UTC), by report type.
-- params: days UInt32
--
-- Counts distinct report ids in the four raw tables (raw retention, 90 days
-- by default). day is the day the edge received the report, for heartbeats too.
SELECT
    day,
    org_id,
    uniqExactIf(report_id, type = 'crash') AS crashes,
    uniqExactIf(report_id, type = 'feature_request') AS feature_requests,
    uniqExactIf(report_id, type = 'feedback') AS feedback_reports,
    uniqExactIf(report_id, type = 'heartbeat') AS heartbeats,
    crashes + feature_requests + feedback_reports + heartbeats AS reports
FROM
(
    SELECT toDate(received_at) AS day, org_id, report_id, 'crash' AS type
    FROM crash_reports WHERE toDate(received_at) >= today() - {days:UInt32}
    UNION ALL
    SELECT toDate(received_at) AS day, org_id, report_id, 'feature_request' AS type
    FROM feature_requests WHERE toDate(received_at) >= today() - {days:UInt32}
    UNION ALL
    SELECT toDate(received_at) AS day, org_id, report_id, 'feedback' AS type
    FROM feedback WHERE toDate(received_at) >= today() - {days:UInt32}
    UNION ALL
    SELECT toDate(received_at) AS day, org_id, report_id, 'heartbeat' AS type
    FROM heartbeats WHERE toDate(received_at) >= today() - {days:UInt32}
)
GROUP BY day, org_id
ORDER BY day, org_id
