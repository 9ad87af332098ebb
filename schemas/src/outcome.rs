//! What the edge did with each report it saw. Every report ends in exactly
//! one outcome; the refused ones are published as [`OutcomeEvent`]s on the
//! outcomes topic, without their payload.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Kafka acknowledged it.
    Accepted,
    /// On the edge's disk spool (fsync'd), to be forwarded to Kafka.
    Spooled,
    /// A retry of a report accepted moments before; not sent again.
    Duplicate,
    /// Refused; the reason says why.
    Rejected,
    /// Refused: the machine or its organisation sent too much too fast.
    RateLimited,
    /// Refused: the body, or the batch, is over a size limit.
    TooLarge,
    /// Refused: the consent given or the organisation's policy excludes it.
    Consent,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Accepted,
        Outcome::Spooled,
        Outcome::Duplicate,
        Outcome::Rejected,
        Outcome::RateLimited,
        Outcome::TooLarge,
        Outcome::Consent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Spooled => "spooled",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::RateLimited => "rate_limited",
            Outcome::TooLarge => "too_large",
            Outcome::Consent => "consent",
        }
    }

    /// Whether the report went on towards the tables.
    pub fn is_kept(self) -> bool {
        matches!(self, Outcome::Accepted | Outcome::Spooled)
    }
}

/// A refused report, as published on the outcomes topic. No payload, no
/// machine id, no client address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvent {
    /// Made by the edge; each event counts once downstream.
    pub event_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub outcome: Outcome,
    /// The error code the client got, e.g. `invalid`, `consent`.
    pub reason: String,
    /// `crash/1` and the like, when the report named a known schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The organisation, when the token named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Size of the report (or of the request, when it was refused whole), in bytes.
    pub size: u64,
    /// The field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
