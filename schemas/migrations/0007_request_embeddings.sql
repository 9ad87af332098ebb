-- feature_request_signatures gains embedding: the request's sentence
-- embedding in 8 bits per dimension (512 values, clustering::embed::Quantized),
-- written when the processor clusters by meaning ([clustering] method =
-- "embedding") and empty otherwise. Each processor rebuilds its index from
-- these at start and refreshes it with what other instances wrote, as it
-- does with the MinHash signatures: the model runs once per request, not
-- again at every start (about 8 ms a request), and every instance compares
-- the same 8-bit values, so they decide alike.
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS, so the table is copied
-- into one with the column and swapped in by RENAME, as migration 5 does;
-- every step may run again after a crash, except a crash inside the RENAME,
-- which leaves feature_request_signatures_v6 and _v7 to be renamed by hand.
-- A second complete run copies the rows without their embeddings: those
-- requests keep their clusters, which then grow only from new requests.
-- Run with every processor stopped.

DROP TABLE IF EXISTS feature_request_signatures_v7;
CREATE TABLE feature_request_signatures_v7
(
    cluster_id       UInt64,         -- the cluster the request joined or founded
    report_id        UUID,
    received_at      DateTime,
    minhash          String,         -- MinHash signature of the normalised text (bytes)
    embedding        Array(Int8),    -- 8-bit sentence embedding; [] if not clustered by meaning
    inserted_at      DateTime        -- when the processor wrote it; instances refresh by it
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (cluster_id, report_id);
INSERT INTO feature_request_signatures_v7 (cluster_id, report_id, received_at, minhash, inserted_at)
SELECT cluster_id, report_id, received_at, minhash, inserted_at
FROM feature_request_signatures;
DROP TABLE IF EXISTS feature_request_signatures_v6;
RENAME TABLE feature_request_signatures TO feature_request_signatures_v6,
             feature_request_signatures_v7 TO feature_request_signatures;
DROP TABLE feature_request_signatures_v6;
