//! The project's own corpus of personal data and of clean text, generated
//! from a seed, to measure the default rules.
//!
//! ```text
//!  seed ─▶ Rng ─▶ pii::items (category, form, text, secrets) ─┐
//!                 clean::items (kind, text) ──────────────────┼─▶ templates (Chinese, Latin)
//!                                                             └─▶ every free-text field of every
//!                                                                 report type: Sample { payload, .. }
//! ```
//!
//! A personal-data item is *caught* when, after scrubbing the payload, none
//! of its secrets is left in the field it was placed in (compared on the
//! text with full-width forms folded, so a phone number is not "kept" by
//! being re-spelled) and its category's rule counted a replacement. A clean
//! item is *unchanged* when the payload comes back equal and nothing was
//! counted. `scrub/tests/corpus.rs` asserts the rates; `examples/throughput.rs`
//! times the scrubber on the same texts.
//!
//! The generator is deterministic: the same seed gives the same corpus. It
//! grows by adding forms to `pii.rs` and kinds to `clean.rs`; each new form
//! keeps its category's recall measured from then on.

mod clean;
mod labelled;
mod pii;
mod text;

use schemas::{
    AppInfo, CrashPayload, FeatureRequestPayload, FeedbackPayload, Frame, ModuleInfo, Payload,
    SchemaId,
};

pub use clean::KINDS as CLEAN_KINDS;
pub use pii::CATEGORIES;

/// The seed the tests and the throughput example use.
pub const SEED: u64 = 0x5eed_2026_1120;

/// A small, fast, deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `n` decimal digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// What must be gone from a field once an item in it was scrubbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// These digits, in this order, with nothing but separators between
    /// them (full-width digits count as digits).
    Digits(String),
    /// These hexadecimal digits, likewise (case-insensitive).
    Hex(String),
    /// This text, case-insensitive, full-width forms folded.
    Text(String),
}

impl Secret {
    /// Whether the secret is still in `text`.
    pub fn found_in(&self, text: &str) -> bool {
        let folded = fold(text);
        match self {
            Secret::Digits(digits) => project(&folded, |c| c.is_ascii_digit()).contains(digits),
            Secret::Hex(hex) => {
                project(&folded, |c| c.is_ascii_hexdigit()).contains(&hex.to_ascii_lowercase())
            }
            Secret::Text(secret) => folded.contains(&fold(secret)),
        }
    }
}

/// Full-width ASCII forms folded to ASCII, then lowercased.
fn fold(text: &str) -> String {
    text.chars()
        .map(|c| match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The runs of `keep` characters, in order, separated by at most the
/// separators a person writes between groups (spaces, `-`, `.`, `:`), so
/// `138-0013-8000` projects to `13800138000` while two numbers apart in
/// a sentence stay apart.
fn project(text: &str, keep: fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if keep(c) {
            out.push(c.to_ascii_lowercase());
        } else if matches!(c, ' ' | '-' | '.' | ':' | '\u{3000}' | '\u{a0}') {
            continue;
        } else {
            out.push('|');
        }
    }
    out
}

/// One personal-data item as it is written.
#[derive(Debug, Clone)]
pub struct PiiItem {
    /// The default rule meant to catch it, e.g. `phone`.
    pub category: &'static str,
    /// How it is written, e.g. `mobile_dots`.
    pub form: &'static str,
    pub text: String,
    pub secrets: Vec<Secret>,
}

/// One clean item: must come through unchanged.
#[derive(Debug, Clone)]
pub struct CleanItem {
    /// e.g. `version`, `guid`, `prose_zh`.
    pub kind: &'static str,
    pub text: String,
}

/// Where an item was placed: one of the free-text fields of one report
/// type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    AppName,
    ModuleName,
    FrameModule,
    FrameFunction,
    Title,
    Body,
    FeedbackText,
}

impl Field {
    /// Every free-text field of every report type (heartbeats have none).
    pub const ALL: [Field; 7] = [
        Field::AppName,
        Field::ModuleName,
        Field::FrameModule,
        Field::FrameFunction,
        Field::Title,
        Field::Body,
        Field::FeedbackText,
    ];

    pub fn schema(self) -> SchemaId {
        match self {
            Field::AppName | Field::ModuleName | Field::FrameModule | Field::FrameFunction => {
                SchemaId::CRASH_V1
            }
            Field::Title | Field::Body => SchemaId::FEATURE_REQUEST_V1,
            Field::FeedbackText => SchemaId::FEEDBACK_V1,
        }
    }

    /// The JSON path of the field, for messages.
    pub fn path(self) -> &'static str {
        match self {
            Field::AppName => "crash/1 app.name",
            Field::ModuleName => "crash/1 module.name",
            Field::FrameModule => "crash/1 frames[1].module",
            Field::FrameFunction => "crash/1 frames[1].function",
            Field::Title => "feature_request/1 title",
            Field::Body => "feature_request/1 body",
            Field::FeedbackText => "feedback/1 text",
        }
    }

    /// The schema's `maxLength` for the field.
    pub fn max_chars(self) -> usize {
        match self {
            Field::AppName | Field::ModuleName | Field::FrameModule => 260,
            Field::FrameFunction => 512,
            Field::Title => 300,
            Field::Body | Field::FeedbackText => 10_000,
        }
    }

    /// A payload of this field's report type holding `text` in the field,
    /// every other field clean.
    pub fn payload(self, text: &str) -> Payload {
        let frame = |module: &str, function: Option<&str>| Frame {
            module: module.to_owned(),
            function: function.map(str::to_owned),
            offset: "0x1a2b".to_owned(),
        };
        match self {
            Field::AppName | Field::ModuleName | Field::FrameModule | Field::FrameFunction => {
                let mut crash = CrashPayload {
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
                        frame("shell32.dll", Some("CDefView::WndProc")),
                        frame("user32.dll", Some("DispatchMessageWorker")),
                        frame("ntdll.dll", Some("RtlUserThreadStart")),
                    ],
                };
                match self {
                    Field::AppName => crash.app.name = text.to_owned(),
                    Field::ModuleName => crash.module.name = text.to_owned(),
                    Field::FrameModule => crash.frames[1].module = text.to_owned(),
                    _ => crash.frames[1].function = Some(text.to_owned()),
                }
                Payload::Crash(crash)
            }
            Field::Title | Field::Body => {
                let mut request = FeatureRequestPayload {
                    title: "希望任务栏支持按项目分组窗口".to_owned(),
                    body: Some("打开多个公文窗口时，任务栏太拥挤。".to_owned()),
                    category: "shell.taskbar".to_owned(),
                    language: Some("zh-CN".to_owned()),
                };
                match self {
                    Field::Title => request.title = text.to_owned(),
                    _ => request.body = Some(text.to_owned()),
                }
                Payload::FeatureRequest(request)
            }
            Field::FeedbackText => Payload::Feedback(FeedbackPayload {
                rating: 4,
                text: Some(text.to_owned()),
                category: "update".to_owned(),
            }),
        }
    }

    /// The field's text in `payload` (of this field's type).
    pub fn get(self, payload: &Payload) -> Option<&str> {
        match (self, payload) {
            (Field::AppName, Payload::Crash(c)) => Some(&c.app.name),
            (Field::ModuleName, Payload::Crash(c)) => Some(&c.module.name),
            (Field::FrameModule, Payload::Crash(c)) => c.frames.get(1).map(|f| f.module.as_str()),
            (Field::FrameFunction, Payload::Crash(c)) => {
                c.frames.get(1).and_then(|f| f.function.as_deref())
            }
            (Field::Title, Payload::FeatureRequest(r)) => Some(&r.title),
            (Field::Body, Payload::FeatureRequest(r)) => r.body.as_deref(),
            (Field::FeedbackText, Payload::Feedback(f)) => f.text.as_deref(),
            _ => None,
        }
    }
}

/// Sentence language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Chinese,
    Latin,
}

/// An item placed in a sentence in a field of a report.
#[derive(Debug, Clone)]
pub struct Placed<T> {
    pub item: T,
    pub field: Field,
    pub language: Language,
    /// The field's text: the sentence with the item in it.
    pub text: String,
}

impl<T> Placed<T> {
    pub fn payload(&self) -> Payload {
        self.field.payload(&self.text)
    }
}

/// The generated corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub pii: Vec<Placed<PiiItem>>,
    pub clean: Vec<Placed<CleanItem>>,
}

impl Corpus {
    /// `per_category` personal-data items of each category and
    /// `per_kind` clean items of each kind, placed round-robin in every
    /// free-text field, alternating Chinese and Latin sentences.
    pub fn generate(seed: u64, per_category: usize, per_kind: usize) -> Corpus {
        let mut rng = Rng::new(seed);
        let mut pii = Vec::new();
        for (c, category) in CATEGORIES.iter().enumerate() {
            for i in 0..per_category {
                let item = pii::item(&mut rng, category, i);
                pii.push(place(
                    &mut rng,
                    item,
                    c + i,
                    |item| &item.text,
                    text::pii_sentence,
                ));
            }
        }
        let mut clean = Vec::new();
        for (k, kind) in CLEAN_KINDS.iter().enumerate() {
            for i in 0..per_kind {
                let item = clean::item(&mut rng, kind);
                clean.push(place(
                    &mut rng,
                    item,
                    k + i,
                    |item| &item.text,
                    text::clean_sentence,
                ));
            }
        }
        Corpus { pii, clean }
    }

    /// The default corpus: [`SEED`], 400 items per category (6,800 over
    /// the 17 categories), 400 clean items per kind.
    pub fn standard() -> Corpus {
        Corpus::generate(SEED, 400, 400)
    }
}

fn place<T>(
    rng: &mut Rng,
    item: T,
    turn: usize,
    text_of: fn(&T) -> &String,
    sentence: fn(&mut Rng, Language, Field, &str) -> String,
) -> Placed<T> {
    let field = Field::ALL[turn % Field::ALL.len()];
    let language = if (turn / Field::ALL.len()).is_multiple_of(2) {
        Language::Chinese
    } else {
        Language::Latin
    };
    let text = sentence(rng, language, field, text_of(&item));
    assert!(
        text.chars().count() <= field.max_chars(),
        "a corpus sentence is too long for {}: {text}",
        field.path()
    );
    Placed {
        item,
        field,
        language,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_through_separators_and_full_width_forms() {
        let digits = Secret::Digits("13800138000".into());
        assert!(digits.found_in("电话 138-0013-8000。"));
        assert!(digits.found_in("电话 １３８ ００１３ ８０００"));
        assert!(!digits.found_in("电话 <phone>，工号 138"));
        assert!(!digits.found_in("138 和 00138000"));
        let hex = Secret::Hex("001a2b3c4d5e".into());
        assert!(hex.found_in("NIC 00:1A:2B:3C:4D:5E"));
        assert!(!hex.found_in("NIC <mac>"));
        assert!(Secret::Text("zhangwei".into()).found_in(r"C:\Users\ZhangWei\x"));
    }

    #[test]
    fn the_same_seed_gives_the_same_corpus() {
        let a = Corpus::generate(7, 20, 5);
        let b = Corpus::generate(7, 20, 5);
        let texts = |c: &Corpus| -> Vec<String> {
            c.pii
                .iter()
                .map(|p| p.text.clone())
                .chain(c.clean.iter().map(|p| p.text.clone()))
                .collect()
        };
        assert_eq!(texts(&a), texts(&b));
        assert_ne!(texts(&a), texts(&Corpus::generate(8, 20, 5)));
    }
}
