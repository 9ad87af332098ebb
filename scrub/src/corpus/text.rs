//! Names, places and the sentences items are placed in.

use super::{Field, Language, Rng};

/// Given name and surname in pinyin, and the name in Chinese.
pub(super) const PEOPLE: &[(&str, &str, &str)] = &[
    ("wei", "zhang", "张伟"),
    ("fang", "wang", "王芳"),
    ("na", "li", "李娜"),
    ("yang", "liu", "刘洋"),
    ("jing", "chen", "陈静"),
    ("min", "yang", "杨敏"),
    ("jun", "zhao", "赵军"),
    ("lei", "huang", "黄磊"),
    ("xiuying", "zhou", "周秀英"),
    ("qiang", "wu", "吴强"),
    ("yan", "xu", "徐燕"),
    ("ping", "sun", "孙平"),
    ("guilan", "hu", "胡桂兰"),
    ("hao", "zhu", "朱浩"),
    ("xiaoming", "gao", "高晓明"),
    ("ling", "lin", "林玲"),
    ("tao", "he", "何涛"),
    ("yuxuan", "guo", "郭宇轩"),
    ("hui", "ma", "马慧"),
    ("zihan", "luo", "罗子涵"),
    ("chao", "liang", "梁超"),
    ("dan", "song", "宋丹"),
    ("peng", "zheng", "郑鹏"),
    ("xin", "xie", "谢欣"),
    ("jie", "han", "韩杰"),
    ("lijuan", "tang", "唐丽娟"),
    ("bo", "feng", "冯博"),
    ("shu", "deng", "邓淑"),
    ("kai", "cao", "曹凯"),
    ("mengqi", "peng", "彭梦琪"),
];

/// Organisations' e-mail domains and NetBIOS domains.
pub(super) const MAIL_DOMAINS: &[&str] = &[
    "sgcc.com.cn",
    "mail.gov.cn",
    "beijing.gov.cn",
    "cnpc.com.cn",
    "chinatelecom.cn",
    "163.com",
    "qq.com",
    "126.com",
    "example.org",
    "csg.cn",
];

pub(super) const NETBIOS_DOMAINS: &[&str] = &[
    "SGCC", "CORP", "GOV", "BJGOV", "CNPC", "HQ", "CSG-NET", "MOF", "NDRC", "SH-GOV",
];

/// File servers.
pub(super) const SERVERS: &[&str] = &["fs01", "fs02", "FILESRV", "nas-bj", "dfs.corp.local"];

/// One person, as the forms need them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Person {
    pub given: &'static str,
    pub surname: &'static str,
    pub chinese: &'static str,
}

impl Person {
    pub fn pick(rng: &mut Rng) -> Person {
        let (given, surname, chinese) = *rng.pick(PEOPLE);
        Person {
            given,
            surname,
            chinese,
        }
    }

    /// `zhangwei`, `zhang.wei`, `wei.zhang`, `zhangw`, `wzhang`, `zhang_wei`.
    /// At least five characters, so an account never spells a word of the
    /// sentences around it.
    pub fn account(&self, rng: &mut Rng) -> String {
        let (g, s) = (self.given, self.surname);
        let account = match rng.below(6) {
            0 => format!("{s}{g}"),
            1 => format!("{s}.{g}"),
            2 => format!("{g}.{s}"),
            3 => format!("{s}{}", &g[..1]),
            4 => format!("{}{s}", &g[..1]),
            _ => format!("{s}_{g}"),
        };
        if account.len() < 5 {
            format!("{s}{g}")
        } else {
            account
        }
    }

    /// `Zhang Wei`.
    pub fn spaced(&self) -> String {
        format!("{} {}", capitalise(self.surname), capitalise(self.given))
    }
}

pub(super) fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Sentences holding one personal-data item (`{}`). The item touches
/// Chinese characters, full-width and ASCII punctuation, brackets, quotes
/// and spaces, at the start, in the middle and at the end.
const PII_ZH: &[&str] = &[
    "请联系{}，谢谢。",
    "我的{}无法访问，请帮忙处理",
    "打开{}时资源管理器崩溃了",
    "故障描述：{}",
    "（{}）出现异常后无法恢复",
    "{}报错，重启后依旧",
    "日志里有“{}”这一行",
    "同事说在{}上也能复现。",
    "附件路径 {} 打不开",
    "用户反馈：登录{}后白屏，希望尽快修复",
    "【{}】无法同步",
    "联系方式:{}",
    "备注：{}；请勿外传",
    "在“文件”菜单里打开{}，程序无响应",
    "{}",
];

const PII_LATIN: &[&str] = &[
    "Please contact {} about this.",
    "The error mentions {} every time.",
    "{} fails after the update",
    "Crash while opening {}, reproducible",
    "Seen on ({}) as well",
    "value=\"{}\"; retry failed",
    "Log line: {}",
    "After KB5031356 the dialog shows {} and hangs.",
    "see [{}] in the attached log",
    "Reported by the helpdesk: {}",
    "url=https://portal.example/query?user={}&lang=zh",
    "{\"contact\":\"{}\"}",
    "Contact: {} (office hours only)",
    "<{}>",
    "{}",
];

/// Sentences around clean items: the same shapes, and nothing a rule
/// should take.
const CLEAN_ZH: &[&str] = &[
    "升级到{}后，任务栏偶尔无响应。",
    "崩溃位置：{}",
    "{}，重启后恢复正常",
    "（{}）在打印公文时出现",
    "希望在{}中增加批量导出功能",
    "日志“{}”反复出现",
];

const CLEAN_LATIN: &[&str] = &[
    "Crash in {} after resume.",
    "{} hangs when the network drops",
    "The installer reports {} and stops",
    "Please keep ({}) in the next release.",
    "Fault at {}; repeated on restart",
    "value=\"{}\"",
];

fn sentence(rng: &mut Rng, templates: &[&str], item: &str) -> String {
    rng.pick(templates).replacen("{}", item, 1)
}

pub(super) fn pii_sentence(rng: &mut Rng, language: Language, _field: Field, item: &str) -> String {
    match language {
        Language::Chinese => sentence(rng, PII_ZH, item),
        Language::Latin => sentence(rng, PII_LATIN, item),
    }
}

pub(super) fn clean_sentence(
    rng: &mut Rng,
    language: Language,
    _field: Field,
    item: &str,
) -> String {
    match language {
        Language::Chinese => sentence(rng, CLEAN_ZH, item),
        Language::Latin => sentence(rng, CLEAN_LATIN, item),
    }
}

/// Full-width digits, letters and `@`/`.`/`-`, as an IME writes them.
pub(super) fn full_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
            ' ' => '\u{3000}',
            c => c,
        })
        .collect()
}

/// The ISO 7064 MOD 11-2 check character of the first 17 digits.
pub(super) fn id_check(first17: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// The Luhn check digit of `body`.
pub(super) fn luhn_digit(body: &str) -> char {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_match_published_examples() {
        // GB 11643-1999's example number.
        assert_eq!(id_check("11010519491231002"), 'X');
        assert_eq!(luhn_digit("7992739871"), '3');
    }

    #[test]
    fn capitalise_makes_names() {
        assert_eq!(capitalise("zhang"), "Zhang");
    }
}
