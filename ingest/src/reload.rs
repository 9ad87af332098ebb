//! Reloading the configuration while serving: on SIGHUP, and when the
//! file's modification time or length changes. A file that does not load
//! leaves the settings in force as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::{AppState, Settings};

/// Watches `path` until `stop`.
pub async fn watch(
    state: Arc<AppState>,
    path: PathBuf,
    interval: Duration,
    stop: CancellationToken,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = stamp(&path);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        let tick = async {
            if interval.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(interval).await;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = hup => {
                tracing::info!(path = %path.display(), "SIGHUP: reloading configuration");
                seen = stamp(&path);
                reload(&state, &path);
            }
            () = tick => {
                let now = stamp(&path);
                if now != seen {
                    seen = now;
                    tracing::info!(path = %path.display(), "configuration file changed: reloading");
                    reload(&state, &path);
                }
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads the file and puts its reloadable part in force.
pub fn reload(state: &AppState, path: &Path) {
    match Config::load(path).and_then(|c| Settings::from_config(&c)) {
        Ok(settings) => {
            state.replace_settings(settings);
            state.metrics.reload("applied");
            tracing::info!(
                "configuration reloaded (organisations, tokens, rate limits, scrub rules)"
            );
        }
        Err(error) => {
            state.metrics.reload("failed");
            tracing::error!(%error, "configuration not reloaded; the previous one stays in force");
        }
    }
}
