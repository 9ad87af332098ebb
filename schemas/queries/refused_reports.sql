-- name: refused_reports
-- purpose: What the edge refused in the last days and why, per outcome, reason, report type and organisation.
-- params: days UInt32
--
-- From outcomes; 'duplicate' answers are left out (those reports were
-- accepted before). org_id is '' when the token was missing or unknown,
-- schema '' when the report named no type the edge knows.
SELECT
    outcome,
    reason,
    schema,
    org_id,
    uniqExact(event_id) AS refused,
    max(size) AS largest_bytes,
    arraySort(groupUniqArrayIf(field, field != '')) AS fields
FROM outcomes
WHERE outcome != 'duplicate'
  AND toDate(at) >= today() - {days:UInt32}
GROUP BY outcome, reason, schema, org_id
ORDER BY refused DESC, outcome, reason, schema, org_id
