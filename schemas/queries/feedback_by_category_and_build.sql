-- name: feedback_by_category_and_build
-- purpose: Feedback ratings per product category and OS build over the last days.
-- params: days UInt32
--
-- Merges feedback_daily_agg over the whole range, so machines and
-- organisations are distinct over the range, not summed per day.
SELECT
    category,
    os_build_full,
    r1 + r2 + r3 + r4 + r5 AS ratings,
    round((r1 + 2 * r2 + 3 * r3 + 4 * r4 + 5 * r5) / ratings, 2) AS average_rating,
    r1 AS rated_1,
    r2 AS rated_2,
    r3 AS rated_3,
    r4 AS rated_4,
    r5 AS rated_5,
    machines,
    organisations
FROM
(
    SELECT
        category,
        os_build_full,
        build_key,
        uniqExactMerge(rated_1) AS r1,
        uniqExactMerge(rated_2) AS r2,
        uniqExactMerge(rated_3) AS r3,
        uniqExactMerge(rated_4) AS r4,
        uniqExactMerge(rated_5) AS r5,
        uniqExactMerge(machines) AS machines,
        uniqExactMerge(organisations) AS organisations
    FROM feedback_daily_agg
    WHERE day >= today() - {days:UInt32}
    GROUP BY category, os_build_full, build_key
)
ORDER BY category, build_key, os_build_full
