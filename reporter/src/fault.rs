//! Fault injection for the crash tests, off unless asked for.
//!
//! `REPORTER_TEST_ABORT_AT=<point>[:<n>]` makes the process abort (ended at
//! once, as by `kill -9`: no destructor runs, nothing more is written) the
//! `n`-th time (default: the first) it reaches the named point. The points
//! are the steps of [`crate::Queue::settle`]:
//!
//! - `settle:start`: the server answered, the queue is untouched;
//! - `settle:appended`: the copies to retry are queued, the batch is not yet
//!   acknowledged;
//! - `settle:prefix-acked`: (queue full) the reports before the first one to
//!   retry are acknowledged, the rest of the batch is still queued;
//! - `settle:acked`: the batch is acknowledged, the counters not yet saved.
//!
//! With the variable unset, [`point`] reads nothing but a cached `None`.
//! Unit tests use [`panic_at`] instead: a panic leaves `settle` at the same
//! step, and the queue reopened afterwards is what a crash would leave.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a fault.
pub const ABORT_AT_VAR: &str = "REPORTER_TEST_ABORT_AT";

struct Armed {
    point: String,
    nth: u64,
    reached: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(ABORT_AT_VAR).ok()?;
            let (point, nth) = match value.rsplit_once(':') {
                Some((point, n)) if n.parse::<u64>().is_ok() => {
                    (point.to_string(), n.parse().unwrap_or(1))
                }
                _ => (value.clone(), 1),
            };
            Some(Armed {
                point,
                nth: nth.max(1),
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process here if [`ABORT_AT_VAR`] names `name` and this is the
/// `n`-th time it is reached.
pub fn point(name: &str) {
    #[cfg(test)]
    PANIC_AT.with(|at| {
        if at.get() == Some(name) {
            panic!("fault injected at {name}");
        }
    });
    if let Some(armed) = armed()
        && armed.point == name
        && armed.reached.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth
    {
        eprintln!("reporter: aborting at {name} ({ABORT_AT_VAR})");
        std::process::abort();
    }
}

#[cfg(test)]
thread_local! {
    static PANIC_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Makes [`point`] panic at `name` on this thread (`None`: never).
#[cfg(test)]
pub fn panic_at(name: Option<&'static str>) {
    PANIC_AT.with(|at| at.set(name));
}
