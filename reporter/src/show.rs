//! `reporter show`: what is queued and what the edge would keep of it.
//!
//! One JSON object per queued report, oldest first, as JSON lines (or
//! pretty-printed, one object after another):
//!
//! ```json
//! {"queued_at": "2026-11-20T08:15:30Z",
//!  "sent": {<the envelope exactly as flush sends it>},
//!  "after_edge": {"machine_id": "replaced by a keyed hash (HMAC-SHA256) at the edge",
//!                 "payload": {<the payload after the edge's default scrub rules>},
//!                 "scrubbed": {"email": 1, "user_path": 2}}}
//! ```
//!
//! The scrubbing is the `scrub` crate's default rules, which the edge
//! applies; an organisation's extra rules are only known to the edge.

use std::collections::BTreeMap;
use std::io::Write;

use schemas::SchemaId;
use scrub::Scrubber;
use serde_json::{Value, json};

use crate::Error;
use crate::queue::{Queue, Queued};

/// What [`show`] wrote about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowSummary {
    pub reports: u64,
    /// Replacements the scrub rules would make, over all reports.
    pub scrubbed: BTreeMap<String, u32>,
}

/// The `show` object of one queued report.
pub fn preview(scrubber: &Scrubber, queued: &Queued) -> (Value, BTreeMap<String, u32>) {
    let mut payload = queued.envelope.payload.clone();
    let mut counts = BTreeMap::new();
    match queued.envelope.schema.parse::<SchemaId>() {
        Ok(schema) => scrubber.scrub_payload(schema, &mut payload, &mut counts),
        // Unknown schema: the edge refuses it; show it scrubbed throughout.
        Err(_) => scrubber.scrub_payload(
            SchemaId {
                version: 0,
                ..SchemaId::CRASH_V1
            },
            &mut payload,
            &mut counts,
        ),
    }
    let value = json!({
        "queued_at": time_text(queued.queued_at),
        "sent": queued.envelope,
        "after_edge": {
            "machine_id": "replaced by a keyed hash (HMAC-SHA256) at the edge",
            "payload": payload,
            "scrubbed": counts,
        },
    });
    (value, counts)
}

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes every queued report to `out`; `pretty` for indented JSON.
pub fn show(queue: &Queue, out: &mut dyn Write, pretty: bool) -> Result<ShowSummary, Error> {
    let scrubber = Scrubber::with_default_rules();
    let mut summary = ShowSummary::default();
    let write_err = |e: std::io::Error| Error::Io {
        context: "writing the listing".into(),
        source: e,
    };
    for entry in queue.all()? {
        let Some(queued) = entry.report else {
            continue;
        };
        let (value, counts) = preview(&scrubber, &queued);
        for (rule, n) in counts {
            *summary.scrubbed.entry(rule).or_default() += n;
        }
        summary.reports += 1;
        let text = if pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
        }
        .expect("JSON encodes");
        writeln!(out, "{text}").map_err(write_err)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build;
    use schemas::Consent;

    #[test]
    fn shows_the_envelope_and_the_scrubbed_payload() {
        let ctx = build::tests::context(Consent::Optional);
        let payload = build::feedback(
            2,
            "update",
            Some("Mail zhang.wei@sgcc.com.cn, log in C:\\Users\\zhangwei\\AppData\\x.log"),
        );
        let envelope = build::envelope(
            &ctx,
            SchemaId::FEEDBACK_V1,
            payload,
            None,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), Default::default()).unwrap();
        queue
            .push(envelope.clone(), time::OffsetDateTime::now_utc())
            .unwrap();
        let mut out = Vec::new();
        let summary = show(&queue, &mut out, false).unwrap();
        assert_eq!(summary.reports, 1);
        assert_eq!(summary.scrubbed.get("email"), Some(&1));
        assert_eq!(summary.scrubbed.get("user_path"), Some(&1));
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["sent"], serde_json::to_value(&envelope).unwrap());
        let text = line["after_edge"]["payload"]["text"].as_str().unwrap();
        assert_eq!(
            text,
            "Mail <email>, log in C:\\Users\\<user>\\AppData\\x.log"
        );
        assert_eq!(line["after_edge"]["scrubbed"]["email"], 1);
    }
}
