//! The report as one HTML page: inline CSS, charts as inline SVG, no
//! scripts, nothing fetched from anywhere.

use std::fmt::Write;

use super::{Report, TopSignature};

/// Escapes text for HTML element content and quoted attribute values
/// (`& < > " '`).
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

const STYLE: &str = "body{font-family:system-ui,\"Microsoft YaHei\",\"PingFang SC\",\"Noto Sans CJK SC\",sans-serif;margin:2rem auto;max-width:72rem;color:#1d2330;padding:0 1rem}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d5d9e0;padding-bottom:.3rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem;margin-top:.6rem}\
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e6e9ee;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.sig{font-family:ui-monospace,monospace;font-size:.8rem;word-break:break-all}\
.lang{color:#5b6472;font-size:.75rem;margin-right:.3rem}\
.kind{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-size:.8rem;background:#fde2e1;color:#8a1c17}\
.kind.new{background:#e1ecfd;color:#173f8a}.kind.up{background:#fde2e1;color:#8a1c17}\
.kind.down,.kind.flat{background:#eceef2;color:#3d4452}.empty{color:#6b7385;font-style:italic}\
.muted{color:#6b7385;font-size:.85rem}svg text{font-family:system-ui,sans-serif}";

pub(crate) fn render(report: &Report) -> String {
    let mut page = String::new();
    let generated = report
        .generated_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Roadmap report</title><style>{STYLE}</style></head><body>\
         <h1>Roadmap report</h1>\
         <p class=\"muted\">Last {} days, generated {} (UTC). Counts are distinct reports, machines \
         and organisations; builds are in version order. Feature-request trends: the ISO week \
         from Monday {} (UTC) against the weekly average of the four weeks before.</p>",
        report.days,
        escape(&generated),
        report.week_start
    );
    crash_free(&mut page, report);
    signatures(&mut page, &report.signatures);
    regressions(&mut page, report);
    clusters(&mut page, report);
    new_clusters(&mut page, report);
    feedback(&mut page, report);
    page.push_str("</body></html>\n");
    page
}

fn empty(page: &mut String, what: &str) {
    let _ = write!(page, "<p class=\"empty\">No {what} in this period.</p>");
}

/// A vertical bar chart: one bar per (label, value in 0..=max).
fn bar_chart(
    page: &mut String,
    id: &str,
    title: &str,
    bars: &[(String, f64)],
    max: f64,
    unit: &str,
) {
    let (width, height, left, bottom) = (720.0, 200.0, 48.0, 40.0);
    let plot_h = height - bottom - 16.0;
    let slot = ((width - left - 8.0) / bars.len().max(1) as f64).min(120.0);
    let _ = write!(
        page,
        "<svg id=\"{id}\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {height}\" width=\"100%\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        escape(title),
        escape(title)
    );
    for tick in 0..=4 {
        let value = max * f64::from(tick) / 4.0;
        let y = 16.0 + plot_h - plot_h * f64::from(tick) / 4.0;
        let _ = write!(
            page,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6e9ee\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#6b7385\">{}{}</text>",
            width - 8.0,
            left - 6.0,
            y + 4.0,
            tick_label(value),
            escape(unit)
        );
    }
    for (i, (label, value)) in bars.iter().enumerate() {
        let h = if max > 0.0 {
            plot_h * (value / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let x = left + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let y = 16.0 + plot_h - h;
        let _ = write!(
            page,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#3c6fd1\">\
             <title>{}: {value:.1}{}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            escape(label),
            escape(unit),
            x + w / 2.0,
            height - bottom + 16.0,
            escape(label)
        );
    }
    page.push_str("</svg>");
}

/// `25` → "25", `2.5` → "2.5": whole numbers without decimals.
fn tick_label(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn crash_free(page: &mut String, report: &Report) {
    page.push_str("<h2 id=\"crash-free\">Crash-free rate by build</h2>");
    if report.builds.is_empty() {
        return empty(page, "active machines");
    }
    let bars: Vec<(String, f64)> = report
        .builds
        .iter()
        .map(|b| (b.os_build_full.clone(), b.crash_free_rate() * 100.0))
        .collect();
    bar_chart(
        page,
        "chart-crash-free",
        "Crash-free machines per build, percent",
        &bars,
        100.0,
        "%",
    );
    page.push_str(
        "<table id=\"table-crash-free\"><tr><th>Build</th><th class=\"n\">Active machines</th>\
         <th class=\"n\">Machines that crashed</th><th class=\"n\">Crash-free</th></tr>",
    );
    for b in &report.builds {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td></tr>",
            escape(&b.os_build_full),
            b.active_machines,
            b.crashed_machines,
            b.crash_free_rate() * 100.0
        );
    }
    page.push_str("</table>");
}

/// A small line of reports per day.
fn sparkline(page: &mut String, daily: &[u64]) {
    let (width, height) = (120.0, 28.0);
    let max = daily.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = width / (daily.len().max(2) - 1) as f64;
    let points: Vec<String> = daily
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                step * i as f64,
                height - 2.0 - (height - 4.0) * (*v as f64 / max)
            )
        })
        .collect();
    let _ = write!(
        page,
        "<svg class=\"trend\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>reports per day</title>\
         <polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    );
}

fn signatures(page: &mut String, top: &[TopSignature]) {
    page.push_str("<h2 id=\"signatures\">Top crash signatures</h2>");
    if top.is_empty() {
        return empty(page, "crashes");
    }
    page.push_str(
        "<table id=\"table-signatures\"><tr><th>Signature</th><th class=\"n\">Machines</th>\
         <th class=\"n\">Reports</th><th class=\"n\">Organisations</th><th>Trend (reports per day)</th></tr>",
    );
    for s in top {
        let _ = write!(
            page,
            "<tr><td class=\"sig\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
            escape(&s.signature),
            s.machines,
            s.reports,
            s.organisations
        );
        sparkline(page, &s.daily);
        page.push_str("</td></tr>");
    }
    page.push_str("</table>");
}

fn regressions(page: &mut String, report: &Report) {
    page.push_str("<h2 id=\"regressions\">Regressions in the newest build</h2>");
    let Some(first) = report.regressions.first() else {
        return empty(page, "regressions");
    };
    let _ = write!(
        page,
        "<p class=\"muted\">Build {} against {}.</p><table id=\"table-regressions\"><tr><th>Kind</th>\
         <th>Signature</th><th class=\"n\">Machines</th><th class=\"n\">Per 1,000 active</th>\
         <th class=\"n\">Before</th></tr>",
        escape(&first.os_build_full),
        escape(if first.previous_build.is_empty() {
            "nothing"
        } else {
            &first.previous_build
        })
    );
    for r in &report.regressions {
        let label = if r.kind == "new" { "new" } else { "rate up" };
        let _ = write!(
            page,
            "<tr><td><span class=\"kind {}\">{label}</span></td><td class=\"sig\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td></tr>",
            escape(&r.kind),
            escape(&r.signature),
            r.machines,
            r.rate_per_1000,
            r.previous_rate_per_1000
        );
    }
    page.push_str("</table>");
}

fn clusters(page: &mut String, report: &Report) {
    page.push_str("<h2 id=\"clusters\">Most requested, by organisations asking</h2>");
    if report.clusters.is_empty() {
        return empty(page, "feature requests");
    }
    let bars: Vec<(String, f64)> = report
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("#{}", i + 1), c.organisations as f64))
        .collect();
    // A whole number of organisations per tick.
    let max = (bars.iter().map(|b| b.1).fold(1.0, f64::max) / 4.0).ceil() * 4.0;
    bar_chart(
        page,
        "chart-clusters",
        "Organisations asking, per request cluster",
        &bars,
        max,
        "",
    );
    page.push_str(
        "<table id=\"table-clusters\"><tr><th>#</th><th>Request, per language</th><th class=\"n\">Organisations</th>\
         <th class=\"n\">Machines</th><th class=\"n\">Requests</th><th class=\"n\">This week</th>\
         <th class=\"n\">Weekly average, 4 weeks before</th><th class=\"n\">Organisations this week</th>\
         <th>Trend</th><th>Also worded as</th></tr>",
    );
    for (i, c) in report.clusters.iter().enumerate() {
        let examples: Vec<String> = c.examples.iter().map(|e| escape(e).into_owned()).collect();
        let titles: Vec<String> = c
            .titles
            .iter()
            .map(|(language, title)| {
                let language = if language.is_empty() { "?" } else { language };
                format!(
                    "<span class=\"lang\">{}</span> {}",
                    escape(language),
                    escape(title)
                )
            })
            .collect();
        let trend = &c.trend;
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{} (avg {:.2})</td>\
             <td><span class=\"kind {dir}\">{dir}</span></td><td>{}</td></tr>",
            i + 1,
            titles.join("<br>"),
            c.organisations,
            c.machines,
            c.requests,
            trend.requests_this_week,
            trend.requests_weekly_average,
            trend.organisations_this_week,
            trend.organisations_weekly_average,
            examples.join("<br>"),
            dir = trend.direction(),
        );
    }
    page.push_str("</table>");
}

fn new_clusters(page: &mut String, report: &Report) {
    let _ = write!(
        page,
        "<h2 id=\"new-clusters\">New this week (from Monday {})</h2>",
        report.week_start
    );
    if report.new_clusters.is_empty() {
        return empty(page, "new requests");
    }
    page.push_str(
        "<table id=\"table-new-clusters\"><tr><th>Request</th><th class=\"n\">Organisations</th>\
         <th class=\"n\">Requests</th></tr>",
    );
    for c in &report.new_clusters {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&c.title),
            c.organisations_this_week,
            c.requests_this_week
        );
    }
    page.push_str("</table>");
}

fn feedback(page: &mut String, report: &Report) {
    page.push_str("<h2 id=\"feedback\">Feedback by category</h2>");
    if report.feedback.is_empty() {
        return empty(page, "feedback");
    }
    let bars: Vec<(String, f64)> = report
        .feedback
        .iter()
        .map(|f| (f.category.clone(), f.average_rating))
        .collect();
    bar_chart(
        page,
        "chart-feedback",
        "Average rating per category (1 to 5)",
        &bars,
        5.0,
        "",
    );
    page.push_str(
        "<table id=\"table-feedback\"><tr><th>Category</th><th class=\"n\">Ratings</th>\
         <th class=\"n\">Average (1–5)</th></tr>",
    );
    for f in &report.feedback {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td></tr>",
            escape(&f.category),
            f.ratings,
            f.average_rating
        );
    }
    page.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let page = render(&sample());
        assert!(page.starts_with("<!DOCTYPE html>"));
        for forbidden in ["<script", "http://", "https://", "@import", "url("] {
            let outside_svg_namespace = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!outside_svg_namespace.contains(forbidden), "{forbidden}");
        }
        assert!(
            page.contains("user32.dll!&lt;Dispatch&gt;"),
            "signatures are escaped"
        );
        assert_eq!(
            page.matches("<svg").count(),
            4,
            "three charts and one sparkline"
        );
        assert!(page.contains("id=\"chart-crash-free\""));
        assert!(page.contains("80.0%"));
        assert!(page.contains("<span class=\"kind up\">up</span>"));
        assert!(page.contains("id=\"table-new-clusters\""));
        assert!(page.contains("=Dark mode, please"));
    }

    #[test]
    fn empty_sections_say_so() {
        let mut report = sample();
        report.regressions.clear();
        report.new_clusters.clear();
        let page = render(&report);
        assert!(page.contains("No regressions in this period."));
        assert!(page.contains("No new requests in this period."));
    }
}
