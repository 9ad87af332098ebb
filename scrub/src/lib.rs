//! Privacy at the edge: removes personal data from report text before a
//! report reaches Kafka, and — the same code on the machine — shows users
//! exactly what would leave it.
//!
//! In: a text, or a report payload (typed [`schemas::Payload`], or
//! `serde_json::Value` with its [`schemas::SchemaId`]). Out: the text with
//! every match of a rule replaced, and, added to a caller's
//! `BTreeMap<String, u32>`, how many replacements each rule made (ingest
//! stores that map as `AcceptedReport::scrubbed`). Scrubbing is
//! deterministic, and scrubbing a scrubbed text with the default rules
//! changes nothing.
//!
//! ```text
//!  text ─▶ normalise (full-width forms, typographic spaces → ASCII; normalize.rs)
//!       ─▶ each default rule, each of its passes in order, if the text's byte
//!          statistics admit it: find, check in code, hide what was taken
//!          from later passes (rules/); another round while the last one
//!          took something and turned a candidate down
//!       ─▶ replace the taken spans in the original text
//!       ─▶ custom rules, in order, on the result
//! ```
//!
//! # Default rules, in the order they apply
//!
//! | name          | finds                                                            | replacement |
//! |---------------|------------------------------------------------------------------|-------------|
//! | `user_path`   | the name in `C:\Users\<name>\`, `D:\Profiles\…`, `C:\Documents and Settings\…`, `C:\用户\…`, `\\pc\c$\Users\…`, `\Device\HarddiskVolume3\Users\…`, `/home/<name>`; names with spaces (`Zhang Wei`) | `<user>` |
//! | `home_share`  | the name in `\\fs01\home$\<name>`, `\homes\`, `\users$\`, `\profiles$\<name>.V6`, and `\\fs01\<name>$` | `<user>` |
//! | `domain_user` | the name in `SGCC\zhangwei` (an upper-case domain, not a path)  | `<user>`    |
//! | `sid`         | `S-1-5-21-…`, `S-1-12-1-…` account SIDs                          | `<sid>`     |
//! | `hostname`    | `PC-ZHANGWEI`, `ZHANGWEI-PC`, `LAPTOP-LINA`, `pc-lina.corp.local`, `DESKTOP-7F3K2LQ` | `<host>` |
//! | `email`       | `zhang.wei@sgcc.com.cn`, `张伟@sgcc.com.cn`, `李娜@公司.中国`     | `<email>`   |
//! | `mac`         | `00:1A:2B:3C:4D:5E`, `00-1A-…`, `001a.2b3c.4d5e`, `001A2B3C4D5E`  | `<mac>`     |
//! | `ipv6`        | `fe80::1ff:fe23:4567:890a%12`, `2001:db8::8a2e:370:7334`, `::ffff:192.168.1.20` | `<ipv6>` |
//! | `ipv4`        | `192.168.1.20`, `backup_10.0.0.1_full.zip`                       | `<ipv4>`    |
//! | `id_card`     | 18-digit resident identity numbers with a valid ISO 7064 MOD 11-2 check character (`X` too), whole, 6-8-4 or in fours (4-4-4-4-2); any 18 or 15 digits after `身份证`/`证件`/`ID card` | `<id_card>` |
//! | `bank_card`   | 13–19 digits passing Luhn, whole or in groups                    | `<bank_card>` |
//! | `passport`    | `E12345678`, `EA1234567`, `G12345678`, `C/H/M` + 8 digits; any number after `护照`/`passport` | `<passport>` |
//! | `phone`       | Chinese mobiles (`+86 138 0013 8000`, `138-0013-8000`, `138.0013.8000`, `8613800138000`), landlines (`010-6552 9988`, `(010) 6552 9988`, `+86 10 6552 9988`), local numbers after `电话`/`tel`, North American, any `+CC` number | `<phone>` |
//! | `qq`          | the number after `QQ`/`QQ号`                                     | `<qq>`      |
//! | `plate`       | vehicle plates `京A·12345`, `粤BD12345`                          | `<plate>`   |
//! | `person_name` | a Chinese name after a label that asks for one: `姓名：张伟`, `联系人: 欧阳娜娜`, `申请人：艾力·买买提` (`姓名`, `联系人`, `申请人`, `负责人`, `经办人`, `收件人`, `收货人`, `报告人`, `反馈人`, `提交人`, `填报人`, `登记人`) | `<name>` |
//! | `address`     | a postal address after `住址`/`地址` (`家庭住址`, `通讯地址`, `收货地址`, …) and a colon, to the end of its clause, if it names a place (`省`, `市`, `区`, `路`, `号`, …) | `<address>` |
//!
//! Before matching, full-width digits, letters and `＠．－（）＼／` become
//! ASCII, and U+3000, U+00A0 and other typographic spaces a space
//! (`１３８\u{3000}００１３\u{3000}８０００` is a phone number); the
//! replacement is made in the original text, so the rest keeps its form.
//!
//! Numbers and addresses must stand alone (see `rules/checks.rs`): no ASCII
//! letter or digit touches them and no separator continues them, while `_`,
//! `.`, `-`, brackets and Chinese text around them separate
//! (`张伟_13800138000.pdf`, `backup_192.168.1.20_full.zip`). Checksums
//! keep identity and card numbers from taking ordinary long numbers.
//!
//! **IPv4 against version numbers.** `ipv4` needs four dot-separated parts,
//! each at most 255, standing alone, not right after `version`, `ver`,
//! `build`, `版本` or `版本号`, and not ending in `.0.0` unless a `/prefix`
//! follows (`6.0.0.0` is an assembly version, `10.0.0.0/8` a network). So
//! `10.0.19041.3570`, `v1.2.3.4`, `Version=4.0.0.0` and
//! `Controls_6.0.0.0_x-ww` stay. Known false positive: a bare four-part
//! version of small numbers (`upgraded to 1.2.3.4`, `setup_1.2.3.4.msi`).
//!
//! Other known limits: 15-digit identity numbers (issued before 1999) and
//! mistyped 18-digit ones unless named as such (`身份证 …`), Taiwan and
//! foreign passport numbers without the word `passport`/`护照`,
//! local phone numbers without an area code or a word naming them,
//! relative paths and personal names outside paths and accounts are not
//! found. A bare profile name at the end of a path takes the following
//! capitalised words (`C:\Users\Zhang Wei`), so `C:\Users\Bob Then` loses
//! `Then`. A user name is everything up to the next separator, so
//! `C:\Users\bob.` loses its final dot.
//!
//! Custom rules ([`Rule`]) are regular expressions in `regex` syntax with a
//! replacement that may use `$1`, `${name}`; they see the text as it is
//! after the rules before them. A rule whose name and pattern equal a
//! default rule's keeps that rule's passes and checks (its replacement may
//! differ); a changed pattern is used as written, without checks. Empty
//! matches are never replaced.

pub mod corpus;
mod normalize;
mod rules;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use regex::Regex;
use schemas::{Payload, SchemaId};
use serde_json::Value;

use crate::rules::{Check, TextStats};

/// One scrubbing rule: every match of `pattern` is replaced by `replacement`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The key under which replacements are counted, e.g. `email`.
    pub name: String,
    /// A regular expression in `regex` crate syntax (no lookaround).
    pub pattern: String,
    /// What a match becomes; may use `$1`, `${name}` (regex crate syntax).
    pub replacement: String,
}

/// The default rules, in the order they apply (see the crate docs).
pub fn default_rules() -> Vec<Rule> {
    rules::default_rules()
}

/// Why a rule set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule `{name}`: pattern does not compile: {source}")]
    Pattern {
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("rule `{name}` is defined more than once")]
    Duplicate { name: String },
    #[error("rule number {index} (from 0) has an empty name")]
    EmptyName { index: usize },
}

/// One pass of an unchanged default rule, compiled.
#[derive(Debug, Clone)]
struct Pass {
    regex: Regex,
    check: Check,
    admit: fn(&TextStats, &str) -> bool,
    needs: u16,
    /// The check reads groups, or the replacement refers to them.
    needs_groups: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// An unchanged default rule: its passes, with their checks.
    Default(Vec<Pass>),
    /// A custom rule, or a default rule whose pattern was changed.
    Custom { regex: Regex, expands: bool },
}

#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    replacement: String,
    matcher: Matcher,
}

/// A compiled, ordered rule set. Cheap to clone (the regexes, and the
/// memory of short texts found clean, are shared).
#[derive(Debug, Clone)]
pub struct Scrubber {
    rules: Vec<Compiled>,
    clean: Arc<CleanTexts>,
}

/// Longest payload text remembered as clean: a module or function name
/// (crash stacks repeat the same few from report to report), not prose.
const CLEAN_MAX_BYTES: usize = 64;

/// How many clean texts are remembered; when full, all are forgotten (at
/// most 16,384 × 64 bytes of text, under 2 MB with the set's overhead).
const CLEAN_CAPACITY: usize = 16_384;

/// Short payload texts the rules replaced nothing in. Scrubbing is
/// deterministic, so such a text is clean again the next time; this set
/// belongs to one rule set (a [`Scrubber`] and its clones), so a change of
/// rules starts from nothing.
#[derive(Default)]
struct CleanTexts {
    /// Keyed per process (foldhash's random seed), so texts cannot be
    /// chosen to collide.
    texts: Mutex<HashSet<Box<str>, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for CleanTexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanTexts")
            .field("len", &self.lock().len())
            .finish()
    }
}

impl CleanTexts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Box<str>, foldhash::fast::RandomState>> {
        self.texts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn contains(&self, text: &str) -> bool {
        self.lock().contains(text)
    }

    fn insert(&self, text: &str) {
        let mut texts = self.lock();
        if texts.len() >= CLEAN_CAPACITY {
            texts.clear();
        }
        texts.insert(text.into());
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::with_default_rules()
    }
}

/// What stands in, while the default rules run, for a span a pass took:
/// no pattern matches it, and every check takes it for a separator.
const HIDDEN: u8 = 0x01;

impl Scrubber {
    /// Compiles `rules`, which apply in the given order.
    pub fn new(rules: &[Rule]) -> Result<Self, RuleError> {
        let mut compiled: Vec<Compiled> = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            if rule.name.is_empty() {
                return Err(RuleError::EmptyName { index });
            }
            if compiled.iter().any(|c| c.name == rule.name) {
                return Err(RuleError::Duplicate {
                    name: rule.name.clone(),
                });
            }
            let compile = |pattern: &str| {
                Regex::new(pattern).map_err(|source| RuleError::Pattern {
                    name: rule.name.clone(),
                    source,
                })
            };
            let expands = rule.replacement.contains('$');
            let matcher = match rules::unchanged_default(rule) {
                Some(default) => Matcher::Default(
                    default
                        .passes
                        .iter()
                        .map(|pass| {
                            Ok(Pass {
                                regex: compile(pass.pattern)?,
                                check: pass.check,
                                admit: pass.admit,
                                needs: pass.needs,
                                needs_groups: expands || pass.check.reads_groups(),
                            })
                        })
                        .collect::<Result<_, RuleError>>()?,
                ),
                None => Matcher::Custom {
                    regex: compile(&rule.pattern)?,
                    expands,
                },
            };
            compiled.push(Compiled {
                name: rule.name.clone(),
                replacement: rule.replacement.clone(),
                matcher,
            });
        }
        Ok(Scrubber {
            rules: compiled,
            clean: Arc::default(),
        })
    }

    /// The [`default_rules`].
    pub fn with_default_rules() -> Self {
        Self::new(&default_rules()).expect("the default rules compile")
    }

    /// The names of the rules, in the order they apply.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Scrubs one text; adds the number of replacements per rule name to
    /// `counts` (rules that replaced nothing add no entry). Borrows `text`
    /// back when nothing matched.
    pub fn scrub_text<'a>(
        &self,
        text: &'a str,
        counts: &mut BTreeMap<String, u32>,
    ) -> Cow<'a, str> {
        let mut current = Cow::Borrowed(text);
        let mut rest = self.rules.as_slice();
        while let Some(first) = rest.first() {
            let run = match first.matcher {
                Matcher::Default(_) => rest
                    .iter()
                    .take_while(|r| matches!(r.matcher, Matcher::Default(_)))
                    .count(),
                Matcher::Custom { .. } => 1,
            };
            let (group, later) = rest.split_at(run);
            rest = later;
            let replaced = match &first.matcher {
                Matcher::Default(_) => scrub_defaults(group, &current, counts),
                Matcher::Custom { regex, expands } => {
                    let mut n = 0u32;
                    let out = replace_custom(regex, *expands, &first.replacement, &current, &mut n);
                    add(counts, &first.name, n);
                    out
                }
            };
            if let Some(replaced) = replaced {
                current = Cow::Owned(replaced);
            }
        }
        current
    }

    /// Scrubs a typed payload's free-text and stack fields in place (see
    /// [`Payload::for_each_free_text`]):
    ///   crash/1: app.name, module.name, frames[].module, frames[].function
    ///   feature_request/1: title, body
    ///   feedback/1: text
    ///   heartbeat/1: nothing
    ///
    /// Never touches fields whose form the schema pins down (offsets,
    /// exception codes, versions, category, language, rating, day; see the
    /// README's "Fields a machine fills"). Whether anything was replaced.
    ///
    /// Short texts found clean (stack frames' module and function names)
    /// are remembered, and the same text is not scanned again.
    pub fn scrub_typed(&self, payload: &mut Payload, counts: &mut BTreeMap<String, u32>) -> bool {
        let mut replaced = false;
        payload.for_each_free_text(|text| {
            let short = text.len() <= CLEAN_MAX_BYTES;
            if short && self.clean.contains(text) {
                return;
            }
            match self.scrub_text(text, counts) {
                Cow::Owned(scrubbed) => {
                    *text = scrubbed;
                    replaced = true;
                }
                Cow::Borrowed(_) if short => self.clean.insert(text),
                Cow::Borrowed(_) => {}
            }
        });
        replaced
    }

    /// [`Scrubber::scrub_typed`] on a payload held as JSON, for a machine
    /// that shows what it would send. A payload that is not of a schema
    /// this build knows, or does not decode as its schema says, has every
    /// string scrubbed (object keys are not): the edge would refuse it, and
    /// nothing is shown unscrubbed.
    pub fn scrub_payload(
        &self,
        schema: SchemaId,
        payload: &mut Value,
        counts: &mut BTreeMap<String, u32>,
    ) {
        let typed = SchemaId::KNOWN
            .contains(&schema)
            .then(|| Payload::decode(schema, payload).ok())
            .flatten();
        let Some(mut typed) = typed else {
            self.scrub_all_strings(payload, counts);
            return;
        };
        if self.scrub_typed(&mut typed, counts)
            && let Ok(scrubbed) = serde_json::to_value(&typed)
        {
            *payload = scrubbed;
        }
    }

    fn scrub_all_strings(&self, value: &mut Value, counts: &mut BTreeMap<String, u32>) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(scrubbed) = self.scrub_text(s, counts) {
                    *s = scrubbed;
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|v| self.scrub_all_strings(v, counts)),
            Value::Object(map) => map
                .values_mut()
                .for_each(|v| self.scrub_all_strings(v, counts)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn add(counts: &mut BTreeMap<String, u32>, name: &str, n: u32) {
    if n > 0 {
        let count = counts.entry(name.to_owned()).or_insert(0);
        *count = count.saturating_add(n);
    }
}

/// A span of the normalised text a pass took, and what replaces it.
#[derive(Debug)]
struct Taken<'r> {
    span: Range<usize>,
    replacement: Cow<'r, str>,
}

/// Runs consecutive unchanged default rules over `text`: every pass on the
/// normalised text, each hiding what it took from the passes after it; then
/// the taken spans are replaced in the original text. `None` when nothing
/// was taken.
fn scrub_defaults(
    rules: &[Compiled],
    text: &str,
    counts: &mut BTreeMap<String, u32>,
) -> Option<String> {
    let normal = normalize::normalize(text);
    let stats = TextStats::of(&normal.text);
    if !stats.any(rules::ANY_NEEDS) {
        return None;
    }
    let mut hidden: Option<String> = None;
    let mut taken: Vec<Taken> = Vec::new();
    // Rounds until one takes nothing. A candidate a pass turned down
    // because of what stood next to it may stand alone once a later pass
    // has taken that (`fe80::` before a longer run): the next round sees
    // it as a second scrubbing would, so the result is scrubbed for good.
    // A round that took something and turned nothing down leaves nothing
    // for another.
    loop {
        let round = taken.len();
        let mut turned_down = false;
        for rule in rules {
            let Matcher::Default(passes) = &rule.matcher else {
                continue;
            };
            let mut n = 0u32;
            for pass in passes {
                if !stats.any(pass.needs) || !(pass.admit)(&stats, &normal.text) {
                    continue;
                }
                let hay = hidden.as_deref().unwrap_or(&normal.text);
                let before = taken.len();
                turned_down |= pass.find(hay, &rule.replacement, &mut taken).turned_down;
                if taken.len() > before {
                    n = n.saturating_add(u32::try_from(taken.len() - before).unwrap_or(u32::MAX));
                    let buf = hidden.get_or_insert_with(|| normal.text.to_string());
                    for t in &taken[before..] {
                        hide(buf, t.span.clone());
                    }
                }
            }
            add(counts, &rule.name, n);
        }
        if taken.len() == round || !turned_down {
            break;
        }
    }
    if taken.is_empty() {
        return None;
    }
    taken.sort_unstable_by_key(|t| t.span.start);
    let mut offsets: Vec<usize> = taken
        .iter()
        .flat_map(|t| [t.span.start, t.span.end])
        .collect();
    normal.to_original(text, &mut offsets);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (t, span) in taken.iter().zip(offsets.chunks_exact(2)) {
        let (start, end) = (span[0], span[1]);
        out.push_str(&text[copied..start]);
        out.push_str(&t.replacement);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

impl Pass {
    /// Every accepted match in `hay`, added to `taken`. A rejected match is
    /// left and the search resumes one character after its start, so a
    /// shorter match inside it can still be found.
    fn find<'r>(&self, hay: &str, replacement: &'r str, taken: &mut Vec<Taken<'r>>) -> Found {
        let mut turned_down = false;
        let mut pos = 0;
        while pos <= hay.len() {
            let Some(m) = self.regex.find_at(hay, pos) else {
                break;
            };
            // Searching again from the match's start finds the same match,
            // now with its groups.
            let caps = if self.needs_groups && !m.is_empty() && self.check.may_accept(hay, &m) {
                self.regex.captures_at(hay, m.start())
            } else {
                None
            };
            let span = (!m.is_empty())
                .then(|| self.check.accepts(hay, m, caps.as_ref()))
                .flatten()
                .filter(|span| !hay.as_bytes()[span.clone()].contains(&HIDDEN));
            let Some(span) = span else {
                turned_down = true;
                pos = m.start() + hay[m.start()..].chars().next().map_or(1, char::len_utf8);
                continue;
            };
            let replacement = match &caps {
                Some(caps) if replacement.contains('$') => {
                    let mut expanded = String::new();
                    caps.expand(replacement, &mut expanded);
                    Cow::Owned(expanded)
                }
                _ => Cow::Borrowed(replacement),
            };
            // Resume where the taken span ends: a check may take less than
            // the match (a bare user name before prose), and what follows
            // may hold another.
            pos = span.end;
            taken.push(Taken { span, replacement });
        }
        Found { turned_down }
    }
}

/// What a pass's search met besides what it took.
#[derive(Debug, Clone, Copy)]
struct Found {
    /// A candidate was turned down by its check.
    turned_down: bool,
}

/// Hides `span` of `buf` behind [`HIDDEN`] bytes, as many as the span
/// has (it is on char boundaries, so the text stays UTF-8).
fn hide(buf: &mut String, span: Range<usize>) {
    const FILL: &str = "\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}";
    let len = span.len();
    if len <= FILL.len() {
        buf.replace_range(span, &FILL[..len]);
    } else {
        buf.replace_range(span, &char::from(HIDDEN).to_string().repeat(len));
    }
}

/// A custom rule over `text`: replaces every non-empty match; `None` when
/// there was none.
fn replace_custom(
    regex: &Regex,
    expands: bool,
    replacement: &str,
    text: &str,
    n: &mut u32,
) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for caps in regex.captures_iter(text) {
        let m = caps.get(0).expect("group 0 is the match");
        if m.is_empty() {
            continue;
        }
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(&text[copied..m.start()]);
        if expands {
            caps.expand(replacement, buf);
        } else {
            buf.push_str(replacement);
        }
        copied = m.end();
        *n = n.saturating_add(1);
    }
    out.map(|mut buf| {
        buf.push_str(&text[copied..]);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{CrashPayload, Frame};

    fn crash(function: &str) -> Payload {
        let text = schemas::fixtures::CRASH;
        let report: schemas::Envelope = serde_json::from_str(text).expect("fixture");
        let mut crash: CrashPayload =
            serde_json::from_value(report.payload).expect("a crash payload");
        crash.frames = vec![Frame {
            module: "ntdll.dll".into(),
            function: Some(function.into()),
            offset: "0x1".into(),
        }];
        Payload::Crash(crash)
    }

    fn function(payload: &Payload) -> &str {
        match payload {
            Payload::Crash(crash) => crash.frames[0].function.as_deref().expect("function"),
            _ => unreachable!(),
        }
    }

    /// Texts remembered as clean are the ones nothing was replaced in; a
    /// text with something to replace is scrubbed and counted every time.
    #[test]
    fn remembered_clean_texts_scrub_as_before() {
        let scrubber = Scrubber::with_default_rules();
        let clone = scrubber.clone();
        for round in 0..3 {
            for s in [&scrubber, &clone] {
                let mut counts = BTreeMap::new();
                let mut clean = crash("RtlUserThreadStart");
                assert!(!s.scrub_typed(&mut clean, &mut counts), "round {round}");
                assert_eq!(function(&clean), "RtlUserThreadStart");
                let mut personal = crash("open_13800138000");
                assert!(s.scrub_typed(&mut personal, &mut counts), "round {round}");
                assert_eq!(function(&personal), "open_<phone>");
                assert_eq!(counts, BTreeMap::from([("phone".to_string(), 1)]));
            }
        }
        assert!(scrubber.clean.contains("RtlUserThreadStart"));
        assert!(!scrubber.clean.contains("open_13800138000"));
    }
}
