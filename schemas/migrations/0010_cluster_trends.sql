-- Clusters of feature requests as analysts read them, after merges, with
-- their trend by week:
--
-- feature_request_weeks: per cluster as it stands now (its own id, or the
--   one it was merged into through cluster_merges) and ISO week (the
--   Monday it starts on, UTC), the distinct requests, organisations and
--   machines. From the raw feature_requests, so over raw retention.
-- feature_request_clusters (made again): one row per surviving cluster. A
--   merged cluster's history counts under the id it was merged into, once:
--   every count merges the aggregates' exact states of all the ids that
--   lead to it, over the aggregates' retention. title is the
--   representative title of the cluster's main language (the most central
--   request; feature_request_cluster_titles), or the earliest request when
--   the raw rows no longer hold any; languages and titles are every
--   language's, the language with the most requests first. The trend:
--   this ISO week (from Monday 00:00 UTC to now) against the weekly
--   average of the four weeks before it, in requests and in distinct
--   organisations; new_this_week is 1 when the cluster's first request
--   (of any id merged into it) falls in this week.
-- feature_request_cluster_titles (made again): as in migration 9, with
--   ties broken by the earliest request, so that a cluster clustered by
--   MinHash (no embeddings, every member equally central) shows the
--   request that founded it.
--
-- Plain views, computed when read. Written for 18.16 and current
-- ClickHouse alike: one JOIN per SELECT, an alias for every joined
-- subquery, no window functions.

DROP TABLE IF EXISTS feature_request_cluster_titles;
CREATE VIEW IF NOT EXISTS feature_request_cluster_titles AS
SELECT
    cluster AS cluster_id,
    lang AS language,
    argMax(title, (centrality, -toInt64(received_at))) AS title,
    count() AS requests,
    uniqExact(org_id) AS organisations,
    uniqExact(machine_hash) AS machines
FROM
(
    SELECT cluster, lang, title, received_at, org_id, machine_hash,
           arraySum(arrayMap((x, c) -> x * c, unit, centroid)) AS centrality
    FROM feature_request_members
    ALL INNER JOIN
    (
        SELECT cluster, sumForEach(unit) AS centroid
        FROM feature_request_members
        GROUP BY cluster
    ) AS c USING cluster
) AS scored
GROUP BY cluster_id, language;

CREATE VIEW IF NOT EXISTS feature_request_weeks AS
SELECT
    cluster AS cluster_id,                          -- the surviving cluster
    week,                                           -- Monday the ISO week starts on (UTC)
    uniqExact(report_key) AS requests,              -- distinct requests that week (exact)
    uniqExact(org_id) AS organisations,             -- distinct organisations that week (exact)
    uniqExact(machine_hash) AS machines             -- distinct machines that week (exact)
FROM
(
    SELECT if(merged_into = 0, cluster_id, merged_into) AS cluster,
           toMonday(toDate(received_at)) AS week,
           report_key, org_id, machine_hash
    FROM feature_requests
    ANY LEFT JOIN
    (
        SELECT cluster_id, merged_into FROM cluster_merges FINAL
    ) AS m USING cluster_id
) AS mapped
GROUP BY cluster_id, week;

DROP TABLE IF EXISTS feature_request_clusters;
CREATE VIEW IF NOT EXISTS feature_request_clusters AS
SELECT
    cluster_id,                                     -- stable id of the surviving cluster
    if(empty(titles), first_title, titles[1]) AS title,  -- representative title, main language
    languages,                                      -- languages present, most requests first
    titles,                                         -- representative title of each of languages
    requests,                                       -- distinct requests (exact)
    machines,                                       -- distinct machines (exact)
    organisations,                                  -- distinct organisations (exact): the main ranking signal
    categories,                                     -- categories the requests were filed under
    first_seen,                                     -- first request, of any id merged into it
    last_seen,
    requests_this_week,                             -- distinct requests this ISO week
    requests_weekly_average,                        -- weekly average of the four weeks before
    organisations_this_week,                        -- distinct organisations this ISO week
    organisations_weekly_average,                   -- weekly average of the four weeks before
    toUInt8(first_seen >= toDateTime(toMonday(today()))) AS new_this_week
FROM
(
    SELECT *
    FROM
    (
        SELECT
            cluster AS cluster_id,
            argMinMerge(title) AS first_title,
            uniqExactMerge(requests) AS requests,
            uniqExactMerge(machines) AS machines,
            uniqExactMerge(organisations) AS organisations,
            groupUniqArrayMerge(categories) AS categories,
            minMerge(first_seen) AS first_seen,
            maxMerge(last_seen) AS last_seen
        FROM
        (
            SELECT if(merged_into = 0, cluster_id, merged_into) AS cluster,
                   title, requests, machines, organisations, categories, first_seen, last_seen
            FROM feature_request_clusters_agg
            ANY LEFT JOIN
            (
                SELECT cluster_id, merged_into FROM cluster_merges FINAL
            ) AS m USING cluster_id
        ) AS mapped
        GROUP BY cluster_id
    ) AS history
    ANY LEFT JOIN
    (
        SELECT
            cluster_id,
            arrayMap(t -> t.2, named) AS languages,
            arrayMap(t -> t.3, named) AS titles
        FROM
        (
            SELECT cluster_id,
                   arraySort(t -> (-t.1, t.2), groupArray((requests, language, title))) AS named
            FROM feature_request_cluster_titles
            GROUP BY cluster_id
        ) AS grouped
    ) AS named USING cluster_id
) AS titled
ANY LEFT JOIN
(
    SELECT
        cluster_id,
        sumIf(requests, week = toMonday(today())) AS requests_this_week,
        sumIf(requests, week < toMonday(today())) / 4 AS requests_weekly_average,
        sumIf(organisations, week = toMonday(today())) AS organisations_this_week,
        sumIf(organisations, week < toMonday(today())) / 4 AS organisations_weekly_average
    FROM feature_request_weeks
    WHERE week >= toMonday(today()) - 28 AND week <= toMonday(today())
    GROUP BY cluster_id
) AS recent USING cluster_id;
