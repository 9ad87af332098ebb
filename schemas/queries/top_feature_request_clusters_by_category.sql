-- name: top_feature_request_clusters_by_category
-- purpose: The top feature-request clusters within each category, by distinct organisations.
-- params: days UInt32, per_category UInt32
--
-- Reads the raw feature_requests (raw retention, 90 days by default): a
-- cluster filed under two categories is ranked in each with the requests
-- filed there. title is the earliest request of the cluster in that category.
SELECT
    category,
    cluster_id,
    argMin(title, (received_at, report_id)) AS first_title,
    uniqExact(org_id) AS organisations,
    uniqExact(report_key) AS requests,
    uniqExact(machine_hash) AS machines
FROM feature_requests
WHERE toDate(received_at) >= today() - {days:UInt32}
GROUP BY category, cluster_id
ORDER BY category, organisations DESC, requests DESC, machines DESC, cluster_id
LIMIT {per_category:UInt32} BY category
