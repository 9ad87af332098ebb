//! Scheduled computations over the aggregates: crash regressions per build.
//!
//! Builds are compared in version order (major, minor, build, revision), the
//! `build_key` the processor stores, never in order of arrival. A signature
//! is a regression in build B when
//! - it is *new* in B: B is the lowest build it was ever seen on, and at
//!   least `new_signature_min_machines` machines on B have it; or
//! - its *rate rose*: machines with it per 1,000 active machines on B is at
//!   least `rate_increase_factor` times the same on the previous build with
//!   activity, and at least `rate_increase_min_machines` machines have it.
//!
//! Each run writes a whole snapshot under one `computed_at` and records the
//! run in `analytics_runs`; the `crash_regressions` view shows the newest.

use std::collections::{BTreeMap, HashMap};

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use processor::config::AnalyticsConfig;
use processor::{Store, StoreError};

/// Machines with a signature on a build, in the window.
#[derive(Debug, Clone, Row, Deserialize)]
pub struct SignatureOnBuild {
    pub os_build_full: String,
    pub build_key: u64,
    pub signature: String,
    pub machines: u64,
}

/// Active machines on a build, in the window.
#[derive(Debug, Clone, Row, Deserialize)]
pub struct ActiveOnBuild {
    pub os_build_full: String,
    pub build_key: u64,
    pub active: u64,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct FirstBuild {
    pub signature: String,
    pub first_build: String,
}

/// One row of `crash_regressions_runs`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct Regression {
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub computed_at: OffsetDateTime,
    pub os_build_full: String,
    pub build_key: u64,
    pub previous_build: String,
    pub grouping_version: u16,
    pub signature: String,
    pub kind: String,
    pub machines: u64,
    pub active_machines: u64,
    pub rate_per_1000: f64,
    pub previous_rate_per_1000: f64,
}

#[derive(Debug, Row, Serialize)]
struct Run {
    job: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    computed_at: OffsetDateTime,
    rows: u64,
}

/// Finds the regressions in what the aggregates say. Pure: no I/O.
pub fn find_regressions(
    signatures: &[SignatureOnBuild],
    active: &[ActiveOnBuild],
    first_builds: &[FirstBuild],
    config: &AnalyticsConfig,
    computed_at: OffsetDateTime,
) -> Vec<Regression> {
    // Builds with activity, in version order.
    let builds: BTreeMap<u64, (&str, u64)> = active
        .iter()
        .map(|a| (a.build_key, (a.os_build_full.as_str(), a.active)))
        .collect();
    let first: HashMap<&str, &str> = first_builds
        .iter()
        .map(|f| (f.signature.as_str(), f.first_build.as_str()))
        .collect();
    let machines: HashMap<(u64, &str), u64> = signatures
        .iter()
        .map(|s| ((s.build_key, s.signature.as_str()), s.machines))
        .collect();
    let rate = |machines: u64, active: u64| {
        if active == 0 {
            0.0
        } else {
            machines as f64 * 1000.0 / active as f64
        }
    };
    let mut found = Vec::new();
    let mut previous: Option<(u64, &str, u64)> = None;
    for (&key, &(build, active_machines)) in &builds {
        for s in signatures.iter().filter(|s| s.build_key == key) {
            let now_rate = rate(s.machines, active_machines);
            let (previous_build, previous_rate) = match previous {
                Some((prev_key, prev_build, prev_active)) => {
                    let prev_machines = machines
                        .get(&(prev_key, s.signature.as_str()))
                        .copied()
                        .unwrap_or(0);
                    (prev_build, rate(prev_machines, prev_active))
                }
                None => ("", 0.0),
            };
            let is_new = first.get(s.signature.as_str()) == Some(&build);
            // The oldest build in the window has nothing to be compared with.
            let kind = if previous.is_none() {
                None
            } else if is_new && s.machines >= config.new_signature_min_machines {
                Some("new")
            } else if !is_new
                && s.machines >= config.rate_increase_min_machines
                && now_rate >= config.rate_increase_factor * previous_rate
                && now_rate > previous_rate
            {
                Some("rate_increase")
            } else {
                None
            };
            if let Some(kind) = kind {
                found.push(Regression {
                    computed_at,
                    os_build_full: build.to_string(),
                    build_key: key,
                    previous_build: previous_build.to_string(),
                    grouping_version: grouping::GROUPING_VERSION,
                    signature: s.signature.clone(),
                    kind: kind.to_string(),
                    machines: s.machines,
                    active_machines,
                    rate_per_1000: now_rate,
                    previous_rate_per_1000: previous_rate,
                });
            }
        }
        previous = Some((key, build, active_machines));
    }
    found
}

/// Computes and stores one snapshot of regressions; returns its rows.
pub async fn run_regressions(
    store: &Store,
    config: &AnalyticsConfig,
) -> Result<Vec<Regression>, StoreError> {
    let window = config.window_days;
    let version = grouping::GROUPING_VERSION;
    let client = store.client();
    let signatures: Vec<SignatureOnBuild> = client
        .query(
            "SELECT os_build_full, build_key, signature, uniqExactMerge(machines) AS machines \
             FROM crash_daily_agg \
             WHERE day >= today() - ? AND grouping_version = ? \
             GROUP BY os_build_full, build_key, signature",
        )
        .bind(window)
        .bind(version)
        .fetch_all()
        .await?;
    let active: Vec<ActiveOnBuild> = client
        .query(
            "SELECT os_build_full, build_key, uniqExactMerge(active) AS active \
             FROM machine_days_agg WHERE day >= today() - ? \
             GROUP BY os_build_full, build_key",
        )
        .bind(window)
        .fetch_all()
        .await?;
    let first_builds: Vec<FirstBuild> = client
        .query("SELECT signature, first_build FROM crash_signatures WHERE grouping_version = ?")
        .bind(version)
        .fetch_all()
        .await?;
    let computed_at = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    let found = find_regressions(&signatures, &active, &first_builds, config, computed_at);
    store.insert("crash_regressions_runs", &found).await?;
    store
        .insert(
            "analytics_runs",
            &[Run {
                job: "crash_regressions".into(),
                computed_at,
                rows: found.len() as u64,
            }],
        )
        .await?;
    tracing::info!(regressions = found.len(), "crash regressions computed");
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(build: &str, key: u64, signature: &str, machines: u64) -> SignatureOnBuild {
        SignatureOnBuild {
            os_build_full: build.into(),
            build_key: key,
            signature: signature.into(),
            machines,
        }
    }

    fn active(build: &str, key: u64, machines: u64) -> ActiveOnBuild {
        ActiveOnBuild {
            os_build_full: build.into(),
            build_key: key,
            active: machines,
        }
    }

    fn first(signature: &str, build: &str) -> FirstBuild {
        FirstBuild {
            signature: signature.into(),
            first_build: build.into(),
        }
    }

    #[test]
    fn builds_are_compared_in_version_order_not_arrival_order() {
        // The newer build arrives first in the data; keys decide the order.
        let (old, new) = ("10.0.19045.3570", "10.0.19045.4046");
        let signatures = [
            on(new, 2, "shell32.dll!CDefView::WndProc", 30),
            on(new, 2, "ntdll.dll!RtlpHeapFree", 5),
            on(old, 1, "shell32.dll!CDefView::WndProc", 10),
            on(old, 1, "msedge.dll!Render", 8),
            on(new, 2, "msedge.dll!Render", 8),
        ];
        let activity = [active(new, 2, 1000), active(old, 1, 1000)];
        let firsts = [
            first("shell32.dll!CDefView::WndProc", old),
            first("ntdll.dll!RtlpHeapFree", new),
            first("msedge.dll!Render", old),
        ];
        let found = find_regressions(
            &signatures,
            &activity,
            &firsts,
            &AnalyticsConfig::default(),
            OffsetDateTime::UNIX_EPOCH,
        );
        let summary: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|r| {
                (
                    r.os_build_full.as_str(),
                    r.signature.as_str(),
                    r.kind.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (new, "shell32.dll!CDefView::WndProc", "rate_increase"),
                (new, "ntdll.dll!RtlpHeapFree", "new"),
            ]
        );
        let rise = &found[0];
        assert_eq!(rise.previous_build, old);
        assert!((rise.rate_per_1000 - 30.0).abs() < 1e-9);
        assert!((rise.previous_rate_per_1000 - 10.0).abs() < 1e-9);
    }

    #[test]
    fn small_numbers_are_not_regressions() {
        let signatures = [on("10.0.22621.1", 5, "app.exe!Main", 2)];
        let activity = [active("10.0.22621.1", 5, 10)];
        let firsts = [first("app.exe!Main", "10.0.22621.1")];
        let found = find_regressions(
            &signatures,
            &activity,
            &firsts,
            &AnalyticsConfig::default(),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert!(found.is_empty(), "2 machines are below the threshold of 3");
    }

    #[test]
    fn rates_are_per_active_machine_so_a_bigger_fleet_is_no_regression() {
        let (old, new) = ("10.0.19045.3570", "10.0.22621.1");
        let signatures = [on(old, 1, "x.dll!F", 10), on(new, 2, "x.dll!F", 20)];
        let activity = [active(old, 1, 1000), active(new, 2, 2000)];
        let firsts = [first("x.dll!F", old)];
        let found = find_regressions(
            &signatures,
            &activity,
            &firsts,
            &AnalyticsConfig::default(),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert!(found.is_empty(), "twice the crashes on twice the machines");
    }
}
