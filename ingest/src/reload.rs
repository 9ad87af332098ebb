//! Reloading the configuration while serving: on SIGHUP, and when the
//! file's modification time or length changes. A file that does not load
//! leaves the settings in force as they were. The TLS certificate is
//! reloaded on the same triggers ([`Triggers`]), by [`crate::tls`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::{AppState, Settings};

/// Wakes a watcher on SIGHUP and every `interval` (never, if it is zero).
/// Both the configuration and the TLS files ([`crate::tls`]) are watched
/// this way.
#[derive(Debug)]
pub(crate) struct Triggers {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    interval: Duration,
}

/// Why a watcher woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Hangup,
    Tick,
}

impl Triggers {
    pub(crate) fn new(interval: Duration) -> Triggers {
        Triggers {
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
            interval,
        }
    }

    /// The next wake, or `None` once `stop` is cancelled.
    pub(crate) async fn next(&mut self, stop: &CancellationToken) -> Option<Wake> {
        #[cfg(unix)]
        let hup = async {
            match self.hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        let interval = self.interval;
        let tick = async {
            if interval.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(interval).await;
        };
        tokio::select! {
            () = stop.cancelled() => None,
            () = hup => Some(Wake::Hangup),
            () = tick => Some(Wake::Tick),
        }
    }
}

/// Watches `path` until `stop`.
pub async fn watch(
    state: Arc<AppState>,
    path: PathBuf,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut triggers = Triggers::new(interval);
    let mut seen = stamp(&path);
    while let Some(wake) = triggers.next(&stop).await {
        match wake {
            Wake::Hangup => {
                tracing::info!(path = %path.display(), "SIGHUP: reloading configuration");
                seen = stamp(&path);
                reload(&state, &path);
            }
            Wake::Tick => {
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
