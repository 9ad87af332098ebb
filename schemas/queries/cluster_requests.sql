-- name: cluster_requests
-- purpose: Every request of one feature-request cluster, in its original wording and language.
-- params: cluster_id UInt64
--
-- Raw feature_requests: the last 90 days by default. Text is as written,
-- after the edge scrubbed personal data from it.
SELECT
    received_at,
    org_id,
    category,
    language,
    title,
    body
FROM feature_requests
WHERE cluster_id = {cluster_id:UInt64}
ORDER BY received_at, report_id
