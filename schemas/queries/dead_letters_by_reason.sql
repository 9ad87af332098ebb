-- name: dead_letters_by_reason
-- purpose: Messages the processor set aside on the dead-letter topic in the last days, by stage and reason.
-- params: days UInt32
--
-- From processing_errors. For the error text of each message:
-- SELECT at, topic, kafka_partition, kafka_offset, reason, detail
-- FROM processing_errors ORDER BY at DESC LIMIT 20
SELECT
    stage,
    reason,
    uniqExact(topic, kafka_partition, kafka_offset) AS messages,
    max(size) AS largest_bytes,
    arraySort(groupUniqArray(topic)) AS topics
FROM processing_errors
WHERE toDate(at) >= today() - {days:UInt32}
GROUP BY stage, reason
ORDER BY messages DESC, stage, reason
