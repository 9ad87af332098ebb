//! `reporter flush` against a real local HTTP server answering as a wrong
//! endpoint path or a proxy would, and as the edge does: only the edge's
//! per-report refusals drop a report; every other answer keeps them all.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, json, policy, queue_heartbeats, queued, reporter, respond, setup, text};
use serde_json::{Value, json};
use uuid::Uuid;

const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
    <center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const NGINX_400: &str = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n\
    <center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn item(index: usize, id: Uuid, status: &str, error: Option<&str>) -> Value {
    let mut v = json!({"index": index, "report_id": id, "status": status});
    if let Some(code) = error {
        v["error"] = json!(code);
        v["message"] = json!(format!("the test edge says {code}"));
    }
    v
}

fn results(items: Vec<Value>) -> axum::response::Response {
    json(200, json!({"results": items}))
}

/// The stats line of `reporter show`: how many ingest refused for good.
fn dropped_as_refused(config: &std::path::Path) -> u64 {
    let stats = std::fs::read(config.with_file_name("queue").join("stats.json"));
    stats
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["dropped_rejected"].as_u64())
        .unwrap_or(0)
}

#[test]
fn an_html_404_on_a_wrong_path_keeps_every_report() {
    // The reproduction: a wrong path on a server answering 404 with
    // an HTML page, for the policy and the batch alike.
    let server = TestServer::start(|_| respond(404, "text/html", NGINX_404));
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &format!("{}/wrong/path", server.url));
    let ids = queue_heartbeats(&config, 5);

    let out = reporter(&config, &["flush", "--max-seconds", "30"], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("0 refused for good"), "{stdout}");
    assert!(stdout.contains("5 still queued"), "{stdout}");
    assert!(
        stderr.contains("flush stopped") && stderr.contains("404"),
        "{stderr}"
    );
    assert!(
        stderr.contains("404 Not Found"),
        "says what answered: {stderr}"
    );
    assert_eq!(queued(&config), ids, "every report kept, in order");
    assert_eq!(dropped_as_refused(&config), 0);
    assert_eq!(server.batches().len(), 1, "stopped at the first answer");
}

#[test]
fn foreign_answers_stop_the_flush_and_keep_everything() {
    type Answer = fn() -> axum::response::Response;
    let cases: [(&str, Answer); 9] = [
        ("405 text", || {
            respond(405, "text/plain", "Method Not Allowed")
        }),
        ("415 html", || {
            respond(415, "text/html", "<h1>Unsupported Media Type</h1>")
        }),
        ("415 edge", || {
            json(
                415,
                json!({"error": "unsupported_media_type", "message": "no"}),
            )
        }),
        ("400 html", || respond(400, "text/html", NGINX_400)),
        ("404 edge", || {
            json(404, json!({"error": "not_found", "message": "no route"}))
        }),
        ("400 edge code, wrong status", || {
            json(404, json!({"error": "invalid", "message": "imitation"}))
        }),
        ("200 html", || {
            respond(200, "text/html", "<html>Log in to the Wi-Fi</html>")
        }),
        ("200 no results", || json(200, json!({"results": []}))),
        ("400 json", || {
            json(
                400,
                json!({"error": "bad_request", "message": "proxy says no"}),
            )
        }),
    ];
    for (name, answer) in cases {
        let server = TestServer::start(move |seen| match seen.path.as_str() {
            "/v1/policy" => policy(),
            _ => answer(),
        });
        let dir = tempfile::tempdir().unwrap();
        let config = setup(dir.path(), &server.url);
        let ids = queue_heartbeats(&config, 5);
        let out = reporter(&config, &["flush", "--max-seconds", "30"], &[]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        println!("{name}: {}", stderr.trim());
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        assert!(stdout.contains("0 refused for good"), "{name}: {stdout}");
        assert!(stderr.contains("flush stopped"), "{name}: {stderr}");
        assert_eq!(queued(&config), ids, "{name}: every report kept");
        assert_eq!(dropped_as_refused(&config), 0, "{name}");
        assert_eq!(server.batches().len(), 1, "{name}: no retry loop");
    }
}

#[test]
fn a_proxys_413_splits_the_batch_and_then_stops_without_dropping() {
    // 413 for any batch: halved down to one report, then not the edge's
    // refusal of that report: stop, keep.
    let server = TestServer::start(|seen| match seen.path.as_str() {
        "/v1/policy" => policy(),
        _ => respond(413, "text/html", "<h1>413 Request Entity Too Large</h1>"),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.url);
    let ids = queue_heartbeats(&config, 5);
    let out = reporter(&config, &["flush", "--max-seconds", "30"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(queued(&config), ids);
    let sizes: Vec<usize> = server.batches().iter().map(|b| b.reports.len()).collect();
    assert_eq!(sizes, [5, 2, 1], "halved until one report was alone");
}

#[test]
fn the_edges_413_isolates_the_report_too_large_and_drops_only_it() {
    let culprit = std::sync::Arc::new(std::sync::Mutex::new(None::<Uuid>));
    let c = culprit.clone();
    let server = TestServer::start(move |seen| match seen.path.as_str() {
        "/v1/policy" => policy(),
        _ if seen.reports.len() > 1 || seen.reports.first() == c.lock().unwrap().as_ref() => json(
            413,
            json!({"error": "too_large", "message": "over 10485760 bytes"}),
        ),
        _ => results(vec![item(0, seen.reports[0], "accepted", None)]),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.url);
    let ids = queue_heartbeats(&config, 5);
    *culprit.lock().unwrap() = Some(ids[2]);
    let out = reporter(&config, &["flush", "--max-seconds", "30"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("sent 4 report(s)"), "{stdout}");
    assert!(stdout.contains("1 refused for good"), "{stdout}");
    assert!(stdout.contains(&format!("refused heartbeat/1 {}: too_large", ids[2])));
    assert!(queued(&config).is_empty());
    assert_eq!(dropped_as_refused(&config), 1);
}

#[test]
fn the_edges_item_results_decide_each_report() {
    // One batch: accepted, invalid (final), rate_limited (kept, then
    // accepted on the retry), duplicate, accepted.
    let server = TestServer::start(|seen| match seen.path.as_str() {
        "/v1/policy" => policy(),
        _ if seen.reports.len() == 5 => results(vec![
            item(0, seen.reports[0], "accepted", None),
            item(1, seen.reports[1], "rejected", Some("invalid")),
            item(2, seen.reports[2], "rejected", Some("rate_limited")),
            item(3, seen.reports[3], "duplicate", None),
            item(4, seen.reports[4], "accepted", None),
        ]),
        _ => results(
            seen.reports
                .iter()
                .enumerate()
                .map(|(i, id)| item(i, *id, "accepted", None))
                .collect(),
        ),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.url);
    let ids = queue_heartbeats(&config, 5);
    let out = reporter(&config, &["flush", "--max-seconds", "30"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("sent 4 report(s) (1 already there)"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("refused heartbeat/1 {}: invalid", ids[1])));
    assert!(queued(&config).is_empty());
    let batches = server.batches();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        batches[1].reports,
        [ids[2]],
        "only the rate-limited one again"
    );
}

#[test]
fn an_item_answer_the_reporter_does_not_know_is_kept_and_stops_the_flush() {
    let server = TestServer::start(|seen| match seen.path.as_str() {
        "/v1/policy" => policy(),
        _ => results(
            seen.reports
                .iter()
                .enumerate()
                .map(|(i, id)| match i {
                    1 => item(i, *id, "rejected", Some("brand_new_code")),
                    3 => item(i, *id, "parked", None),
                    _ => item(i, *id, "accepted", None),
                })
                .collect(),
        ),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.url);
    let ids = queue_heartbeats(&config, 5);
    let out = reporter(&config, &["flush", "--max-seconds", "30"], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("0 refused for good"), "{stdout}");
    assert!(stderr.contains("does not know"), "{stderr}");
    assert_eq!(queued(&config), [ids[1], ids[3]]);
    assert_eq!(server.batches().len(), 1);
}

#[test]
fn a_502_is_retried_until_the_flush_ends_and_nothing_is_dropped() {
    let server = TestServer::start(|seen| match seen.path.as_str() {
        "/v1/policy" => policy(),
        _ => respond(502, "text/html", "<h1>502 Bad Gateway</h1>"),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.url);
    let ids = queue_heartbeats(&config, 5);
    let out = reporter(&config, &["flush", "--max-seconds", "5"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("flush incomplete") && stderr.contains("502"),
        "{stderr}"
    );
    assert_eq!(queued(&config), ids);
    assert!(server.batches().len() >= 2, "retried with backoff");
}

#[test]
fn a_huge_retry_after_neither_panics_nor_waits() {
    for value in [
        "99999999999",
        "18446744073709551615",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        for on_policy in [true, false] {
            let server = TestServer::start(move |seen| {
                if seen.path == "/v1/policy" && !on_policy {
                    return policy();
                }
                let mut r = json(503, json!({"error": "overloaded", "message": "busy"}));
                r.headers_mut()
                    .insert("retry-after", value.parse().unwrap());
                r
            });
            let dir = tempfile::tempdir().unwrap();
            let config = setup(dir.path(), &server.url);
            let ids = queue_heartbeats(&config, 2);
            let start = Instant::now();
            let out = reporter(&config, &["flush", "--max-seconds", "60"], &[]);
            let stderr = text(&out.stderr);
            assert!(!stderr.contains("panicked"), "{value}: {stderr}");
            assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "a wait past the flush's end ends it at once"
            );
            assert_eq!(queued(&config), ids, "{value}");
        }
    }
}
