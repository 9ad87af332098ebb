//! Personal-data items by category, each in the forms people and programs
//! write it.

use super::text::{
    MAIL_DOMAINS, NETBIOS_DOMAINS, Person, SERVERS, capitalise, full_width, id_check, luhn_digit,
};
use super::{PiiItem, Rng, Secret};

/// Every category, named as the default rule that catches it.
pub const CATEGORIES: [&str; 17] = [
    "user_path",
    "home_share",
    "domain_user",
    "sid",
    "hostname",
    "email",
    "mac",
    "ipv6",
    "ipv4",
    "id_card",
    "bank_card",
    "passport",
    "phone",
    "qq",
    "plate",
    "person_name",
    "address",
];

pub(super) fn item(rng: &mut Rng, category: &'static str, turn: usize) -> PiiItem {
    let (form, text, secrets) = match category {
        "user_path" => user_path(rng, turn),
        "home_share" => home_share(rng, turn),
        "domain_user" => domain_user(rng, turn),
        "sid" => sid(rng, turn),
        "hostname" => hostname(rng, turn),
        "email" => email(rng, turn),
        "mac" => mac(rng, turn),
        "ipv6" => ipv6(rng, turn),
        "ipv4" => ipv4(rng, turn),
        "id_card" => id_card(rng, turn),
        "bank_card" => bank_card(rng, turn),
        "passport" => passport(rng, turn),
        "phone" => phone(rng, turn),
        "qq" => qq(rng, turn),
        "plate" => plate(rng, turn),
        "person_name" => super::labelled::person_name(rng, turn),
        "address" => super::labelled::address(rng, turn),
        other => unreachable!("no generator for {other}"),
    };
    PiiItem {
        category,
        form,
        text,
        secrets,
    }
}

pub(super) type Generated = (&'static str, String, Vec<Secret>);

pub(super) fn text_secret(s: &str) -> Vec<Secret> {
    vec![Secret::Text(s.to_owned())]
}

fn user_path(rng: &mut Rng, turn: usize) -> Generated {
    let person = Person::pick(rng);
    let account = person.account(rng);
    let tail = *rng.pick(&[
        r"\AppData\Local\Temp\setup.log",
        r"\Desktop\通知.docx",
        r"\Documents\报表.xlsx",
        r"\AppData\Roaming\Microsoft\Word\",
        r"\Downloads\",
    ]);
    let drive = *rng.pick(&["C", "D", "E"]);
    match turn % 10 {
        0 => (
            "users",
            format!(r"{drive}:\Users\{account}{tail}"),
            text_secret(&account),
        ),
        1 | 2 => {
            // A given name of three letters or more, so that the part a
            // half-done replacement leaves (` Wei`) is a secret too.
            let person = loop {
                let p = Person::pick(rng);
                if p.given.len() >= 3 {
                    break p;
                }
            };
            let name = person.spaced();
            let secrets = vec![
                Secret::Text(name.clone()),
                Secret::Text(format!(" {}", capitalise(person.given))),
            ];
            if turn % 10 == 1 {
                ("users_space", format!(r"C:\Users\{name}{tail}"), secrets)
            } else {
                ("users_space_end", format!(r"C:\Users\{name}"), secrets)
            }
        }
        3 => (
            "profiles_root",
            format!(r"{drive}:\Profiles\{account}{tail}"),
            text_secret(&account),
        ),
        4 => (
            "users_chinese",
            format!(r"C:\Users\{}{tail}", person.chinese),
            text_secret(person.chinese),
        ),
        5 => (
            "users_localised",
            format!(r"C:\用户\{}\桌面\", person.chinese),
            text_secret(person.chinese),
        ),
        6 => (
            "forward_slashes",
            format!("c:/users/{account}/AppData/Local/Temp/x.log"),
            text_secret(&account),
        ),
        7 => (
            "documents_and_settings",
            format!(r"C:\Documents and Settings\{account}\My Documents\"),
            text_secret(&account),
        ),
        8 => (
            "device_path",
            format!(r"\Device\HarddiskVolume3\Users\{account}\AppData\Local\x.dll"),
            text_secret(&account),
        ),
        _ => {
            let domain = rng.pick(NETBIOS_DOMAINS);
            let name = format!("{account}.{domain}");
            (
                "profile_with_domain",
                format!(r"C:\Users\{name}\NTUSER.DAT"),
                text_secret(&account),
            )
        }
    }
}

fn home_share(rng: &mut Rng, turn: usize) -> Generated {
    let person = Person::pick(rng);
    let account = person.account(rng);
    let server = rng.pick(SERVERS);
    match turn % 5 {
        0 => (
            "home_dollar",
            format!(r"\\{server}\home$\{account}\文档"),
            text_secret(&account),
        ),
        1 => (
            "homes",
            format!(r"\\{server}\homes\{account}\"),
            text_secret(&account),
        ),
        2 => (
            "users_dollar",
            format!(r"\\{server}\users$\{account}\Desktop"),
            text_secret(&account),
        ),
        3 => (
            "roaming_profile",
            format!(r"\\{server}\profiles$\{account}.V6\AppData"),
            text_secret(&account),
        ),
        _ => (
            "hidden_user_share",
            format!(r"\\{server}\{account}$\报告"),
            text_secret(&account),
        ),
    }
}

fn domain_user(rng: &mut Rng, turn: usize) -> Generated {
    let person = Person::pick(rng);
    let account = person.account(rng);
    let domain = rng.pick(NETBIOS_DOMAINS);
    match turn % 3 {
        0 => (
            "domain_account",
            format!(r"{domain}\{account}"),
            text_secret(&account),
        ),
        1 => (
            "domain_account_chinese",
            format!(r"{domain}\{}", person.chinese),
            text_secret(person.chinese),
        ),
        _ => {
            let upper = account.to_ascii_uppercase();
            (
                "domain_account_upper",
                format!(r"{domain}\{upper}"),
                text_secret(&upper),
            )
        }
    }
}

fn sid(rng: &mut Rng, turn: usize) -> Generated {
    let sub = |rng: &mut Rng| rng.range(100_000_000, 4_294_967_295).to_string();
    let (a, b, c) = (sub(rng), sub(rng), sub(rng));
    let rid = rng.range(1000, 99_999).to_string();
    let secrets = vec![
        Secret::Digits(a.clone()),
        Secret::Digits(b.clone()),
        Secret::Digits(c.clone()),
    ];
    match turn % 3 {
        0 | 1 => ("domain_sid", format!("S-1-5-21-{a}-{b}-{c}-{rid}"), secrets),
        _ => (
            "azure_ad_sid",
            format!("S-1-12-1-{a}-{b}-{c}-{rid}"),
            secrets,
        ),
    }
}

fn hostname(rng: &mut Rng, turn: usize) -> Generated {
    let person = Person::pick(rng);
    let name = format!("{}{}", person.surname, person.given).to_ascii_uppercase();
    match turn % 6 {
        0 => ("prefix_name", format!("PC-{name}"), text_secret(&name)),
        1 => ("name_suffix", format!("{name}-PC"), text_secret(&name)),
        2 => (
            "laptop_name",
            format!(
                "{}-{name}",
                rng.pick(&["LAPTOP", "NB", "DESKTOP", "NOTEBOOK"])
            ),
            text_secret(&name),
        ),
        3 => {
            let lower = name.to_ascii_lowercase();
            (
                "lower_fqdn",
                format!("pc-{lower}.corp.local"),
                text_secret(&lower),
            )
        }
        4 => (
            "unc_host",
            format!(r"\\PC-{name}\share\报表.xlsx"),
            text_secret(&name),
        ),
        _ => {
            let random: String = (0..7)
                .map(|_| char::from(*rng.pick(b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789")))
                .collect();
            (
                "default_random",
                format!("DESKTOP-{random}"),
                text_secret(&random),
            )
        }
    }
}

fn email(rng: &mut Rng, turn: usize) -> Generated {
    let person = Person::pick(rng);
    let account = person.account(rng);
    let domain = rng.pick(MAIL_DOMAINS);
    match turn % 6 {
        0 | 1 => (
            "ascii",
            format!("{account}@{domain}"),
            text_secret(&account),
        ),
        2 => (
            "chinese_local_part",
            format!("{}@{domain}", person.chinese),
            text_secret(person.chinese),
        ),
        3 => {
            let local = format!("{}.{}", person.surname, person.given).replace('a', "ā");
            (
                "accented_local_part",
                format!("{local}@{domain}"),
                text_secret(&local),
            )
        }
        4 => (
            "full_width_at",
            format!("{account}＠{domain}"),
            text_secret(&account),
        ),
        _ => (
            "full_width_all",
            full_width(&format!("{account}@{domain}")),
            text_secret(&account),
        ),
    }
}

fn hex_bytes(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n).map(|_| format!("{:02X}", rng.below(256))).collect()
}

fn mac(rng: &mut Rng, turn: usize) -> Generated {
    // A vendor prefix and a NIC part; at least one letter so the bare form
    // cannot be a plain number.
    let oui = *rng.pick(&[
        "00:1A:2B", "3C:52:82", "F4:8E:38", "28:6E:D4", "00:50:56", "AC:DE:48",
    ]);
    let mut bytes: Vec<String> = oui.split(':').map(str::to_owned).collect();
    bytes.extend(hex_bytes(rng, 3));
    let mut hex: String = bytes.concat();
    if turn % 6 >= 4 && !hex.bytes().any(|b| b.is_ascii_alphabetic()) {
        // The bare forms need a letter to be told from a number.
        bytes[5] = "AF".to_owned();
        hex = bytes.concat();
    }
    let secrets = vec![Secret::Hex(hex.clone())];
    let text = match turn % 6 {
        0 => bytes.join(":"),
        1 => bytes.join("-"),
        2 => bytes.join("-").to_ascii_lowercase(),
        3 => {
            let lower = hex.to_ascii_lowercase();
            format!("{}.{}.{}", &lower[..4], &lower[4..8], &lower[8..])
        }
        4 => hex.clone(),
        _ => hex.to_ascii_lowercase(),
    };
    let form = [
        "colons",
        "hyphens",
        "hyphens_lower",
        "dotted",
        "bare_upper",
        "bare_lower",
    ][turn % 6];
    (form, text, secrets)
}

fn ipv6(rng: &mut Rng, turn: usize) -> Generated {
    let group = |rng: &mut Rng| format!("{:x}", rng.range(0x100, 0xffff));
    let (a, b, c, d) = (group(rng), group(rng), group(rng), group(rng));
    match turn % 4 {
        0 => (
            "link_local_zone",
            format!("fe80::{a}:{b}:{c}:{d}%12"),
            vec![Secret::Text(format!("{a}:{b}:{c}:{d}"))],
        ),
        1 => (
            "global",
            format!("2001:db8:{a}::{b}:{c}"),
            vec![Secret::Text(format!("{a}::{b}:{c}"))],
        ),
        2 => {
            let full = format!("2408:{a}:{b}:{c}:{d}:{a}:{b}:{c}");
            ("full", full.clone(), vec![Secret::Text(full)])
        }
        _ => {
            let (x, y) = (rng.range(1, 254), rng.range(1, 254));
            (
                "mapped_ipv4",
                format!("::ffff:10.{x}.{y}.7"),
                vec![Secret::Text(format!("10.{x}.{y}.7"))],
            )
        }
    }
}

fn ipv4(rng: &mut Rng, turn: usize) -> Generated {
    let address = match rng.below(4) {
        0 => format!("192.168.{}.{}", rng.range(0, 255), rng.range(1, 254)),
        1 => format!(
            "10.{}.{}.{}",
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(1, 254)
        ),
        2 => format!(
            "172.{}.{}.{}",
            rng.range(16, 31),
            rng.range(0, 255),
            rng.range(1, 254)
        ),
        _ => format!(
            "{}.{}.{}.{}",
            rng.range(11, 223),
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(1, 254)
        ),
    };
    let secrets = vec![Secret::Text(address.clone())];
    match turn % 5 {
        0 => ("plain", address, secrets),
        1 => (
            "underscored_file",
            format!("backup_{address}_full.zip"),
            secrets,
        ),
        2 => ("with_port", format!("{address}:8080"), secrets),
        3 => ("unc", format!(r"\\{address}\共享\"), secrets),
        _ => ("full_width", full_width(&address), secrets),
    }
}

fn id_card(rng: &mut Rng, turn: usize) -> Generated {
    let region = *rng.pick(&[
        "110101", "110105", "310104", "310115", "440305", "440106", "510107", "420106", "320102",
        "330106", "370202", "610113", "500103", "120101", "230102", "650102",
    ]);
    let year = rng.range(1950, 2006);
    let month = rng.range(1, 12);
    let day = rng.range(1, 28);
    let first17 = format!("{region}{year}{month:02}{day:02}{}", rng.digits(3));
    let id = format!("{first17}{}", id_check(&first17));
    let digits = vec![Secret::Digits(first17.clone())];
    match turn % 8 {
        0 => ("plain", id, digits),
        1 => {
            // In fours, as a form's boxes print it.
            let fours: Vec<&str> = (0..18)
                .step_by(4)
                .map(|i| &id[i..(i + 4).min(18)])
                .collect();
            ("grouped_fours", fours.join(" "), digits)
        }
        2 => ("lower_x", id.to_ascii_lowercase(), digits),
        3 => (
            "spaced",
            format!("{} {} {}", &id[..6], &id[6..14], &id[14..]),
            digits,
        ),
        4 => ("full_width", full_width(&id), digits),
        5 => ("underscored_file", format!("身份证_{id}.jpg"), digits),
        6 => {
            // A mistyped check character, named as an identity number.
            let wrong = if id.ends_with('0') { '1' } else { '0' };
            (
                "named_mistyped",
                format!("身份证号码：{first17}{wrong}"),
                digits,
            )
        }
        _ => {
            // The 15 digits issued before 1999: region, YYMMDD, sequence.
            let old = format!(
                "{region}{:02}{month:02}{day:02}{}",
                year % 100,
                rng.digits(3)
            );
            (
                "named_15_digits",
                format!("身份证 {old}"),
                vec![Secret::Digits(old.clone())],
            )
        }
    }
}

fn bank_card(rng: &mut Rng, turn: usize) -> Generated {
    let (prefix, len) = *rng.pick(&[
        ("622202", 19),
        ("622848", 19),
        ("621700", 19),
        ("622588", 16),
        ("625965", 16),
        ("436742", 16),
        ("524094", 16),
        ("403391", 16),
    ]);
    let body = format!("{prefix}{}", rng.digits(len - prefix.len() - 1));
    let card = format!("{body}{}", luhn_digit(&body));
    let grouped = |sep: &str| {
        card.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(sep)
    };
    let secrets = vec![Secret::Digits(card[..card.len() - 1].to_owned())];
    match turn % 5 {
        0 => ("plain", card.clone(), secrets),
        1 => ("spaced", grouped(" "), secrets),
        2 => ("hyphens", grouped("-"), secrets),
        3 => ("full_width", full_width(&card), secrets),
        _ => ("underscored_file", format!("工资卡_{card}.png"), secrets),
    }
}

fn passport(rng: &mut Rng, turn: usize) -> Generated {
    let letters = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let number = match rng.below(3) {
        0 => format!("E{}", rng.digits(8)),
        1 => format!("E{}{}", char::from(*rng.pick(letters)), rng.digits(7)),
        _ => format!("G{}", rng.digits(8)),
    };
    let secrets = vec![Secret::Text(number.clone())];
    match turn % 4 {
        0 | 1 => ("plain", number, secrets),
        2 => ("full_width", full_width(&number), secrets),
        _ => (
            "underscored_file",
            format!("护照_{number}_扫描件.pdf"),
            secrets,
        ),
    }
}

fn phone(rng: &mut Rng, turn: usize) -> Generated {
    let prefix = *rng.pick(&["138", "139", "150", "186", "177", "133", "199", "158"]);
    let (mid, end) = (rng.digits(4), rng.digits(4));
    let mobile = format!("{prefix}{mid}{end}");
    let m = vec![Secret::Digits(mobile.clone())];
    let (area, local_len) = *rng.pick(&[
        ("010", 8),
        ("021", 8),
        ("0755", 8),
        ("0571", 8),
        ("0931", 7),
    ]);
    let local = format!("{}{}", rng.range(2, 8), rng.digits(local_len - 1));
    let (l1, l2) = local.split_at(local.len() - 4);
    let l = vec![Secret::Digits(local.clone())];
    match turn % 18 {
        17 => ("mobile_86_unseparated", format!("86{mobile}"), m),
        16 => ("mobile_double_spaces", format!("{prefix}  {mid}  {end}"), m),
        0 => ("mobile_plain", mobile, m),
        1 => (
            "mobile_plus86_spaces",
            format!("+86 {prefix} {mid} {end}"),
            m,
        ),
        2 => ("mobile_dashes", format!("{prefix}-{mid}-{end}"), m),
        3 => ("mobile_dots", format!("{prefix}.{mid}.{end}"), m),
        4 => (
            "mobile_ideographic_space",
            format!("{prefix}\u{3000}{mid}\u{3000}{end}"),
            m,
        ),
        5 => ("mobile_nbsp", format!("{prefix}\u{a0}{mid}\u{a0}{end}"), m),
        6 => ("mobile_full_width", full_width(&mobile), m),
        7 => (
            "mobile_underscored_file",
            format!("{}_{mobile}.pdf", Person::pick(rng).chinese),
            m,
        ),
        8 => ("mobile_0086", format!("0086-{mobile}"), m),
        9 => ("mobile_bracketed_86", format!("(+86){mobile}"), m),
        10 => ("landline_dash_space", format!("{area}-{l1} {l2}"), l),
        11 => ("landline_brackets", format!("({area}) {l1} {l2}"), l),
        12 => ("landline_plain_dash", format!("{area}-{local}"), l),
        13 => (
            "landline_plus86",
            format!("+86 {} {l1} {l2}", &area[1..]),
            l,
        ),
        14 => (
            "landline_full_width",
            full_width(&format!("（{area}）{local}")),
            l,
        ),
        _ => ("landline_keyword", format!("电话：{l1} {l2}"), l),
    }
}

fn qq(rng: &mut Rng, turn: usize) -> Generated {
    let first = rng.range(1, 9);
    let len = rng.range(5, 9) as usize;
    let number = format!("{first}{}", rng.digits(len));
    let secrets = vec![Secret::Digits(number.clone())];
    match turn % 3 {
        0 => ("qq_space", format!("QQ {number}"), secrets),
        1 => ("qq_hao", format!("QQ号：{number}"), secrets),
        _ => ("qq_colon_lower", format!("qq:{number}"), secrets),
    }
}

fn plate(rng: &mut Rng, turn: usize) -> Generated {
    let province = *rng.pick(&["京", "沪", "粤", "川", "苏", "浙", "鲁", "鄂", "陕", "津"]);
    let letters = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let city = char::from(*rng.pick(letters));
    let tail: String = (0..5)
        .map(|i| {
            if i == 0 && rng.chance(30) {
                char::from(*rng.pick(letters))
            } else {
                char::from(b'0' + rng.below(10) as u8)
            }
        })
        .collect();
    let secrets = vec![
        Secret::Text(format!("{city}{tail}")),
        Secret::Text(format!("{city}·{tail}")),
    ];
    match turn % 3 {
        0 => ("plain", format!("{province}{city}{tail}"), secrets),
        1 => ("middle_dot", format!("{province}{city}·{tail}"), secrets),
        _ => {
            let ev = format!("D{}", rng.digits(5));
            (
                "new_energy",
                format!("{province}{city}{ev}"),
                vec![Secret::Text(format!("{city}{ev}"))],
            )
        }
    }
}
