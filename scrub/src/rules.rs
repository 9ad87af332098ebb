//! The default rules: their patterns, replacements, and the checks in code
//! that decide what a pattern alone cannot (no lookaround in `regex`).
//!
//! Patterns use explicit ASCII classes (`[0-9]`, not `\d`), so a Chinese
//! character next to an address or number never hides it, and a full-width
//! digit is never taken for part of one.

use std::net::Ipv6Addr;

use regex::{Captures, Match};

use crate::Rule;

/// A check in code that a default rule's match must pass to be replaced.
/// A rejected match is left as it is and the search resumes one character
/// after its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    UserPath,
    Mac,
    Ipv6,
    Ipv4,
    Phone,
}

/// One default rule: name, pattern, replacement, check.
struct Default {
    name: &'static str,
    pattern: &'static str,
    replacement: &'static str,
    check: Option<Check>,
    /// Every match the rule replaces holds, for each of these groups, at
    /// least one byte of the group, so a text missing a group is skipped
    /// without running the pattern. (`ipv6` and `ipv4` matches may lack a
    /// digit, but their checks refuse those.)
    needs: &'static [&'static [u8]],
}

const DIGITS: &[u8] = b"0123456789";

/// In application order. `user_path` comes first so that no later rule eats
/// part of a path (an e-mail-like or numeric user name, a drive letter `C:`
/// taken for IPv6); `mac` comes before `ipv6` because a colon-separated MAC
/// address is six hex groups an IPv6 candidate would also start on.
const DEFAULTS: [Default; 6] = [
    Default {
        name: "user_path",
        // root: drive (`C:`) or administrative share (`c$`), separators,
        // `Users` or `Documents and Settings`, separators. Then either a
        // name of up to four space-separated words followed by a separator,
        // or, at the end of a path, one word. Name characters are those a
        // Windows account name may hold.
        pattern: r#"(?P<root>(?i:[a-z][:$])[\\/]+(?i:users|documents and settings)[\\/]+)(?:(?P<name>[^\\/"\[\]:;|=,+*?<>\x00-\x20]+(?: [^\\/"\[\]:;|=,+*?<>\x00-\x20]+){0,3})(?P<sep>[\\/])|(?P<bare>[^\\/"\[\]:;|=,+*?<>\x00-\x20]+))"#,
        replacement: "${root}<user>${sep}",
        check: Some(Check::UserPath),
        needs: &[b":$", b"\\/"],
    },
    Default {
        name: "email",
        pattern: r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}",
        replacement: "<email>",
        check: None,
        needs: &[b"@"],
    },
    Default {
        name: "mac",
        pattern: r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}",
        replacement: "<mac>",
        check: Some(Check::Mac),
        needs: &[b":-"],
    },
    Default {
        name: "ipv6",
        // A loose candidate (hex groups joined by `:` or `::`, an optional
        // dotted IPv4 tail or trailing `::`, an optional zone); the check
        // parses it with `std::net::Ipv6Addr`. Repetitions are bounded (an
        // address has at most eight groups) so that a rejected candidate in
        // a long `a:b:c:…` run costs a bounded rescan, not the rest of the text.
        pattern: r"(?:[0-9A-Fa-f]{1,4})?(?:::?[0-9A-Fa-f]{1,4}){1,7}(?:(?:\.[0-9]{1,3}){3}|::)?(?:%[0-9A-Za-z]{1,16})?|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}::",
        replacement: "<ipv6>",
        check: Some(Check::Ipv6),
        needs: &[b":", DIGITS],
    },
    Default {
        name: "ipv4",
        pattern: r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
        replacement: "<ipv4>",
        check: Some(Check::Ipv4),
        needs: &[b".", DIGITS],
    },
    Default {
        name: "phone",
        // International (`+86 138 0013 8000`), Chinese landline with the
        // area code in brackets or separated (`(010) 6234 5678`,
        // `010-62345678`), Chinese mobile (`13800138000`, `138 0013 8000`),
        // North American (`(555) 123-4567`, `555-123-4567`).
        pattern: r"\+[1-9][0-9]{0,2}(?:[ -]?\(?[0-9]{1,4}\)?){2,5}|\(0[1-9][0-9]{1,2}\)[ -]?[0-9]{3,4}[ -]?[0-9]{4}|0[1-9][0-9]{1,2}[ -][0-9]{3,4}[ -]?[0-9]{4}|1[3-9][0-9](?:[ -]?[0-9]{4}){2}|\(?[2-9][0-9]{2}\)?[ -]?[0-9]{3}-[0-9]{4}",
        replacement: "<phone>",
        check: Some(Check::Phone),
        needs: &[DIGITS],
    },
];

pub(crate) fn default_rules() -> Vec<Rule> {
    DEFAULTS
        .iter()
        .map(|d| Rule {
            name: d.name.to_owned(),
            pattern: d.pattern.to_owned(),
            replacement: d.replacement.to_owned(),
        })
        .collect()
}

/// The check of the default rule with this name and pattern, if any. A rule
/// whose pattern was changed is used as written, without a check: the check
/// relies on what the default pattern matches.
pub(crate) fn check_for(rule: &Rule) -> Option<Check> {
    unchanged_default(rule).and_then(|d| d.check)
}

/// For an unchanged default rule, the byte groups every replaced match
/// holds one byte of each of (see `Default::needs`); a custom or changed
/// pattern has none.
pub(crate) fn needs_for(rule: &Rule) -> Option<&'static [&'static [u8]]> {
    unchanged_default(rule).map(|d| d.needs)
}

fn unchanged_default(rule: &Rule) -> Option<&'static Default> {
    DEFAULTS
        .iter()
        .find(|d| d.name == rule.name && d.pattern == rule.pattern)
}

impl Check {
    /// Whether the check reads the match's groups, not only its span.
    pub(crate) fn reads_groups(self) -> bool {
        self == Check::UserPath
    }

    /// Whether the match `m` (found in `hay`) is to be replaced. `caps` are
    /// its groups, present whenever [`Check::reads_groups`].
    pub(crate) fn accepts(self, hay: &str, m: Match<'_>, caps: Option<&Captures<'_>>) -> bool {
        let (start, end, text) = (m.start(), m.end(), m.as_str());
        match self {
            Check::UserPath => {
                let name = caps.and_then(|caps| caps.name("name").or_else(|| caps.name("bare")));
                name.is_some_and(|n| !is_shared_profile(n.as_str()))
            }
            Check::Mac => stands_alone(hay, start, end, &[':', '-'], |c| c.is_ascii_hexdigit()),
            Check::Ipv6 => {
                stands_alone(hay, start, end, &[':', '.'], |c| c.is_ascii_hexdigit())
                    && is_plausible_ipv6(text)
            }
            Check::Ipv4 => {
                stands_alone(hay, start, end, &['.'], |c| c.is_ascii_digit())
                    && text.split('.').all(|o| o.parse::<u8>().is_ok())
                    && !follows_version_word(&hay[..start])
            }
            Check::Phone => {
                let digits = text.bytes().filter(u8::is_ascii_digit).count();
                (7..=15).contains(&digits)
                    && stands_alone(hay, start, end, &['-', '.', '/'], |c| c.is_ascii_digit())
            }
        }
    }
}

/// Which byte values a text holds: one pass over the text, then a rule's
/// needed bytes are looked up instead of searched for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    pub(crate) fn of(text: &str) -> Self {
        let mut bits = [0u64; 4];
        for b in text.bytes() {
            bits[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        ByteSet(bits)
    }

    pub(crate) fn contains_any(&self, bytes: &[u8]) -> bool {
        bytes
            .iter()
            .any(|&b| self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0)
    }

    /// Whether the text holds a byte of every group.
    pub(crate) fn meets(&self, groups: &[&[u8]]) -> bool {
        groups.iter().all(|group| self.contains_any(group))
    }
}

/// Profile folders every machine has; they name nobody.
fn is_shared_profile(name: &str) -> bool {
    ["public", "default", "default user", "all users"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `hay[start..end]` is a token of its own: no ASCII letter, digit or
/// `_` touches it, and no `glue` character does with a `continues` character
/// beyond it (so `1.2.3.4` in `1.2.3.4.5` or a MAC inside a longer
/// hex run is not one). Non-ASCII text (Chinese) around a token is fine.
fn stands_alone(
    hay: &str,
    start: usize,
    end: usize,
    glue: &[char],
    continues: fn(char) -> bool,
) -> bool {
    let before = hay[..start].chars().next_back();
    let after = hay[end..].chars().next();
    let touches = |c: Option<char>, beyond: Option<char>| match c {
        Some(c) if is_word(c) => true,
        Some(c) if glue.contains(&c) => beyond.is_some_and(continues),
        _ => false,
    };
    let before_glue = before.and_then(|c| hay[..start - c.len_utf8()].chars().next_back());
    let after_glue = after.and_then(|c| hay[end + c.len_utf8()..].chars().next());
    !touches(before, before_glue) && !touches(after, after_glue)
}

/// Parses with the standard library and then rejects what is more likely a
/// C++ scope than an address: no digit at all (`ABC::Add` parses) or a group
/// mixing upper and lower case (`Face::Add1`).
fn is_plausible_ipv6(text: &str) -> bool {
    let addr = text.split_once('%').map_or(text, |(a, _)| a);
    if addr.parse::<Ipv6Addr>().is_err() || !addr.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    addr.split(':').all(|group| {
        let upper = group.bytes().any(|b| b.is_ascii_uppercase());
        let lower = group.bytes().any(|b| b.is_ascii_lowercase());
        !(upper && lower)
    })
}

/// Whether the text before a dotted quad ends with a word announcing a
/// version (`version 10.0.0.1`, `Version=4.0.0.0`, `版本：1.2.3.4`): then it
/// is a version number, not an address.
fn follows_version_word(before: &str) -> bool {
    let trimmed = before.trim_end_matches([' ', '\t', ':', '=', '：']);
    if trimmed.ends_with("版本") || trimmed.ends_with("版本号") {
        return true;
    }
    ["version", "ver", "build"].iter().any(|word| {
        let n = word.len();
        trimmed.len() >= n
            && trimmed.is_char_boundary(trimmed.len() - n)
            && trimmed[trimmed.len() - n..].eq_ignore_ascii_case(word)
            && !trimmed[..trimmed.len() - n]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphabetic())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// Each default rule's replaced matches in texts that hold what it
    /// finds: every one holds a byte of each of the rule's `needs` groups,
    /// so skipping a text missing a group loses nothing.
    #[test]
    fn every_replaced_match_holds_the_needed_bytes() {
        let samples = [
            r"C:\Users\zhang.wei\AppData c$/users/bob d:\Documents and Settings\li\x",
            "zhang.wei@sgcc.com.cn a+b@x.org",
            "00:1A:2B:3C:4D:5E 00-1A-2B-3C-4D-5E AB:CD:EF:AB:CD:EF",
            "fe80::1ff:fe23:4567:890a 2001:db8::8a2e:370:7334 ::ffff:192.168.1.20 fe80::1%12 A::B",
            "192.168.1.20 10.0.0.1 10.0.19041.3570",
            "+86 138 0013 8000 010-62345678 (010) 6234 5678 13800138000 (555) 123-4567",
        ];
        for rule in &DEFAULTS {
            let regex = Regex::new(rule.pattern).expect("compiles");
            let mut replaced = 0;
            for text in samples {
                for m in regex.find_iter(text) {
                    let caps = regex.captures_at(text, m.start());
                    if rule
                        .check
                        .is_some_and(|c| !c.accepts(text, m, caps.as_ref()))
                    {
                        continue;
                    }
                    replaced += 1;
                    assert!(
                        ByteSet::of(m.as_str()).meets(rule.needs),
                        "{}: match {:?} lacks a needed byte",
                        rule.name,
                        m.as_str()
                    );
                }
            }
            assert!(
                replaced > 0,
                "{}: the samples hold nothing it replaces",
                rule.name
            );
        }
    }
}
