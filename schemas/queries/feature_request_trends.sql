-- name: feature_request_trends
-- purpose: Feature-request clusters asked for in one ISO week against the weekly average of the four weeks before.
-- params: week_of Date, limit UInt32
--
-- The week is the ISO week (Monday 00:00 to Sunday 24:00, UTC) holding
-- week_of; today() gives the week so far. Clusters as they stand after
-- merges (feature_request_weeks, over raw retention): a request of a
-- merged-away cluster counts under the surviving id. new_this_week is 1
-- when the cluster's first request ever (any id merged into it) falls in
-- that week. title is the representative title of its main language.
SELECT
    cluster_id,
    title,
    toMonday({week_of:Date}) AS week_start,
    requests_this_week,
    requests_weekly_average,
    organisations_this_week,
    organisations_weekly_average,
    first_seen,
    toUInt8(toMonday(toDate(first_seen)) = toMonday({week_of:Date})) AS new_this_week
FROM
(
    SELECT
        cluster_id,
        sumIf(requests, week = toMonday({week_of:Date})) AS requests_this_week,
        sumIf(requests, week < toMonday({week_of:Date})) / 4 AS requests_weekly_average,
        sumIf(organisations, week = toMonday({week_of:Date})) AS organisations_this_week,
        sumIf(organisations, week < toMonday({week_of:Date})) / 4 AS organisations_weekly_average
    FROM feature_request_weeks
    WHERE week >= toMonday({week_of:Date}) - 28 AND week <= toMonday({week_of:Date})
    GROUP BY cluster_id
) AS recent
ANY LEFT JOIN
(
    SELECT cluster_id, title, first_seen FROM feature_request_clusters
) AS clusters USING cluster_id
ORDER BY organisations_this_week DESC, requests_this_week DESC, requests_weekly_average DESC, cluster_id
LIMIT {limit:UInt32}
