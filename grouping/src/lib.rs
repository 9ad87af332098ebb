//! Crash grouping for the processor: pure functions, no I/O.
//!
//! In: a decoded `crash/1` payload ([`CrashPayload`]) and a
//! [`SignatureConfig`] (normally from the processor's TOML config). Out: a
//! [`Grouping`] — the [`GROUPING_VERSION`] that produced it, a bucket and a
//! signature — which the processor stores on every crash row so analysts can
//! count and browse crashes by group. (Builds are ordered by
//! `schemas::build::BuildVersion`.)
//!
//! # Bucket
//!
//! In the style of Windows Error Reporting: the bucket identifies *where* the
//! process died, from six fields of the payload — app name, app version,
//! faulting module name, module version, exception code and fault offset.
//! The fields are normalised first (see [`bucket()`]): names are compared
//! case-insensitively because Windows file names are, and the code and offset
//! are rewritten as upper-case hex with a `0x` prefix and no leading zeros, so
//! `0x00000000000a1b2c` and `0xA1B2C` are the same offset. The normalised
//! fields are encoded with an 8-byte length before each, hashed with SHA-256,
//! and the first 128 bits are written as 32 lower-case hex characters. The
//! stack does not take part.
//!
//! # Signature
//!
//! In the style of Mozilla Socorro: the signature says *how* the process got
//! there, readable by a person. Walk the crashing thread's frames innermost
//! first, drop frames on the skip list (thread start-up, exception raising,
//! abort and wait plumbing that never explains a crash), render each kept
//! frame as `module!function` (or `module+0xOFFSET` when the function is
//! unknown), and join the first [`SignatureConfig::max_frames`] with ` | `.
//! See [`signature()`] for the normalisation rules and the fallback when no
//! frame is kept, and [`DEFAULT_SKIP`] for the default skip list.
//!
//! # Versioning
//!
//! Rows are only comparable when they were grouped the same way. Any change
//! that alters the output of [`bucket()`], [`signature()`] (with the default
//! config) or therefore [`group()`] for some input — a new normalisation
//! rule, a different hash encoding, a change to [`DEFAULT_SKIP`] or to the
//! default frame count — must bump [`GROUPING_VERSION`], so rows written by
//! the old algorithm can be found and re-grouped. The golden tests at the end
//! of this file pin the current output; if one fails, either the change was
//! an accident or the version needs bumping (and the golden values updating).

mod bucket;
mod signature;

pub use bucket::bucket;
pub use schemas::report::CrashPayload;
pub use signature::{DEFAULT_MAX_FRAMES, DEFAULT_SKIP, SignatureConfig, Signer, signature};

use serde::{Deserialize, Serialize};

/// Version of the grouping algorithm, stored on every grouped row.
///
/// Bump it whenever [`bucket()`] or [`signature()`] (with the default
/// [`SignatureConfig`]) would give a different answer for the same crash
/// than before; the golden tests in this crate fail when that happens.
pub const GROUPING_VERSION: u16 = 1;

/// How one crash is grouped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grouping {
    /// The [`GROUPING_VERSION`] that produced `bucket` and `signature`.
    pub version: u16,
    /// WER-style bucket: 32 lower-case hex characters.
    pub bucket: String,
    /// Socorro-style signature, e.g.
    /// `shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc`.
    pub signature: String,
}

/// Groups one crash: bucket and signature, stamped with [`GROUPING_VERSION`].
pub fn group(crash: &CrashPayload, config: &SignatureConfig) -> Grouping {
    group_with(crash, &Signer::new(config))
}

/// [`group`] with the configuration prepared once.
pub fn group_with(crash: &CrashPayload, signer: &Signer) -> Grouping {
    Grouping {
        version: GROUPING_VERSION,
        bucket: bucket(crash),
        signature: signer.signature(crash),
    }
}

/// The one spelling of exception codes and offsets ([`schemas::hex`]).
pub(crate) use schemas::hex::normalise as normalise_hex;

#[cfg(test)]
pub(crate) mod test_support {
    use schemas::report::{AppInfo, CrashPayload, Frame, ModuleInfo};

    /// A frame with a known function.
    pub fn f(module: &str, function: &str, offset: &str) -> Frame {
        Frame {
            module: module.to_owned(),
            function: Some(function.to_owned()),
            offset: offset.to_owned(),
        }
    }

    /// A frame whose function the symbol server could not resolve.
    pub fn unknown(module: &str, offset: &str) -> Frame {
        Frame {
            module: module.to_owned(),
            function: None,
            offset: offset.to_owned(),
        }
    }

    /// The access violation in shell32 from `schemas/fixtures/crash.json`.
    pub fn explorer_av() -> CrashPayload {
        CrashPayload {
            app: AppInfo {
                name: "explorer.exe".to_owned(),
                version: "10.0.19041.3570".to_owned(),
            },
            exception_code: "0xC0000005".to_owned(),
            module: ModuleInfo {
                name: "shell32.dll".to_owned(),
                version: "10.0.19041.3570".to_owned(),
                offset: "0x00000000000a1b2c".to_owned(),
            },
            frames: vec![
                f("shell32.dll", "CDefView::_OnContextMenu", "0xa1b2c"),
                f("shell32.dll", "CDefView::WndProc", "0x5e410"),
                f("user32.dll", "UserCallWinProcCheckWow", "0x2c3d"),
                f("user32.dll", "DispatchMessageWorker", "0x1a0e"),
                unknown("explorer.exe", "0x3f21"),
                f("kernel32.dll", "BaseThreadInitThunk", "0x17034"),
                f("ntdll.dll", "RtlUserThreadStart", "0x52651"),
            ],
        }
    }

    /// A C++ exception in Edge that nobody caught, ending in `abort`.
    pub fn edge_cxx_throw() -> CrashPayload {
        CrashPayload {
            app: AppInfo {
                name: "msedge.exe".to_owned(),
                version: "118.0.2088.76".to_owned(),
            },
            exception_code: "0xE06D7363".to_owned(),
            module: ModuleInfo {
                name: "KERNELBASE.dll".to_owned(),
                version: "10.0.19041.3570".to_owned(),
                offset: "0x000000000002cf19".to_owned(),
            },
            frames: vec![
                f("KERNELBASE.dll", "RaiseException", "0x2cf19"),
                f("VCRUNTIME140.dll", "_CxxThrowException", "0x4a61"),
                f("ucrtbase.dll", "abort", "0x7286e"),
                f(
                    "msedge.dll",
                    "base::internal::OnNoMemoryInternal",
                    "0x1c3f52",
                ),
                f(
                    "msedge.dll",
                    "partition_alloc::TerminateBecauseOutOfMemory",
                    "0x2a1e07",
                ),
                f(
                    "msedge.dll",
                    "partition_alloc::internal::OnNoMemory",
                    "0x2a1d8c",
                ),
                f("msedge.dll", "base::ThreadPoolImpl::RunTask", "0x11b9c0"),
                f("kernel32.dll", "BaseThreadInitThunk", "0x17034"),
                f("ntdll.dll", "RtlUserThreadStart", "0x52651"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{edge_cxx_throw, explorer_av};
    use super::*;
    use schemas::report::{Envelope, Payload, SchemaId};

    #[test]
    fn group_stamps_the_version_and_combines_both_keys() {
        let crash = explorer_av();
        let config = SignatureConfig::default();
        let grouping = group(&crash, &config);
        assert_eq!(grouping.version, GROUPING_VERSION);
        assert_eq!(grouping.bucket, bucket(&crash));
        assert_eq!(grouping.signature, signature(&crash, &config));
    }

    #[test]
    fn the_shared_crash_fixture_groups_by_its_faulting_frames() {
        let envelope: Envelope =
            serde_json::from_str(include_str!("../../schemas/fixtures/crash.json")).unwrap();
        let schema: SchemaId = envelope.schema.parse().unwrap();
        let Payload::Crash(crash) = Payload::decode(schema, &envelope.payload).unwrap() else {
            panic!("fixture is not a crash");
        };
        let grouping = group(&crash, &SignatureConfig::default());
        assert_eq!(
            grouping.signature,
            "shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc \
             | user32.dll!UserCallWinProcCheckWow"
        );
        assert_eq!(grouping.bucket, bucket(&explorer_av()));
    }

    /// Golden values for `GROUPING_VERSION` 1. If this test fails, the
    /// grouping output changed: bump `GROUPING_VERSION` and update the values,
    /// or undo the change. The bucket values were cross-checked with an
    /// independent implementation of the documented encoding.
    #[test]
    fn golden_values_for_grouping_version_1() {
        assert_eq!(GROUPING_VERSION, 1);
        let config = SignatureConfig::default();

        let explorer = group(&explorer_av(), &config);
        assert_eq!(explorer.bucket, "0b810b62f154265908ef1a58412a7952");
        assert_eq!(
            explorer.signature,
            "shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc \
             | user32.dll!UserCallWinProcCheckWow"
        );

        let edge = group(&edge_cxx_throw(), &config);
        assert_eq!(edge.bucket, "dd38fd26ec8fff8055ab33535accdbf7");
        assert_eq!(
            edge.signature,
            "msedge.dll!base::internal::OnNoMemoryInternal \
             | msedge.dll!partition_alloc::TerminateBecauseOutOfMemory \
             | msedge.dll!partition_alloc::internal::OnNoMemory"
        );

        let mut empty = explorer_av();
        empty.frames.clear();
        let empty = group(&empty, &config);
        assert_eq!(empty.bucket, explorer.bucket);
        assert_eq!(empty.signature, "shell32.dll!+0xA1B2C");
    }
}
