-- name: top_feature_request_clusters
-- purpose: The feature requests most asked for, as clusters ranked by distinct organisations.
-- params: limit UInt32
--
-- A cluster gathers requests saying the same thing in any wording; a
-- cluster merged into another counts under the surviving id, once. title
-- is the representative title of its main language (the earliest request
-- once raw retention dropped them all). Over the aggregates' retention
-- (730 days).
SELECT
    cluster_id,
    title,
    organisations,
    requests,
    machines,
    arraySort(categories) AS filed_under
FROM feature_request_clusters
ORDER BY organisations DESC, requests DESC, machines DESC, cluster_id
LIMIT {limit:UInt32}
