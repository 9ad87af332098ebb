//! The roadmap report from data loaded through the real pipeline, rendered
//! by headless Chromium (Debian's `chromium`, installed by `scripts/test`),
//! and the feature-request trend by ISO week, with requests received in
//! chosen weeks and one cluster merged into another.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{TestEnv, accepted, eventually, fixtures, produce, scalar, start_processor, try_scalar};
use schemas::AcceptedReport;
use serde_json::json;
use time::{Date, Duration as Days, OffsetDateTime};

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
    assert_eq!(written.len(), 7, "the page and six CSV tables");
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

fn request_at(org: &str, machine: &str, title: &str, language: &str, day: Date) -> AcceptedReport {
    let mut report = accepted(fixtures::FEATURE_REQUEST, org, machine);
    report.payload["title"] = json!(title);
    report.payload["language"] = json!(language);
    // Clustered by its title alone, so that its cluster id is known.
    report
        .payload
        .as_object_mut()
        .expect("object")
        .remove("body");
    report.received_at = day.midnight().assume_utc() + Days::hours(10);
    report
}

/// The trend of one ISO week, chosen two weeks back so that every request
/// of it and of the weeks around it lies in the past: requests in each of
/// the four weeks before, in the week, after it and before the four
/// weeks. One cluster founded in the week is merged into one founded two
/// weeks before it (a row of `cluster_merges`, as the merge pass writes):
/// its requests count under the surviving id, in the report, in the
/// cookbook and in `feature_request_clusters`, and it is not new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_trend_and_new_clusters_follow_merges() {
    let env = TestEnv::new();
    let processor = start_processor(env.processor_config());
    let week = warehouse::report::week_start(OffsetDateTime::now_utc().date()) - Days::weeks(2);
    let week_of = week + Days::days(2);
    let (taskbar, folders_en, folders_zh, export) = (
        "Group taskbar windows by project",
        "Allow pinning folders to the Start menu",
        "希望开始菜单支持固定文件夹",
        "Export the event log to CSV",
    );
    // One request of each title first, so that each founds its cluster
    // before its repeats arrive; then the rest.
    let founders = vec![
        request_at("grid", "t0", taskbar, "en", week),
        request_at("water", "f0", folders_en, "en", week - Days::weeks(2)),
        request_at("grid", "z0", folders_zh, "zh-CN", week + Days::days(1)),
        request_at("sun", "e0", export, "en", week + Days::days(3)),
    ];
    produce(&env.reports_topic, &founders).await;
    let store = env.clickhouse().await;
    eventually("the founders stored", Duration::from_secs(60), || async {
        (try_scalar(&store, "SELECT count() FROM feature_requests").await == Some(4)).then_some(())
    })
    .await;
    let repeats = vec![
        // The taskbar cluster: 3 requests from 3 organisations this week;
        // 1 + 1 + 0 + 2 in the four weeks before (1 request, 1 organisation
        // a week on average); one five weeks before and one the week after,
        // which count in neither.
        request_at("water", "t1", taskbar, "en", week + Days::days(4)),
        request_at("sun", "t2", taskbar, "en", week + Days::days(6)),
        request_at("grid", "t3", taskbar, "en", week - Days::weeks(4)),
        request_at(
            "water",
            "t4",
            taskbar,
            "en",
            week - Days::weeks(3) + Days::days(6),
        ),
        request_at("grid", "t5", taskbar, "en", week - Days::days(7)),
        request_at("sun", "t6", taskbar, "en", week - Days::days(1)),
        request_at("sun", "t7", taskbar, "en", week - Days::weeks(5)),
        request_at("sun", "t8", taskbar, "en", week + Days::weeks(1)),
        // The Chinese wording of the folders request: 2 requests this week.
        request_at("water", "z1", folders_zh, "zh-CN", week + Days::days(2)),
    ];
    produce(&env.reports_topic, &repeats).await;
    eventually("every request stored", Duration::from_secs(60), || async {
        (try_scalar(&store, "SELECT count() FROM feature_requests").await == Some(13)).then_some(())
    })
    .await;
    env.caught_up(Duration::from_secs(60)).await;
    let ids = [taskbar, folders_en, folders_zh, export].map(clustering::cluster_id_for);
    let stored = scalar(
        &store,
        &format!(
            "SELECT uniqExact(cluster_id) FROM feature_requests WHERE cluster_id IN ({}, {}, {}, {})",
            ids[0], ids[1], ids[2], ids[3]
        ),
    )
    .await;
    assert_eq!(stored, 4, "one cluster per title");
    let (kept, gone) = (ids[1].min(ids[2]), ids[1].max(ids[2]));
    store
        .client()
        .query(&format!(
            "INSERT INTO cluster_merges (cluster_id, merged_into, similarity, merged_at) \
             VALUES ({gone}, {kept}, 0.9, now())"
        ))
        .execute()
        .await
        .expect("merge recorded");

    let report = warehouse::report::gather_for_week(&store, 70, week_of)
        .await
        .expect("report data");
    assert_eq!(report.week_start, week);
    let row = |id: u64| {
        report
            .clusters
            .iter()
            .find(|c| c.cluster_id == id)
            .unwrap_or_else(|| panic!("cluster {id} in {:?}", report.clusters))
    };
    let t = &row(ids[0]).trend;
    assert_eq!(
        (
            t.requests_this_week,
            t.organisations_this_week,
            t.new_this_week
        ),
        (3, 3, false)
    );
    assert_eq!(
        (t.requests_weekly_average, t.organisations_weekly_average),
        (1.0, 1.0)
    );
    assert_eq!(t.direction(), "up");
    assert_eq!(row(ids[0]).requests, 9, "every request of the period");
    let folders = row(kept);
    assert!(
        report.clusters.iter().all(|c| c.cluster_id != gone),
        "the merged-away id is not shown"
    );
    assert_eq!((folders.requests, folders.organisations), (3, 2));
    assert_eq!(
        (
            folders.trend.requests_this_week,
            folders.trend.requests_weekly_average,
            folders.trend.new_this_week
        ),
        (2, 0.25, false),
        "founded before the week under the surviving id: not new"
    );
    let languages: Vec<&str> = folders.titles.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(languages, ["zh", "en"], "{:?}", folders.titles);
    let new: Vec<(u64, &str, u64)> = report
        .new_clusters
        .iter()
        .map(|c| (c.cluster_id, c.title.as_str(), c.requests_this_week))
        .collect();
    assert_eq!(new, [(ids[3], export, 1)], "only the export request is new");

    let dir = tempfile::tempdir().expect("out dir");
    let page = dir.path().join("report.html");
    warehouse::report::write(&report, &page).expect("written");
    let csv = std::fs::read_to_string(dir.path().join("report-clusters.csv")).expect("csv");
    let taskbar_line = csv
        .lines()
        .find(|l| l.starts_with(&ids[0].to_string()))
        .expect("taskbar row");
    assert!(
        taskbar_line.ends_with(&format!(",{week},3,1.00,3,1.00,up")),
        "{taskbar_line}"
    );
    let new_csv = std::fs::read_to_string(dir.path().join("report-new_clusters.csv")).expect("csv");
    assert_eq!(
        new_csv.lines().nth(1),
        Some(format!("{week},{},{export},1,1", ids[3]).as_str())
    );
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(html.contains("id=\"table-new-clusters\"") && html.contains(export));

    // The cookbook's list of new clusters for the week, on 18.16.
    let cookbook = warehouse::cookbook::Cookbook::built_in();
    let values = [("week_of".to_string(), week_of.to_string())]
        .into_iter()
        .collect();
    let sql = cookbook
        .query("new_feature_request_clusters")
        .expect("query")
        .bind(&values)
        .expect("binds");
    let tsv = warehouse::cookbook::run(store.client(), &sql)
        .await
        .expect("runs");
    let tsv = String::from_utf8(tsv).expect("utf-8");
    let rows: Vec<&str> = tsv.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{tsv}");
    assert!(
        rows[0].starts_with(&format!("{}\t{export}\t['en']\t", ids[3])),
        "{tsv}"
    );

    // The view analysts read follows the merge over the whole history:
    // the surviving id alone, with both ids' requests, organisations and
    // machines counted once, and a title per language.
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Cluster {
        cluster_id: u64,
        title: String,
        languages: Vec<String>,
        titles: Vec<String>,
        requests: u64,
        organisations: u64,
        machines: u64,
    }
    let clusters: Vec<Cluster> = store
        .client()
        .query(
            "SELECT cluster_id, title, languages, titles, requests, organisations, machines \
             FROM feature_request_clusters ORDER BY cluster_id",
        )
        .fetch_all()
        .await
        .expect("feature_request_clusters");
    assert_eq!(clusters.len(), 3, "{clusters:?}");
    let folders = clusters
        .iter()
        .find(|c| c.cluster_id == kept)
        .expect("surviving cluster");
    assert_eq!(
        (folders.requests, folders.organisations, folders.machines),
        (3, 2, 3)
    );
    assert_eq!(folders.languages, ["zh", "en"]);
    assert_eq!(folders.titles, [folders_zh, folders_en]);
    assert_eq!(folders.title, folders_zh, "the main language's title");
    let taskbar_all = clusters
        .iter()
        .find(|c| c.cluster_id == ids[0])
        .expect("taskbar");
    assert_eq!((taskbar_all.requests, taskbar_all.organisations), (9, 3));
    // Its trend in the view is the current week's, two weeks after the
    // chosen one: nothing yet this week; in the four weeks before, the
    // chosen week (3 requests, 3 organisations), the week before it (2, 2)
    // and the week after it (1, 1).
    let sql = format!(
        "SELECT requests_this_week, requests_weekly_average, organisations_weekly_average, \
         new_this_week FROM feature_request_clusters WHERE cluster_id = {}",
        ids[0]
    );
    let current: (u64, f64, f64, u8) = store
        .client()
        .query(&sql)
        .fetch_one()
        .await
        .expect("the current week's trend");
    assert_eq!(current, (0, 1.5, 1.5, 0));

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
