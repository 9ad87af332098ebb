//! The checks in code a default pass's match must pass to be replaced, and
//! which part of it is replaced.
//!
//! **Boundaries.** A number or address stands alone: no ASCII letter or
//! digit touches it, and no separator continues it into more of the same
//! (`1.2.3.4` inside `1.2.3.4.5`, a MAC inside a longer hex run, the last
//! group of a GUID). `_`, `.`, `-` and Chinese text next to a token are
//! separators: `张伟_13800138000.pdf` and `backup_192.168.1.20_full.zip`
//! hold a phone number and an address. What an earlier pass replaced is a
//! separator too, as its `<kind>` is when the text is scrubbed again.

use std::cell::Cell;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Match, Regex};

/// A check in code that a default pass's match must pass to be replaced.
/// A rejected match is left as it is and the search resumes one character
/// after its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Replace the group `t`, which must stand alone.
    Target,
    /// Replace the whole match, which must stand alone.
    Standalone,
    UserPath,
    HomeShare,
    DomainUser,
    Sid,
    Hostname,
    Email,
    Mac,
    Ipv6,
    Ipv4,
    IdCard,
    BankCard,
    PassportNamed,
    Phone,
    Qq,
    Plate,
    /// Replace the group `t`, a name after its label.
    Named,
    /// Replace the group `t`, an address after its label, if it names a
    /// place.
    Address,
}

impl Check {
    /// Whether the check reads the match's groups, not only its span.
    pub(crate) fn reads_groups(self) -> bool {
        matches!(
            self,
            Check::Target
                | Check::UserPath
                | Check::HomeShare
                | Check::DomainUser
                | Check::PassportNamed
                | Check::Qq
                | Check::Named
                | Check::Address
        )
    }

    /// What can be told from the match's span alone, before its groups are
    /// resolved (which costs a capture search): `false` leaves the match.
    pub(crate) fn may_accept(self, hay: &str, m: &Match<'_>) -> bool {
        match self {
            Check::DomainUser => {
                let before = hay[..m.start()].chars().next_back();
                let after = hay[m.end()..].chars().next();
                before.is_none_or(|c| !(c.is_ascii_alphanumeric() || "\\/.$%_-".contains(c)))
                    && after.is_none_or(|c| !matches!(c, '\\' | '/'))
            }
            Check::Qq => !letter_before(hay, m.start()),
            _ => true,
        }
    }

    /// The span of `hay` to replace for the match `m`, or `None` to leave
    /// it. `caps` are its groups, present whenever [`Check::reads_groups`].
    pub(crate) fn accepts(
        self,
        hay: &str,
        m: Match<'_>,
        caps: Option<&Captures<'_>>,
    ) -> Option<Range<usize>> {
        let (start, end, text) = (m.start(), m.end(), m.as_str());
        let group = |name: &str| caps.and_then(|c| c.name(name));
        let digit = |c: char| c.is_ascii_digit();
        match self {
            Check::Target | Check::Qq => {
                let t = group("t")?;
                let qq_ok = self != Check::Qq || !letter_before(hay, start);
                (qq_ok && alone(hay, t.start(), t.end(), &['-', '.'], digit)).then(|| t.range())
            }
            Check::Standalone => alone(hay, start, end, &['-', '.'], |c| c.is_ascii_alphanumeric())
                .then_some(m.range()),
            Check::UserPath => {
                if let Some(name) = group("name") {
                    return (!is_shared_profile(name.as_str())).then(|| name.range());
                }
                let bare = group("bare")?;
                // More than one word only for a capitalised name
                // (`Zhang Wei`), so prose after a path stays.
                let name = match bare.as_str().split_once(' ') {
                    Some((first, _)) if !first.starts_with(|c: char| c.is_ascii_uppercase()) => {
                        first
                    }
                    _ => bare.as_str(),
                };
                let name = name.trim_end_matches(['.', ')', '。', '，', ',']);
                (!name.is_empty() && !is_shared_profile(name))
                    .then(|| bare.start()..bare.start() + name.len())
            }
            Check::HomeShare => {
                if let Some(name) = group("name") {
                    return Some(name.range());
                }
                let share = group("share")?;
                let after = hay[end..].chars().next();
                let ends = after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '$');
                (ends && !is_system_share(share.as_str())).then(|| share.range())
            }
            Check::DomainUser => {
                let (domain, name) = (group("domain")?, group("name")?);
                let before = hay[..start].chars().next_back();
                let starts =
                    before.is_none_or(|c| !(c.is_ascii_alphanumeric() || "\\/.$%_-".contains(c)));
                let after = hay[end..].chars().next();
                let ends = after.is_none_or(|c| !matches!(c, '\\' | '/'));
                (starts
                    && ends
                    && !is_system_domain(domain.as_str())
                    && !is_system_account(name.as_str()))
                .then(|| name.range())
            }
            Check::Sid => alone(hay, start, end, &['-'], digit).then_some(m.range()),
            Check::Hostname => is_personal_hostname(hay, start, end, text).then_some(m.range()),
            Check::Email => email_span(text).map(|s| start + s.start..start + s.end),
            Check::Mac => {
                // Colon- and hyphen-separated groups always are a MAC
                // address; the dotted form when it holds a digit; a bare
                // run of twelve hex digits when it holds letters and
                // digits in one case.
                let has = |f: fn(&u8) -> bool| text.as_bytes().iter().any(f);
                let plausible = match text.len() {
                    12 => {
                        has(u8::is_ascii_alphabetic)
                            && has(u8::is_ascii_digit)
                            && !(has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase))
                    }
                    14 => has(u8::is_ascii_digit),
                    _ => true,
                };
                (plausible && alone(hay, start, end, &[':', '-', '.'], |c| c.is_ascii_hexdigit()))
                    .then_some(m.range())
            }
            Check::Ipv6 => (alone(hay, start, end, &[':', '.'], |c| c.is_ascii_hexdigit())
                && is_plausible_ipv6(text))
            .then_some(m.range()),
            Check::Ipv4 => {
                let octets: Vec<Option<u8>> = text.split('.').map(|o| o.parse().ok()).collect();
                let valid = octets.iter().all(Option::is_some);
                // `6.0.0.0`, `4.0.0.0`: assembly and file versions, unless
                // written as a network (`10.0.0.0/8`).
                let version_like = text.ends_with(".0.0") && !hay[end..].starts_with('/');
                (valid
                    && !version_like
                    && alone(hay, start, end, &['.'], digit)
                    && !follows_version_word(&hay[..start]))
                .then_some(m.range())
            }
            Check::IdCard => {
                let chars: Vec<u8> = text.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
                (chars.len() == 18
                    && id_check(&chars[..17]) == chars[17].to_ascii_uppercase()
                    && alone(hay, start, end, &['-', '.'], digit))
                .then_some(m.range())
            }
            Check::BankCard => {
                let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).collect();
                ((13..=19).contains(&digits.len())
                    && luhn_valid(&digits)
                    && alone(hay, start, end, &['-', '.', ' '], digit))
                .then_some(m.range())
            }
            Check::PassportNamed => {
                let t = group("t")?;
                let digits = t.as_str().bytes().filter(u8::is_ascii_digit).count();
                (digits >= 5
                    && alone(hay, t.start(), t.end(), &['-'], |c| {
                        c.is_ascii_alphanumeric()
                    }))
                .then(|| t.range())
            }
            Check::Phone => {
                let digits = text.bytes().filter(u8::is_ascii_digit).count();
                ((7..=15).contains(&digits) && alone(hay, start, end, &['-', '.', '/'], digit))
                    .then_some(m.range())
            }
            Check::Plate => {
                let after = hay[end..].chars().next();
                let digits = text.bytes().filter(u8::is_ascii_digit).count();
                (digits >= 3 && after.is_none_or(|c| !c.is_ascii_alphanumeric()))
                    .then_some(m.range())
            }
            Check::Named => group("t").map(|t| t.range()),
            Check::Address => {
                let t = group("t")?;
                const PLACES: &str = "省市区县旗镇乡村街路道巷弄胡同号楼栋幢室单元组屯";
                t.as_str()
                    .chars()
                    .any(|c| PLACES.contains(c))
                    .then(|| t.range())
            }
        }
        .filter(|span| !span.is_empty())
    }
}

/// Classes of bytes a pass may need (see [`TextStats::any`]).
pub(crate) mod class {
    pub const DIGIT: u16 = 1;
    pub const HEX_LETTER: u16 = 1 << 1;
    pub const COLON: u16 = 1 << 2;
    pub const HYPHEN: u16 = 1 << 3;
    pub const DOT: u16 = 1 << 4;
    pub const BACKSLASH: u16 = 1 << 5;
    pub const SLASH: u16 = 1 << 6;
    pub const AT: u16 = 1 << 7;
    pub const PLUS: u16 = 1 << 8;
    pub const UPPER: u16 = 1 << 9;
    /// A lead byte of the CJK ideographs (U+4E00–U+9FFF).
    pub const CJK: u16 = 1 << 10;
    pub const S: u16 = 1 << 11;
    /// The first letters of Chinese passport and permit numbers.
    pub const EGCHM: u16 = 1 << 12;
}

const fn byte_class(b: u8) -> u16 {
    use class::*;
    let mut c = 0;
    if b.is_ascii_digit() {
        c |= DIGIT;
    }
    if matches!(b, b'a'..=b'f' | b'A'..=b'F') {
        c |= HEX_LETTER;
    }
    if b.is_ascii_uppercase() {
        c |= UPPER;
    }
    c | match b {
        b':' => COLON,
        b'-' => HYPHEN,
        b'.' => DOT,
        b'\\' => BACKSLASH,
        b'/' => SLASH,
        b'@' => AT,
        b'+' => PLUS,
        b'S' => S,
        b'E' | b'G' | b'C' | b'H' | b'M' => EGCHM,
        0xE4..=0xE9 => CJK,
        _ => 0,
    }
}

static CLASSES: [u16; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = byte_class(b as u8);
        b += 1;
    }
    table
};

/// What a text holds, in one pass over its bytes: which classes of bytes,
/// how many digits and separators, the longest runs of digits and of hex
/// digits. A pass's `admit` reads these instead of searching the text.
///
/// Every figure (but `hex_quads`, see there) only grows from a text to a
/// longer text holding it, so a pass whose every replaced match is
/// admitted (tested in `rules/mod.rs`) loses nothing by skipping the texts
/// it does not admit.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextStats {
    classes: u16,
    pub digits: usize,
    pub colons: usize,
    pub hyphens: usize,
    pub dots: usize,
    pub backslashes: usize,
    pub max_digit_run: usize,
    /// Runs of four digits or more.
    pub long_digit_runs: usize,
    pub max_hex_run: usize,
    /// Maximal runs of exactly four hex digits (a dotted MAC address has
    /// three). Unlike the other figures this one can shrink in a longer
    /// text, but not around a MAC address that stands alone, the only one
    /// the pass replaces.
    pub hex_quads: usize,
    /// Which [`keyword`] groups the text holds, looked for on the first
    /// question (the passes that need one ask last).
    keywords: Cell<Option<u8>>,
    /// The [`LABELS`] found, once looked for.
    labels: Cell<Option<u8>>,
}

/// Groups of words some passes need in a text (see [`TextStats::has_keyword`]).
pub(crate) mod keyword {
    pub const PASSPORT: u8 = 1;
    pub const PHONE: u8 = 1 << 1;
    pub const QQ: u8 = 1 << 2;
    pub const MACHINE: u8 = 1 << 3;
    pub const ID_CARD: u8 = 1 << 4;
    pub const NAME: u8 = 1 << 5;
    pub const ADDRESS: u8 = 1 << 6;
}

/// Every keyword in one pattern: a single literal search (Teddy) per text.
static KEYWORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        "(?i)passport|护照|电话|座机|分机|手机|传真|tel|phone|fax|qq|pc|nb|desktop|laptop|notebook|workstation|身份证|身份證|证件|identity card|id card",
    )
    .expect("the keywords compile")
});

/// The labels of the `person_name` and `address` rules in one pattern,
/// apart from [`KEYWORDS`] so that texts without a colon (most of them)
/// never pay for it. `住址` and `地址` end every address label; the name
/// labels are written out.
static LABELS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        "姓名|联系人|申请人|负责人|经办人|收件人|收货人|报告人|反馈人|提交人|填报人|登记人|住址|地址",
    )
    .expect("the labels compile")
});

fn labels(text: &str) -> u8 {
    LABELS.find_iter(text).fold(0, |found, m| {
        found
            | if m.as_str().ends_with("址") {
                keyword::ADDRESS
            } else {
                keyword::NAME
            }
    })
}

fn keywords(text: &str) -> u8 {
    let mut found = 0;
    for m in KEYWORDS.find_iter(text) {
        let word = m.as_str();
        let is = |w: &str| word.eq_ignore_ascii_case(w);
        found |= if is("passport") || word == "护照" {
            keyword::PASSPORT
        } else if ["身份证", "身份證", "证件"].contains(&word)
            || is("identity card")
            || is("id card")
        {
            keyword::ID_CARD
        } else if is("qq") {
            keyword::QQ
        } else if ["pc", "nb", "desktop", "laptop", "notebook", "workstation"]
            .iter()
            .any(|w| is(w))
        {
            keyword::MACHINE
        } else {
            keyword::PHONE
        };
    }
    found
}

impl TextStats {
    pub(crate) fn of(text: &str) -> Self {
        use class::*;
        let classes = text
            .bytes()
            .fold(0, |classes, b| classes | CLASSES[usize::from(b)]);
        let mut stats = TextStats {
            classes,
            ..TextStats::default()
        };
        // Every pass needs one of these; a text without any (most symbols
        // and module names) needs no counting.
        if classes & (DIGIT | SLASH | BACKSLASH | AT | HYPHEN | COLON) == 0 {
            return stats;
        }
        let (mut digit_run, mut hex_run) = (0, 0);
        for &b in text.as_bytes() {
            let c = CLASSES[usize::from(b)];
            if b >= 0x80 {
                // Non-ASCII (Chinese): ends any run, counts nothing.
                stats.hex_quads += usize::from(hex_run == 4);
                digit_run = 0;
                hex_run = 0;
                continue;
            }
            if c & DIGIT != 0 {
                stats.digits += 1;
                digit_run += 1;
                hex_run += 1;
                stats.long_digit_runs += usize::from(digit_run == 4);
                stats.max_digit_run = stats.max_digit_run.max(digit_run);
                stats.max_hex_run = stats.max_hex_run.max(hex_run);
                continue;
            }
            digit_run = 0;
            if c & HEX_LETTER != 0 {
                hex_run += 1;
                stats.max_hex_run = stats.max_hex_run.max(hex_run);
                continue;
            }
            stats.hex_quads += usize::from(hex_run == 4);
            hex_run = 0;
            stats.colons += usize::from(c & COLON != 0);
            stats.hyphens += usize::from(c & HYPHEN != 0);
            stats.dots += usize::from(c & DOT != 0);
            stats.backslashes += usize::from(c & BACKSLASH != 0);
        }
        stats.hex_quads += usize::from(hex_run == 4);
        stats
    }

    /// Whether `text` (the text these are the stats of) holds a word of
    /// the [`keyword`] group.
    pub(crate) fn has_keyword(&self, text: &str, group: u8) -> bool {
        once(&self.keywords, || keywords(text)) & group != 0
    }

    /// Whether `text` (the text these are the stats of) holds a label of
    /// the `keyword::NAME` or `keyword::ADDRESS` group.
    pub(crate) fn has_label(&self, text: &str, group: u8) -> bool {
        once(&self.labels, || labels(text)) & group != 0
    }

    /// Whether the text holds a byte of any of `classes`.
    pub(crate) fn any(&self, classes: u16) -> bool {
        self.classes & classes != 0
    }
}

/// What `find` finds, found the first time only and kept in `cell`.
fn once(cell: &Cell<Option<u8>>, find: impl FnOnce() -> u8) -> u8 {
    cell.get().unwrap_or_else(|| {
        let found = find();
        cell.set(Some(found));
        found
    })
}

/// Whether `text` holds a province's character followed by an upper-case
/// letter: where a vehicle plate starts.
pub(crate) fn has_plate_start(text: &str) -> bool {
    const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";
    let bytes = text.as_bytes();
    (3..bytes.len()).any(|i| {
        bytes[i].is_ascii_uppercase()
            && text.is_char_boundary(i - 3)
            && PROVINCES.contains(&text[i - 3..i])
    })
}

/// Whether `hay[start..end]` is a token of its own: no ASCII letter or
/// digit touches it, and no `glue` character does with a `continues`
/// character beyond it. Everything else next to a token — `_`, spaces,
/// punctuation, Chinese text, a replaced span — separates it.
pub(crate) fn alone(
    hay: &str,
    start: usize,
    end: usize,
    glue: &[char],
    continues: fn(char) -> bool,
) -> bool {
    let before = hay[..start].chars().next_back();
    let after = hay[end..].chars().next();
    let touches = |c: Option<char>, beyond: Option<char>| match c {
        Some(c) if c.is_ascii_alphanumeric() => true,
        Some(c) if glue.contains(&c) => beyond.is_some_and(continues),
        _ => false,
    };
    let before_glue = before.and_then(|c| hay[..start - c.len_utf8()].chars().next_back());
    let after_glue = after.and_then(|c| hay[end + c.len_utf8()..].chars().next());
    !touches(before, before_glue) && !touches(after, after_glue)
}

fn letter_before(hay: &str, at: usize) -> bool {
    hay[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphabetic())
}

/// Profile folders every machine has; they name nobody.
fn is_shared_profile(name: &str) -> bool {
    ["public", "default", "default user", "all users"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// Hidden shares Windows and file servers make, that name nobody, and the
/// home-share roots (`home$` holds users, it is none).
fn is_system_share(share: &str) -> bool {
    [
        "admin",
        "ipc",
        "print",
        "sysvol",
        "netlogon",
        "software",
        "apps",
        "install",
        "deploy",
        "backup",
        "scans",
        "logs",
        "tools",
        "public",
        "shared",
        "data",
        "home",
        "homes",
        "users",
        "user",
        "profiles",
        "profile",
        "userdata",
        "redirect",
        "redirected",
        "folderredirection",
    ]
    .iter()
    .any(|s| share.eq_ignore_ascii_case(s))
}

/// "Domains" before a backslash that are registry hives, built-in
/// authorities or system folders.
fn is_system_domain(domain: &str) -> bool {
    domain.starts_with("HKEY")
        || [
            "HKLM",
            "HKCU",
            "HKCR",
            "HKU",
            "HKCC",
            "NT",
            "AUTHORITY",
            "BUILTIN",
            "SERVICE",
            "WINDOWS",
            "SYSTEM32",
            "SYSWOW64",
            "WINSXS",
            "DRIVERS",
            "PROGRA~1",
            "PROGRA~2",
        ]
        .contains(&domain)
}

/// Accounts every Windows machine or domain has.
fn is_system_account(name: &str) -> bool {
    [
        "system",
        "administrator",
        "administrators",
        "guest",
        "defaultaccount",
        "localservice",
        "networkservice",
        "trustedinstaller",
        "users",
        "everyone",
        "domain",
        "krbtgt",
    ]
    .iter()
    .any(|s| name.eq_ignore_ascii_case(s))
}

/// `PC-ZHANGWEI`, `zhangwei-pc`, `DESKTOP-7F3K2LQ`: one case throughout,
/// a token of its own (so `api-ms-win-core` is not one), and a name of at
/// least four letters (`PC-X64` is no person); Windows' default names
/// (`DESKTOP-` or `LAPTOP-` and seven characters) always.
fn is_personal_hostname(hay: &str, start: usize, end: usize, text: &str) -> bool {
    let upper = text.bytes().any(|b| b.is_ascii_uppercase());
    let lower = text.bytes().any(|b| b.is_ascii_lowercase());
    if upper && lower {
        return false;
    }
    if !alone(hay, start, end, &['-'], |c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let machine_words = ["pc", "desktop", "laptop", "nb", "notebook", "workstation"];
    let name = text
        .split('-')
        .filter(|part| !machine_words.iter().any(|w| part.eq_ignore_ascii_case(w)))
        .find(|part| !part.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_default();
    let default_name = text.len() == "DESKTOP-".len() + 7
        && (text.to_ascii_uppercase().starts_with("DESKTOP-")
            || text.to_ascii_uppercase().starts_with("LAPTOP-"));
    default_name || name.bytes().filter(u8::is_ascii_alphabetic).count() >= 4
}

/// The part of an e-mail match that is the address: a local part that
/// follows Chinese text (`请联系zhang.wei@…`) starts after it, and never
/// with punctuation.
fn email_span(text: &str) -> Option<Range<usize>> {
    let at = text.find('@')?;
    let local = &text[..at];
    let mut from = local
        .char_indices()
        .rfind(|(_, c)| is_cjk(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    if from == local.len() {
        // The whole local part is Chinese (`张伟@…`).
        from = 0;
    }
    // At most 64 characters (RFC 5321), the last ones.
    if let Some((cut, _)) = local[from..].char_indices().rev().nth(63) {
        from += cut;
    }
    from += local[from..].len()
        - local[from..]
            .trim_start_matches(['.', '_', '%', '+', '-'])
            .len();
    (from < at).then_some(from..text.len())
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c), 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// ISO 7064 MOD 11-2 check character of 17 digits (GB 11643).
pub(crate) fn id_check(first17: &[u8]) -> u8 {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b.wrapping_sub(b'0')) * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize]
}

pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
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

    #[test]
    fn check_digits_hold_for_published_examples() {
        // GB 11643-1999's example, and a number ending in 7.
        assert_eq!(id_check(b"11010519491231002"), b'X');
        assert_eq!(id_check(b"44052418800101001"), b'4');
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"79927398710"));
        assert!(luhn_valid(b"4111111111111111"));
    }

    #[test]
    fn email_spans_start_after_chinese_text() {
        fn span(t: &str) -> &str {
            email_span(t).map_or("", |r| &t[r])
        }
        assert_eq!(span("请联系zhang.wei@sgcc.com.cn"), "zhang.wei@sgcc.com.cn");
        assert_eq!(span("张伟@sgcc.com.cn"), "张伟@sgcc.com.cn");
        assert_eq!(span("zhāng.wěi@example.org"), "zhāng.wěi@example.org");
        assert_eq!(span("..a@b.cn"), "a@b.cn");
        assert_eq!(span("联系.@b.cn"), "");
    }

    #[test]
    fn tokens_stand_alone_across_separators() {
        let ok = |hay: &str, token: &str| {
            let start = hay.find(token).unwrap();
            alone(hay, start, start + token.len(), &['-', '.'], |c| {
                c.is_ascii_digit()
            })
        };
        assert!(ok("张伟_13800138000.pdf", "13800138000"));
        assert!(ok("电话13800138000。", "13800138000"));
        assert!(!ok("a13800138000", "13800138000"));
        assert!(!ok("1.13800138000", "13800138000"));
        assert!(!ok("13800138000-1", "13800138000"));
    }
}
