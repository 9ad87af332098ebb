-- What analysts see of each cluster of feature requests, per language:
--
-- feature_request_members: every stored request with the cluster it
--   belongs to now (its own id, or the one it was merged into through
--   cluster_merges), its language ('zh-CN' and 'zh' are both 'zh'; '' when
--   unknown) and its embedding as a unit vector (512 zeros when it was
--   clustered by MinHash).
-- feature_request_cluster_titles: per cluster and language, the
--   representative title, the most central member in that language (the
--   largest cosine with the sum of the whole cluster's unit vectors, all
--   languages together), and the requests, distinct organisations and
--   distinct machines in that language. A cluster clustered by MinHash has
--   no embeddings: its title is then any member's.
--
-- Plain views, computed when read, so merges and new requests show at
-- once. Written for 18.16 and current ClickHouse alike: lambdas take no
-- outer column (the norm comes in through replicate), every joined
-- subquery has an alias, and the centroid join is ALL INNER (ANY INNER
-- means one row per key on both sides in current ClickHouse).

CREATE VIEW IF NOT EXISTS feature_request_members AS
SELECT
    if(merged_into = 0, cluster_id, merged_into) AS cluster,
    report_id, received_at, org_id, machine_hash, title,
    lower(splitByChar('-', language)[1]) AS lang,
    arrayResize(arrayMap((x, n) -> x / n, embedding, replicate(norm, embedding)), 512, 0.) AS unit
FROM
(
    SELECT cluster_id, report_id, received_at, org_id, machine_hash, title, language,
           embedding,
           sqrt(arraySum(arrayMap(x -> toFloat64(x) * x, embedding))) AS norm
    FROM feature_requests
    ANY LEFT JOIN
    (
        SELECT cluster_id, report_id, embedding FROM feature_request_signatures
    ) AS s USING (cluster_id, report_id)
) AS r
ANY LEFT JOIN
(
    SELECT cluster_id, merged_into FROM cluster_merges FINAL
) AS m USING cluster_id;
CREATE VIEW IF NOT EXISTS feature_request_cluster_titles AS
SELECT
    cluster AS cluster_id,
    lang AS language,
    argMax(title, centrality) AS title,
    count() AS requests,
    uniqExact(org_id) AS organisations,
    uniqExact(machine_hash) AS machines
FROM
(
    SELECT cluster, lang, title, org_id, machine_hash,
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
