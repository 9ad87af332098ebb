//! The scrubber on any text, and on any payload held as JSON.
//!
//! Holds: nothing panics; a text comes back borrowed exactly when no rule
//! counted a replacement, and changed when one did; scrubbing is
//! deterministic, counts included; and scrubbing a scrubbed text changes
//! nothing and counts nothing (what a pass took is hidden from the passes
//! after it, and reads as a separator, as its `<kind>` does on a second
//! pass).

#![no_main]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use schemas::SchemaId;
use scrub::Scrubber;
use serde_json::Value;

static SCRUBBER: LazyLock<Scrubber> = LazyLock::new(Scrubber::with_default_rules);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut counts = BTreeMap::new();
    let once = SCRUBBER.scrub_text(&text, &mut counts);
    assert_eq!(
        matches!(once, Cow::Borrowed(_)),
        counts.is_empty(),
        "borrowed iff nothing counted: {counts:?} for {text:?}"
    );
    if let Cow::Owned(scrubbed) = &once {
        assert_ne!(
            scrubbed, &*text,
            "an unchanged text came back owned: {counts:?}"
        );
    }
    let mut again = BTreeMap::new();
    assert_eq!(
        SCRUBBER.scrub_text(&text, &mut again),
        once,
        "not deterministic"
    );
    assert_eq!(again, counts, "counts not deterministic");
    let mut second = BTreeMap::new();
    let twice = SCRUBBER.scrub_text(&once, &mut second);
    assert_eq!(twice, once, "a second pass changed {text:?}: {second:?}");
    assert!(second.is_empty(), "a second pass counted {second:?} in {once:?}");

    // The same bytes as a payload of each schema: no panic.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        for schema in SchemaId::KNOWN {
            let mut payload = value.clone();
            SCRUBBER.scrub_payload(schema, &mut payload, &mut BTreeMap::new());
        }
    }
});
