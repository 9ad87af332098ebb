//! `Report.wer` parsing (the reporter's `import-wer`) on any bytes.
//!
//! Holds: nothing panics; a crash carries its exception code and offset in
//! the one spelling of `schemas::hex`, and one frame at the faulting module;
//! and a text reads the same whether it comes as UTF-8 or as UTF-16LE with
//! a byte-order mark, as WER writes it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry_fuzz::wer::{self, WerReport};

fuzz_target!(|data: &[u8]| {
    let parsed = wer::parse(data);
    if let Ok(WerReport::Crash(crash)) = &parsed {
        let payload = &crash.payload;
        // The one spelling (schemas::hex): `0x`, upper-case hex digits,
        // no leading zeros; at most 8 digits for a code, 16 for an offset.
        let one_spelling = |value: &str, max: usize| {
            let digits = value.strip_prefix("0x").unwrap_or_default();
            (1..=max).contains(&digits.len())
                && digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
                && (digits == "0" || !digits.starts_with('0'))
                && schemas::hex::normalise(value) == value
        };
        assert!(
            one_spelling(&payload.exception_code, 8),
            "exception code {:?}",
            payload.exception_code
        );
        assert!(
            one_spelling(&payload.module.offset, 16),
            "offset {:?}",
            payload.module.offset
        );
        assert_eq!(payload.frames.len(), 1);
        assert_eq!(payload.frames[0].module, payload.module.name);
        assert_eq!(payload.frames[0].offset, payload.module.offset);
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let mut utf8 = vec![0xEF, 0xBB, 0xBF];
        utf8.extend_from_slice(text.as_bytes());
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let from_utf8 = wer::parse(&utf8);
        assert_eq!(
            from_utf8,
            wer::parse(&utf16),
            "UTF-8 and UTF-16 differ for {text:?}"
        );
        // Without the byte-order mark, UTF-8 text reads the same unless its
        // second byte is NUL (then it is taken for BOM-less UTF-16LE).
        if !matches!(
            data,
            [_, 0, ..] | [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] | [0xEF, 0xBB, 0xBF, ..]
        ) {
            assert_eq!(parsed, from_utf8, "a BOM changed the reading of {text:?}");
        }
    }
});
