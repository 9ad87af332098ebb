//! `Report.wer` parsing (the reporter's `import-wer`) on any bytes.
//!
//! Holds: nothing panics; a crash carries a normalised exception code and
//! offset and one frame at the faulting module; and a text reads the same
//! whether it comes as UTF-8 or as UTF-16LE with a byte-order mark, as WER
//! writes it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry_fuzz::wer::{self, WerReport};

fuzz_target!(|data: &[u8]| {
    let parsed = wer::parse(data);
    if let Ok(WerReport::Crash(crash)) = &parsed {
        let payload = &crash.payload;
        let code = payload.exception_code.strip_prefix("0x").expect("0x code");
        assert!(
            code.len() == 8
                && code
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
            "exception code {:?}",
            payload.exception_code
        );
        let offset = payload.module.offset.strip_prefix("0x").expect("0x offset");
        assert!(
            (1..=16).contains(&offset.len()) && offset.bytes().all(|b| b.is_ascii_hexdigit()),
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
