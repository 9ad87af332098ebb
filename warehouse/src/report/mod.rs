//! The roadmap report: one self-contained HTML file (inline CSS and SVG, no
//! scripts, no fonts or images from elsewhere) and the same tables as CSV,
//! for the people who set the roadmap.
//!
//! In: the ClickHouse views over the last `days` days. Out: `report.html`
//! with crash-free rate by build, the top signatures with their daily
//! trend, the regressions of the newest build, the top feature-request
//! clusters by organisations (merged clusters counted as one), each with
//! its representative title per language, example wordings and its trend,
//! the clusters new this week, and feedback by category; and one CSV per
//! table beside it.
//!
//! The trend compares one ISO week (Monday 00:00 UTC to the next Monday;
//! the week holding the report's date, so far) with the weekly average of
//! the four weeks before it, in requests and in distinct organisations. A
//! cluster is new that week when its first request ever (of any id merged
//! into it) falls in it. Both come from the cookbook's
//! `feature_request_trends`, so the report and the analysts' query give the
//! same numbers.

mod html;

use std::path::{Path, PathBuf};

use clickhouse::Row;
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use processor::{Store, StoreError};

use crate::cookbook::{Cookbook, CookbookError};

/// Every query the report runs, by name; `?` marks a bound value. Listed so
/// that a check runs each on current ClickHouse (`tests/python/test_chdb.py`,
/// through `cargo run -p warehouse --example report_sql`).
pub const QUERIES: &[(&str, &str)] = &[
    ("builds", BUILDS_SQL),
    ("top_signatures", TOP_SIGNATURES_SQL),
    ("daily", DAILY_SQL),
    ("regressions", REGRESSIONS_SQL),
    ("clusters", CLUSTERS_SQL),
    ("feedback", FEEDBACK_SQL),
];

const BUILDS_SQL: &str = "SELECT os_build_full, build_key, uniqExactMerge(active) AS active_machines, \
             uniqExactMerge(crashed) AS crashed_machines \
             FROM machine_days_agg WHERE day >= today() - ? \
             GROUP BY os_build_full, build_key ORDER BY build_key, os_build_full";
const TOP_SIGNATURES_SQL: &str = "SELECT signature, uniqExactMerge(reports) AS reports, \
             uniqExactMerge(machines) AS machines, uniqExactMerge(organisations) AS organisations \
             FROM crash_daily_agg WHERE day >= today() - ? AND grouping_version = ? \
             GROUP BY signature ORDER BY machines DESC, reports DESC, signature LIMIT ?";
const DAILY_SQL: &str = "SELECT signature, toUInt32(today() - day) AS age, uniqExactMerge(reports) AS reports \
             FROM crash_daily_agg WHERE day >= today() - ? AND grouping_version = ? \
             GROUP BY signature, day";
const REGRESSIONS_SQL: &str = "SELECT os_build_full, previous_build, signature, kind, machines, rate_per_1000, \
             previous_rate_per_1000 FROM crash_regressions \
             WHERE build_key = (SELECT max(build_key) FROM crash_regressions) \
             ORDER BY kind, machines DESC, signature";
const CLUSTERS_SQL: &str = "SELECT cluster_id, organisations, machines, requests, examples, \
             languages, titles, language_requests \
             FROM (SELECT cluster AS cluster_id, uniqExact(org_id) AS organisations, \
                   uniqExact(machine_hash) AS machines, count() AS requests, \
                   arraySlice(arraySort(groupUniqArray(title)), 1, 3) AS examples \
                   FROM feature_request_members WHERE received_at >= now() - ? * 86400 \
                   GROUP BY cluster_id \
                   ORDER BY organisations DESC, machines DESC, requests DESC, cluster_id LIMIT ?) \
             AS ranked \
             ANY LEFT JOIN (SELECT cluster_id, groupArray(language) AS languages, \
                   groupArray(title) AS titles, groupArray(requests) AS language_requests \
                   FROM feature_request_cluster_titles GROUP BY cluster_id) AS named \
             USING (cluster_id) \
             ORDER BY organisations DESC, machines DESC, requests DESC, cluster_id";
const FEEDBACK_SQL: &str = "SELECT category, n AS ratings, weighted / n AS average_rating FROM \
             (SELECT category, sum(ratings) AS n, \
              sum(rated_1) + 2 * sum(rated_2) + 3 * sum(rated_3) + 4 * sum(rated_4) \
              + 5 * sum(rated_5) AS weighted \
              FROM feedback_daily WHERE day >= today() - ? GROUP BY category) \
             ORDER BY ratings DESC, category";

/// Crash-free rate of one build over the period.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct BuildHealth {
    pub os_build_full: String,
    pub build_key: u64,
    pub active_machines: u64,
    pub crashed_machines: u64,
}

impl BuildHealth {
    pub fn crash_free_rate(&self) -> f64 {
        if self.active_machines == 0 {
            1.0
        } else {
            1.0 - self.crashed_machines as f64 / self.active_machines as f64
        }
    }
}

/// A top signature, with reports per day over the period (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct TopSignature {
    pub signature: String,
    pub reports: u64,
    pub machines: u64,
    pub organisations: u64,
    pub daily: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct RegressionRow {
    pub os_build_full: String,
    pub previous_build: String,
    pub signature: String,
    pub kind: String,
    pub machines: u64,
    pub rate_per_1000: f64,
    pub previous_rate_per_1000: f64,
}

/// A cluster's requests and organisations in the report's week, against
/// the weekly average of the four weeks before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trend {
    pub requests_this_week: u64,
    pub requests_weekly_average: f64,
    pub organisations_this_week: u64,
    pub organisations_weekly_average: f64,
    /// Its first request ever falls in the report's week.
    pub new_this_week: bool,
}

impl Trend {
    /// `new`, `up`, `down` or `flat`: requests this week against the
    /// weekly average before.
    pub fn direction(&self) -> &'static str {
        let now = self.requests_this_week as f64;
        if self.new_this_week {
            "new"
        } else if now > self.requests_weekly_average {
            "up"
        } else if now < self.requests_weekly_average {
            "down"
        } else {
            "flat"
        }
    }
}

/// A cluster whose first request falls in the report's week.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCluster {
    pub cluster_id: u64,
    /// The representative title of its main language.
    pub title: String,
    pub requests_this_week: u64,
    pub organisations_this_week: u64,
}

/// One cluster of feature requests as it stands after merges
/// (`feature_request_members`), counted over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    pub cluster_id: u64,
    /// The representative title in each language present (the most central
    /// request in it; `feature_request_cluster_titles`), the language with
    /// the most requests first. `""` is a language nobody named.
    pub titles: Vec<(String, String)>,
    pub organisations: u64,
    pub machines: u64,
    pub requests: u64,
    pub examples: Vec<String>,
    /// Over the report's week, not the period.
    pub trend: Trend,
}

impl ClusterRow {
    /// The title in the cluster's main language.
    pub fn title(&self) -> &str {
        self.titles.first().map_or("", |(_, title)| title)
    }

    /// `zh: 标题 | en: title`.
    pub fn titles_line(&self) -> String {
        let shown: Vec<String> = self
            .titles
            .iter()
            .map(|(language, title)| {
                let language = if language.is_empty() { "?" } else { language };
                format!("{language}: {title}")
            })
            .collect();
        shown.join(" | ")
    }
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct FeedbackRow {
    pub category: String,
    pub ratings: u64,
    pub average_rating: f64,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub generated_at: OffsetDateTime,
    pub days: u32,
    /// The Monday the report's ISO week starts on (UTC).
    pub week_start: Date,
    pub builds: Vec<BuildHealth>,
    pub signatures: Vec<TopSignature>,
    pub regressions: Vec<RegressionRow>,
    pub clusters: Vec<ClusterRow>,
    /// Clusters new in the report's week, by organisations asking.
    pub new_clusters: Vec<NewCluster>,
    pub feedback: Vec<FeedbackRow>,
}

/// Why the report could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the cookbook's trend query: {0}")]
    Cookbook(#[from] CookbookError),
}

impl From<clickhouse::error::Error> for ReportError {
    fn from(error: clickhouse::error::Error) -> Self {
        ReportError::Store(error.into())
    }
}

/// `30d` → 30. Days are the only unit: the tables are daily.
pub fn parse_since(text: &str) -> Option<u32> {
    let days: u32 = text.strip_suffix('d')?.parse().ok()?;
    (days > 0).then_some(days)
}

const TOP: usize = 10;

/// The Monday of `day`'s ISO week.
pub fn week_start(day: Date) -> Date {
    day - time::Duration::days(i64::from(day.weekday().number_days_from_monday()))
}

/// The cookbook's trend query for the ISO week holding `week_of`, every
/// cluster active in those five weeks, selecting what the report shows.
pub fn trends_sql(week_of: Date) -> Result<String, CookbookError> {
    let values = [
        ("week_of".to_string(), week_of.to_string()),
        ("limit".to_string(), u32::MAX.to_string()),
    ];
    let sql = Cookbook::built_in()
        .query("feature_request_trends")?
        .bind(&values.into_iter().collect())?;
    Ok(format!(
        "SELECT cluster_id, title, requests_this_week, requests_weekly_average, \
         organisations_this_week, organisations_weekly_average, new_this_week FROM ({sql}\n) AS trends"
    ))
}

/// Queries everything the report shows, over the last `days` days, with
/// the trend of the current ISO week.
pub async fn gather(store: &Store, days: u32) -> Result<Report, ReportError> {
    gather_for_week(store, days, OffsetDateTime::now_utc().date()).await
}

/// Queries everything the report shows, over the last `days` days, with
/// the trend of the ISO week holding `week_of`.
pub async fn gather_for_week(
    store: &Store,
    days: u32,
    week_of: Date,
) -> Result<Report, ReportError> {
    let client = store.client();
    let builds: Vec<BuildHealth> = client.query(BUILDS_SQL).bind(days).fetch_all().await?;

    #[derive(Row, Deserialize)]
    struct Top {
        signature: String,
        reports: u64,
        machines: u64,
        organisations: u64,
    }
    let top: Vec<Top> = client
        .query(TOP_SIGNATURES_SQL)
        .bind(days)
        .bind(grouping::GROUPING_VERSION)
        .bind(TOP as u64)
        .fetch_all()
        .await?;
    #[derive(Row, Deserialize)]
    struct Daily {
        signature: String,
        age: u32,
        reports: u64,
    }
    let daily: Vec<Daily> = client
        .query(DAILY_SQL)
        .bind(days)
        .bind(grouping::GROUPING_VERSION)
        .fetch_all()
        .await?;
    let signatures = top
        .into_iter()
        .map(|t| {
            let mut series = vec![0u64; days as usize + 1];
            for d in daily.iter().filter(|d| d.signature == t.signature) {
                let slot = days.saturating_sub(d.age) as usize;
                if let Some(cell) = series.get_mut(slot) {
                    *cell += d.reports;
                }
            }
            TopSignature {
                signature: t.signature,
                reports: t.reports,
                machines: t.machines,
                organisations: t.organisations,
                daily: series,
            }
        })
        .collect();

    let regressions: Vec<RegressionRow> = client.query(REGRESSIONS_SQL).fetch_all().await?;

    #[derive(Row, Deserialize)]
    struct Cluster {
        cluster_id: u64,
        organisations: u64,
        machines: u64,
        requests: u64,
        examples: Vec<String>,
        languages: Vec<String>,
        titles: Vec<String>,
        language_requests: Vec<u64>,
    }
    let clusters: Vec<Cluster> = client
        .query(CLUSTERS_SQL)
        .bind(days)
        .bind(TOP as u64)
        .fetch_all()
        .await?;

    #[derive(Row, Deserialize)]
    struct TrendRow {
        cluster_id: u64,
        title: String,
        requests_this_week: u64,
        requests_weekly_average: f64,
        organisations_this_week: u64,
        organisations_weekly_average: f64,
        new_this_week: u8,
    }
    let trends: Vec<TrendRow> = client.query(&trends_sql(week_of)?).fetch_all().await?;
    let trend_of = |cluster_id: u64| {
        trends
            .iter()
            .find(|t| t.cluster_id == cluster_id)
            .map(|t| Trend {
                requests_this_week: t.requests_this_week,
                requests_weekly_average: t.requests_weekly_average,
                organisations_this_week: t.organisations_this_week,
                organisations_weekly_average: t.organisations_weekly_average,
                new_this_week: t.new_this_week == 1,
            })
            .unwrap_or_default()
    };
    let new_clusters = trends
        .iter()
        .filter(|t| t.new_this_week == 1)
        .take(TOP)
        .map(|t| NewCluster {
            cluster_id: t.cluster_id,
            title: t.title.clone(),
            requests_this_week: t.requests_this_week,
            organisations_this_week: t.organisations_this_week,
        })
        .collect();
    let clusters = clusters
        .into_iter()
        .map(|c| {
            let mut titles: Vec<(u64, String, String)> = c
                .language_requests
                .into_iter()
                .zip(c.languages)
                .zip(c.titles)
                .map(|((n, language), title)| (n, language, title))
                .collect();
            titles.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            ClusterRow {
                cluster_id: c.cluster_id,
                titles: titles.into_iter().map(|(_, l, t)| (l, t)).collect(),
                organisations: c.organisations,
                machines: c.machines,
                requests: c.requests,
                examples: c.examples,
                trend: trend_of(c.cluster_id),
            }
        })
        .collect();

    let feedback: Vec<FeedbackRow> = client.query(FEEDBACK_SQL).bind(days).fetch_all().await?;

    Ok(Report {
        generated_at: OffsetDateTime::now_utc(),
        days,
        week_start: week_start(week_of),
        builds,
        signatures,
        regressions,
        clusters,
        new_clusters,
        feedback,
    })
}

/// Writes `out` (HTML) and, beside it, `<stem>-<table>.csv` for each table;
/// returns every path written.
pub fn write(report: &Report, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = vec![out.to_path_buf()];
    std::fs::write(out, html::render(report))?;
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report")
        .to_string();
    let dir = out.parent().unwrap_or(Path::new("."));
    for (name, text) in csv_tables(report) {
        let path = dir.join(format!("{stem}-{name}.csv"));
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Each table of the report as CSV (RFC 4180 quoting).
pub(crate) fn csv_tables(report: &Report) -> Vec<(&'static str, String)> {
    let mut builds = String::from("build,active_machines,crashed_machines,crash_free_rate\n");
    for b in &report.builds {
        builds.push_str(&csv_line(&[
            b.os_build_full.clone(),
            b.active_machines.to_string(),
            b.crashed_machines.to_string(),
            format!("{:.4}", b.crash_free_rate()),
        ]));
    }
    let mut signatures = String::from("signature,reports,machines,organisations,daily_reports\n");
    for s in &report.signatures {
        let daily: Vec<String> = s.daily.iter().map(u64::to_string).collect();
        signatures.push_str(&csv_line(&[
            s.signature.clone(),
            s.reports.to_string(),
            s.machines.to_string(),
            s.organisations.to_string(),
            daily.join(" "),
        ]));
    }
    let mut regressions = String::from(
        "build,previous_build,signature,kind,machines,rate_per_1000,previous_rate_per_1000\n",
    );
    for r in &report.regressions {
        regressions.push_str(&csv_line(&[
            r.os_build_full.clone(),
            r.previous_build.clone(),
            r.signature.clone(),
            r.kind.clone(),
            r.machines.to_string(),
            format!("{:.2}", r.rate_per_1000),
            format!("{:.2}", r.previous_rate_per_1000),
        ]));
    }
    let mut clusters = String::from(
        "cluster_id,title,titles_by_language,organisations,machines,requests,examples,\
         week_start,requests_this_week,requests_weekly_average,organisations_this_week,\
         organisations_weekly_average,trend\n",
    );
    for c in &report.clusters {
        clusters.push_str(&csv_line(&[
            c.cluster_id.to_string(),
            c.title().to_string(),
            c.titles_line(),
            c.organisations.to_string(),
            c.machines.to_string(),
            c.requests.to_string(),
            c.examples.join(" | "),
            report.week_start.to_string(),
            c.trend.requests_this_week.to_string(),
            format!("{:.2}", c.trend.requests_weekly_average),
            c.trend.organisations_this_week.to_string(),
            format!("{:.2}", c.trend.organisations_weekly_average),
            c.trend.direction().to_string(),
        ]));
    }
    let mut new_clusters =
        String::from("week_start,cluster_id,title,requests_this_week,organisations_this_week\n");
    for c in &report.new_clusters {
        new_clusters.push_str(&csv_line(&[
            report.week_start.to_string(),
            c.cluster_id.to_string(),
            c.title.clone(),
            c.requests_this_week.to_string(),
            c.organisations_this_week.to_string(),
        ]));
    }
    let mut feedback = String::from("category,ratings,average_rating\n");
    for f in &report.feedback {
        feedback.push_str(&csv_line(&[
            f.category.clone(),
            f.ratings.to_string(),
            format!("{:.2}", f.average_rating),
        ]));
    }
    vec![
        ("crash_free", builds),
        ("signatures", signatures),
        ("regressions", regressions),
        ("clusters", clusters),
        ("new_clusters", new_clusters),
        ("feedback", feedback),
    ]
}

/// One CSV row. A text cell that a spreadsheet would take for a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return; request
/// titles come from machines) is prefixed with `'`, so that it stays text;
/// numbers are left as they are.
fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            let formula =
                f.starts_with(['=', '+', '-', '@', '\t', '\r']) && f.parse::<f64>().is_err();
            let f = if formula { format!("'{f}") } else { f.clone() };
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Report {
        Report {
            generated_at: OffsetDateTime::UNIX_EPOCH,
            days: 3,
            week_start: time::macros::date!(2026 - 11 - 30),
            builds: vec![
                BuildHealth {
                    os_build_full: "10.0.19045.3570".into(),
                    build_key: 1,
                    active_machines: 10,
                    crashed_machines: 2,
                },
                BuildHealth {
                    os_build_full: "10.0.19045.4046".into(),
                    build_key: 2,
                    active_machines: 10,
                    crashed_machines: 9,
                },
            ],
            signatures: vec![TopSignature {
                signature: "shell32.dll!CDefView::WndProc | user32.dll!<Dispatch>".into(),
                reports: 8,
                machines: 8,
                organisations: 2,
                daily: vec![0, 2, 6, 0],
            }],
            regressions: vec![RegressionRow {
                os_build_full: "10.0.19045.4046".into(),
                previous_build: "10.0.19045.3570".into(),
                signature: "ntdll.dll!RtlpFreeHeap".into(),
                kind: "new".into(),
                machines: 3,
                rate_per_1000: 300.0,
                previous_rate_per_1000: 0.0,
            }],
            clusters: vec![ClusterRow {
                cluster_id: 42,
                titles: vec![
                    ("zh".into(), "希望任务栏支持按项目分组窗口".into()),
                    ("en".into(), "Group taskbar windows by project".into()),
                ],
                organisations: 2,
                machines: 3,
                requests: 3,
                examples: vec![
                    "任务栏能否按项目对窗口进行分组".into(),
                    "a, \"quoted\" one".into(),
                ],
                trend: Trend {
                    requests_this_week: 2,
                    requests_weekly_average: 0.25,
                    organisations_this_week: 2,
                    organisations_weekly_average: 0.25,
                    new_this_week: false,
                },
            }],
            new_clusters: vec![NewCluster {
                cluster_id: 77,
                title: "=Dark mode, please".into(),
                requests_this_week: 1,
                organisations_this_week: 1,
            }],
            feedback: vec![FeedbackRow {
                category: "update".into(),
                ratings: 3,
                average_rating: 11.0 / 3.0,
            }],
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        use time::macros::date;
        assert_eq!(week_start(date!(2026 - 11 - 30)), date!(2026 - 11 - 30));
        assert_eq!(week_start(date!(2026 - 12 - 06)), date!(2026 - 11 - 30));
        assert_eq!(week_start(date!(2027 - 01 - 01)), date!(2026 - 12 - 28));
    }

    #[test]
    fn the_trend_query_is_the_cookbook_s_for_the_week() {
        let sql = trends_sql(time::macros::date!(2026 - 12 - 02)).expect("binds");
        assert!(sql.contains("toMonday(toDate('2026-12-02'))"), "{sql}");
        assert!(
            !sql.contains('?') && !sql.contains("{week_of"),
            "nothing left to bind"
        );
    }

    #[test]
    fn trends_read_as_directions() {
        let trend = |now, before, new_this_week| Trend {
            requests_this_week: now,
            requests_weekly_average: before,
            new_this_week,
            ..Trend::default()
        };
        assert_eq!(trend(3, 0.75, false).direction(), "up");
        assert_eq!(trend(0, 0.25, false).direction(), "down");
        assert_eq!(trend(1, 1.0, false).direction(), "flat");
        assert_eq!(trend(1, 0.0, true).direction(), "new");
    }

    #[test]
    fn since_takes_days_only() {
        assert_eq!(parse_since("30d"), Some(30));
        assert_eq!(parse_since("0d"), None);
        assert_eq!(parse_since("30"), None);
        assert_eq!(parse_since("2w"), None);
    }

    #[test]
    fn csv_cells_that_look_like_formulas_stay_text() {
        let line =
            |cells: &[&str]| csv_line(&cells.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        assert_eq!(
            line(&["=HYPERLINK(\"http://x\",\"y\")", "+1", "@SUM(A1)", "-2+3"]),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",+1,'@SUM(A1),'-2+3\n"
        );
        assert_eq!(line(&["\tcmd", "-0.5", "plain"]), "'\tcmd,-0.5,plain\n");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let tables = csv_tables(&sample());
        let clusters = &tables
            .iter()
            .find(|(n, _)| *n == "clusters")
            .expect("clusters")
            .1;
        assert!(clusters.contains("\"任务栏能否按项目对窗口进行分组 | a, \"\"quoted\"\" one\""));
        assert!(clusters.contains(
            "42,希望任务栏支持按项目分组窗口,zh: 希望任务栏支持按项目分组窗口 | en: Group taskbar windows by project,2,3,3,"
        ));
        assert!(
            clusters.ends_with(",2026-11-30,2,0.25,2,0.25,up\n"),
            "{clusters}"
        );
        let new = &tables
            .iter()
            .find(|(n, _)| *n == "new_clusters")
            .expect("new clusters")
            .1;
        assert_eq!(
            new.lines().nth(1),
            Some("2026-11-30,77,\"'=Dark mode, please\",1,1")
        );
        let builds = &tables
            .iter()
            .find(|(n, _)| *n == "crash_free")
            .expect("builds")
            .1;
        assert_eq!(builds.lines().nth(1), Some("10.0.19045.3570,10,2,0.8000"));
    }
}
