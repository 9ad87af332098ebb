//! The scheduled jobs: the migrations once at start, then retention and
//! crash regressions, each every `interval_secs` of its section (the first
//! time right away), until shutdown. A failed run (ClickHouse down included) is logged and counted,
//! and the next one tries again; neither job waits on the other.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use processor::Store;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::migrate::{self, MigrationError};
use crate::{Settings, analytics, retention};

/// A job's failure, whatever its step: shown in the log, counted.
type JobError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the jobs until `stop`; returns when every job has stopped.
pub async fn serve(settings: Settings, metrics: Arc<Metrics>, stop: CancellationToken) {
    let store = Arc::new(Connection {
        settings: settings.clone(),
        store: Mutex::new(None),
    });
    // Migrate first, whatever the intervals: processors of this build wait
    // for it. Ready once done; a ClickHouse down is waited for.
    let mut pause = Duration::from_millis(500);
    while let Err(error) = store.get().await {
        tracing::warn!(%error, retry_in = ?pause, "cannot migrate clickhouse yet");
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
    let retention = tokio::spawn(scheduled(
        "retention",
        settings.retention.interval_secs,
        stop.clone(),
        Arc::clone(&metrics),
        {
            let (store, metrics) = (Arc::clone(&store), Arc::clone(&metrics));
            move || {
                let (store, metrics) = (Arc::clone(&store), Arc::clone(&metrics));
                async move {
                    let today = time::OffsetDateTime::now_utc().date();
                    let config = &store.settings.retention;
                    let dropped = retention::run_once(&store.get().await?, config, today).await?;
                    metrics.partitions_dropped.inc_by(dropped.len() as u64);
                    Ok(())
                }
            }
        },
    ));
    let regressions = tokio::spawn(scheduled(
        "crash_regressions",
        settings.analytics.interval_secs,
        stop.clone(),
        Arc::clone(&metrics),
        {
            let store = Arc::clone(&store);
            move || {
                let store = Arc::clone(&store);
                async move {
                    let config = &store.settings.analytics;
                    analytics::run_regressions(&store.get().await?, config).await?;
                    Ok(())
                }
            }
        },
    ));
    metrics.set_ready(true);
    let _ = tokio::join!(retention, regressions);
    metrics.set_ready(false);
}

/// The store, connected at its first use and again after a failed connect
/// or migration. Migrations not applied yet are applied on connecting (the
/// processor only checks for them), so that no job reads tables older than
/// it was built for.
struct Connection {
    settings: Settings,
    store: Mutex<Option<Store>>,
}

impl Connection {
    async fn get(&self) -> Result<Store, MigrationError> {
        let mut store = self.store.lock().await;
        if let Some(store) = store.as_ref() {
            return Ok(store.clone());
        }
        let connected = Store::connect(&self.settings.clickhouse).await?;
        migrate::apply_all(&connected).await?;
        *store = Some(connected.clone());
        Ok(connected)
    }
}

/// Runs `job` every `interval_secs` (the first time right away) until
/// `stop`; 0 turns it off. A failed run is logged and counted.
async fn scheduled<F, Fut>(
    name: &'static str,
    interval_secs: u64,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
    job: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    if interval_secs == 0 {
        return;
    }
    let mut interval = tokio::time::interval(Duration::from_secs(interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        match job().await {
            Ok(()) => metrics.ran(name, true),
            Err(error) => {
                metrics.ran(name, false);
                tracing::warn!(job = name, %error, "scheduled job failed");
            }
        }
    }
}
