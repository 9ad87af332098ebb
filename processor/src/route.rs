//! Decode and enrich: one Kafka message in, the rows it becomes out. Crash
//! reports get their bucket and signature, feature requests their cluster.
//! A message that cannot be decoded or placed becomes a [`DeadLetter`].

use std::collections::HashSet;

use clustering::Clusterer;
use grouping::{SignatureConfig, Signer};
use schemas::erasure::ErasureRequest;
use schemas::{AcceptedReport, OutcomeEvent, Payload, Received};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::batch::Routed;
use crate::dead_letter::{DeadLetter, Stage};
use crate::rows::{
    CrashRow, FeatureRequestRow, FeedbackRow, HeartbeatRow, OutcomeRow, SignatureRow, Source,
    clustering_text,
};

/// Which topic a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Reports,
    Outcomes,
}

/// The state enrichment needs: grouping settings and the clustering index.
#[derive(Debug)]
pub struct Enricher {
    pub grouping: Signer,
    pub clusterer: Clusterer,
    /// Requests this instance clustered since the index was last refreshed
    /// from the store: a refresh need not add them again.
    pub clustered_here: HashSet<Uuid>,
}

impl Enricher {
    pub fn new(grouping: SignatureConfig, clusterer: Clusterer) -> Self {
        Enricher {
            grouping: Signer::new(&grouping),
            clusterer,
            clustered_here: HashSet::new(),
        }
    }

    /// Decodes one message value into the rows it belongs in.
    pub fn route(
        &mut self,
        stream: Stream,
        value: &[u8],
        source: Source,
        now: OffsetDateTime,
    ) -> Result<Routed, DeadLetter> {
        if stream == Stream::Outcomes {
            let event: OutcomeEvent = serde_json::from_slice(value)
                .map_err(|e| DeadLetter::new(Stage::Decode, "undecodable_outcome", e))?;
            return Ok(Routed::Outcome(OutcomeRow::new(event, source, now)));
        }
        let (report, payload) = match decode(value) {
            Ok(decoded) => decoded,
            // Not a report: an erasure request, or a dead letter.
            Err(dead) => return erasure(value).unwrap_or(Err(dead)),
        };
        Ok(match payload {
            Payload::Crash(p) => {
                Routed::Crash(CrashRow::new(&report, p, &self.grouping, source, now))
            }
            Payload::FeatureRequest(p) => {
                let mut assignment = self.clusterer.assign(&clustering_text(&p));
                self.clustered_here.insert(report.report_id);
                let signature = SignatureRow {
                    cluster_id: assignment.cluster_id,
                    report_id: report.report_id,
                    received_at: report.received_at,
                    minhash: assignment.signature.to_bytes(),
                    embedding: std::mem::take(&mut assignment.embedding),
                    inserted_at: now,
                };
                let row = FeatureRequestRow::new(&report, p, &assignment, source, now);
                Routed::FeatureRequest(row, signature)
            }
            Payload::Feedback(p) => Routed::Feedback(FeedbackRow::new(&report, p, source, now)),
            Payload::Heartbeat(p) => Routed::Heartbeat(
                HeartbeatRow::new(&report, p, source, now)
                    .map_err(|e| DeadLetter::new(Stage::Place, "invalid_heartbeat_day", e))?,
            ),
        })
    }
}

/// An erasure request, if `value` is one; refused if its machine hash is
/// not the edge's hex.
fn erasure(value: &[u8]) -> Option<Result<Routed, DeadLetter>> {
    let request: ErasureRequest = serde_json::from_slice(value).ok()?;
    Some(match request.machine_literal() {
        Some(_) => Ok(Routed::Erasure(request)),
        None => Err(DeadLetter::new(
            Stage::Decode,
            "invalid_erasure",
            "the machine hash is not lower-case hex",
        )),
    })
}

/// The envelope and the typed payload, in one pass over the message; when
/// that fails, again in two, to tell a bad envelope from a bad payload.
///
/// The message is checked as UTF-8 once, whole, and then read as text:
/// read as bytes, serde_json checks each of a report's ~180 strings on its
/// own, which cost an eighth of the per-message instructions.
fn decode(value: &[u8]) -> Result<(AcceptedReport<()>, Payload), DeadLetter> {
    let text = std::str::from_utf8(value)
        .map_err(|e| DeadLetter::new(Stage::Decode, "undecodable_report", e))?;
    if let Ok(Received { report, payload }) = serde_json::from_str(text) {
        return Ok((report, payload));
    }
    let report: AcceptedReport<Box<RawValue>> = serde_json::from_str(text)
        .map_err(|e| DeadLetter::new(Stage::Decode, "undecodable_report", e))?;
    let payload = Payload::decode_json(report.schema, report.payload.get())
        .map_err(|e| DeadLetter::new(Stage::Decode, "undecodable_payload", e))?;
    Ok((report.with_payload(()), payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;

    const SOURCE: Source = Source {
        partition: 0,
        offset: 7,
    };

    fn enricher() -> Enricher {
        Enricher::new(
            SignatureConfig::default(),
            Clusterer::new(clustering::ClusterConfig::default()).expect("config"),
        )
    }

    fn accepted(text: &str) -> Vec<u8> {
        let sent: schemas::Envelope = serde_json::from_str(text).expect("fixture");
        let (schema, sent_at) = (sent.schema.parse().expect("schema"), sent.sent_at);
        let report = sent.accept(schema, "grid".into(), "cd".repeat(16), sent_at);
        serde_json::to_vec(&report).expect("encodes")
    }

    #[test]
    fn each_report_type_finds_its_table() {
        let now = OffsetDateTime::now_utc();
        let mut e = enricher();
        let mut route = |text| e.route(Stream::Reports, &accepted(text), SOURCE, now);
        assert!(matches!(route(fixtures::CRASH), Ok(Routed::Crash(_))));
        assert!(matches!(
            route(fixtures::FEATURE_REQUEST),
            Ok(Routed::FeatureRequest(..))
        ));
        assert!(matches!(route(fixtures::FEEDBACK), Ok(Routed::Feedback(_))));
        assert!(matches!(
            route(fixtures::HEARTBEAT),
            Ok(Routed::Heartbeat(_))
        ));
    }

    #[test]
    fn an_erasure_request_is_routed_and_a_forged_one_set_aside() {
        let now = OffsetDateTime::now_utc();
        let mut e = enricher();
        let mut request = ErasureRequest {
            erasure_id: Uuid::new_v4(),
            org_id: "grid".into(),
            machine_hash: "ab".repeat(16),
            requested_at: now,
        };
        let value = serde_json::to_vec(&request).expect("json");
        match e.route(Stream::Reports, &value, SOURCE, now) {
            Ok(Routed::Erasure(routed)) => assert_eq!(routed, request),
            other => panic!("not an erasure: {other:?}"),
        }
        request.machine_hash = "ab' OR 1 = 1".into();
        let value = serde_json::to_vec(&request).expect("json");
        let Err(dead) = e.route(Stream::Reports, &value, SOURCE, now) else {
            panic!("a forged machine hash routed");
        };
        assert_eq!(dead.reason, "invalid_erasure");
    }

    #[test]
    fn paraphrased_requests_share_a_cluster() {
        let now = OffsetDateTime::now_utc();
        let mut e = enricher();
        let mut cluster_of = |title: &str| {
            let mut report: serde_json::Value =
                serde_json::from_slice(&accepted(fixtures::FEATURE_REQUEST)).expect("json");
            report["payload"]["title"] = serde_json::json!(title);
            report["payload"]
                .as_object_mut()
                .expect("object")
                .remove("body");
            let value = serde_json::to_vec(&report).expect("json");
            match e.route(Stream::Reports, &value, SOURCE, now) {
                Ok(Routed::FeatureRequest(row, signature)) => {
                    assert_eq!(row.cluster_id, signature.cluster_id);
                    row.cluster_id
                }
                other => panic!("not a feature request: {other:?}"),
            }
        };
        let first = cluster_of("希望任务栏支持按项目分组窗口");
        assert_eq!(cluster_of("任务栏能否按项目对窗口进行分组"), first);
        assert_ne!(cluster_of("打印机驱动安装太慢"), first);
    }

    #[test]
    fn undecodable_messages_become_dead_letters_with_a_reason() {
        let now = OffsetDateTime::now_utc();
        let mut e = enricher();
        let Err(dead) = e.route(Stream::Reports, b"not json", SOURCE, now) else {
            panic!("garbage routed");
        };
        assert_eq!(
            (dead.stage, dead.reason),
            (Stage::Decode, "undecodable_report")
        );
        let mut report: serde_json::Value =
            serde_json::from_slice(&accepted(fixtures::CRASH)).expect("json");
        report["payload"]["frames"] = serde_json::json!("not a list");
        let value = serde_json::to_vec(&report).expect("json");
        let Err(dead) = e.route(Stream::Reports, &value, SOURCE, now) else {
            panic!("bad payload routed");
        };
        assert_eq!(dead.reason, "undecodable_payload");
        // A byte that is not UTF-8 inside a string of a valid report.
        let mut value = accepted(fixtures::CRASH);
        let at = value
            .windows(12)
            .position(|w| w == b"explorer.exe")
            .expect("the fixture names explorer.exe");
        value[at] = 0xff;
        let Err(dead) = e.route(Stream::Reports, &value, SOURCE, now) else {
            panic!("a report that is not UTF-8 routed");
        };
        assert_eq!(
            (dead.stage, dead.reason),
            (Stage::Decode, "undecodable_report")
        );
        let Err(dead) = e.route(Stream::Outcomes, b"{}", SOURCE, now) else {
            panic!("bad outcome routed");
        };
        assert_eq!(dead.reason, "undecodable_outcome");
    }
}
