//! The queue survives the reporter being killed inside `Queue::settle`, at
//! every step, again and again: run the real binary against a local edge
//! stand-in, abort it at a chosen step (`REPORTER_TEST_ABORT_AT`, see
//! `reporter::fault`), and check after every run that each report the
//! server has not accepted (or refused for good) is still queued. In the
//! end every report is accepted exactly once by distinct id (duplicates
//! allowed: the edge de-duplicates) or refused, and none is lost.
//!
//! It runs on Windows semantics too: `scripts/windows` runs it built for
//! Windows under Wine, where the queue's files are replaced and removed the
//! way Windows does it.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use common::{TestServer, json, policy, queue_heartbeats, queued, reporter, setup, text};
use serde_json::json;
use uuid::Uuid;

/// What the stand-in edge did, by report id.
#[derive(Debug, Default)]
struct Ledger {
    /// Times each report arrived.
    arrivals: HashMap<Uuid, u32>,
    accepted: HashSet<Uuid>,
    refused: HashSet<Uuid>,
    /// Arrivals of a report already accepted (answered `duplicate`).
    duplicates: u32,
}

/// One report in five is refused for good (`invalid`); one in three is
/// rate-limited the first time it arrives, to exercise the retry copies.
fn answer(ledger: &mut Ledger, id: Uuid) -> serde_json::Value {
    let arrivals = {
        let n = ledger.arrivals.entry(id).or_default();
        *n += 1;
        *n
    };
    let key = id.as_u128();
    if ledger.accepted.contains(&id) {
        ledger.duplicates += 1;
        json!({"status": "duplicate"})
    } else if key.is_multiple_of(5) {
        ledger.refused.insert(id);
        json!({"status": "rejected", "error": "invalid", "message": "test"})
    } else if key.is_multiple_of(3) && arrivals == 1 {
        json!({"status": "rejected", "error": "rate_limited", "message": "test"})
    } else {
        ledger.accepted.insert(id);
        json!({"status": "accepted"})
    }
}

/// Whether the process ended by `std::process::abort` (the fault point).
#[cfg(unix)]
fn aborted(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
}

/// Whether the process ended by `std::process::abort` (the fault point):
/// on Windows that is a fail-fast exception, `STATUS_STACK_BUFFER_OVERRUN`.
#[cfg(windows)]
fn aborted(status: ExitStatus) -> bool {
    status.code().map(|c| c as u32) == Some(0xC000_0409)
}

#[test]
fn killed_inside_settle_at_every_step_the_queue_loses_nothing() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let l = ledger.clone();
    let server = TestServer::start(move |seen| {
        if seen.path == "/v1/policy" {
            return policy();
        }
        let mut ledger = l.lock().unwrap();
        let results: Vec<_> = seen
            .reports
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let mut item = answer(&mut ledger, *id);
                item["index"] = json!(index);
                item["report_id"] = json!(id);
                item
            })
            .collect();
        json(200, json!({"results": results}))
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.url);
    let mut all: HashSet<Uuid> = queue_heartbeats(&config, 40).into_iter().collect();

    // Which steps a run reaches depends on the random report ids (a step
    // such as `settle:appended` needs a batch with a report to retry), so
    // the queue is filled again until every step has been killed twice.
    const KILLS_PER_POINT: u32 = 2;
    let points = ["settle:start", "settle:appended", "settle:acked"];
    let (mut kills, mut runs, mut refills) = (0u32, 0u32, 0u32);
    let mut killed_at: HashMap<&str, u32> = HashMap::new();
    loop {
        assert!(
            runs < 200,
            "the flush never finished, or a step was never reached: {killed_at:?}"
        );
        let point = points[runs as usize % points.len()];
        let nth = 1 + (runs as usize / points.len()) % 2;
        let fault = format!("{point}:{nth}");
        let out = reporter(
            &config,
            &["flush", "--batch-size", "2", "--max-seconds", "60"],
            &[("REPORTER_TEST_ABORT_AT", &fault)],
        );
        runs += 1;
        let left: Vec<Uuid> = queued(&config);
        let left_set: HashSet<Uuid> = left.iter().copied().collect();
        {
            let ledger = ledger.lock().unwrap();
            let owed: HashSet<Uuid> = all
                .iter()
                .filter(|id| !ledger.accepted.contains(id) && !ledger.refused.contains(id))
                .copied()
                .collect();
            let lost: Vec<&Uuid> = owed.difference(&left_set).collect();
            assert!(lost.is_empty(), "after {fault}: lost {lost:?}");
            assert!(left_set.is_subset(&all), "after {fault}: a report appeared");
        }
        if aborted(out.status) {
            kills += 1;
            *killed_at.entry(point).or_default() += 1;
            continue;
        }
        assert!(
            out.status.success(),
            "after {fault}: {:?} {}",
            out.status,
            text(&out.stderr)
        );
        if !left.is_empty() {
            continue;
        }
        if points
            .iter()
            .all(|p| killed_at.get(p).copied().unwrap_or(0) >= KILLS_PER_POINT)
        {
            break;
        }
        refills += 1;
        all.extend(queue_heartbeats(&config, 20));
    }

    let ledger = ledger.lock().unwrap();
    let lost = all
        .iter()
        .filter(|id| !ledger.accepted.contains(id) && !ledger.refused.contains(id))
        .count();
    let doubled = ledger.accepted.intersection(&ledger.refused).count();
    println!(
        "runs {runs}, killed {kills} ({killed_at:?}), refills {refills}; reports sent {}, \
         accepted {}, refused {}, lost {lost}, doubled {doubled}, duplicate arrivals {}",
        all.len(),
        ledger.accepted.len(),
        ledger.refused.len(),
        ledger.duplicates
    );
    assert_eq!(lost, 0);
    assert_eq!(doubled, 0, "no report both accepted and refused");
    assert_eq!(ledger.accepted.len() + ledger.refused.len(), all.len());
    assert!(
        ledger.accepted.is_subset(&all),
        "only queued reports were accepted"
    );
}
