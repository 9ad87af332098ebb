//! The generated corpus (`scrub::corpus`) through the default rules, the way
//! ingest scrubs a report: recall per category of personal data, and the
//! share of clean items that come through unchanged. Prints the figures.

use std::collections::BTreeMap;

use scrub::Scrubber;
use scrub::corpus::{CATEGORIES, CLEAN_KINDS, Corpus, Field, Language, PiiItem, Placed};

/// Least recall per category, and per form within it.
const MIN_RECALL: f64 = 0.995;
/// Least share of clean items left unchanged.
const MIN_CLEAN: f64 = 0.999;

#[derive(Default)]
struct Tally {
    total: usize,
    ok: usize,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.ok += usize::from(ok);
    }

    fn rate(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.ok as f64 / self.total as f64
    }
}

/// Scrubs the item's report; `Ok` when it was caught, else what was left.
fn caught(scrubber: &Scrubber, placed: &Placed<PiiItem>) -> Result<(), String> {
    let mut payload = placed.payload();
    let mut counts = BTreeMap::new();
    scrubber.scrub_typed(&mut payload, &mut counts);
    let out = placed.field.get(&payload).unwrap_or_default();
    let left: Vec<_> = placed
        .item
        .secrets
        .iter()
        .filter(|s| s.found_in(out))
        .collect();
    if !left.is_empty() {
        return Err(format!("kept {left:?}: {out}"));
    }
    if !counts.contains_key(placed.item.category) {
        return Err(format!(
            "not counted as {}: {counts:?}",
            placed.item.category
        ));
    }
    Ok(())
}

#[test]
fn recall_per_category_and_clean_text_unchanged() {
    let corpus = Corpus::standard();
    let scrubber = Scrubber::with_default_rules();
    assert!(corpus.pii.len() >= 5000, "{} items", corpus.pii.len());

    let mut categories: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut forms: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    let mut fields: BTreeMap<(&str, bool), Tally> = BTreeMap::new();
    let mut misses = Vec::new();
    for placed in &corpus.pii {
        let result = caught(&scrubber, placed);
        let ok = result.is_ok();
        categories.entry(placed.item.category).or_default().add(ok);
        forms
            .entry((placed.item.category, placed.item.form))
            .or_default()
            .add(ok);
        fields
            .entry((placed.field.path(), placed.language == Language::Chinese))
            .or_default()
            .add(ok);
        if let Err(why) = result {
            misses.push(format!(
                "{}/{} in {}: {:?} — {why}",
                placed.item.category,
                placed.item.form,
                placed.field.path(),
                placed.text
            ));
        }
    }

    let mut clean: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut changed = Vec::new();
    for placed in &corpus.clean {
        let before = placed.payload();
        let mut payload = before.clone();
        let mut counts = BTreeMap::new();
        scrubber.scrub_typed(&mut payload, &mut counts);
        let ok = payload == before && counts.is_empty();
        clean.entry(placed.item.kind).or_default().add(ok);
        if !ok {
            changed.push(format!(
                "{} in {}: {:?} -> {:?} {counts:?}",
                placed.item.kind,
                placed.field.path(),
                placed.text,
                placed.field.get(&payload)
            ));
        }
    }

    println!("recall per category ({} items):", corpus.pii.len());
    for (category, tally) in &categories {
        println!(
            "  {category:12} {:>4}/{:<4} {:>7.2}%",
            tally.ok,
            tally.total,
            100.0 * tally.rate()
        );
    }
    println!("recall per form:");
    for ((category, form), tally) in &forms {
        println!(
            "  {category:12} {form:28} {:>4}/{:<4} {:>7.2}%",
            tally.ok,
            tally.total,
            100.0 * tally.rate()
        );
    }
    println!("recall per field and language:");
    for ((field, chinese), tally) in &fields {
        let language = if *chinese { "zh" } else { "latin" };
        println!(
            "  {field:28} {language:5} {:>4}/{:<4} {:>7.2}%",
            tally.ok,
            tally.total,
            100.0 * tally.rate()
        );
    }
    let clean_total: Tally = clean.values().fold(Tally::default(), |mut all, t| {
        all.total += t.total;
        all.ok += t.ok;
        all
    });
    println!(
        "clean items unchanged: {}/{} {:.2}%",
        clean_total.ok,
        clean_total.total,
        100.0 * clean_total.rate()
    );
    for (kind, tally) in &clean {
        println!(
            "  {kind:22} {:>4}/{:<4} {:>7.2}%",
            tally.ok,
            tally.total,
            100.0 * tally.rate()
        );
    }
    for miss in misses.iter().take(40) {
        println!("missed: {miss}");
    }
    for change in changed.iter().take(40) {
        println!("changed: {change}");
    }

    // Every category, every field of every report type, both languages.
    assert_eq!(categories.keys().copied().collect::<Vec<_>>(), {
        let mut all = CATEGORIES.to_vec();
        all.sort_unstable();
        all
    });
    assert_eq!(fields.len(), Field::ALL.len() * 2);
    assert_eq!(clean.len(), CLEAN_KINDS.len());
    for (category, tally) in &categories {
        assert!(
            tally.rate() >= MIN_RECALL,
            "recall of {category}: {:.2}%",
            100.0 * tally.rate()
        );
    }
    for ((category, form), tally) in &forms {
        assert!(
            tally.rate() >= MIN_RECALL,
            "recall of {category}/{form}: {:.2}%",
            100.0 * tally.rate()
        );
    }
    assert!(
        clean_total.rate() >= MIN_CLEAN,
        "clean items unchanged: {:.3}%",
        100.0 * clean_total.rate()
    );
}

/// A scrubbed text scrubbed again comes back as it was, with nothing
/// counted: over the whole corpus, personal data and clean text.
#[test]
fn scrubbing_the_corpus_twice_changes_nothing() {
    let corpus = Corpus::standard();
    let scrubber = Scrubber::with_default_rules();
    let texts = corpus
        .pii
        .iter()
        .map(|p| &p.text)
        .chain(corpus.clean.iter().map(|p| &p.text));
    for text in texts {
        let once = scrubber.scrub_text(text, &mut BTreeMap::new());
        let mut again = BTreeMap::new();
        let twice = scrubber.scrub_text(&once, &mut again);
        assert_eq!(twice, once, "from {text:?}");
        assert!(again.is_empty(), "{again:?} counted again in {once:?}");
    }
}
