//! The default rules: their patterns, in the order they apply, and the
//! checks in code that decide what a pattern alone cannot (`regex` has no
//! lookaround; checksums and boundaries are easier said in code).
//!
//! A default rule is one or more patterns ("passes"). Each pass runs over
//! the whole text before the next one starts, and what a pass replaced is
//! hidden from every later pass and rule (see `lib.rs`), so a specific
//! form is taken whole before a looser one could take part of it.
//!
//! Patterns see the normalised text (`normalize.rs`: full-width forms and
//! typographic spaces folded to ASCII) and use explicit ASCII classes
//! (`[0-9]`, not `\d`).

mod checks;

use std::sync::LazyLock;

use checks::class::*;
use checks::has_plate_start;
use checks::keyword;
pub(crate) use checks::{Check, TextStats};
/// Classes of bytes some pass needs one of: a text with none is left as it is.
pub(crate) const ANY_NEEDS: u16 = DIGIT | SLASH | BACKSLASH | AT | HYPHEN | COLON | CJK;

use crate::Rule;

/// One pass of a default rule.
#[derive(Debug)]
pub(crate) struct Pass {
    pub pattern: &'static str,
    pub check: Check,
    /// Whether a text can hold a match the pass replaces, from its
    /// [`TextStats`] and cheap looks at the text (a keyword it must hold); a
    /// text it does not admit skips the pass. It must admit every match the
    /// pass replaces, taken alone, and every text holding one.
    pub admit: fn(&TextStats, &str) -> bool,
    /// Classes of bytes (`checks::class`) of which `admit` needs one: a
    /// text with none skips the pass without asking.
    pub needs: u16,
}

/// One default rule: its name (the key it is counted under), its
/// replacement, and its passes.
#[derive(Debug)]
pub(crate) struct Default {
    pub name: &'static str,
    pub replacement: &'static str,
    pub passes: &'static [Pass],
}

/// A user name in a path: what a Windows account name may hold.
macro_rules! name {
    () => {
        r#"[^\\/"\[\]:;|=,+*?<>\x00-\x20]"#
    };
}

/// In application order. Paths first, so no later rule eats part of one
/// (an e-mail-like or numeric user name, a drive letter taken for IPv6);
/// `domain_user` before `hostname` (`PC-ZHANGWEI\zhangwei` keeps both);
/// e-mail before the numbers (a phone number as a local part); `sid`
/// before the numbers its parts look like; `mac` before `ipv6` (six hex
/// groups an IPv6 candidate would start on); identity and card numbers,
/// checked by their check digits, before phone numbers; the loosest
/// phone form (any `+CC`) after them; names and addresses named by a label
/// last, so an address's clause ends at a number taken before it.
pub(crate) const DEFAULTS: &[Default] = &[
    Default {
        name: "user_path",
        replacement: "<user>",
        passes: &[
            Pass {
                // root: a drive (`C:`), an administrative share (`c$`), an
                // NT device volume or `%SystemDrive%`; then a profile
                // folder; then either a name of up to four space-separated
                // words followed by a separator, or, at the end of a path,
                // a bare name.
                pattern: concat!(
                    r"(?:(?i:[a-z])[:$]|(?i:harddiskvolume)[0-9]{1,3}|%(?i:systemdrive)%)[\\/]+",
                    r"(?i:users|documents and settings|profiles|user profiles|userprofiles|用户)[\\/]+",
                    "(?:(?P<name>",
                    name!(),
                    "+(?: ",
                    name!(),
                    "+){0,3})[\\\\/]",
                    "|(?P<bare>",
                    name!(),
                    "+(?: [A-Z]",
                    name!(),
                    "*){0,2}))"
                ),
                check: Check::UserPath,
                admit: |s, _| s.any(BACKSLASH | SLASH),
                needs: BACKSLASH | SLASH,
            },
            Pass {
                // `/home/<name>`, `/Users/<name>` at the start of a path.
                pattern: r"(?:^|[\s'(=:：])/(?:home|Users)/(?P<t>[A-Za-z0-9][A-Za-z0-9._-]{0,31})",
                check: Check::Target,
                admit: |s, _| s.any(SLASH),
                needs: SLASH,
            },
        ],
    },
    Default {
        name: "home_share",
        replacement: "<user>",
        passes: &[Pass {
            // `\\server\home$\<name>` and the like, and a user's own
            // hidden share `\\server\<name>$`.
            pattern: concat!(
                r"\\{2,}[^\\/\s<>|]+[\\/]+",
                r"(?:(?i:home|homes|users|user|profiles|profile|userdata|redirect|redirected|folderredirection|用户)\$?[\\/]+",
                "(?P<name>",
                name!(),
                "+)",
                r"|(?P<share>[A-Za-z][A-Za-z0-9._-]{1,30})\$)"
            ),
            check: Check::HomeShare,
            admit: |s, _| s.backslashes >= 2,
            needs: BACKSLASH,
        }],
    },
    Default {
        name: "domain_user",
        replacement: "<user>",
        passes: &[Pass {
            pattern: r"(?P<domain>[A-Z][A-Z0-9-]{1,14})\\(?P<name>[A-Za-z][A-Za-z0-9._-]{0,30}|\p{Han}{2,4})",
            check: Check::DomainUser,
            admit: |s, _| s.backslashes >= 1 && s.any(UPPER),
            needs: BACKSLASH,
        }],
    },
    Default {
        name: "sid",
        replacement: "<sid>",
        passes: &[Pass {
            // Domain and machine accounts (`S-1-5-21-…`) and Entra ID
            // accounts (`S-1-12-1-…`); well-known SIDs name nobody.
            pattern: r"S-1-(?:5-21|12-1)(?:-[0-9]{1,10}){3,4}",
            check: Check::Sid,
            admit: |s, _| s.any(S) && s.hyphens >= 5 && s.digits >= 7,
            needs: DIGIT,
        }],
    },
    Default {
        name: "hostname",
        replacement: "<host>",
        passes: &[Pass {
            // A machine word and a name: `PC-ZHANGWEI`, `ZHANGWEI-PC`,
            // `LAPTOP-LINA`, `DESKTOP-7F3K2LQ` (Windows' own default).
            pattern: r"(?i:(?:PC|DESKTOP|LAPTOP|NB|NOTEBOOK|WORKSTATION)-[A-Z0-9]{2,15}(?:-[0-9]{1,4})?|[A-Z0-9]{2,15}-(?:PC|LAPTOP|DESKTOP|NB))",
            check: Check::Hostname,
            admit: |s, t| s.hyphens >= 1 && s.has_keyword(t, keyword::MACHINE),
            needs: HYPHEN,
        }],
    },
    Default {
        name: "email",
        replacement: "<email>",
        passes: &[Pass {
            // Any letters in the local part (`张伟@…`, `zhāng.wěi@…`); an
            // ASCII domain, or labels in any script under a Chinese
            // top-level domain. (The local part is unbounded here, which
            // keeps the automaton small; the check keeps its last 64
            // characters.)
            pattern: concat!(
                r"[\p{L}\p{N}._%+-]+@",
                r"(?:(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}",
                r"|(?:[\p{L}\p{N}-]+\.)+(?:中国|中國|公司|网络|網絡|政务|公益|在线|集团))"
            ),
            check: Check::Email,
            admit: |s, _| s.any(AT),
            needs: AT,
        }],
    },
    Default {
        name: "mac",
        replacement: "<mac>",
        passes: &[Pass {
            // `00:1A:2B:3C:4D:5E`, `00-1A-…`, `001a.2b3c.4d5e`, `001A2B3C4D5E`.
            pattern: r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12}",
            check: Check::Mac,
            // The forms without a separator hold a digit (see the check).
            admit: |s, _| {
                s.colons >= 5
                    || s.hyphens >= 5
                    || (s.dots >= 2 && s.digits >= 1 && s.hex_quads >= 3)
                    || s.max_hex_run >= 12
            },
            needs: COLON | HYPHEN | DIGIT,
        }],
    },
    Default {
        name: "ipv6",
        replacement: "<ipv6>",
        passes: &[Pass {
            // A loose candidate; the check parses it. Repetitions are
            // bounded so that a rejected candidate in a long `a:b:c:…` run
            // costs a bounded rescan.
            pattern: r"(?:[0-9A-Fa-f]{1,4})?(?:::?[0-9A-Fa-f]{1,4}){1,7}(?:(?:\.[0-9]{1,3}){3}|::)?(?:%[0-9A-Za-z]{1,16})?|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}::",
            check: Check::Ipv6,
            admit: |s, _| s.colons >= 2 && s.digits >= 1,
            needs: COLON,
        }],
    },
    Default {
        name: "ipv4",
        replacement: "<ipv4>",
        passes: &[Pass {
            pattern: r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
            check: Check::Ipv4,
            admit: |s, _| s.dots >= 3 && s.digits >= 4,
            needs: DIGIT,
        }],
    },
    Default {
        name: "id_card",
        replacement: "<id_card>",
        passes: &[
            Pass {
                // Resident identity card (GB 11643): region, birth date,
                // sequence, ISO 7064 MOD 11-2 check character; whole,
                // grouped 6-8-4, or in fours as a form's boxes print it
                // (4-4-4-4-2).
                pattern: concat!(
                    r"[1-8][0-9]{5}[ -]?(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[ -]?[0-9]{3}[0-9Xx]",
                    r"|[1-8][0-9]{3}[ -][0-9]{2}(?:18|19|20)[ -][0-9]{2}(?:0[1-9]|1[0-2])[ -](?:0[1-9]|[12][0-9]|3[01])[0-9]{2}[ -][0-9][0-9Xx]"
                ),
                check: Check::IdCard,
                admit: |s, _| s.digits >= 17 && (s.max_digit_run >= 8 || s.long_digit_runs >= 4),
                needs: DIGIT,
            },
            Pass {
                // Any 18- or 15-digit number (issued before 1999) named as an
                // identity number, its check character right or mistyped.
                pattern: r"(?i:身份证|身份證|证件|identity card|id card)(?:号码|号|號碼|號| no\.?| number)?[ ]*[:：#]?[ ]*(?P<t>[0-9]{17}[0-9Xx]|[0-9]{15})",
                check: Check::Target,
                admit: |s, t| s.digits >= 15 && s.has_keyword(t, keyword::ID_CARD),
                needs: DIGIT,
            },
        ],
    },
    Default {
        name: "bank_card",
        replacement: "<bank_card>",
        passes: &[Pass {
            // 13 to 19 digits passing Luhn, whole or in groups of four
            // (American Express 4-6-5).
            pattern: r"[3-6][0-9]{3}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,4})?|3[47][0-9]{2}[ -][0-9]{6}[ -][0-9]{5}|[3-6][0-9]{12,18}",
            check: Check::BankCard,
            // Whole, or in at least three groups of four or more.
            admit: |s, _| s.digits >= 13 && (s.max_digit_run >= 13 || s.long_digit_runs >= 3),
            needs: DIGIT,
        }],
    },
    Default {
        name: "passport",
        replacement: "<passport>",
        passes: &[
            Pass {
                // Chinese passports (`E12345678`, `EA1234567`, `G12345678`)
                // and Hong Kong and Macao travel permits (`C…`, `H…`, `M…`).
                pattern: r"E[A-HJ-NP-Z][0-9]{7}|[EGCHM][0-9]{8}",
                check: Check::Standalone,
                admit: |s, _| s.any(EGCHM) && s.max_digit_run >= 7,
                needs: DIGIT,
            },
            Pass {
                // Any other number named as a passport's.
                pattern: r"(?i:passport(?:[ .]*(?:no\.?|number|#))?|护照(?:号码|号)?)[ ]*[:：#]?[ ]*(?P<t>[A-Z0-9]{6,12})",
                check: Check::PassportNamed,
                admit: |s, t| s.digits >= 5 && s.has_keyword(t, keyword::PASSPORT),
                needs: DIGIT,
            },
        ],
    },
    Default {
        name: "phone",
        replacement: "<phone>",
        passes: &[
            Pass {
                // National numbers, tried in this order at each position:
                // Chinese mobiles (`13800138000`, `+86 138 0013 8000`,
                // `138-0013-8000`, `138.0013.8000`, `(+86)…`, `0086-…`,
                // `8613800138000` as exported address books write it);
                // Chinese landlines with the area code (`010-6552 9988`,
                // `(010) 6552 9988`, `+86 10 6552 9988`, `01065529988`,
                // with an extension); North American (`(555) 123-4567`,
                // `555-123-4567`, `555.123.4567`).
                pattern: concat!(
                    r"(?:(?:\+|00)86[ -]?|\(\+?86\)[ -]?|86-?)?(?:1[3-9][0-9](?:(?:[.-]| {1,3})?[0-9]{4}){2}|1[3-9][0-9]{2}(?:[.-]| {1,3})[0-9]{3}(?:[.-]| {1,3})[0-9]{4})",
                    r"|(?:(?:\+|00)86[ -]?(?:\(0?[1-9][0-9]{1,2}\)|0?[1-9][0-9]{1,2})|\(0[1-9][0-9]{1,2}\)|0[1-9][0-9]{1,2})[ .-]?[2-8][0-9]{2,3}[ .-]?[0-9]{4}(?:(?:-|转|(?i:ext)\.? ?|x|#)[0-9]{1,5})?",
                    r"|\(?[2-9][0-9]{2}\)?[ -]?[0-9]{3}-[0-9]{4}|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}"
                ),
                check: Check::Phone,
                admit: |s, _| s.digits >= 10 && s.max_digit_run >= 3,
                needs: DIGIT,
            },
            Pass {
                // A local number named as a phone's: `电话：6552 9988`.
                pattern: r"(?i:电话|座机|分机|手机|传真|tel|phone|fax)(?:号码)?\.?[ ]*[:：#]?[ ]*(?P<t>[2-8][0-9]{2,3}[ .-]?[0-9]{4})",
                check: Check::Target,
                admit: |s, t| {
                    s.digits >= 7 && s.max_digit_run >= 3 && s.has_keyword(t, keyword::PHONE)
                },
                needs: DIGIT,
            },
            Pass {
                // Any other international number: `+44 20 7946 0958`.
                pattern: r"\+[1-9][0-9]{0,2}(?:[ -]?\(?[0-9]{1,4}\)?){2,5}",
                check: Check::Phone,
                admit: |s, _| s.any(PLUS) && s.digits >= 7,
                needs: DIGIT,
            },
        ],
    },
    Default {
        name: "qq",
        replacement: "<qq>",
        passes: &[Pass {
            pattern: r"(?i:QQ)(?:号码|号)?[ ]*[:：#]?[ ]*(?P<t>[1-9][0-9]{4,10})",
            check: Check::Qq,
            admit: |s, t| s.max_digit_run >= 5 && s.has_keyword(t, keyword::QQ),
            needs: DIGIT,
        }],
    },
    Default {
        name: "plate",
        replacement: "<plate>",
        passes: &[Pass {
            // Vehicle plates: province, city letter, five or six characters.
            pattern: r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·•・. ]?[A-HJ-NP-Z0-9]{5,6}",
            check: Check::Plate,
            admit: |s, t| s.digits >= 3 && s.any(CJK) && s.any(UPPER) && has_plate_start(t),
            needs: DIGIT,
        }],
    },
    Default {
        name: "person_name",
        replacement: "<name>",
        passes: &[Pass {
            // A Chinese name given after a label that asks for one:
            // `姓名：张伟`, `联系人: 欧阳娜娜`, `申请人：艾力·买买提`. Two to
            // four characters (a name running into the next word takes a
            // character or two of it along), and a second part after a
            // middle dot for the names of minorities.
            pattern: concat!(
                r"(?:姓名|联系人|申请人|负责人|经办人|收件人|收货人|报告人|反馈人|提交人|填报人|登记人|用户姓名|真实姓名)",
                r"[ ]*[:：][ ]*(?P<t>\p{Han}{2,4}(?:[·•・]\p{Han}{2,6})?)"
            ),
            check: Check::Named,
            // The label is Chinese, the colon either width (`：` is not
            // folded).
            admit: |s, t| (s.any(COLON) || t.contains('：')) && s.has_label(t, keyword::NAME),
            needs: CJK,
        }],
    },
    Default {
        name: "address",
        replacement: "<address>",
        passes: &[Pass {
            // A postal address given after a label that asks for one:
            // `住址：北京市海淀区中关村大街27号1101室`, up to the end of its
            // clause (a comma, a full stop, a space, or what an earlier
            // rule took), if it names a place (`省`, `市`, `区`, `路`,
            // `号`, …): `地址：http://…` stays.
            pattern: concat!(
                r"(?:家庭住址|家庭地址|通讯地址|通信地址|联系地址|收货地址|邮寄地址|户籍地址|居住地址|现住址|住址|地址)",
                r#"[ ]*[:：][ ]*(?P<t>[^,，。;；!！?？、\s\x01"'“”‘’()（）【】\[\]<>{}]{2,60})"#
            ),
            check: Check::Address,
            // The label is Chinese, the colon either width (`：` is not
            // folded).
            admit: |s, t| (s.any(COLON) || t.contains('：')) && s.has_label(t, keyword::ADDRESS),
            needs: CJK,
        }],
    },
];

/// Each default rule's pattern as a `Rule` shows it: its passes joined as
/// one alternation.
static JOINED: LazyLock<Vec<String>> = LazyLock::new(|| {
    DEFAULTS
        .iter()
        .map(|d| match d.passes {
            [one] => one.pattern.to_owned(),
            passes => passes
                .iter()
                .map(|p| format!("(?:{})", p.pattern))
                .collect::<Vec<_>>()
                .join("|"),
        })
        .collect()
});

pub(crate) fn default_rules() -> Vec<Rule> {
    DEFAULTS
        .iter()
        .zip(JOINED.iter())
        .map(|(d, pattern)| Rule {
            name: d.name.to_owned(),
            pattern: pattern.clone(),
            replacement: d.replacement.to_owned(),
        })
        .collect()
}

/// The default rule with this name and pattern, if `rule` is one. A rule
/// whose pattern was changed is used as written, as one pattern without a
/// check: the checks rely on what the default patterns match.
pub(crate) fn unchanged_default(rule: &Rule) -> Option<&'static Default> {
    DEFAULTS
        .iter()
        .zip(JOINED.iter())
        .find(|(d, pattern)| d.name == rule.name && **pattern == rule.pattern)
        .map(|(d, _)| d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Corpus;
    use regex::Regex;

    /// Texts every pass replaces something in: the corpus, and forms the
    /// corpus does not write.
    fn samples() -> Vec<String> {
        let mut texts: Vec<String> = Corpus::generate(11, 60, 0)
            .pii
            .into_iter()
            .map(|p| crate::normalize::normalize(&p.text).text.into_owned())
            .collect();
        texts.extend(
            [
                "see /home/zhangwei/.bashrc",
                "passport no. 123456789 and 护照号码 K12345678",
                "身份证号码：110105194912310021，ID card 110105491231002",
                "call +44 20 7946 0958 or (555) 123-4567 or 555.123.4567",
                "AB:CD:EF:AB:CD:EF",
            ]
            .map(String::from),
        );
        texts
    }

    /// Every match a pass replaces is admitted on its own, so skipping a
    /// text the pass does not admit loses nothing (the stats only grow
    /// from a match to a text holding it).
    #[test]
    fn every_replaced_match_is_admitted_alone() {
        let texts = samples();
        for rule in DEFAULTS {
            for pass in rule.passes {
                let regex = Regex::new(pass.pattern).expect("compiles");
                let mut replaced = 0;
                for text in &texts {
                    for caps in regex.captures_iter(text) {
                        let m = caps.get(0).expect("a match");
                        if pass.check.accepts(text, m, Some(&caps)).is_none() {
                            continue;
                        }
                        replaced += 1;
                        assert!(
                            TextStats::of(m.as_str()).any(pass.needs),
                            "{}: match {:?} has none of the needed bytes",
                            rule.name,
                            m.as_str()
                        );
                        assert!(
                            (pass.admit)(&TextStats::of(m.as_str()), m.as_str()),
                            "{}: match {:?} is not admitted",
                            rule.name,
                            m.as_str()
                        );
                    }
                }
                assert!(
                    replaced > 0,
                    "{}: the samples hold nothing {} replaces",
                    rule.name,
                    pass.pattern
                );
            }
        }
    }

    #[test]
    fn default_rules_show_their_passes_as_one_pattern() {
        for rule in default_rules() {
            Regex::new(&rule.pattern).expect("the joined pattern compiles");
            assert!(unchanged_default(&rule).is_some(), "{}", rule.name);
        }
    }
}
