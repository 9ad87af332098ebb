//! Retention: drops whole partitions older than the configured age, raw
//! tables by day and aggregates by month. Partition drops work on every
//! ClickHouse version the project runs on; no TTL is needed.

use clickhouse::Row;
use schemas::clickhouse::{Kept, Partitioned, RETAINED_TABLES};
use serde::Deserialize;
use time::{Date, Duration, Month};

use processor::config::RetentionConfig;
use processor::{Store, StoreError};

/// Whether a partition value is past its table's retention on `today`.
pub(crate) fn expired(partition: &str, unit: Partitioned, keep_days: u32, today: Date) -> bool {
    let cutoff = today - Duration::days(i64::from(keep_days));
    let parse = |digits: &str| digits.parse::<i32>().ok();
    match unit {
        Partitioned::ByDay => {
            let Some(n) = parse(partition).filter(|_| partition.len() == 8) else {
                return false;
            };
            let (year, month, day) = (n / 10_000, (n / 100) % 100, n % 100);
            let Ok(month) = Month::try_from(month as u8) else {
                return false;
            };
            Date::from_calendar_date(year, month, day as u8).is_ok_and(|d| d < cutoff)
        }
        Partitioned::ByMonth => {
            let Some(n) = parse(partition).filter(|_| partition.len() == 6) else {
                return false;
            };
            let (year, month) = (n / 100, n % 100);
            let Ok(month) = Month::try_from(month as u8) else {
                return false;
            };
            // The month is expired once its last day is.
            let next = if month == Month::December {
                Date::from_calendar_date(year + 1, Month::January, 1)
            } else {
                Date::from_calendar_date(year, month.next(), 1)
            };
            next.is_ok_and(|first_of_next| first_of_next <= cutoff)
        }
    }
}

#[derive(Debug, Row, Deserialize)]
struct Part {
    table: String,
    partition: String,
}

/// Drops every expired partition; returns (table, partition) of each drop.
pub async fn run_once(
    store: &Store,
    config: &RetentionConfig,
    today: Date,
) -> Result<Vec<(String, String)>, StoreError> {
    let parts: Vec<Part> = store
        .client()
        .query(
            "SELECT DISTINCT table, partition FROM system.parts \
             WHERE database = currentDatabase() AND active",
        )
        .fetch_all()
        .await?;
    let mut dropped = Vec::new();
    for part in parts {
        let Some((_, unit, kept)) = RETAINED_TABLES.iter().find(|(t, _, _)| *t == part.table)
        else {
            continue;
        };
        let days = match kept {
            Kept::Raw => config.raw_days,
            Kept::Aggregate => config.aggregate_days,
        };
        if !expired(&part.partition, *unit, days, today) {
            continue;
        }
        // Partition values are digits only (checked by `expired`).
        store
            .client()
            .query_raw(&format!(
                "ALTER TABLE {} DROP PARTITION {}",
                part.table, part.partition
            ))
            .execute()
            .await?;
        tracing::info!(table = %part.table, partition = %part.partition, "dropped expired partition");
        dropped.push((part.table, part.partition));
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_expire_after_the_raw_period() {
        let today = date!(2026 - 11 - 24);
        assert!(expired("20260825", Partitioned::ByDay, 90, today));
        assert!(!expired("20260826", Partitioned::ByDay, 90, today));
        assert!(!expired("20261124", Partitioned::ByDay, 90, today));
        assert!(!expired("garbage", Partitioned::ByDay, 90, today));
        assert!(!expired("20261340", Partitioned::ByDay, 90, today));
    }

    #[test]
    fn months_expire_only_when_their_last_day_has() {
        let today = date!(2026 - 11 - 24);
        // Cutoff 730 days back: 2024-11-24.
        assert!(expired("202410", Partitioned::ByMonth, 730, today));
        assert!(!expired("202411", Partitioned::ByMonth, 730, today));
        assert!(expired("202312", Partitioned::ByMonth, 730, today));
        assert!(!expired("202611", Partitioned::ByMonth, 730, today));
    }
}
