-- cluster_merges: clusters of feature requests merged after they drifted
-- together (clustering by meaning: two instances, or two wordings, founded
-- a cluster each for one request). A row says that requests stored under
-- cluster_id belong, from merged_at on, to merged_into. Stored requests
-- keep the id they were given; history follows the merge by mapping:
--
--   SELECT if(m.merged_into = 0, cluster_id, m.merged_into) AS cluster, ...
--   FROM feature_requests
--   ANY LEFT JOIN (SELECT cluster_id, merged_into FROM cluster_merges FINAL)
--       AS m USING cluster_id
--
-- (runs on 18.16 and on current ClickHouse; tests/tests/clustering_embedding.rs).
-- Only clusters by meaning merge, and only on instances whose
-- analytics.cluster_refresh_secs is not 0.
--
-- merged_into is always the surviving cluster, never one merged away
-- later: a merge rewrites the rows of the ids that led to the cluster it
-- removes. Each processor writes the merges it decides, and reads back
-- the others' with the clustering index.
CREATE TABLE IF NOT EXISTS cluster_merges
(
    cluster_id       UInt64,         -- the id merged away
    merged_into      UInt64,         -- the surviving cluster's id (the smaller id)
    similarity       Float32,        -- average link of the two clusters when merged
    merged_at        DateTime
)
ENGINE = ReplacingMergeTree(merged_at)
ORDER BY cluster_id;
