//! The forms personal data takes beyond plain Latin text, each with its
//! exact output and counts: identity and card numbers (with their check
//! digits), full-width forms, separators, and the places user names hide.

use std::collections::BTreeMap;

use scrub::Scrubber;

/// Input, expected output, expected counts per rule.
type Case = (&'static str, &'static str, &'static [(&'static str, u32)]);

fn check(cases: &[Case]) {
    let scrubber = Scrubber::with_default_rules();
    for (input, expected, expected_counts) in cases {
        let mut counts = BTreeMap::new();
        let out = scrubber.scrub_text(input, &mut counts);
        assert_eq!(&out, expected, "input: {input}");
        let expected_counts: BTreeMap<String, u32> = expected_counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        assert_eq!(counts, expected_counts, "counts for: {input}");
    }
}

#[test]
fn identity_card_bank_card_and_passport_numbers() {
    #[rustfmt::skip]
    check(&[
        // GB 11643's example number ends in X; MOD 11-2 holds.
        ("身份证号11010519491231002X。", "身份证号<id_card>。", &[("id_card", 1)]),
        ("id 11010519491231002x", "id <id_card>", &[("id_card", 1)]),
        ("110105 19491231 002X", "<id_card>", &[("id_card", 1)]),
        ("440524188001010014 办理", "<id_card> 办理", &[("id_card", 1)]),
        // A wrong check character: not an identity number (nor a card: it fails Luhn).
        ("110105194912310021", "110105194912310021", &[]),
        // Luhn: a test card number, grouped or whole; one digit off stays.
        ("卡号 4111 1111 1111 1111", "卡号 <bank_card>", &[("bank_card", 1)]),
        ("6222-0212-3456-7890-128", "<bank_card>", &[("bank_card", 1)]),
        ("4111111111111111,", "<bank_card>,", &[("bank_card", 1)]),
        ("4111111111111112", "4111111111111112", &[]),
        ("护照 E12345678 已过期", "护照 <passport> 已过期", &[("passport", 1)]),
        ("EA1234567、G12345678", "<passport>、<passport>", &[("passport", 2)]),
        ("passport no. 123456789", "passport no. <passport>", &[("passport", 1)]),
        // Named as an identity number: a mistyped check character, the old 15 digits.
        ("身份证号码：110105194912310021", "身份证号码：<id_card>", &[("id_card", 1)]),
        ("15位身份证 110105491231002", "15位身份证 <id_card>", &[("id_card", 1)]),
    ]);
}

#[test]
fn full_width_forms_and_separators() {
    #[rustfmt::skip]
    check(&[
        ("电话：１３８００１３８０００", "电话：<phone>", &[("phone", 1)]),
        ("身份证１１０１０５１９４９１２３１００２Ｘ号", "身份证<id_card>号", &[("id_card", 1)]),
        ("邮箱 zhangwei＠sgcc.com.cn。", "邮箱 <email>。", &[("email", 1)]),
        ("+86 138 0013 8000", "<phone>", &[("phone", 1)]),
        ("138-0013-8000 138.0013.8000", "<phone> <phone>", &[("phone", 2)]),
        ("138  0013  8000", "<phone>", &[("phone", 1)]),
        ("138\u{3000}0013\u{3000}8000 和 138\u{a0}0013\u{a0}8000", "<phone> 和 <phone>", &[("phone", 2)]),
        ("办公电话 010-6552 9988 转 3", "办公电话 <phone> 转 3", &[("phone", 1)]),
        ("（010）6552 9988", "<phone>", &[("phone", 1)]),
        ("+86 10 6552 9988", "<phone>", &[("phone", 1)]),
        ("电话：6552 9988", "电话：<phone>", &[("phone", 1)]),
        ("张伟_13800138000.pdf", "张伟_<phone>.pdf", &[("phone", 1)]),
        ("backup_192.168.1.20_full.zip", "backup_<ipv4>_full.zip", &[("ipv4", 1)]),
        // A zero-width space inside a number does not hide it.
        ("138\u{200B}00138000", "<phone>", &[("phone", 1)]),
        ("QQ号：12345678", "QQ号：<qq>", &[("qq", 1)]),
        ("车牌京A·12345", "车牌<plate>", &[("plate", 1)]),
    ]);
}

#[test]
fn where_user_names_hide() {
    #[rustfmt::skip]
    check(&[
        (r"\\fs01\home$\zhangwei\文档", r"\\fs01\home$\<user>\文档", &[("home_share", 1)]),
        (r"\\fs01\profiles$\zhang.wei.V6\AppData", r"\\fs01\profiles$\<user>\AppData", &[("home_share", 1)]),
        (r"\\fs01\zhangwei$\报告", r"\\fs01\<user>$\报告", &[("home_share", 1)]),
        (r"\\fs01\admin$\x \\fs01\software$\x", r"\\fs01\admin$\x \\fs01\software$\x", &[]),
        (r"D:\Profiles\zhangwei\Desktop", r"D:\Profiles\<user>\Desktop", &[("user_path", 1)]),
        (r"C:\用户\张伟\桌面", r"C:\用户\<user>\桌面", &[("user_path", 1)]),
        (r"\Device\HarddiskVolume3\Users\lina\x.dll", r"\Device\HarddiskVolume3\Users\<user>\x.dll", &[("user_path", 1)]),
        (r"C:\Users\Zhang Wei\Desktop", r"C:\Users\<user>\Desktop", &[("user_path", 1)]),
        (r"opened C:\Users\Zhang Wei", r"opened C:\Users\<user>", &[("user_path", 1)]),
        ("/home/zhangwei/.config", "/home/<user>/.config", &[("user_path", 1)]),
        (r"登录账号 SGCC\zhangwei 失败", r"登录账号 SGCC\<user> 失败", &[("domain_user", 1)]),
        (r"NT AUTHORITY\SYSTEM, BUILTIN\Administrators, HKLM\SOFTWARE", r"NT AUTHORITY\SYSTEM, BUILTIN\Administrators, HKLM\SOFTWARE", &[]),
        ("SID S-1-5-21-3623811015-3361044348-30300820-1013", "SID <sid>", &[("sid", 1)]),
        ("S-1-5-18 S-1-5-32-544", "S-1-5-18 S-1-5-32-544", &[]),
        ("PC-ZHANGWEI、zhangwei-pc 和 DESKTOP-7F3K2LQ", "<host>、<host> 和 <host>", &[("hostname", 3)]),
        (r"\\PC-ZHANGWEI\share", r"\\<host>\share", &[("hostname", 1)]),
        (r"PC-ZHANGWEI\zhangwei", r"<host>\<user>", &[("domain_user", 1), ("hostname", 1)]),
        ("api-ms-win-core-synch-l1-2-0.dll PC-X64 Win-Rar", "api-ms-win-core-synch-l1-2-0.dll PC-X64 Win-Rar", &[]),
    ]);
}

#[test]
fn other_forms_of_addresses() {
    #[rustfmt::skip]
    check(&[
        ("网卡 001A2B3C4D5E 和 001a.2b3c.4d5e", "网卡 <mac> 和 <mac>", &[("mac", 2)]),
        ("{3f6c1b52-8d4e-4c1a-9b7e-2a5d0c9e8f11}", "{3f6c1b52-8d4e-4c1a-9b7e-2a5d0c9e8f11}", &[]),
        ("张伟@sgcc.com.cn", "<email>", &[("email", 1)]),
        ("请联系zhang.wei@sgcc.com.cn", "请联系<email>", &[("email", 1)]),
        ("zhāng.wěi@example.org", "<email>", &[("email", 1)]),
        ("李娜@公司.中国", "<email>", &[("email", 1)]),
    ]);
}

/// Runs where a candidate is turned down for what stands next to it, and
/// what stands next to it is taken later: scrubbing the output again
/// changes nothing (found by fuzzing).
#[test]
fn a_second_scrub_changes_nothing() {
    let scrubber = Scrubber::with_default_rules();
    for text in [
        "fe80::1A:2B:3C:4D:2B:3C:4D:5E",
        "+86 138 0 1 138-0013-8000",
        "+1 2345 6789 0123 4567 8901",
        r"\\fs01\home$\zhangwei\x",
        "x@y.cn13800138000",
        "1.2.3.4.13800138000",
        r"\\pc\c$\Users\wang&y C:\Users\Puba\x",
    ] {
        let once = scrubber.scrub_text(text, &mut BTreeMap::new());
        let mut counts = BTreeMap::new();
        let twice = scrubber.scrub_text(&once, &mut counts);
        assert_eq!(twice, once, "from {text:?}");
        assert!(counts.is_empty(), "{counts:?} in {once:?}");
    }
}

#[test]
fn names_and_addresses_after_their_labels_and_the_labels_alone() {
    #[rustfmt::skip]
    check(&[
        ("联系人：王小明，电话13912345678", "联系人：<name>，电话<phone>", &[("person_name", 1), ("phone", 1)]),
        ("申请人：艾力·买买提", "申请人：<name>", &[("person_name", 1)]),
        ("姓名: 欧阳娜娜 部门：信息中心", "姓名: <name> 部门：信息中心", &[("person_name", 1)]),
        ("住址：北京市海淀区中关村大街27号1101室，谢谢", "住址：<address>，谢谢", &[("address", 1)]),
        // The clause ends at a quote, and at what an earlier rule took.
        ("value=\"收货地址: 上海市浦东新区世纪大道100号\"", "value=\"收货地址: <address>\"", &[("address", 1)]),
        ("地址：深圳市南山区科技园路1号13912345678", "地址：<address><phone>", &[("address", 1), ("phone", 1)]),
        // A label with no name or place after it stays.
        ("地址：http://intranet.local/app", "地址：http://intranet.local/app", &[]),
        ("服务器地址：内网", "服务器地址：内网", &[]),
        ("地址栏输入网址后崩溃", "地址栏输入网址后崩溃", &[]),
        ("登记表的姓名栏无法输入生僻字", "登记表的姓名栏无法输入生僻字", &[]),
        // An identity number in fours; a mobile after 86 with no separator.
        ("身份证号 1101 0119 9003 0712 33", "身份证号 <id_card>", &[("id_card", 1)]),
        ("手机 8613912345678", "手机 <phone>", &[("phone", 1)]),
    ]);
}
