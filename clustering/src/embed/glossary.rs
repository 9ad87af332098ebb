//! Lexical evidence added to a request's embedding: a bilingual glossary of
//! Windows and office concepts (`glossary.txt`, compiled in), and the
//! request boilerplate taken out before the encoder reads the text.
//!
//! # Why
//!
//! The encoder alone confuses near misses that differ in one named thing
//! ("preview OFD files" and "preview WPS files" have cosine 0.92) and
//! misses paraphrases worded apart ("剪贴板历史" and "Win+V"). A request that
//! names a concept of the glossary, in either language, gets that
//! concept's direction added to its embedding: two requests naming the
//! same concept move together, two naming different ones (PDF and CSV,
//! Settings and Edge) each move their own way, so their cosine drops.
//!
//! # How
//!
//! Each concept has a fixed pseudo-random direction, ±1/√512 per dimension
//! from SplitMix64 seeded with the FNV-1a hash of its name (nearly
//! orthogonal to every other: |cosine| about 0.04). The request embedding
//! is `normalise(sentence + Σ weight(category) · direction(concept))` over
//! the concepts the text names. The result is an ordinary unit vector: it
//! is what is quantised, stored and clustered, so a rebuilt index, the
//! merge pass and every instance see the concepts without knowing the
//! glossary. Changing the glossary changes the embeddings of future
//! requests only.
//!
//! Matching runs on the [`crate::normalize`]d text: forms are normalised
//! the same way, the longest form is taken first and the text it covers
//! is not matched again; forms in Latin letters or digits match whole
//! words (a plural `s` or `es` allowed), Chinese forms match anywhere.

use std::collections::HashMap;

use super::DIM;
use crate::normalize;

/// The glossary this crate clusters with.
const GLOSSARY: &str = include_str!("glossary.txt");

/// Request boilerplate in Chinese, removed wherever it occurs before the
/// encoder reads the text ("I hope", "could it", "suggest", "we" ...):
/// it says nothing about what is asked and pulls unrelated requests
/// together. A bare 请 is removed only at the start (申请 is "apply").
const CHINESE_BOILERPLATE: [&str; 11] = [
    "希望",
    "能否",
    "能不能",
    "可不可以",
    "是否可以",
    "请问",
    "建议",
    "我们",
    "我想",
    "想要",
    "麻烦",
];

/// English request boilerplate, removed as whole words, any case.
const ENGLISH_BOILERPLATE: [&str; 14] = [
    "please",
    "let me",
    "let us",
    "i want to",
    "i would like to",
    "id like to",
    "we want to",
    "we would like to",
    "we need to",
    "it would be nice to",
    "could you",
    "can you",
    "can we",
    "should be able to",
];

/// The text without request boilerplate, for the encoder. Text that is all
/// boilerplate is returned unchanged.
pub fn strip_boilerplate(text: &str) -> String {
    let mut s = text.trim_start().to_string();
    if let Some(rest) = s.strip_prefix('请') {
        s = rest.to_string();
    }
    for phrase in CHINESE_BOILERPLATE {
        s = s.replace(phrase, "");
    }
    for phrase in ENGLISH_BOILERPLATE {
        s = remove_words(&s, phrase);
    }
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = s.trim_matches(|c: char| " ,.!?，。！？、".contains(c));
    if s.is_empty() {
        text.to_string()
    } else {
        s.to_string()
    }
}

/// `text` without the occurrences of the ASCII `phrase` (any case) that
/// stand as whole words; an apostrophe in the text is skipped ("I'd").
fn remove_words(text: &str, phrase: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if let Some(end) = match_ascii(bytes, i, phrase.as_bytes())
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric())
        {
            out.push_str(&text[copied..i]);
            out.push(' ');
            i = end;
            copied = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Where `phrase` (lower-case ASCII) matches `bytes` from `start`, ignoring
/// ASCII case and apostrophes in the text: the end of the match.
fn match_ascii(bytes: &[u8], start: usize, phrase: &[u8]) -> Option<usize> {
    let mut i = start;
    for &p in phrase {
        while bytes.get(i) == Some(&b'\'') && p != b'\'' && i > start {
            i += 1;
        }
        if bytes.get(i)?.to_ascii_lowercase() != p {
            return None;
        }
        i += 1;
    }
    Some(i)
}

/// One concept of the glossary.
#[derive(Debug)]
struct Concept {
    name: String,
    category: String,
    weight: f32,
}

/// One written form, normalised, and the concepts it names.
#[derive(Debug)]
struct Form {
    text: String,
    concepts: Vec<usize>,
    /// Starts / ends with an ASCII letter or digit: matched as whole words.
    latin_start: bool,
    latin_end: bool,
}

/// A glossary concept read back from an embedding ([`Glossary::decode`]):
/// its index and its category's, in the order of `glossary.txt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub category: u8,
    pub concept: u16,
}

/// Least projection of a stored unit vector on a concept's direction for
/// [`Glossary::decode`] to read that concept back. A concept the text
/// names adds 0.3 or 0.5 of its direction before the vector is normalised
/// again, so its projection is about 0.25–0.45; one it does not name
/// projects as the sentence does on a random direction, |x| about
/// 1/√512 ≈ 0.044. Chosen on the calibration half of the evaluation
/// corpus (requests' texts, not their groups): decoding there at 0.17
/// gives back exactly the concepts found in the text for all but one.
pub const DECODE_THRESHOLD: f32 = 0.17;

/// The parsed glossary with each concept's direction.
#[derive(Debug)]
pub struct Glossary {
    concepts: Vec<Concept>,
    /// Category index of each concept ([`Tag::category`]).
    categories: Vec<u8>,
    /// Dot products of every two directions, concept by concept (for
    /// [`Glossary::decode`]).
    gram: Vec<f32>,
    /// Longest first.
    forms: Vec<Form>,
    /// `DIM` values per concept.
    directions: Vec<f32>,
}

impl Glossary {
    /// The glossary compiled into this crate.
    pub fn builtin() -> Self {
        Self::parse(GLOSSARY).expect("the compiled-in glossary parses")
    }

    /// Parses the format of `glossary.txt`.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut concepts: Vec<Concept> = Vec::new();
        let mut by_form: HashMap<String, Vec<usize>> = HashMap::new();
        let mut category: Option<(String, f32)> = None;
        for (n, line) in source.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |what: &str| format!("glossary line {}: {what}", n + 1);
            if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let (name, weight) = head
                    .split_once(' ')
                    .ok_or_else(|| at("[category weight]"))?;
                let weight: f32 = weight.trim().parse().map_err(|_| at("weight"))?;
                category = Some((name.to_string(), weight));
                continue;
            }
            let (name, forms) = line.split_once('=').ok_or_else(|| at("concept = forms"))?;
            let (cat, weight) = category
                .clone()
                .ok_or_else(|| at("concept before [category]"))?;
            let name = name.trim().to_string();
            if concepts.iter().any(|c| c.name == name) {
                return Err(at(&format!("concept {name} twice")));
            }
            let index = concepts.len();
            concepts.push(Concept {
                name,
                category: cat,
                weight,
            });
            for form in forms.split('|') {
                let form = normalize(form);
                if form.is_empty() {
                    return Err(at("empty form"));
                }
                let list = by_form.entry(form).or_default();
                if !list.contains(&index) {
                    list.push(index);
                }
            }
        }
        let mut forms: Vec<Form> = by_form
            .into_iter()
            .map(|(text, concepts)| Form {
                latin_start: text
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric()),
                latin_end: text
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric()),
                text,
                concepts,
            })
            .collect();
        forms.sort_by(|a, b| {
            b.text
                .chars()
                .count()
                .cmp(&a.text.chars().count())
                .then_with(|| a.text.cmp(&b.text))
        });
        let directions: Vec<f32> = concepts.iter().flat_map(|c| direction(&c.name)).collect();
        let mut names: Vec<&str> = Vec::new();
        let mut categories = Vec::with_capacity(concepts.len());
        for c in &concepts {
            let k = match names.iter().position(|n| *n == c.category) {
                Some(k) => k,
                None => {
                    names.push(&c.category);
                    names.len() - 1
                }
            };
            categories.push(u8::try_from(k).map_err(|_| "more than 256 categories".to_string())?);
        }
        if concepts.len() > usize::from(u16::MAX) {
            return Err("more than 65,535 concepts".into());
        }
        let gram = gram(&directions);
        Ok(Self {
            gram,
            categories,
            concepts,
            forms,
            directions,
        })
    }

    /// Number of concepts.
    pub fn len(&self) -> usize {
        self.concepts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.concepts.is_empty()
    }

    /// Number of written forms.
    pub fn form_count(&self) -> usize {
        self.forms.len()
    }

    /// The concepts `text` names, as `category/name`, sorted.
    pub fn names(&self, text: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .concepts_of(text)
            .into_iter()
            .map(|i| format!("{}/{}", self.concepts[i].category, self.concepts[i].name))
            .collect();
        names.sort();
        names
    }

    /// Indices of the concepts `text` names, sorted, each once.
    fn concepts_of(&self, text: &str) -> Vec<usize> {
        let text = normalize(text);
        let mut taken = vec![false; text.len()];
        let mut found = Vec::new();
        // Most forms cannot occur: their first character is not in the
        // text (a request has a few dozen distinct characters).
        let mut present: Vec<char> = text.chars().collect();
        present.sort_unstable();
        present.dedup();
        for form in &self.forms {
            if form
                .text
                .chars()
                .next()
                .is_none_or(|c| present.binary_search(&c).is_err())
            {
                continue;
            }
            let mut from = 0;
            while let Some(pos) = text[from..].find(&form.text) {
                let start = from + pos;
                let mut end = start + form.text.len();
                from = start + form.text[..].chars().next().map_or(1, char::len_utf8);
                let bytes = text.as_bytes();
                if form.latin_start && start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
                    continue;
                }
                if form.latin_end {
                    let rest = &text[end..];
                    for plural in ["es", "s"] {
                        if rest.starts_with(plural)
                            && rest[plural.len()..]
                                .bytes()
                                .next()
                                .is_none_or(|b| !b.is_ascii_alphanumeric())
                        {
                            end += plural.len();
                            break;
                        }
                    }
                    if bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric()) {
                        continue;
                    }
                }
                if taken[start..end].iter().any(|&t| t) {
                    continue;
                }
                taken[start..end].iter_mut().for_each(|t| *t = true);
                found.extend_from_slice(&form.concepts);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The concepts a stored embedding was moved towards, read back from
    /// the vector alone, so the index rebuilt from stored embeddings, the
    /// merge pass and every instance see the same concepts without the
    /// request's text. Greedy: the concept whose direction the vector
    /// projects on most is taken if that projection reaches
    /// [`DECODE_THRESHOLD`], its share is subtracted, and so on (the
    /// directions are not exactly orthogonal; a concept named strongly
    /// would otherwise show through in a neighbour). `unit` is a unit
    /// vector of [`DIM`]. Sorted.
    pub fn decode(&self, unit: &[f32]) -> Vec<Tag> {
        let n = self.concepts.len();
        // Projections on every direction once; taking a concept out then
        // updates them through the directions' dot products.
        let mut projection: Vec<f32> = self
            .directions
            .chunks_exact(DIM)
            .map(|d| dot8(d, unit))
            .collect();
        let mut found: Vec<Tag> = Vec::new();
        while let Some((best, p)) =
            projection
                .iter()
                .copied()
                .enumerate()
                .fold(None, |b: Option<(usize, f32)>, (i, p)| {
                    if b.is_none_or(|(_, q)| p > q) {
                        Some((i, p))
                    } else {
                        b
                    }
                })
        {
            if p < DECODE_THRESHOLD || found.iter().any(|t| usize::from(t.concept) == best) {
                break;
            }
            for (q, g) in projection
                .iter_mut()
                .zip(&self.gram[best * n..(best + 1) * n])
            {
                *q -= p * g;
            }
            found.push(Tag {
                category: self.categories[best],
                concept: best as u16,
            });
        }
        found.sort_unstable();
        found
    }

    /// `sentence` (a unit vector of [`DIM`]) moved towards the directions
    /// of the concepts `text` names, and normalised again.
    pub fn enrich(&self, text: &str, mut sentence: Vec<f32>) -> Vec<f32> {
        let concepts = self.concepts_of(text);
        if concepts.is_empty() {
            return sentence;
        }
        for i in concepts {
            let w = self.concepts[i].weight;
            for (v, d) in sentence
                .iter_mut()
                .zip(&self.directions[i * DIM..(i + 1) * DIM])
            {
                *v += w * d;
            }
        }
        let norm = sentence.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            sentence.iter_mut().for_each(|v| *v /= norm);
        }
        sentence
    }
}

/// The dot products of every two of `directions` ([`DIM`] values each).
fn gram(directions: &[f32]) -> Vec<f32> {
    let rows: Vec<&[f32]> = directions.chunks_exact(DIM).collect();
    rows.iter()
        .flat_map(|a| rows.iter().map(|b| dot8(a, b)))
        .collect()
}

/// Dot product with eight independent sums (vector registers).
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum()
}

/// A concept's direction: ±1/√[`DIM`] per dimension, the signs from
/// SplitMix64 seeded with FNV-1a 64 of the name.
fn direction(name: &str) -> Vec<f32> {
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let unit = 1.0 / (DIM as f32).sqrt();
    let mut out = Vec::with_capacity(DIM);
    while out.len() < DIM {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        for bit in 0..64 {
            out.push(if z >> bit & 1 == 1 { unit } else { -unit });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concepts_are_found_in_both_languages() {
        let g = Glossary::builtin();
        assert!(g.len() >= 150, "{}", g.len());
        assert_eq!(
            g.names("Export Event Viewer logs to PDF"),
            ["app/event_viewer", "feature/export", "format/pdf"]
        );
        assert_eq!(
            g.names("事件查看器日志导出为PDF"),
            ["app/event_viewer", "feature/export", "format/pdf"]
        );
        // Whole words for Latin forms, plurals allowed; the longest form
        // wins ("lock screen" is not also "lock").
        assert_eq!(g.names("Tabs in Notepad"), ["app/notepad", "feature/tabs"]);
        assert_eq!(g.names("tablet mode"), Vec::<String>::new());
        assert_eq!(
            g.names("No ads on the lock screen"),
            ["feature/ads", "surface/lock_screen"]
        );
        // Full-width and mixed forms are normalised like requests.
        assert_eq!(
            g.names("ＰＤＦ转Ｗｏｒｄ"),
            ["format/pdf", "format/word_document"]
        );
        assert_eq!(g.names("只允许登记过的U盘"), ["device/usb_drive"]);
    }

    #[test]
    fn a_shared_concept_pulls_together_and_different_ones_apart() {
        let g = Glossary::builtin();
        let base = {
            let mut v = vec![0.0f32; DIM];
            v[0] = 1.0;
            v
        };
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let pdf = g.enrich("export to PDF", base.clone());
        let pdf_zh = g.enrich("导出为PDF", base.clone());
        let csv = g.enrich("export to CSV", base.clone());
        assert!((cos(&pdf, &pdf) - 1.0).abs() < 1e-4, "{}", cos(&pdf, &pdf));
        assert!((cos(&pdf, &pdf_zh) - 1.0).abs() < 1e-4);
        // Same sentence, different formats: 1 / (1 + 0.3²), with the shared
        // "export" direction in both.
        assert!(cos(&pdf, &csv) < 0.95, "{}", cos(&pdf, &csv));
        assert_eq!(g.enrich("nothing known here", base.clone()), base);
    }

    #[test]
    fn concepts_are_read_back_from_the_stored_vector() {
        let g = Glossary::builtin();
        // A sentence direction orthogonal to nothing in particular.
        let base: Vec<f32> = (0..DIM)
            .map(|i| ((i * 7919 % 61) as f32 - 30.0) / 30.0)
            .collect();
        let norm = base.iter().map(|v| v * v).sum::<f32>().sqrt();
        let base: Vec<f32> = base.iter().map(|v| v / norm).collect();
        for text in [
            "Export Event Viewer logs to PDF",
            "事件查看器日志导出为PDF",
            "No ads on the lock screen",
            "ＰＤＦ转Ｗｏｒｄ",
            "nothing known here",
        ] {
            let stored = crate::embed::Embedding(g.enrich(text, base.clone())).quantize();
            let mut names: Vec<String> = g
                .decode(&stored.unit())
                .into_iter()
                .map(|t| {
                    let c = &g.concepts[usize::from(t.concept)];
                    assert_eq!(g.categories[usize::from(t.concept)], t.category);
                    format!("{}/{}", c.category, c.name)
                })
                .collect();
            names.sort();
            assert_eq!(names, g.names(text), "{text}");
        }
    }

    #[test]
    fn boilerplate_is_taken_out_before_the_encoder() {
        assert_eq!(
            strip_boilerplate("希望开始菜单支持分组"),
            "开始菜单支持分组"
        );
        assert_eq!(
            strip_boilerplate("Please let me move the taskbar"),
            "move the taskbar"
        );
        assert_eq!(strip_boilerplate("请增加申请入口"), "增加申请入口");
        assert_eq!(strip_boilerplate("I'd like to PLEASE print"), "print");
        assert_eq!(strip_boilerplate("please"), "please");
        assert_eq!(strip_boilerplate("pleased users"), "pleased users");
    }

    #[test]
    fn directions_are_fixed_and_nearly_orthogonal() {
        let a = direction("pdf");
        assert_eq!(a, direction("pdf"));
        let b = direction("csv");
        let norm: f32 = a.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!(dot.abs() < 0.2, "{dot}");
    }
}
