//! The analysts' query cookbook (`schemas/queries/*.sql`) against the real
//! 18.16 server, with known data that went through the real pipeline: the
//! processor in-process reads known reports, outcome events and undecodable
//! messages from Kafka, the regression job runs once, and every query file
//! (found on disk, so a new one is tested at once) must return exactly the
//! rows this data implies. `tests/python/test_cookbook.py` runs the same
//! files on current ClickHouse.
//!
//! Parameters are written `{name:Type}`, ClickHouse's own syntax; 18.16
//! does not bind them, so `substitute` (of `warehouse::cookbook`, which
//! `telemetry-admin cookbook` runs) replaces each with a quoted literal of
//! its type before the query is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{
    TestEnv, accepted, clickhouse_url, eventually, fixtures, produce, produce_raw, scalar,
    start_processor,
};
use schemas::{AcceptedReport, Outcome, OutcomeEvent};
use serde_json::json;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;
use warehouse::cookbook::{Query, placeholders, substitute};

const WAIT: Duration = Duration::from_secs(90);

const OLD: &str = "10.0.19045.3570";
const NEW: &str = "10.0.19045.4046";
/// The frames below the top one, as every fixture crash has them.
const REST: &str = " | shell32.dll!CDefView::WndProc | user32.dll!UserCallWinProcCheckWow";

// --- query files ----------------------------------------------------------

/// A query file: its header and text.
struct QueryFile {
    path: PathBuf,
    name: String,
    params: BTreeMap<String, String>,
    sql: String,
}

fn read_query(path: &Path) -> QueryFile {
    let sql = std::fs::read_to_string(path).expect("query file");
    let query = Query::parse(&sql).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    QueryFile {
        path: path.to_path_buf(),
        name: query.name,
        params: query.params,
        sql,
    }
}

fn query_files() -> Vec<QueryFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/queries");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read_query(p)).collect()
}

/// Runs `sql` over HTTP as an analyst would; the result as TSVWithNames lines.
async fn run(http: &reqwest::Client, database: &str, sql: &str) -> Result<Vec<String>, String> {
    let response = http
        .post(clickhouse_url())
        .query(&[("database", database), ("default_format", "TSVWithNames")])
        .body(sql.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    Ok(text
        .trim_end_matches('\n')
        .split('\n')
        .map(str::to_string)
        .collect())
}

// --- the reports ------------------------------------------------------------

/// A moment of `day`, UTC.
fn at(day: Date, clock: &str) -> OffsetDateTime {
    let time = Time::parse(
        clock,
        time::macros::format_description!("[hour]:[minute]:[second]"),
    )
    .expect("clock");
    day.with_time(time).assume_utc()
}

fn on_build(mut report: AcceptedReport, build: &str, received: OffsetDateTime) -> AcceptedReport {
    let (version, revision) = build.rsplit_once('.').expect("build");
    report.os.version = version.to_string();
    report.os.build = version
        .rsplit('.')
        .next()
        .expect("build")
        .parse()
        .expect("number");
    report.os.revision = revision.parse().expect("revision");
    report.received_at = received;
    report
}

fn heartbeat(day: Date, org: &str, machine: &str, build: &str) -> AcceptedReport {
    let mut report = accepted(fixtures::HEARTBEAT, org, machine);
    report.payload["day"] = json!(day.to_string());
    on_build(report, build, at(day, "08:00:00"))
}

fn crash(
    received: OffsetDateTime,
    org: &str,
    machine: &str,
    build: &str,
    top: &str,
) -> AcceptedReport {
    let mut report = accepted(fixtures::CRASH, org, machine);
    report.payload["frames"][0]["function"] = json!(top);
    on_build(report, build, received)
}

fn request(
    received: OffsetDateTime,
    org: &str,
    machine: &str,
    title: &str,
    body: Option<&str>,
    category: &str,
    language: &str,
) -> AcceptedReport {
    let mut report = accepted(fixtures::FEATURE_REQUEST, org, machine);
    report.payload["title"] = json!(title);
    report.payload["category"] = json!(category);
    report.payload["language"] = json!(language);
    match body {
        Some(body) => report.payload["body"] = json!(body),
        None => {
            report
                .payload
                .as_object_mut()
                .expect("object")
                .remove("body");
        }
    }
    on_build(report, NEW, received)
}

fn feedback(
    day: Date,
    org: &str,
    machine: &str,
    build: &str,
    rating: u8,
    category: &str,
) -> AcceptedReport {
    let mut report = accepted(fixtures::FEEDBACK, org, machine);
    report.payload["rating"] = json!(rating);
    report.payload["category"] = json!(category);
    on_build(report, build, at(day, "11:00:00"))
}

fn outcome(
    when: OffsetDateTime,
    outcome: Outcome,
    reason: &str,
    schema: Option<&str>,
    org: Option<&str>,
    size: u64,
    field: Option<&str>,
) -> OutcomeEvent {
    OutcomeEvent {
        event_id: Uuid::new_v4(),
        at: when,
        outcome,
        reason: reason.to_string(),
        schema: schema.map(str::to_string),
        org_id: org.map(str::to_string),
        size,
        field: field.map(str::to_string),
    }
}

/// How ClickHouse writes a string in TSV (and inside a TSV array).
fn tsv(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\'', "\\'")
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn placeholders_are_replaced_once_with_quoted_literals() {
    let values = params(&[("s", "a'b\\c"), ("n", "7"), ("t", "{n:UInt32}")]);
    assert_eq!(
        substitute("SELECT {s:String}, {n:UInt32}, {t:String}, {x}", &values).as_deref(),
        Ok("SELECT 'a\\'b\\\\c', 7, '{n:UInt32}', {x}")
    );
    let bad = params(&[("n", "1; DROP TABLE x")]);
    assert!(substitute("SELECT {n:UInt32}", &bad).is_err());
    assert!(substitute("SELECT {m:UInt32}", &bad).is_err(), "no value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cookbook_query_returns_the_known_rows() {
    let files = query_files();
    assert!(files.len() >= 12, "at least 12 cookbook queries");
    for file in &files {
        let stem = file
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name");
        assert_eq!(file.name, stem, "{}: -- name", file.path.display());
        let declared: BTreeSet<(String, String)> = file
            .params
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        assert_eq!(
            placeholders(&file.sql),
            declared,
            "{}: -- params vs placeholders",
            file.path.display()
        );
    }

    let env = TestEnv::new();
    let processor = start_processor(env.processor_config());
    let store = env.clickhouse().await;
    let d0 = OffsetDateTime::now_utc().date();
    let d1 = d0.previous_day().expect("yesterday");
    let sig = |top: &str| format!("shell32.dll!{top}{REST}");
    let (top_a, top_b) = ("CDefView::_OnContextMenu", "CDefView::OnNewFolder");
    // MSVC's spelling of an anonymous namespace: a backtick and a quote, so
    // that the String literal's escaping is exercised.
    let top_c = "`anonymous namespace'::Render";
    let (sig_a, sig_b, sig_c) = (sig(top_a), sig(top_b), sig(top_c));

    // Heartbeats. Old build: o0-o2 grid, o3-o4 water; new build: n0, n1, n5
    // grid, n2-n4 water. Yesterday o0-o3 on the old build. Forty days ago
    // one more machine: outside every window.
    let mut reports = Vec::new();
    for (org, machine, build) in [
        ("grid", "o0", OLD),
        ("grid", "o1", OLD),
        ("grid", "o2", OLD),
        ("water", "o3", OLD),
        ("water", "o4", OLD),
        ("grid", "n0", NEW),
        ("grid", "n1", NEW),
        ("grid", "n5", NEW),
        ("water", "n2", NEW),
        ("water", "n3", NEW),
        ("water", "n4", NEW),
    ] {
        reports.push(heartbeat(d0, org, machine, build));
    }
    for (org, machine) in [
        ("grid", "o0"),
        ("grid", "o1"),
        ("grid", "o2"),
        ("water", "o3"),
    ] {
        reports.push(heartbeat(d1, org, machine, OLD));
    }
    let long_ago = d0 - time::Duration::days(40);
    reports.push(heartbeat(long_ago, "water", "o9", OLD));
    // Crashes. A: 1 machine on the old build, 3 on the new (a rate
    // increase); B: only on the new build (new); C: only on the old build,
    // one report delivered twice (a retry that reached Kafka twice).
    let nine = at(d0, "09:00:00");
    reports.push(crash(nine, "grid", "o0", OLD, top_a));
    reports.push(crash(nine, "grid", "n0", NEW, top_a));
    reports.push(crash(nine, "water", "n2", NEW, top_a));
    reports.push(crash(nine, "water", "n3", NEW, top_a));
    reports.push(crash(nine, "grid", "n1", NEW, top_b));
    reports.push(crash(at(d0, "09:30:00"), "water", "n3", NEW, top_b));
    reports.push(crash(nine, "water", "n4", NEW, top_b));
    reports.push(crash(nine, "water", "o3", OLD, top_c));
    let retried = crash(at(d1, "09:00:00"), "grid", "o1", OLD, top_c);
    reports.push(retried.clone());
    reports.push(retried);
    reports.push(crash(at(d1, "09:00:00"), "grid", "o2", OLD, top_c));
    // Feedback.
    reports.push(feedback(d0, "grid", "f0", OLD, 5, "update"));
    reports.push(feedback(d0, "grid", "f1", OLD, 4, "update"));
    reports.push(feedback(d1, "water", "f2", OLD, 2, "update"));
    reports.push(feedback(d0, "water", "f3", NEW, 1, "update"));
    reports.push(feedback(d0, "grid", "f4", NEW, 3, "shell.taskbar"));
    reports.push(feedback(d0, "grid", "f4", NEW, 4, "shell.taskbar"));
    // Feature requests: the founders of three clusters first, so that the
    // cluster ids are known; their paraphrases once the founders are stored.
    let noon = |second: u8| at(d0, &format!("12:00:{second:02}"));
    let (taskbar_zh, sm2_en, dark_en) = (
        "希望任务栏支持按项目分组窗口",
        "Support SM2 certificates for smart card login",
        "Dark mode for the taskbar",
    );
    reports.push(request(
        noon(1),
        "grid",
        "r0",
        taskbar_zh,
        None,
        "shell.taskbar",
        "zh-CN",
    ));
    reports.push(request(
        noon(4),
        "water",
        "r3",
        sm2_en,
        None,
        "security.login",
        "en",
    ));
    reports.push(request(
        noon(6),
        "grid",
        "r5",
        dark_en,
        None,
        "shell.taskbar",
        "en",
    ));
    produce(&env.reports_topic, &reports).await;

    // What the edge refused (and a duplicate, which is no refusal); one
    // event delivered twice.
    let ten = at(d0, "10:00:00");
    let limited = outcome(
        ten,
        Outcome::RateLimited,
        "rate_limited",
        Some("heartbeat/1"),
        Some("grid"),
        220,
        None,
    );
    let events = [
        outcome(
            ten,
            Outcome::Rejected,
            "invalid",
            Some("crash/1"),
            Some("grid"),
            2048,
            Some("payload.frames[2].offset"),
        ),
        outcome(
            ten,
            Outcome::Rejected,
            "invalid",
            Some("crash/1"),
            Some("grid"),
            1024,
            Some("payload.app.name"),
        ),
        outcome(
            ten,
            Outcome::Rejected,
            "unknown_token",
            None,
            None,
            300,
            None,
        ),
        outcome(
            ten,
            Outcome::Consent,
            "consent",
            Some("feature_request/1"),
            Some("water"),
            512,
            None,
        ),
        outcome(
            ten,
            Outcome::RateLimited,
            "rate_limited",
            Some("heartbeat/1"),
            Some("grid"),
            200,
            None,
        ),
        outcome(
            ten,
            Outcome::RateLimited,
            "rate_limited",
            Some("heartbeat/1"),
            Some("grid"),
            210,
            None,
        ),
        limited.clone(),
        limited,
        outcome(
            ten,
            Outcome::Duplicate,
            "duplicate",
            Some("crash/1"),
            Some("grid"),
            900,
            None,
        ),
        outcome(
            ten,
            Outcome::TooLarge,
            "too_large",
            None,
            Some("grid"),
            2_000_000,
            None,
        ),
    ];
    let events: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (
                e.event_id.to_string(),
                serde_json::to_vec(e).expect("encodes"),
            )
        })
        .collect();
    produce_raw(&env.outcomes_topic, &events).await;

    // Dead letters: two undecodable reports, a heartbeat whose day is no
    // date, an undecodable outcome.
    let mut bad_day = heartbeat(d0, "grid", "o0", OLD);
    bad_day.payload["day"] = json!("2026-02-30");
    let bad_day = serde_json::to_vec(&bad_day).expect("encodes");
    let bad_day_size = bad_day.len().to_string();
    produce_raw(
        &env.reports_topic,
        &[
            ("k1".to_string(), b"{not json".to_vec()),
            ("k2".to_string(), b"[]".to_vec()),
            ("o0".to_string(), bad_day),
        ],
    )
    .await;
    produce_raw(&env.outcomes_topic, &[("k3".to_string(), b"oops".to_vec())]).await;

    eventually("the founders and the rest stored", WAIT, || async {
        let counts = e2e::try_scalar(
            &store,
            "SELECT (SELECT count() FROM crash_reports) * 1000000 \
             + (SELECT count() FROM heartbeats) * 10000 \
             + (SELECT count() FROM feature_requests) * 100 + (SELECT count() FROM feedback)",
        )
        .await?;
        let side = e2e::try_scalar(
            &store,
            "SELECT (SELECT uniqExact(event_id) FROM outcomes) * 100 \
             + (SELECT count() FROM processing_errors)",
        )
        .await?;
        (counts == 10_16_03_06 && side == 9_04).then_some(())
    })
    .await;
    env.caught_up(WAIT).await;

    let paraphrases = [
        request(
            noon(2),
            "water",
            "r1",
            "任务栏能否按项目对窗口进行分组",
            None,
            "shell.taskbar",
            "zh-CN",
        ),
        request(
            noon(3),
            "grid",
            "r2",
            "建议任务栏可以按照项目分组显示窗口",
            Some("希望任务栏按项目分组窗口。"),
            "shell.windows",
            "zh-CN",
        ),
        request(
            noon(5),
            "water",
            "r4",
            "Support SM2 certificates for smart-card logon",
            None,
            "security.login",
            "en",
        ),
    ];
    produce(&env.reports_topic, &paraphrases).await;
    eventually("the paraphrases stored", WAIT, || async {
        (scalar(&store, "SELECT count() FROM feature_requests").await == 6).then_some(())
    })
    .await;
    env.caught_up(WAIT).await;

    // The scheduled regression job, once.
    let config = processor::config::AnalyticsConfig::default();
    let found = warehouse::analytics::run_regressions(&store, &config)
        .await
        .expect("regressions");
    assert_eq!(found.len(), 2, "{found:?}");
    let gv = found[0].grouping_version.to_string();

    // What each query must return for this data.
    let (d0s, d1s) = (d0.to_string(), d1.to_string());
    let taskbar = clustering::cluster_id_for(taskbar_zh).to_string();
    let sm2 = clustering::cluster_id_for(sm2_en).to_string();
    let (a, b, c) = (tsv(&sig_a), tsv(&sig_b), tsv(&sig_c));
    let reports_topic = tsv(&env.reports_topic);
    let outcomes_topic = tsv(&env.outcomes_topic);
    let mut expected: BTreeMap<&str, (BTreeMap<String, String>, Vec<String>)> = BTreeMap::new();
    let mut expect = |name, p: &[(&str, &str)], rows: Vec<String>| {
        expected.insert(name, (params(p), rows));
    };
    expect(
        "top_crash_signatures_for_build",
        &[("build", OLD), ("days", "7"), ("limit", "5")],
        vec![
            "grouping_version\tsignature\tmachines\treports\torganisations".into(),
            format!("{gv}\t{c}\t3\t3\t2"),
            format!("{gv}\t{a}\t1\t1\t1"),
        ],
    );
    expect(
        "new_signatures_in_latest_build",
        &[],
        vec![
            "build\tgrouping_version\tsignature\tmachines\treports\torganisations".into(),
            format!("{NEW}\t{gv}\t{b}\t3\t3\t2"),
        ],
    );
    expect(
        "crash_free_rate_by_build",
        &[("days", "7")],
        vec![
            "day\tos_build_full\tactive_machines\tcrashed_machines\tcrash_free".into(),
            format!("{d1s}\t{OLD}\t4\t2\t0.5"),
            format!("{d0s}\t{OLD}\t5\t2\t0.6"),
            format!("{d0s}\t{NEW}\t6\t5\t0.1667"),
        ],
    );
    expect(
        "regressions_between_builds",
        &[("from_build", OLD), ("to_build", NEW), ("days", "7")],
        vec![
            "grouping_version\tsignature\tfrom_machines\tfrom_active\tto_machines\tto_active\t\
             from_rate_per_1000\tto_rate_per_1000\tchange"
                .into(),
            format!("{gv}\t{b}\t0\t5\t3\t6\t0\t500\tnew"),
            format!("{gv}\t{a}\t1\t5\t3\t6\t200\t500\trate_increase"),
            format!("{gv}\t{c}\t3\t5\t0\t6\t600\t0\tgone"),
        ],
    );
    expect(
        "latest_regressions",
        &[],
        vec![
            "os_build_full\tprevious_build\tkind\tgrouping_version\tsignature\tmachines\t\
             active_machines\trate\tprevious_rate"
                .into(),
            format!("{NEW}\t{OLD}\tnew\t{gv}\t{b}\t3\t6\t500\t0"),
            format!("{NEW}\t{OLD}\trate_increase\t{gv}\t{a}\t3\t6\t500\t200"),
        ],
    );
    expect(
        "signature_spread",
        &[("signature", &sig_c), ("days", "7")],
        vec![
            "org_id\tos_build_full\tmachines\treports".into(),
            format!("grid\t{OLD}\t2\t2"),
            format!("water\t{OLD}\t1\t1"),
        ],
    );
    expect(
        "top_feature_request_clusters",
        &[("limit", "2")],
        vec![
            "cluster_id\ttitle\torganisations\trequests\tmachines\tfiled_under".into(),
            format!("{taskbar}\t{taskbar_zh}\t2\t3\t3\t['shell.taskbar','shell.windows']"),
            format!("{sm2}\t{sm2_en}\t1\t2\t2\t['security.login']"),
        ],
    );
    // Every request came today: each cluster is new this week, with
    // nothing in the four weeks before.
    let dark = clustering::cluster_id_for(dark_en).to_string();
    let monday = warehouse::report::week_start(d0).to_string();
    expect(
        "feature_request_trends",
        &[("week_of", &d0s), ("limit", "2")],
        vec![
            "cluster_id\ttitle\tweek_start\trequests_this_week\trequests_weekly_average\t\
             organisations_this_week\torganisations_weekly_average\tfirst_seen\tnew_this_week"
                .into(),
            format!("{taskbar}\t{taskbar_zh}\t{monday}\t3\t0\t2\t0\t{d0s} 12:00:01\t1"),
            format!("{sm2}\t{sm2_en}\t{monday}\t2\t0\t1\t0\t{d0s} 12:00:04\t1"),
        ],
    );
    expect(
        "new_feature_request_clusters",
        &[("week_of", &d0s)],
        vec![
            "cluster_id\ttitle\tlanguages\tfirst_seen\trequests_this_week\t\
             organisations_this_week\tmachines_this_week"
                .into(),
            format!("{taskbar}\t{taskbar_zh}\t['zh']\t{d0s} 12:00:01\t3\t2\t3"),
            format!("{sm2}\t{sm2_en}\t['en']\t{d0s} 12:00:04\t2\t1\t2"),
            format!("{dark}\t{dark_en}\t['en']\t{d0s} 12:00:06\t1\t1\t1"),
        ],
    );
    expect(
        "top_feature_request_clusters_by_category",
        &[("days", "7"), ("per_category", "1")],
        vec![
            "category\tcluster_id\tfirst_title\torganisations\trequests\tmachines".into(),
            format!("security.login\t{sm2}\t{sm2_en}\t1\t2\t2"),
            format!("shell.taskbar\t{taskbar}\t{taskbar_zh}\t2\t2\t2"),
            format!("shell.windows\t{taskbar}\t建议任务栏可以按照项目分组显示窗口\t1\t1\t1"),
        ],
    );
    expect(
        "cluster_requests",
        &[("cluster_id", &taskbar)],
        vec![
            "received_at\torg_id\tcategory\tlanguage\ttitle\tbody".into(),
            format!("{d0s} 12:00:01\tgrid\tshell.taskbar\tzh-CN\t{taskbar_zh}\t"),
            format!(
                "{d0s} 12:00:02\twater\tshell.taskbar\tzh-CN\t任务栏能否按项目对窗口进行分组\t"
            ),
            format!(
                "{d0s} 12:00:03\tgrid\tshell.windows\tzh-CN\t建议任务栏可以按照项目分组显示窗口\t\
                 希望任务栏按项目分组窗口。"
            ),
        ],
    );
    expect(
        "feedback_by_category_and_build",
        &[("days", "7")],
        vec![
            "category\tos_build_full\tratings\taverage_rating\trated_1\trated_2\trated_3\t\
             rated_4\trated_5\tmachines\torganisations"
                .into(),
            format!("shell.taskbar\t{NEW}\t2\t3.5\t0\t0\t1\t1\t0\t1\t1"),
            format!("update\t{OLD}\t3\t3.67\t0\t1\t0\t1\t1\t3\t2"),
            format!("update\t{NEW}\t1\t1\t1\t0\t0\t0\t0\t1\t1"),
        ],
    );
    expect(
        "refused_reports",
        &[("days", "7")],
        vec![
            "outcome\treason\tschema\torg_id\trefused\tlargest_bytes\tfields".into(),
            "rate_limited\trate_limited\theartbeat/1\tgrid\t3\t220\t[]".into(),
            "rejected\tinvalid\tcrash/1\tgrid\t2\t2048\t\
             ['payload.app.name','payload.frames[2].offset']"
                .into(),
            "consent\tconsent\tfeature_request/1\twater\t1\t512\t[]".into(),
            "rejected\tunknown_token\t\t\t1\t300\t[]".into(),
            "too_large\ttoo_large\t\tgrid\t1\t2000000\t[]".into(),
        ],
    );
    expect(
        "dead_letters_by_reason",
        &[("days", "7")],
        vec![
            "stage\treason\tmessages\tlargest_bytes\ttopics".into(),
            format!("decode\tundecodable_report\t2\t9\t['{reports_topic}']"),
            format!("decode\tundecodable_outcome\t1\t4\t['{outcomes_topic}']"),
            format!("place\tinvalid_heartbeat_day\t1\t{bad_day_size}\t['{reports_topic}']"),
        ],
    );
    expect(
        "ingestion_volume_per_org_per_day",
        &[("days", "7")],
        vec![
            "day\torg_id\tcrashes\tfeature_requests\tfeedback_reports\theartbeats\treports".into(),
            format!("{d1s}\tgrid\t2\t0\t0\t3\t5"),
            format!("{d1s}\twater\t0\t0\t1\t1\t2"),
            format!("{d0s}\tgrid\t3\t3\t4\t6\t16"),
            format!("{d0s}\twater\t5\t3\t1\t5\t14"),
        ],
    );

    // Compared before anything can panic, so that the test's topics and
    // database are removed whatever the result.
    let mut failures = Vec::new();
    let names: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !expected.contains_key(**n))
        .collect();
    if !missing.is_empty() {
        failures.push(format!("query files without expected rows: {missing:?}"));
    }
    let stale: Vec<&&str> = expected.keys().filter(|n| !names.contains(**n)).collect();
    if !stale.is_empty() {
        failures.push(format!(
            "expected rows for queries that do not exist: {stale:?}"
        ));
    }
    let http = reqwest::Client::new();
    for file in &files {
        let Some((values, rows)) = expected.get(file.name.as_str()) else {
            continue;
        };
        let test_params: BTreeSet<&String> = values.keys().collect();
        let declared: BTreeSet<&String> = file.params.keys().collect();
        if test_params != declared {
            failures.push(format!(
                "{}: the test gives {test_params:?}, the file declares {declared:?}",
                file.name
            ));
            continue;
        }
        let sql = match substitute(&file.sql, values) {
            Ok(sql) => sql,
            Err(error) => {
                failures.push(format!("{}: {error}", file.name));
                continue;
            }
        };
        match run(&http, &env.database, &sql).await {
            Ok(got) if &got == rows => {}
            Ok(got) => failures.push(format!(
                "{}: got\n{}\nexpected\n{}",
                file.name,
                got.join("\n"),
                rows.join("\n")
            )),
            Err(error) => failures.push(format!("{}: {error}", file.name)),
        }
    }

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
