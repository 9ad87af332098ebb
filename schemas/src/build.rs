//! OS build versions: the one type that reads a Windows version, orders
//! builds by release rather than by arrival, and knows the form a report's
//! `os.version` must take ([`BuildVersion::parse_os`]). Ingest checks
//! reports with it, the reporter reads the machine's version with it, and
//! the processor sorts builds by it.

use std::fmt;
use std::str::FromStr;

/// A Windows build, `major.minor.build.revision`, e.g. `10.0.19045.3570`
/// (the revision is the update build revision, UBR).
///
/// Ordered numerically by (major, minor, build, revision), so
/// `10.0.9.0 < 10.0.10.0` and `10.0.19045.4046 < 10.0.22621.1`.
///
/// Parsing accepts only values that fit [`BuildVersion::sort_key`]: major
/// and minor up to 255, build and revision up to 16,777,215 — far beyond any
/// Windows release (builds are around 26100, revisions rarely pass 65535).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuildVersion {
    // Field order is the ordering: keep it.
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    pub revision: u32,
}

/// Why a string is not a build version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseBuildVersionError;

impl fmt::Display for ParseBuildVersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "build version must be `major.minor.build.revision` with major and minor \
             at most 255 and build and revision at most 16777215",
        )
    }
}

impl std::error::Error for ParseBuildVersionError {}

const MAJOR_BITS: u32 = 8;
const MINOR_BITS: u32 = 8;
const BUILD_BITS: u32 = 24;
const REVISION_BITS: u32 = 24;

const fn max_for(bits: u32) -> u32 {
    ((1u64 << bits) - 1) as u32
}

impl BuildVersion {
    /// The largest value each field may have to parse, and to pack exactly.
    pub const MAX_MAJOR: u32 = max_for(MAJOR_BITS);
    pub const MAX_MINOR: u32 = max_for(MINOR_BITS);
    pub const MAX_BUILD: u32 = max_for(BUILD_BITS);
    pub const MAX_REVISION: u32 = max_for(REVISION_BITS);

    /// From a report's OS `version` (`major.minor.build`, e.g. `10.0.19045`)
    /// and `revision` (UBR, e.g. 3570). `None` if `version` does not have
    /// exactly three plain decimal parts or a value is out of range.
    pub fn parse(version: &str, revision: u32) -> Option<Self> {
        let mut parts = version.split('.');
        let major = number(parts.next()?)?;
        let minor = number(parts.next()?)?;
        let build = number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        let v = BuildVersion {
            major,
            minor,
            build,
            revision,
        };
        v.in_range().then_some(v)
    }

    /// From an `os.version` in the form the envelope's JSON Schema takes,
    /// `^(5|6|10)\.[0-9]\.[0-9]{1,5}$` (`10.0.19045`, `6.1.7601`), and a
    /// revision. Stricter than [`parse`](Self::parse), which orders any
    /// version a stored report carries: this one says which versions a
    /// report may carry.
    pub fn parse_os(version: &str, revision: u32) -> Option<Self> {
        let mut parts = version.split('.');
        let (major, minor, build) = (parts.next()?, parts.next()?, parts.next()?);
        let shaped =
            matches!(major, "5" | "6" | "10") && minor.len() == 1 && (1..=5).contains(&build.len());
        if !shaped {
            return None;
        }
        Self::parse(version, revision)
    }

    /// Whether every field fits its width in [`sort_key`](Self::sort_key).
    pub fn in_range(&self) -> bool {
        self.major <= Self::MAX_MAJOR
            && self.minor <= Self::MAX_MINOR
            && self.build <= Self::MAX_BUILD
            && self.revision <= Self::MAX_REVISION
    }

    /// Packs the version into one integer that orders like the version:
    /// major in the top 8 bits, then minor (8 bits), build (24 bits) and
    /// revision (24 bits). Suitable as a sort column.
    ///
    /// For versions that are [`in_range`](Self::in_range) (every parsed
    /// version is), `a.cmp(&b) == a.sort_key().cmp(&b.sort_key())`. A field
    /// too big for its width (only possible by building the struct by hand)
    /// is clamped and the fields after it set to their maximum, so the key
    /// never orders two versions the wrong way round, though it may tie them.
    pub fn sort_key(&self) -> u64 {
        let fields = [
            (self.major, MAJOR_BITS),
            (self.minor, MINOR_BITS),
            (self.build, BUILD_BITS),
            (self.revision, REVISION_BITS),
        ];
        let mut key = 0u64;
        let mut saturated = false;
        for (value, bits) in fields {
            let max = max_for(bits);
            let value = if saturated || value > max {
                saturated = true;
                max
            } else {
                value
            };
            key = (key << bits) | u64::from(value);
        }
        key
    }
}

/// A plain decimal `u32`: digits only, no sign or spaces.
fn number(part: &str) -> Option<u32> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

impl FromStr for BuildVersion {
    type Err = ParseBuildVersionError;

    /// Parses `major.minor.build.revision`, e.g. `10.0.19045.3570`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (version, revision) = s.rsplit_once('.').ok_or(ParseBuildVersionError)?;
        let revision = number(revision).ok_or(ParseBuildVersionError)?;
        BuildVersion::parse(version, revision).ok_or(ParseBuildVersionError)
    }
}

impl fmt::Display for BuildVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.build, self.revision
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> BuildVersion {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_os_version_and_revision_of_a_report() {
        assert_eq!(
            BuildVersion::parse("10.0.19045", 3570),
            Some(BuildVersion {
                major: 10,
                minor: 0,
                build: 19045,
                revision: 3570
            })
        );
        assert_eq!(
            BuildVersion::parse("10.0.19045", 3570),
            Some(v("10.0.19045.3570"))
        );
        assert_eq!(
            BuildVersion::parse("6.1.7601", 24544),
            Some(v("6.1.7601.24544"))
        );
    }

    #[test]
    fn rejects_malformed_and_out_of_range_versions() {
        for bad in [
            "",
            "10",
            "10.0",
            "10.0.19045.3570",
            "10..19045",
            "10.0.19045.",
            "10.0.x",
        ] {
            assert_eq!(BuildVersion::parse(bad, 1), None, "{bad:?}");
        }
        for bad in [
            " 10.0.19045",
            "10.0.+19045",
            "10.0.-1",
            "256.0.19045",
            "10.256.19045",
        ] {
            assert_eq!(BuildVersion::parse(bad, 1), None, "{bad:?}");
        }
        assert_eq!(BuildVersion::parse("10.0.16777216", 1), None);
        assert_eq!(BuildVersion::parse("10.0.19045", 1 << 24), None);
        assert!(BuildVersion::parse("10.0.16777215", (1 << 24) - 1).is_some());
        assert!(BuildVersion::parse("10.0.19045", 70_000).is_some());

        for bad in [
            "",
            "10.0.19045",
            "10.0.19045.3570.1",
            "10.0.19045.x",
            "10.0.19045.-1",
        ] {
            assert_eq!(
                bad.parse::<BuildVersion>(),
                Err(ParseBuildVersionError),
                "{bad:?}"
            );
        }
        assert!("10.0.99999999999.1".parse::<BuildVersion>().is_err());
    }

    #[test]
    fn the_os_form_is_the_one_the_schema_takes() {
        let envelope: serde_json::Value =
            serde_json::from_str(include_str!("../json/envelope.schema.json")).expect("json");
        let pattern = envelope["properties"]["os"]["properties"]["version"].clone();
        let schema = jsonschema::validator_for(&pattern).expect("schema");
        for text in [
            "10.0.19045",
            "6.1.7601",
            "5.1.2600",
            "6.3.9600",
            "10.9.99999",
            "10.0.0",
            "",
            "10.0",
            "10.0.19045.1",
            "11.0.22000",
            "010.0.19045",
            "10.00.19045",
            "10.0.123456",
            "10.0.+1",
            "10.0.x",
            "10..1",
            " 10.0.19045",
            "7.0.1",
        ] {
            let taken = schema.is_valid(&serde_json::json!(text));
            assert_eq!(BuildVersion::parse_os(text, 0).is_some(), taken, "{text:?}");
        }
        assert_eq!(
            BuildVersion::parse_os("10.0.19045", 3570),
            BuildVersion::parse("10.0.19045", 3570)
        );
    }

    #[test]
    fn orders_by_release_not_by_string() {
        let ordered = [
            "6.1.7601.24544",
            "10.0.9.0",
            "10.0.10.0",
            "10.0.19045.3570",
            "10.0.19045.4046",
            "10.0.22621.1",
            "10.0.26100.1",
            "10.0.26100.70000",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (v(pair[0]), v(pair[1]));
            assert!(a < b, "{a} < {b}");
            assert!(a.sort_key() < b.sort_key(), "key {a} < {b}");
        }
        // The string order would put these the other way round.
        assert!("10.0.9.0" > "10.0.10.0");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "10.0.19045.3570",
            "10.0.26100.1",
            "6.3.9600.0",
            "255.255.16777215.16777215",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        assert_eq!(
            BuildVersion::parse("10.0.22631", 2861).unwrap().to_string(),
            "10.0.22631.2861"
        );
    }

    #[test]
    fn sort_key_layout_and_clamping() {
        assert_eq!(v("0.0.0.0").sort_key(), 0);
        assert_eq!(
            v("10.0.19045.3570").sort_key(),
            (10 << 56) | (19045 << 24) | 3570
        );
        assert_eq!(v("255.255.16777215.16777215").sort_key(), u64::MAX);
        let wide = BuildVersion {
            major: 10,
            minor: 0,
            build: 1 << 24,
            revision: 1,
        };
        assert!(!wide.in_range());
        assert_eq!(wide.sort_key(), (10 << 56) | ((1 << 48) - 1));
    }

    /// Realistic values: majors 5–11, minors 0–3, builds up to well past
    /// 26100, revisions usually under 10,000 but sometimes past 65535.
    fn realistic() -> impl Strategy<Value = BuildVersion> {
        let revision = prop_oneof![8 => 0u32..10_000, 1 => 0u32..=BuildVersion::MAX_REVISION];
        (5u32..=11, 0u32..=3, 0u32..200_000, revision).prop_map(
            |(major, minor, build, revision)| BuildVersion {
                major,
                minor,
                build,
                revision,
            },
        )
    }

    fn in_range() -> impl Strategy<Value = BuildVersion> {
        (
            0..=BuildVersion::MAX_MAJOR,
            0..=BuildVersion::MAX_MINOR,
            0..=BuildVersion::MAX_BUILD,
            0..=BuildVersion::MAX_REVISION,
        )
            .prop_map(|(major, minor, build, revision)| BuildVersion {
                major,
                minor,
                build,
                revision,
            })
    }

    /// Values around each field's limit and beyond it, drawn from few
    /// enough values that pairs often share fields and clamping is tested.
    fn near_limits() -> impl Strategy<Value = BuildVersion> {
        fn field(max: u32) -> impl Strategy<Value = u32> {
            prop_oneof![0u32..3, (max - 1)..=(max + 2), (u32::MAX - 1)..=u32::MAX]
        }
        (
            field(BuildVersion::MAX_MAJOR),
            field(BuildVersion::MAX_MINOR),
            field(BuildVersion::MAX_BUILD),
            field(BuildVersion::MAX_REVISION),
        )
            .prop_map(|(major, minor, build, revision)| BuildVersion {
                major,
                minor,
                build,
                revision,
            })
    }

    proptest! {
        #[test]
        fn sort_key_orders_like_the_version(a in realistic(), b in realistic()) {
            prop_assert_eq!(a.sort_key().cmp(&b.sort_key()), a.cmp(&b));
        }

        #[test]
        fn sort_key_orders_like_the_version_when_builds_share_a_prefix(
            a in realistic(), build in 19041u32..19046, revision in 0u32..5000,
        ) {
            // Most real comparisons are between revisions of one build.
            let b = BuildVersion { build, revision, ..a };
            let a = BuildVersion { build, ..a };
            prop_assert_eq!(a.sort_key().cmp(&b.sort_key()), a.cmp(&b));
        }

        #[test]
        fn sort_key_is_exact_over_the_whole_range(a in in_range(), b in in_range()) {
            prop_assert_eq!(a.sort_key().cmp(&b.sort_key()), a.cmp(&b));
        }

        #[test]
        fn sort_key_never_inverts_out_of_range_values(a in near_limits(), b in near_limits()) {
            if a <= b {
                prop_assert!(a.sort_key() <= b.sort_key(), "{a} <= {b}");
            } else {
                prop_assert!(a.sort_key() >= b.sort_key(), "{a} > {b}");
            }
        }

        #[test]
        fn display_then_parse_is_identity(a in in_range()) {
            prop_assert_eq!(a.to_string().parse::<BuildVersion>(), Ok(a));
        }
    }
}
