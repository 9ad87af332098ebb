//! The roadmap report from data loaded through the real pipeline, rendered
//! by headless Chromium (Debian's `chromium`, installed by `scripts/test`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{TestEnv, accepted, eventually, fixtures, produce, start_processor, try_scalar};
use schemas::AcceptedReport;
use serde_json::json;

fn on_build(mut report: AcceptedReport, revision: u32) -> AcceptedReport {
    report.os.revision = revision;
    report
}

fn crash(org: &str, machine: &str, revision: u32, top: &str) -> AcceptedReport {
    let mut report = accepted(fixtures::CRASH, org, machine);
    report.payload["frames"][0]["function"] = json!(top);
    on_build(report, revision)
}

fn heartbeat(org: &str, machine: &str, revision: u32) -> AcceptedReport {
    let mut report = accepted(fixtures::HEARTBEAT, org, machine);
    report.payload["day"] = json!(report.received_at.date().to_string());
    on_build(report, revision)
}

/// Runs headless Chromium on `page`: its DOM as Chromium built it, and a
/// screenshot beside the page.
fn chromium(page: &Path) -> String {
    let binary = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("chromium is installed (scripts/test installs it)");
    let profile = tempfile::tempdir().expect("profile dir");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let url = format!("file://{}", page.display());
    let screenshot = page.with_extension("png");
    let status = Command::new(binary)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1200,2400")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(screenshot.is_file(), "no screenshot: {status:?}");
    let dom = Command::new(binary)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&dom.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roadmap_report_renders_in_a_browser_with_charts_and_tables() {
    let env = TestEnv::new();
    let processor = start_processor(env.processor_config());
    let mut reports = Vec::new();
    for m in 0..10 {
        reports.push(heartbeat("grid", &format!("a{m}"), 3570));
        reports.push(heartbeat("water", &format!("b{m}"), 4046));
    }
    for m in 0..2 {
        reports.push(crash(
            "grid",
            &format!("a{m}"),
            3570,
            "CDefView::_OnContextMenu",
        ));
    }
    for m in 0..6 {
        reports.push(crash(
            "water",
            &format!("b{m}"),
            4046,
            "CDefView::_OnContextMenu",
        ));
    }
    for m in 6..9 {
        reports.push(crash(
            "water",
            &format!("b{m}"),
            4046,
            "CDefView::<OnNewFolder>",
        ));
    }
    for (m, title) in [
        "希望任务栏支持按项目分组窗口",
        "任务栏能否按项目对窗口进行分组",
    ]
    .iter()
    .enumerate()
    {
        let org = if m == 0 { "grid" } else { "water" };
        let mut request = accepted(fixtures::FEATURE_REQUEST, org, &format!("r{m}"));
        request.payload["title"] = json!(title);
        reports.push(request);
    }
    for rating in [5u8, 4, 2] {
        let mut fb = accepted(fixtures::FEEDBACK, "grid", &format!("f{rating}"));
        fb.payload["rating"] = json!(rating);
        reports.push(fb);
    }
    let total = reports.len() as u64;
    produce(&env.reports_topic, &reports).await;
    let store = env.clickhouse().await;
    eventually("everything stored", Duration::from_secs(60), || async {
        let sql = "SELECT (SELECT count() FROM crash_reports) + (SELECT count() FROM heartbeats) \
                   + (SELECT count() FROM feature_requests) + (SELECT count() FROM feedback)";
        (try_scalar(&store, sql).await == Some(total)).then_some(())
    })
    .await;
    env.caught_up(Duration::from_secs(60)).await;
    warehouse::analytics::run_regressions(&store, &processor::config::AnalyticsConfig::default())
        .await
        .expect("regressions");

    let report = warehouse::report::gather(&store, 30)
        .await
        .expect("report data");
    let rates: Vec<(String, u64, u64)> = report
        .builds
        .iter()
        .map(|b| {
            (
                b.os_build_full.clone(),
                b.active_machines,
                b.crashed_machines,
            )
        })
        .collect();
    assert_eq!(
        rates,
        vec![
            ("10.0.19045.3570".to_string(), 10, 2),
            ("10.0.19045.4046".to_string(), 10, 9)
        ]
    );
    assert_eq!(report.signatures.len(), 2);
    assert_eq!(report.signatures[0].machines, 8);
    assert_eq!(
        report.signatures[0].daily.iter().sum::<u64>(),
        8,
        "the trend adds up"
    );
    assert_eq!(report.regressions.len(), 2);
    assert!(
        report
            .regressions
            .iter()
            .all(|r| r.os_build_full == "10.0.19045.4046")
    );
    assert_eq!(report.clusters.len(), 1);
    assert_eq!(report.clusters[0].organisations, 2);
    assert_eq!(report.clusters[0].examples.len(), 2, "both wordings shown");
    let titles = &report.clusters[0].titles;
    assert_eq!(titles.len(), 1, "one language: {titles:?}");
    assert_eq!(titles[0].0, "zh", "zh-CN is shown as zh");
    assert!(
        report.clusters[0].examples.contains(&titles[0].1),
        "the representative title is one of the wordings: {titles:?}"
    );
    assert_eq!(report.feedback.len(), 1);

    let dir = tempfile::tempdir().expect("out dir");
    let page = dir.path().join("report.html");
    let written = warehouse::report::write(&report, &page).expect("written");
    assert_eq!(written.len(), 6, "the page and five CSV tables");
    let csv = std::fs::read_to_string(dir.path().join("report-crash_free.csv")).expect("csv");
    assert!(csv.contains("10.0.19045.3570,10,2,0.8000"), "{csv}");

    let dom = chromium(&page);
    for id in [
        "chart-crash-free",
        "table-crash-free",
        "table-signatures",
        "table-regressions",
        "chart-clusters",
        "table-clusters",
        "chart-feedback",
        "table-feedback",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "{id} missing from the rendered page"
        );
    }
    assert_eq!(
        dom.matches("class=\"bar\"").count(),
        2 + 1 + 1,
        "one bar per build, cluster, category"
    );
    assert_eq!(
        dom.matches("class=\"trend\"").count(),
        2,
        "a sparkline per signature"
    );
    assert!(dom.contains("任务栏能否按项目对窗口进行分组"));
    assert!(
        dom.contains("CDefView::&lt;OnNewFolder&gt;"),
        "escaped, not markup"
    );
    assert!(!dom.contains("<script"), "no scripts");

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
