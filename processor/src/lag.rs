//! Consumer lag as Kafka sees it, so that a partition nobody reads shows.
//!
//! In: the group's id and topics. Out: per partition, how many messages the
//! group has not committed yet and how long the oldest of them has waited,
//! as gauges in [`Metrics`]; a warning in the log while any partition has
//! waited longer than [`STALL_WARNING`].
//!
//! The figures come from the brokers (end offsets and the group's committed
//! offsets), not from what this instance believes it consumes: a partition
//! assigned to the group but not fetched by anyone, or whose offsets stopped
//! moving, grows here while the consumer itself sees nothing wrong.
//!
//! The age of the oldest uncommitted message is measured by this watcher's
//! own clock: each look records the end offset seen; the message at the
//! committed offset has waited at least since the first look that saw the
//! end past it. It is exact to within one interval and needs no read of the
//! messages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::batch::TopicPartition;
use crate::metrics::Metrics;

/// How long the oldest uncommitted message may wait before the log says so.
pub const STALL_WARNING: Duration = Duration::from_secs(60);

/// Timeout of each request to the brokers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's lag at one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionLag {
    /// Messages after the group's committed offset.
    pub messages: i64,
    /// How long the message at the committed offset has existed, by the
    /// watcher's clock; zero when nothing is uncommitted.
    pub oldest_uncommitted: Duration,
}

/// The end offsets seen per partition, for the age of what is uncommitted.
#[derive(Debug, Default)]
pub struct Tracker {
    /// (when seen, end offset then), end offsets increasing; only those
    /// past the committed offset are kept.
    seen: BTreeMap<TopicPartition, VecDeque<(Instant, i64)>>,
}

impl Tracker {
    /// Takes one look's end and committed offsets of a partition.
    pub fn observe(
        &mut self,
        partition: TopicPartition,
        now: Instant,
        end: i64,
        committed: i64,
    ) -> PartitionLag {
        let seen = self.seen.entry(partition).or_default();
        if seen.back().is_none_or(|&(_, last)| end > last) {
            seen.push_back((now, end));
        }
        // A look whose end is at or before the committed offset says
        // nothing about what is still uncommitted.
        while seen.front().is_some_and(|&(_, at)| at <= committed) {
            seen.pop_front();
        }
        let messages = (end - committed).max(0);
        let oldest_uncommitted = match seen.front() {
            Some(&(first, _)) if messages > 0 => now.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        PartitionLag {
            messages,
            oldest_uncommitted,
        }
    }
}

/// Looks at the group's lag every `interval` until `stop`, publishing it in
/// `metrics`.
pub async fn watch(
    kafka: KafkaConfig,
    group: String,
    topics: Vec<String>,
    interval: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let reader: Arc<BaseConsumer> = match kafka
        .client_config(&[("group.id", &group), ("enable.auto.commit", "false")])
        .create()
    {
        Ok(reader) => Arc::new(reader),
        Err(error) => {
            tracing::error!(%error, "cannot watch consumer lag");
            return;
        }
    };
    let mut tracker = Tracker::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (reader, topics) = (Arc::clone(&reader), topics.clone());
        let offsets = tokio::task::spawn_blocking(move || offsets(&reader, &topics)).await;
        let offsets = match offsets {
            Ok(Ok(offsets)) => offsets,
            Ok(Err(error)) => {
                tracing::debug!(%error, "consumer lag not measured this time");
                continue;
            }
            Err(_) => continue,
        };
        let now = Instant::now();
        let lags: BTreeMap<TopicPartition, PartitionLag> = offsets
            .into_iter()
            .map(|(partition, end, committed)| {
                let lag = tracker.observe(partition.clone(), now, end, committed);
                (partition, lag)
            })
            .collect();
        let stalled: Vec<String> = lags
            .iter()
            .filter(|(_, lag)| lag.oldest_uncommitted >= STALL_WARNING)
            .map(|((topic, partition), lag)| {
                format!(
                    "{topic}[{partition}]: {} behind, oldest {:?}",
                    lag.messages, lag.oldest_uncommitted
                )
            })
            .collect();
        if !stalled.is_empty() && warned_at.is_none_or(|at| now - at >= STALL_WARNING) {
            tracing::warn!(?stalled, "messages wait uncommitted for over a minute");
            warned_at = Some(now);
        }
        metrics.set_lag(lags);
    }
}

/// (partition, end offset, committed offset) of every partition of
/// `topics`. A partition the group never committed counts from its
/// earliest offset.
fn offsets(
    reader: &BaseConsumer,
    topics: &[String],
) -> Result<Vec<(TopicPartition, i64, i64)>, rdkafka::error::KafkaError> {
    let mut ends = Vec::new();
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        let metadata = reader.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for found in metadata.topics() {
            if found.error().is_some() {
                continue;
            }
            for partition in found.partitions() {
                let (low, high) =
                    reader.fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)?;
                ends.push(((topic.clone(), partition.id()), low, high));
                wanted.add_partition(topic, partition.id());
            }
        }
    }
    let committed = reader.committed_offsets(wanted, REQUEST_TIMEOUT)?;
    Ok(ends
        .into_iter()
        .map(|((topic, partition), low, high)| {
            let at = match committed
                .find_partition(&topic, partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(at)) => at.max(low),
                _ => low,
            };
            ((topic, partition), high, at)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        ("reports".to_string(), 0)
    }

    #[test]
    fn the_age_of_what_waits_grows_while_the_committed_offset_stands_still() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut tracker = Tracker::default();
        assert_eq!(tracker.observe(tp(), at(0), 0, 0).messages, 0);
        // Messages arrive; nothing commits them.
        let lag = tracker.observe(tp(), at(10), 100, 0);
        assert_eq!(
            (lag.messages, lag.oldest_uncommitted),
            (100, Duration::ZERO)
        );
        let lag = tracker.observe(tp(), at(20), 300, 0);
        assert_eq!(
            (lag.messages, lag.oldest_uncommitted),
            (300, Duration::from_secs(10))
        );
        let lag = tracker.observe(tp(), at(70), 300, 0);
        assert_eq!(lag.oldest_uncommitted, Duration::from_secs(60));
        // The first hundred are committed: the oldest waiting was first seen
        // at 20 s.
        let lag = tracker.observe(tp(), at(80), 300, 100);
        assert_eq!(
            (lag.messages, lag.oldest_uncommitted),
            (200, Duration::from_secs(60))
        );
        // All committed: nothing waits.
        let lag = tracker.observe(tp(), at(90), 300, 300);
        assert_eq!((lag.messages, lag.oldest_uncommitted), (0, Duration::ZERO));
        // New messages start a new wait.
        let lag = tracker.observe(tp(), at(100), 310, 300);
        assert_eq!((lag.messages, lag.oldest_uncommitted), (10, Duration::ZERO));
        let lag = tracker.observe(tp(), at(105), 320, 305);
        assert_eq!(
            (lag.messages, lag.oldest_uncommitted),
            (15, Duration::from_secs(5))
        );
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let start = Instant::now();
        let mut tracker = Tracker::default();
        let other = ("reports".to_string(), 1);
        tracker.observe(tp(), start, 10, 0);
        tracker.observe(other.clone(), start, 10, 10);
        let later = start + Duration::from_secs(30);
        assert_eq!(
            tracker.observe(tp(), later, 10, 0).oldest_uncommitted,
            Duration::from_secs(30)
        );
        assert_eq!(
            tracker.observe(other, later, 10, 10).oldest_uncommitted,
            Duration::ZERO
        );
    }
}
