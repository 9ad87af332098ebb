//! What happens to one report, from parsed JSON to Kafka or the spool. The
//! single and the batch endpoint both go through here, so a report is
//! treated the same whichever way it came.
//!
//! ```text
//!  JSON text ─▶ checks (validate) ─▶ organisation policy ─▶ consent ─▶ machine id → hash
//!            ─▶ rate limits ─▶ recent duplicate? ─▶ scrub ─▶ AcceptedReport ─▶ deliver
//! ```
//!
//! The accepted report carries the payload's JSON text as the machine sent
//! it when the fast way checked it and scrubbing changed nothing in it (the
//! text decodes to exactly the payload checked); otherwise the payload is
//! encoded from its checked, scrubbed form.

use std::collections::BTreeMap;
use std::time::Instant;

use schemas::{AcceptedReport, Consent, Outcome, SchemaId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Organisation;
use crate::dedup::ReportKey;
use crate::error::ApiError;
use crate::outcome::Seen;
use crate::sink::{Delivered, DeliveryError, Outgoing};
use crate::state::{AppState, Settings};
use crate::validate::Refusal;

/// A report that passed every check, encoded for Kafka.
#[derive(Debug)]
pub struct Ready {
    pub report_id: Uuid,
    pub schema: SchemaId,
    pub outgoing: Outgoing,
}

#[derive(Debug)]
pub enum Prepared {
    Ready(Ready),
    /// A retry of a report this instance accepted moments ago.
    Duplicate {
        report_id: Uuid,
        schema: SchemaId,
    },
}

/// The final answer for one report.
#[derive(Debug)]
pub enum Answer {
    Kept { report_id: Uuid, outcome: Outcome },
    Refused(ApiError),
}

/// Runs every check on one report's JSON text and encodes it.
pub fn prepare(
    state: &AppState,
    settings: &Settings,
    org: &Organisation,
    text: &[u8],
    received_at: OffsetDateTime,
) -> Result<Prepared, Refusal> {
    let checked =
        state
            .validator
            .check_body_within(text, state.limits.max_json_depth, received_at)?;
    let (mut envelope, schema) = (checked.envelope, checked.schema);
    let refuse = |error: ApiError| Refusal {
        error,
        schema: Some(schema),
    };
    if !org.allows_type(schema.kind) {
        return Err(refuse(ApiError::TypeDisabled(schema.kind)));
    }
    check_consent(org, envelope.consent, schema).map_err(refuse)?;
    let machine_hash = state.hasher.hash(&envelope.machine_id);
    state
        .rate_limiter
        .check(
            &settings.rate_limits,
            &org.id,
            &machine_hash,
            Instant::now(),
        )
        .map_err(|secs| refuse(ApiError::RateLimited(secs)))?;
    let key = ReportKey::new(&machine_hash, envelope.report_id);
    if state.recent.contains(&key, Instant::now()) {
        return Ok(Prepared::Duplicate {
            report_id: envelope.report_id,
            schema,
        });
    }
    let mut scrubbed = BTreeMap::new();
    let replaced = settings
        .scrubber
        .scrub_typed(&mut envelope.payload, &mut scrubbed);
    let mut report = envelope.accept(schema, org.id.clone(), machine_hash, received_at);
    report.scrubbed = scrubbed;
    // The message is about as long as the report sent: one allocation.
    let mut payload = Vec::with_capacity(text.len() + 256);
    // A payload scrubbing left as it was goes on as sent (the fast way
    // decoded exactly that text); one it changed is encoded anew.
    let report_id = report.report_id;
    let encoded = match checked.sent_payload {
        Some(sent) if !replaced && report.scrubbed.is_empty() => {
            let report = report.with_payload(());
            encode_with_payload(&mut payload, &report, sent).map(|()| report.machine_hash)
        }
        _ => serde_json::to_writer(&mut payload, &report).map(|()| report.machine_hash),
    };
    let key = encoded.map_err(|e| {
        tracing::error!(error = %e, "encoding an accepted report failed");
        refuse(ApiError::Unavailable)
    })?;
    Ok(Prepared::Ready(Ready {
        report_id,
        schema,
        outgoing: Outgoing {
            key,
            schema: schema.to_string(),
            payload,
        },
    }))
}

/// Encodes `report` with `sent`, one JSON object, as its payload.
///
/// The report is encoded with a `null` payload, its last field (nothing
/// was scrubbed, so no `scrubbed` follows), and the `null` is replaced by
/// the text. By hand because serde_json writes a value's text as it is
/// only from a `RawValue`, and a borrowed one is had only by reading the
/// text again, the reading the fast way saves.
fn encode_with_payload(
    out: &mut Vec<u8>,
    report: &AcceptedReport<()>,
    sent: &str,
) -> serde_json::Result<()> {
    let start = out.len();
    serde_json::to_writer(&mut *out, report)?;
    const TAIL: &[u8] = b"\"payload\":null}";
    if !out[start..].ends_with(TAIL) {
        return Err(serde::ser::Error::custom(
            "the payload is not the last field encoded",
        ));
    }
    out.truncate(out.len() - b"null}".len());
    out.extend_from_slice(sent.as_bytes());
    out.push(b'}');
    Ok(())
}

/// A report may be sent only if both the machine's consent and its
/// organisation's cap allow its kind.
pub fn check_consent(
    org: &Organisation,
    consent: Consent,
    schema: SchemaId,
) -> Result<(), ApiError> {
    if !consent.allows(schema.kind) {
        return Err(ApiError::Consent(format!(
            "{} reports need consent `{}`; the machine sent `{}`",
            schema.kind,
            schema.kind.min_consent().as_str(),
            consent.as_str()
        )));
    }
    if !org.consent_cap.allows(schema.kind) {
        return Err(ApiError::Consent(format!(
            "the organisation allows consent up to `{}`, which excludes {} reports",
            org.consent_cap.as_str(),
            schema.kind
        )));
    }
    Ok(())
}

/// One report's way through: prepared (or refused) and sized, before
/// delivery.
#[derive(Debug)]
pub struct Item {
    pub size: usize,
    pub prepared: Result<Prepared, Refusal>,
}

/// Delivers the ready items together, records every item's outcome, and
/// returns one answer per item, in order. A report that comes again later
/// in the same batch (same machine and report id) is a duplicate of the
/// first: it is not sent twice.
pub async fn finish(state: &AppState, org_id: Option<&str>, mut items: Vec<Item>) -> Vec<Answer> {
    if items.len() > 1 {
        let mut seen = std::collections::HashSet::with_capacity_and_hasher(
            items.len(),
            foldhash::fast::RandomState::default(),
        );
        let repeats: Vec<usize> = (0..items.len())
            .filter(|&i| match &items[i].prepared {
                Ok(Prepared::Ready(ready)) => {
                    !seen.insert((ready.outgoing.key.as_str(), ready.report_id))
                }
                _ => false,
            })
            .collect();
        drop(seen);
        for i in repeats {
            if let Ok(Prepared::Ready(ready)) = &items[i].prepared {
                let (report_id, schema) = (ready.report_id, ready.schema);
                items[i].prepared = Ok(Prepared::Duplicate { report_id, schema });
            }
        }
    }
    let ready: Vec<&Outgoing> = items
        .iter()
        .filter_map(|item| match &item.prepared {
            Ok(Prepared::Ready(ready)) => Some(&ready.outgoing),
            _ => None,
        })
        .collect();
    let mut delivered = state.delivery.deliver(&ready).await.into_iter();
    items
        .into_iter()
        .map(|item| {
            let mut seen = Seen {
                org_id,
                size: item.size,
                ..Seen::default()
            };
            let schema_text;
            match item.prepared {
                Ok(Prepared::Ready(ready)) => {
                    schema_text = ready.schema.to_string();
                    seen.schema = Some(&schema_text);
                    seen.kind = Some(ready.schema.kind.as_str());
                    let result = delivered.next().unwrap_or(Err(DeliveryError::Unavailable));
                    match result {
                        Ok(via) => {
                            let outcome = match via {
                                Delivered::Kafka => Outcome::Accepted,
                                Delivered::Spool => Outcome::Spooled,
                            };
                            let key = ReportKey::new(&ready.outgoing.key, ready.report_id);
                            state.recent.insert(key, Instant::now());
                            state.outcomes.kept(outcome, &seen);
                            Answer::Kept {
                                report_id: ready.report_id,
                                outcome,
                            }
                        }
                        Err(error) => {
                            let error = match error {
                                DeliveryError::SpoolFull => ApiError::SpoolFull,
                                DeliveryError::Unavailable => ApiError::Unavailable,
                            };
                            state.outcomes.refused(&error, &seen);
                            Answer::Refused(error)
                        }
                    }
                }
                Ok(Prepared::Duplicate { report_id, schema }) => {
                    schema_text = schema.to_string();
                    seen.schema = Some(&schema_text);
                    seen.kind = Some(schema.kind.as_str());
                    state.outcomes.kept(Outcome::Duplicate, &seen);
                    Answer::Kept {
                        report_id,
                        outcome: Outcome::Duplicate,
                    }
                }
                Err(refusal) => {
                    schema_text = refusal.schema.map(|s| s.to_string()).unwrap_or_default();
                    if let Some(schema) = refusal.schema {
                        seen.schema = Some(&schema_text);
                        seen.kind = Some(schema.kind.as_str());
                    }
                    state.outcomes.refused(&refusal.error, &seen);
                    Answer::Refused(refusal.error)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::ReportKind;

    fn org(cap: Consent) -> Organisation {
        Organisation {
            id: "grid".into(),
            name: "Grid".into(),
            consent_cap: cap,
            disabled_types: vec![],
            min_interval_secs: 0,
            tokens: vec![],
        }
    }

    #[test]
    fn consent_needs_both_machine_and_organisation() {
        let feature = SchemaId::new(ReportKind::FeatureRequest, 1);
        let crash = SchemaId::CRASH_V1;
        assert!(check_consent(&org(Consent::Optional), Consent::Optional, feature).is_ok());
        assert!(check_consent(&org(Consent::Optional), Consent::Required, feature).is_err());
        assert!(check_consent(&org(Consent::Required), Consent::Optional, feature).is_err());
        assert!(check_consent(&org(Consent::Required), Consent::Required, crash).is_ok());
        assert!(check_consent(&org(Consent::Required), Consent::Optional, crash).is_ok());
    }

    /// The payload spliced in as sent is the payload the typed form
    /// encodes to, and the rest of the report is as serde writes it.
    #[test]
    fn a_payload_as_sent_encodes_the_same_report() {
        let validator = crate::validate::Validator::new(86_400);
        let now = OffsetDateTime::now_utc();
        for text in schemas::fixtures::ALL {
            let checked = validator
                .check_body(
                    text.as_bytes(),
                    time::macros::datetime!(2026-11-20 12:00 UTC),
                )
                .expect("valid");
            let sent = checked.sent_payload.expect("the fast way took it");
            let report = checked
                .envelope
                .accept(checked.schema, "grid".into(), "ab12".into(), now);
            let typed = serde_json::to_vec(&report).expect("encodes");
            let mut spliced = Vec::new();
            encode_with_payload(&mut spliced, &report.with_payload(()), sent).expect("encodes");
            let value = |bytes: &[u8]| {
                serde_json::from_slice::<serde_json::Value>(bytes).expect("one JSON value")
            };
            assert_eq!(value(&spliced), value(&typed));
        }
    }
}
