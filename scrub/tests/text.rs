//! `scrub_text` with the default rules: what must be caught (with exact
//! counts), what must stay byte for byte, and custom rule sets.

use std::borrow::Cow;
use std::collections::BTreeMap;

use scrub::{Rule, RuleError, Scrubber, default_rules};

fn scrub(text: &str) -> (String, BTreeMap<String, u32>) {
    let mut counts = BTreeMap::new();
    let out = Scrubber::with_default_rules().scrub_text(text, &mut counts);
    (out.into_owned(), counts)
}

fn tally(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Input, expected output, expected counts per rule.
type Case = (&'static str, &'static str, &'static [(&'static str, u32)]);

fn check(cases: &[Case]) {
    for (input, expected, expected_counts) in cases {
        let (out, got) = scrub(input);
        assert_eq!(&out, expected, "input: {input}");
        assert_eq!(got, tally(expected_counts), "counts for: {input}");
    }
}

#[test]
fn catches_personal_data() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // e-mail
        ("zhang.wei@sgcc.com.cn", "<email>", &[("email", 1)]),
        ("mailto:li_na+it@example.gov.cn.", "mailto:<email>.", &[("email", 1)]),
        // IPv4
        ("192.168.1.20", "<ipv4>", &[("ipv4", 1)]),
        ("10.0.0.1", "<ipv4>", &[("ipv4", 1)]),
        ("连接10.0.0.1失败", "连接<ipv4>失败", &[("ipv4", 1)]),
        ("proxy 192.168.1.20:8080, dns 8.8.8.8.", "proxy <ipv4>:8080, dns <ipv4>.", &[("ipv4", 2)]),
        ("share \\\\10.1.2.3\\docs", "share \\\\<ipv4>\\docs", &[("ipv4", 1)]),
        ("server 10.0.0.1 and driver 10.0.0.2", "server <ipv4> and driver <ipv4>", &[("ipv4", 2)]),
        ("subnet 10.0.0.0/8", "subnet <ipv4>/8", &[("ipv4", 1)]),
        // IPv6
        ("fe80::1ff:fe23:4567:890a", "<ipv6>", &[("ipv6", 1)]),
        ("2001:db8::8a2e:370:7334", "<ipv6>", &[("ipv6", 1)]),
        ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:443", "[<ipv6>]:443", &[("ipv6", 1)]),
        ("loopback ::1, link fe80::1%12", "loopback <ipv6>, link <ipv6>", &[("ipv6", 2)]),
        ("mapped ::ffff:192.168.1.20 here", "mapped <ipv6> here", &[("ipv6", 1)]),
        ("地址fe80::1不通", "地址<ipv6>不通", &[("ipv6", 1)]),
        // MAC
        ("00:1A:2B:3C:4D:5E", "<mac>", &[("mac", 1)]),
        ("00-1A-2B-3C-4D-5E", "<mac>", &[("mac", 1)]),
        ("网卡 00-1a-2b-3c-4d-5e 掉线", "网卡 <mac> 掉线", &[("mac", 1)]),
        // phone
        ("+86 138 0013 8000", "<phone>", &[("phone", 1)]),
        ("010-62345678", "<phone>", &[("phone", 1)]),
        ("13800138000", "<phone>", &[("phone", 1)]),
        ("电话13800138000。", "电话<phone>。", &[("phone", 1)]),
        ("Tel.138-0013-8000", "Tel.<phone>", &[("phone", 1)]),
        ("(010) 6234 5678 / 0755-8888 6666", "<phone> / <phone>", &[("phone", 2)]),
        ("+86-10-62345678", "<phone>", &[("phone", 1)]),
        ("call (555) 123-4567 or +1 555 123 4567", "call <phone> or <phone>", &[("phone", 2)]),
        // user profile paths
        (r"C:\Users\zhangwei\AppData\Local\Temp\x.dll", r"C:\Users\<user>\AppData\Local\Temp\x.dll", &[("user_path", 1)]),
        ("c:/users/li.na/Desktop/plan.docx", "c:/users/<user>/Desktop/plan.docx", &[("user_path", 1)]),
        (r"D:\USERS\Zhang Wei\文档\报告.docx", r"D:\USERS\<user>\文档\报告.docx", &[("user_path", 1)]),
        (r"C:\Documents and Settings\wangfang\My Documents", r"C:\Documents and Settings\<user>\My Documents", &[("user_path", 1)]),
        (r"打开C:\Users\张伟\Desktop失败", r"打开C:\Users\<user>\Desktop失败", &[("user_path", 1)]),
        (r"profile C:\Users\zhangwei", r"profile C:\Users\<user>", &[("user_path", 1)]),
        (r"C:\\Users\\zhangwei\\AppData", r"C:\\Users\\<user>\\AppData", &[("user_path", 1)]),
        (r"\\pc-0042\c$\Users\liuyang\ntuser.dat", r"\\pc-0042\c$\Users\<user>\ntuser.dat", &[("user_path", 1)]),
        // a user name that looks like an e-mail or a number is a path first
        (r"C:\Users\13800138000\x", r"C:\Users\<user>\x", &[("user_path", 1)]),
    ];
    check(cases);
}

#[test]
fn free_text_in_chinese_and_english() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (
            "请联系我 zhang.wei@sgcc.com.cn 或 13800138000",
            "请联系我 <email> 或 <phone>",
            &[("email", 1), ("phone", 1)],
        ),
        (
            "升级到 10.0.19041.3570 后，资源管理器在打开 C:\\Users\\wangfang\\Desktop 时崩溃，网关 192.168.1.1 正常。办公电话 010-62345678。",
            "升级到 10.0.19041.3570 后，资源管理器在打开 C:\\Users\\<user>\\Desktop 时崩溃，网关 <ipv4> 正常。办公电话 <phone>。",
            &[("user_path", 1), ("ipv4", 1), ("phone", 1)],
        ),
        (
            "After KB5031356 (build 19045.3570) the VPN drops: client 10.8.0.6, gateway fe80::1ff:fe23:4567:890a, NIC 00:1A:2B:3C:4D:5E. Reach me at li.na@example.org or +86 138 0013 8000.",
            "After KB5031356 (build 19045.3570) the VPN drops: client <ipv4>, gateway <ipv6>, NIC <mac>. Reach me at <email> or <phone>.",
            &[("ipv4", 1), ("ipv6", 1), ("mac", 1), ("email", 1), ("phone", 1)],
        ),
        (
            "两台机器 10.0.0.1、10.0.0.2 都报错，日志在 c:/users/li.na/AppData/Local/Temp/setup.log 和 c:/users/li.na/Desktop/plan.docx",
            "两台机器 <ipv4>、<ipv4> 都报错，日志在 c:/users/<user>/AppData/Local/Temp/setup.log 和 c:/users/<user>/Desktop/plan.docx",
            &[("ipv4", 2), ("user_path", 2)],
        ),
        (
            "希望任务栏支持按项目分组窗口，版本：1.2.3.4，2026-11-20 12:30:45 提交。",
            "希望任务栏支持按项目分组窗口，版本：1.2.3.4，2026-11-20 12:30:45 提交。",
            &[],
        ),
    ];
    check(cases);
}

#[test]
fn leaves_symbols_versions_and_ids_alone() {
    let keep = [
        "CDefView::WndProc",
        "CDefView::_OnContextMenu",
        "std::vector<int>::push_back",
        "std::basic_string<char,std::char_traits<char>,std::allocator<char> >::append",
        "Microsoft::WRL::Details::RuntimeClassImpl",
        "ABC::Add",
        "Face::Add1",
        "CD3D11Device::CreateTexture2D",
        "ntdll.dll",
        "KERNELBASE.dll!RaiseException",
        "d3d11.dll",
        "api-ms-win-core-synch-l1-2-0.dll",
        "msvcp140_1.dll",
        "?foo@@YAXXZ",
        "_Func@12",
        "10.0.19041.3570",
        "6.1.7601",
        "16.0.17328.20162",
        "120.0.6099.130",
        "19045",
        "2026-11-20",
        "2026-11-20T08:15:30Z",
        "0x00007FF8A1B2C3D4",
        "0xC0000005",
        "-2147024891",
        "{3f6c1b52-8d4e-4c1a-9b7e-2a5d0c9e8f11}",
        "12345678-1234-1234-1234-123456789012",
        "12:30:45",
        "v1.2.3.4",
        "version 10.0.0.1",
        "Version=4.0.0.0",
        "版本号 10.0.0.1",
        "1.2.3.4.5",
        "300.1.2.3",
        "00:1A:2B:3C:4D:5E:6F",
        "KB5031356",
        r"C:\Users\Public\Desktop\shortcut.lnk",
        r"C:\Users\Default\NTUSER.DAT",
        r"C:\Documents and Settings\All Users\Start Menu",
        r"C:\Windows\System32\drivers\etc\hosts",
        r"C:\Users\<user>\AppData",
        "C:\\Windows\\WinSxS\\amd64_microsoft.windows.common-controls_6595b64144ccf1df_6.0.19041.3570_none",
        "Microsoft.Windows.Common-Controls_6.0.0.0_x-ww",
        "希望任务栏支持按项目分组窗口",
        "Updates install faster since the last patch.",
    ];
    let scrubber = Scrubber::with_default_rules();
    for text in keep {
        let mut counts = BTreeMap::new();
        let out = scrubber.scrub_text(text, &mut counts);
        assert!(matches!(out, Cow::Borrowed(_)), "changed: {text} -> {out}");
        assert!(counts.is_empty(), "counted {counts:?} in: {text}");
    }
}

#[test]
fn counts_add_up_across_calls_and_rules() {
    let scrubber = Scrubber::with_default_rules();
    let mut counts = BTreeMap::new();
    scrubber.scrub_text("a@b.cn c@d.com 10.0.0.1", &mut counts);
    scrubber.scrub_text("e@f.org 13800138000 13900139000", &mut counts);
    scrubber.scrub_text("nothing here", &mut counts);
    assert_eq!(counts, tally(&[("email", 3), ("ipv4", 1), ("phone", 2)]));
}

#[test]
fn scrubbing_is_idempotent() {
    let text = "请联系 zhang.wei@sgcc.com.cn, 13800138000, 10.0.0.1, fe80::1, 00:1A:2B:3C:4D:5E, C:\\Users\\zhangwei\\x";
    let (once, _) = scrub(text);
    let (twice, again) = scrub(&once);
    assert_eq!(once, twice);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn default_rules_are_named_and_ordered() {
    let names: Vec<String> = default_rules().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
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
            "address"
        ]
    );
    let scrubber = Scrubber::default();
    assert!(scrubber.rule_names().eq(names.iter().map(String::as_str)));
}

#[test]
fn custom_rules_use_capture_groups_and_apply_in_order() {
    let rules = [
        Rule {
            name: "ticket".into(),
            pattern: r"(?P<kind>INC|REQ)-[0-9]{6}".into(),
            replacement: "$kind-<id>".into(),
        },
        Rule {
            name: "id".into(),
            pattern: "<id>".into(),
            replacement: "#".into(),
        },
    ];
    let scrubber = Scrubber::new(&rules).unwrap();
    let mut counts = BTreeMap::new();
    let out = scrubber.scrub_text("see INC-123456 and REQ-654321", &mut counts);
    assert_eq!(out, "see INC-# and REQ-#");
    assert_eq!(counts, tally(&[("ticket", 2), ("id", 2)]));
}

#[test]
fn a_changed_default_pattern_loses_its_check() {
    // Same name, own pattern: used as written, so 999.1.2.3 counts as an address.
    let mut rules = default_rules();
    let ipv4 = rules.iter_mut().find(|r| r.name == "ipv4").unwrap();
    ipv4.pattern = r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b".into();
    let scrubber = Scrubber::new(&rules).unwrap();
    let mut counts = BTreeMap::new();
    assert_eq!(scrubber.scrub_text("x 999.1.2.3", &mut counts), "x <ipv4>");
    // A changed replacement keeps the check.
    let mut rules = default_rules();
    rules
        .iter_mut()
        .find(|r| r.name == "ipv4")
        .unwrap()
        .replacement = "[IP]".into();
    let scrubber = Scrubber::new(&rules).unwrap();
    assert_eq!(
        scrubber.scrub_text("x 999.1.2.3 10.0.0.1", &mut counts),
        "x 999.1.2.3 [IP]"
    );
}

#[test]
fn empty_matches_are_never_replaced() {
    let rules = [Rule {
        name: "maybe".into(),
        pattern: "x*".into(),
        replacement: "<x>".into(),
    }];
    let scrubber = Scrubber::new(&rules).unwrap();
    let mut counts = BTreeMap::new();
    assert_eq!(scrubber.scrub_text("abxxc", &mut counts), "ab<x>c");
    assert_eq!(counts, tally(&[("maybe", 1)]));
}

#[test]
fn rule_errors_name_the_rule() {
    let bad = Rule {
        name: "broken".into(),
        pattern: "(unclosed".into(),
        replacement: String::new(),
    };
    let err = Scrubber::new(&[bad]).unwrap_err();
    assert!(matches!(&err, RuleError::Pattern { name, .. } if name == "broken"));
    assert!(err.to_string().contains("`broken`"), "{err}");

    let mut rules = default_rules();
    let email = default_rules()
        .into_iter()
        .find(|r| r.name == "email")
        .unwrap();
    rules.push(email);
    let err = Scrubber::new(&rules).unwrap_err();
    assert!(matches!(&err, RuleError::Duplicate { name } if name == "email"));
    assert!(err.to_string().contains("`email`"), "{err}");

    let unnamed = Rule {
        name: String::new(),
        pattern: "a".into(),
        replacement: "b".into(),
    };
    assert!(matches!(
        Scrubber::new(&[unnamed]),
        Err(RuleError::EmptyName { index: 0 })
    ));
}

#[test]
fn rules_round_trip_as_json_and_reject_unknown_fields() {
    let rules = default_rules();
    let json = serde_json::to_string(&rules).unwrap();
    let back: Vec<Rule> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rules);
    let extra = r#"{"name":"a","pattern":"b","replacement":"c","flags":"i"}"#;
    assert!(serde_json::from_str::<Rule>(extra).is_err());
}

#[test]
fn documented_edge_cases() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // A Chinese mobile is taken whole with its prefix; a year after it stays.
        ("+86 138 0013 8000 2026年", "<phone> 2026年", &[("phone", 1)]),
        // More than 15 digits after a `+` are no one number; a landline
        // shape at its end is taken, then what is left before it.
        ("+1 2345 6789 0123 4567 8901", "<phone> <phone>", &[("phone", 2)]),
        // A mobile next to an international number: both, each whole.
        ("+1 234 5678 9012 13800138000", "<phone> <phone>", &[("phone", 2)]),
        // A name with spaces needs a separator after it; without one, one word is the name.
        (r"see C:\Users\bob then /tmp", r"see C:\Users\<user> then /tmp", &[("user_path", 1)]),
        (r"C:\Users\Zhang Wei Ming\x", r"C:\Users\<user>\x", &[("user_path", 1)]),
        // Bare upgrade prose with a small four-part version: known false positive.
        ("upgraded to 1.2.3.4 today", "upgraded to <ipv4> today", &[("ipv4", 1)]),
        // A local number without an area code or a word naming it: known false negative.
        ("分机 8 号楼 65529988", "分机 8 号楼 65529988", &[]),
        // A long number that is no card or identity number stays.
        ("id 12345678901234567890", "id 12345678901234567890", &[]),
        // An identity number with a wrong check character, a card number failing Luhn.
        ("110105194912310021 6222020212345678901", "110105194912310021 6222020212345678901", &[]),
    ];
    check(cases);
}

#[test]
fn long_texts_stay_linear() {
    // Rejected candidates restart one character later; a 10 000-character
    // digit run or dotted run must not blow up.
    let digits = "1".repeat(10_000);
    let dotted = "1.".repeat(5_000);
    let colons = "a:".repeat(5_000);
    let hex_groups = "1:".repeat(5_000);
    let scrubber = Scrubber::with_default_rules();
    for text in [digits, dotted, colons, hex_groups] {
        let mut counts = BTreeMap::new();
        assert!(matches!(
            scrubber.scrub_text(&text, &mut counts),
            Cow::Borrowed(_)
        ));
        assert!(counts.is_empty());
    }
}
