//! Which consent level is in force, and who decided it.
//!
//! Three sources may set a level; the strictest one wins:
//!
//! 1. **Group Policy** (Windows): `AllowTelemetry` under
//!    `HKLM\SOFTWARE\Policies\Microsoft\Windows\DataCollection`, the value
//!    administrators set for Windows' own diagnostic data: `0` off
//!    (Security), `1` required, `2` (Enhanced, Windows 10 only) required,
//!    `3` optional. Read when present ([`crate::system`]).
//! 2. **The configuration file**'s `consent`.
//! 3. **The organisation's cap** from `GET /v1/policy`, known after a flush
//!    fetched it (remembered in `stats.json`).
//!
//! A level of `off` queues and sends nothing: `send` and `import-wer` are
//! refused (exit 3), and `flush` drops, and counts, whatever is still queued.
//! A queued report the level in force no longer covers (the policy was
//! lowered since it was queued) is dropped the same way, never sent.

use std::fmt;

use schemas::Consent;

/// Who set a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `AllowTelemetry` from Group Policy, with the value read.
    GroupPolicy(u32),
    /// The organisation's `consent_cap` (last fetched by a flush).
    Organisation,
    /// `consent` in the configuration file.
    Config,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::GroupPolicy(value) => write!(
                f,
                "Group Policy (HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\DataCollection \
                 AllowTelemetry = {value})"
            ),
            Source::Organisation => f.write_str("the organisation's policy (GET /v1/policy)"),
            Source::Config => f.write_str("the configuration file (consent)"),
        }
    }
}

/// The level in force (`None`: off, nothing may be sent) and its source,
/// with every source's own level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Option<Consent>,
    pub decided_by: Source,
    /// Each source that set a level, and the level it set.
    pub sources: Vec<(Source, Option<Consent>)>,
}

/// The level a Group Policy `AllowTelemetry` value stands for (`None`:
/// off). Values above 3 are not defined; they are read as `optional`, the
/// most a machine can give.
pub fn from_allow_telemetry(value: u32) -> Option<Consent> {
    match value {
        0 => None,
        1 | 2 => Some(Consent::Required),
        _ => Some(Consent::Optional),
    }
}

/// The strictest of the sources. On a tie the first source in the order
/// Group Policy, organisation, configuration is named as the decider.
pub fn decide(
    group_policy: Option<u32>,
    config: Consent,
    organisation: Option<Consent>,
) -> Decision {
    let mut sources = Vec::new();
    if let Some(value) = group_policy {
        sources.push((Source::GroupPolicy(value), from_allow_telemetry(value)));
    }
    if let Some(cap) = organisation {
        sources.push((Source::Organisation, Some(cap)));
    }
    sources.push((Source::Config, Some(config)));
    // `None` (off) orders below every level, as the strictest.
    let (decided_by, level) = sources
        .iter()
        .copied()
        .min_by_key(|(_, level)| *level)
        .expect("the configuration always sets a level");
    Decision {
        level,
        decided_by,
        sources,
    }
}

impl Decision {
    /// One line for people: the level, who decided, what each source says.
    pub fn describe(&self) -> String {
        let name = |level: Option<Consent>| level.map_or("off", Consent::as_str);
        let others: Vec<String> = self
            .sources
            .iter()
            .map(|(source, level)| format!("{source}: {}", name(*level)))
            .collect();
        format!(
            "consent {} (decided by {}; {})",
            name(self.level),
            self.decided_by,
            others.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_telemetry_values_map_to_levels() {
        assert_eq!(from_allow_telemetry(0), None);
        assert_eq!(from_allow_telemetry(1), Some(Consent::Required));
        assert_eq!(from_allow_telemetry(2), Some(Consent::Required));
        assert_eq!(from_allow_telemetry(3), Some(Consent::Optional));
    }

    #[test]
    fn the_strictest_source_wins_and_is_named() {
        let d = decide(None, Consent::Optional, None);
        assert_eq!(
            (d.level, d.decided_by),
            (Some(Consent::Optional), Source::Config)
        );

        let d = decide(Some(1), Consent::Optional, Some(Consent::Optional));
        assert_eq!(d.level, Some(Consent::Required));
        assert_eq!(d.decided_by, Source::GroupPolicy(1));

        let d = decide(Some(3), Consent::Optional, Some(Consent::Required));
        assert_eq!(d.level, Some(Consent::Required));
        assert_eq!(d.decided_by, Source::Organisation);

        let d = decide(Some(3), Consent::Required, None);
        assert_eq!(
            (d.level, d.decided_by),
            (Some(Consent::Required), Source::Config)
        );

        let d = decide(Some(0), Consent::Optional, Some(Consent::Optional));
        assert_eq!((d.level, d.decided_by), (None, Source::GroupPolicy(0)));
        assert!(
            d.describe()
                .starts_with("consent off (decided by Group Policy")
        );
    }

    #[test]
    fn ties_name_group_policy_first() {
        let d = decide(Some(1), Consent::Required, Some(Consent::Required));
        assert_eq!(d.decided_by, Source::GroupPolicy(1));
        let d = decide(None, Consent::Required, Some(Consent::Required));
        assert_eq!(d.decided_by, Source::Organisation);
    }
}
