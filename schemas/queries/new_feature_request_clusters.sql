-- name: new_feature_request_clusters
-- purpose: Feature-request clusters new in one ISO week: their first request ever falls in it.
-- params: week_of Date
--
-- The week is the ISO week (Monday to Sunday, UTC) holding week_of. A
-- cluster merged into an older one is not new: its requests count under the
-- older id (feature_request_clusters). The counts are that week's.
SELECT
    cluster_id,
    title,
    languages,
    first_seen,
    requests_this_week,
    organisations_this_week,
    machines_this_week
FROM
(
    SELECT cluster_id, title, languages, first_seen
    FROM feature_request_clusters
    WHERE toMonday(toDate(first_seen)) = toMonday({week_of:Date})
) AS fresh
ANY LEFT JOIN
(
    SELECT cluster_id, requests AS requests_this_week, organisations AS organisations_this_week,
           machines AS machines_this_week
    FROM feature_request_weeks
    WHERE week = toMonday({week_of:Date})
) AS counted USING cluster_id
ORDER BY organisations_this_week DESC, requests_this_week DESC, first_seen, cluster_id
