//! WER-style buckets: a stable hash of where the process died.

use schemas::report::CrashPayload;
use sha2::{Digest, Sha256};

use crate::normalise_hex;

/// The bucket of a crash: 32 lower-case hex characters.
///
/// Formed from six fields, in this order, each normalised:
///
/// 1. `app.name`, trimmed and lower-cased;
/// 2. `app.version`, trimmed;
/// 3. `module.name` (the faulting module), trimmed and lower-cased;
/// 4. `module.version`, trimmed;
/// 5. `exception_code`, as upper-case hex with `0x` and no leading zeros;
/// 6. `module.offset`, likewise.
///
/// Names are lower-cased because Windows file names are case-insensitive
/// (`Shell32.DLL` is `shell32.dll`). Each field's UTF-8 bytes are preceded by
/// their length as an 8-byte big-endian integer, so no two different field
/// lists encode alike (`("ab", "c")` and `("a", "bc")` differ). The bucket is
/// the first 16 bytes of SHA-256 over that encoding, in lower-case hex. The
/// stack does not take part: that is what the signature is for.
///
/// Changing any of this changes buckets, which needs a
/// [`GROUPING_VERSION`](crate::GROUPING_VERSION) bump.
pub fn bucket(crash: &CrashPayload) -> String {
    let fields = [
        crash.app.name.trim().to_lowercase(),
        crash.app.version.trim().to_owned(),
        crash.module.name.trim().to_lowercase(),
        crash.module.version.trim().to_owned(),
        normalise_hex(&crash.exception_code),
        normalise_hex(&crash.module.offset),
    ];
    let mut hasher = Sha256::new();
    for field in &fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{explorer_av, f};
    use proptest::prelude::*;

    #[test]
    fn is_32_lower_case_hex_chars() {
        let b = bucket(&explorer_av());
        assert_eq!(b.len(), 32);
        assert!(
            b.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{b}"
        );
    }

    #[test]
    fn casing_padding_and_whitespace_do_not_matter() {
        let base = explorer_av();
        let mut same = explorer_av();
        same.app.name = "EXPLORER.EXE".to_owned();
        same.module.name = " Shell32.DLL".to_owned();
        same.exception_code = "0xc0000005".to_owned();
        same.module.offset = "0xA1B2C".to_owned();
        assert_eq!(bucket(&base), bucket(&same));

        same.module.offset = "0x000A1B2C".to_owned();
        same.exception_code = "C0000005".to_owned();
        assert_eq!(bucket(&base), bucket(&same));
    }

    #[test]
    fn the_stack_does_not_take_part() {
        let base = explorer_av();
        let mut other = explorer_av();
        other.frames.truncate(1);
        other
            .frames
            .push(f("comctl32.dll", "DefSubclassProc", "0x1a2b"));
        assert_eq!(bucket(&base), bucket(&other));
    }

    #[test]
    fn every_field_changes_the_bucket() {
        let base = bucket(&explorer_av());
        type Edit = fn(&mut CrashPayload);
        let edits: [(&str, Edit); 6] = [
            ("app name", |c| c.app.name = "sihost.exe".to_owned()),
            ("app version", |c| {
                c.app.version = "10.0.19041.4046".to_owned()
            }),
            ("module name", |c| {
                c.module.name = "windows.storage.dll".to_owned()
            }),
            ("module version", |c| {
                c.module.version = "10.0.19041.4046".to_owned()
            }),
            // 0xC0000409: stack buffer overrun (fail fast) instead of an AV.
            ("exception code", |c| {
                c.exception_code = "0xC0000409".to_owned()
            }),
            ("offset", |c| {
                c.module.offset = "0x00000000000a1b2d".to_owned()
            }),
        ];
        for (what, edit) in edits {
            let mut crash = explorer_av();
            edit(&mut crash);
            assert_ne!(bucket(&crash), base, "changing the {what} kept the bucket");
        }
    }

    #[test]
    fn versions_are_not_case_folded_or_reformatted() {
        // Versions are compared as given (after trimming): a different
        // spelling of a version is a different build as far as the bucket
        // knows.
        let mut crash = explorer_av();
        crash.app.version = "10.0.19041.03570".to_owned();
        assert_ne!(bucket(&crash), bucket(&explorer_av()));
    }

    #[test]
    fn field_boundaries_cannot_collide() {
        let mut a = explorer_av();
        a.app.name = "explorer.exe10".to_owned();
        a.app.version = ".0.19041.3570".to_owned();
        let mut b = explorer_av();
        b.app.name = "explorer.exe".to_owned();
        b.app.version = "10.0.19041.3570".to_owned();
        assert_ne!(bucket(&a), bucket(&b));

        // Shifting text between the module name and version as well.
        let mut c = explorer_av();
        c.module.name = "shell32.dll1".to_owned();
        c.module.version = "0.0.19041.3570".to_owned();
        let mut d = explorer_av();
        d.module.name = "shell32.dll".to_owned();
        d.module.version = "10.0.19041.3570".to_owned();
        assert_ne!(bucket(&c), bucket(&d));
    }

    proptest! {
        #[test]
        fn zero_padding_and_hex_case_never_matter(
            offset in 0u64..=u64::MAX,
            code in 0u32..=u32::MAX,
            pad in 0usize..8,
            upper in any::<bool>(),
        ) {
            let mut plain = explorer_av();
            plain.module.offset = format!("0x{offset:X}");
            plain.exception_code = format!("0x{code:X}");
            let mut padded = explorer_av();
            padded.module.offset = if upper {
                format!("0x{}{offset:X}", "0".repeat(pad))
            } else {
                format!("0x{offset:016x}")
            };
            padded.exception_code = if upper {
                format!("0X{code:08X}")
            } else {
                format!("0x{}{code:x}", "0".repeat(pad))
            };
            prop_assert_eq!(bucket(&plain), bucket(&padded));
        }
    }
}
