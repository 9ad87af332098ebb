//! Privacy at the edge: removes personal data from report text before a
//! report reaches Kafka, and — the same code on the machine — shows users
//! exactly what would leave it.
//!
//! In: a text, or a report payload (typed [`schemas::Payload`], or
//! `serde_json::Value` with its [`schemas::SchemaId`]). Out: the text with every match of a rule replaced,
//! and, added to a caller's `BTreeMap<String, u32>`, how many replacements
//! each rule made (ingest stores that map as `AcceptedReport::scrubbed`).
//! Scrubbing is deterministic: same rules, same text, same output and counts.
//!
//! # Default rules, in the order they apply
//!
//! | name        | finds                                                         | replacement            |
//! |-------------|---------------------------------------------------------------|------------------------|
//! | `user_path` | `C:\Users\<name>\`, `c:/users/<name>/`, `C:\Documents and Settings\<name>\`, `\\pc\c$\Users\<name>\`, any drive, any case | `C:\Users\<user>\` (drive, folder and separators kept) |
//! | `email`     | `zhang.wei@sgcc.com.cn` (ASCII addresses)                     | `<email>`              |
//! | `mac`       | `00:1A:2B:3C:4D:5E`, `00-1A-2B-3C-4D-5E`                      | `<mac>`                |
//! | `ipv6`      | `fe80::1ff:fe23:4567:890a`, `2001:db8::8a2e:370:7334`, `::ffff:192.168.1.20`, zones `%12` | `<ipv6>` |
//! | `ipv4`      | `192.168.1.20`, `10.0.0.1`                                    | `<ipv4>`               |
//! | `phone`     | `+86 138 0013 8000`, `010-62345678`, `(010) 6234 5678`, `13800138000`, `138-0013-8000`, `(555) 123-4567` | `<phone>` |
//!
//! `user_path` comes first so no later rule eats part of a path. The profile
//! folders `Public`, `Default`, `Default User` and `All Users` are kept.
//!
//! Each default rule but `email` has a check in code (the `regex` crate has
//! no lookaround): the match must stand alone — no ASCII letter, digit or `_`
//! next to it, nor a separator continuing the same token (`1.2.3.4` inside
//! `1.2.3.4.5` is not an address); Chinese text right next to it is fine.
//! `ipv6` must parse as `std::net::Ipv6Addr`, hold a digit and no group of
//! mixed case (so `ABC::Add` stays); `phone` must have 7 to 15 digits.
//!
//! **IPv4 against version numbers.** `ipv4` needs exactly four dot-separated
//! parts, each at most 255, standing alone, and not right after the word
//! `version`, `ver`, `build`, `版本` or `版本号` (`:`/`=` and spaces between
//! allowed). So `10.0.19041.3570`, `6.1.7601`, `v1.2.3.4`, `Version=4.0.0.0`
//! and `_6.0.0.0_` stay, while `10.0.0.1` in prose is scrubbed. The same
//! rules apply to every scrubbed field, stack frames included: versions live
//! in `version` fields, which are never scrubbed, and symbols seldom hold a
//! lone dotted quad; one that does (a UNC path `\\10.1.2.3\share`) is an
//! address worth removing. Known false positive: a bare four-part version
//! of small numbers in prose (`upgraded to 1.2.3.4`).
//!
//! Other known limits: e-mail addresses with non-ASCII local parts or
//! domains, phone numbers written without any area code or separator
//! (`62345678`), dotted MACs (`001a.2b3c.4d5e`), `/home/<name>` paths and
//! relative paths without a drive or `c$` share are not found. A run of
//! digit groups right after an international number is taken into it up to
//! 15 digits; past that the international match is dropped and only the
//! national part is caught (`+86 138 0013 8000 2026` → `+86 <phone> 2026`).
//! A user name is everything up to the next separator (or, at the end of a
//! path, the next space), so `C:\Users\bob.` loses its final dot.
//! A lone symbol of hex digits around `::` (`3D11::C` with nothing before
//! it) parses as IPv6 and is scrubbed; inside a real symbol
//! (`CD3D11Device::CreateTexture2D`) a letter touches it and it stays.
//!
//! Custom rules ([`Rule`]) are regular expressions in `regex` syntax with a
//! replacement that may use `$1`, `${name}`. A rule whose name and pattern
//! equal a default rule's keeps that rule's check; a changed pattern is used
//! as written. Empty matches are never replaced.

mod rules;

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::Regex;
use schemas::{Payload, SchemaId};
use serde_json::Value;

use crate::rules::{ByteSet, Check};

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

/// The default rules, in the order they apply: `user_path`, `email`, `mac`,
/// `ipv6`, `ipv4`, `phone`.
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

#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    regex: Regex,
    replacement: String,
    check: Option<Check>,
    /// The replacement refers to groups or the check reads them. When
    /// neither does, a match is found and judged without resolving its
    /// groups, which costs a fraction of a capture search.
    needs_groups: bool,
    /// Byte groups every replaced match holds a byte of each of; texts
    /// missing a group are skipped.
    needs: Option<&'static [&'static [u8]]>,
}

/// A compiled, ordered rule set. Cheap to clone (the regexes are shared).
#[derive(Debug, Clone)]
pub struct Scrubber {
    rules: Vec<Compiled>,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::with_default_rules()
    }
}

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
            let regex = Regex::new(&rule.pattern).map_err(|source| RuleError::Pattern {
                name: rule.name.clone(),
                source,
            })?;
            let check = rules::check_for(rule);
            compiled.push(Compiled {
                name: rule.name.clone(),
                regex,
                replacement: rule.replacement.clone(),
                check,
                needs_groups: rule.replacement.contains('$')
                    || check.is_some_and(Check::reads_groups),
                needs: rules::needs_for(rule),
            });
        }
        Ok(Scrubber { rules: compiled })
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
        let mut present = ByteSet::of(text);
        for rule in &self.rules {
            if rule.needs.is_some_and(|needs| !present.meets(needs)) {
                continue;
            }
            let mut n = 0u32;
            if let Some(replaced) = rule.apply(&current, &mut n) {
                present = ByteSet::of(&replaced);
                current = Cow::Owned(replaced);
            }
            if n > 0 {
                let count = counts.entry(rule.name.clone()).or_insert(0);
                *count = count.saturating_add(n);
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
    /// Never touches fields whose format the schema fixes (offsets, exception
    /// codes, versions, category, language, rating, day). Whether anything
    /// was replaced.
    pub fn scrub_typed(&self, payload: &mut Payload, counts: &mut BTreeMap<String, u32>) -> bool {
        let mut replaced = false;
        payload.for_each_free_text(|text| {
            if let Cow::Owned(scrubbed) = self.scrub_text(text, counts) {
                *text = scrubbed;
                replaced = true;
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

    fn scrub_field(&self, field: Option<&mut Value>, counts: &mut BTreeMap<String, u32>) {
        if let Some(Value::String(s)) = field
            && let Cow::Owned(scrubbed) = self.scrub_text(s, counts)
        {
            *s = scrubbed;
        }
    }

    fn scrub_all_strings(&self, value: &mut Value, counts: &mut BTreeMap<String, u32>) {
        match value {
            Value::String(_) => self.scrub_field(Some(value), counts),
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

impl Compiled {
    /// Replaces every accepted, non-empty match; `None` when there was none.
    /// A rejected match is left and the search resumes one character after
    /// its start, so a shorter match inside it can still be found.
    fn apply(&self, text: &str, n: &mut u32) -> Option<String> {
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut pos = 0;
        while pos <= text.len() {
            let Some(m) = self.regex.find_at(text, pos) else {
                break;
            };
            // Searching again from the match's start finds the same match,
            // now with its groups.
            let caps = if self.needs_groups && !m.is_empty() {
                self.regex.captures_at(text, m.start())
            } else {
                None
            };
            let accepted =
                !m.is_empty() && self.check.is_none_or(|c| c.accepts(text, m, caps.as_ref()));
            if !accepted {
                pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
            buf.push_str(&text[copied..m.start()]);
            match &caps {
                Some(caps) => caps.expand(&self.replacement, buf),
                None => buf.push_str(&self.replacement),
            }
            copied = m.end();
            pos = m.end();
            *n = n.saturating_add(1);
        }
        out.map(|mut buf| {
            buf.push_str(&text[copied..]);
            buf
        })
    }
}
