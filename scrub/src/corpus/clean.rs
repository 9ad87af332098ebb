//! Clean items: what reports hold that names nobody, and must come through
//! the scrubber byte for byte.

use super::{CleanItem, Rng};

pub const KINDS: [&str; 13] = [
    "version",
    "hex_offset",
    "exception_code",
    "kb",
    "date",
    "build",
    "module",
    "function",
    "file",
    "guid",
    "numbers",
    "prose_zh",
    "prose_en",
];

pub(super) fn item(rng: &mut Rng, kind: &'static str) -> CleanItem {
    let text = match kind {
        "version" => version(rng),
        "hex_offset" => hex_offset(rng),
        "exception_code" => exception_code(rng),
        "kb" => format!("KB{}", rng.range(2_000_000, 5_999_999)),
        "date" => date(rng),
        "build" => build(rng),
        "module" => rng.pick(MODULES).to_string(),
        "function" => rng.pick(FUNCTIONS).to_string(),
        "file" => rng.pick(FILES).to_string(),
        "guid" => guid(rng),
        "numbers" => numbers(rng),
        "prose_zh" => rng.pick(PROSE_ZH).to_string(),
        "prose_en" => rng.pick(PROSE_EN).to_string(),
        other => unreachable!("no generator for {other}"),
    };
    CleanItem { kind, text }
}

fn version(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => format!(
            "10.0.{}.{}",
            rng.pick(&[17763, 19041, 19045, 22621, 22631, 26100]),
            rng.range(1, 5000)
        ),
        1 => format!(
            "16.0.{}.{}",
            rng.range(10000, 18000),
            rng.range(20000, 20999)
        ),
        2 => format!(
            "{}.0.{}.{}",
            rng.range(100, 131),
            rng.range(4000, 6999),
            rng.range(1, 300)
        ),
        3 => format!(
            "{}.{}.{}",
            rng.range(1, 20),
            rng.range(0, 30),
            rng.range(0, 999)
        ),
        4 => format!(
            "v{}.{}.{}.{}",
            rng.range(1, 9),
            rng.range(0, 9),
            rng.range(0, 9),
            rng.range(0, 99)
        ),
        5 => format!(
            "版本 {}.{}.{}.{}",
            rng.range(1, 9),
            rng.range(0, 9),
            rng.range(0, 9),
            rng.range(1, 99)
        ),
        6 => format!("Version={}.0.0.0", rng.range(1, 9)),
        _ => format!(
            "{}.{}.0.{}",
            rng.range(11, 12),
            rng.range(1, 2),
            rng.range(10000, 16999)
        ),
    }
}

fn hex_offset(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("0x{:016X}", rng.next_u64() >> rng.range(4, 24)),
        1 => format!("0x{:x}", rng.range(0x100, 0xfff_ffff)),
        _ => format!("+0x{:x}", rng.range(0x10, 0xffff)),
    }
}

fn exception_code(rng: &mut Rng) -> String {
    let code = *rng.pick(&[
        "0xC0000005",
        "0xC0000409",
        "0xE06D7363",
        "0x80000003",
        "0xC00000FD",
        "0xC0000374",
        "0x80070005",
        "c0000005",
    ]);
    if rng.chance(20) {
        format!("{} (HRESULT {})", code, -2_147_024_891)
    } else {
        code.to_owned()
    }
}

fn date(rng: &mut Rng) -> String {
    let (y, m, d) = (rng.range(2019, 2026), rng.range(1, 12), rng.range(1, 28));
    let (h, min, s) = (rng.range(0, 23), rng.range(0, 59), rng.range(0, 59));
    match rng.below(6) {
        0 => format!("{y}-{m:02}-{d:02}"),
        1 => format!("{y}/{m:02}/{d:02}"),
        2 => format!("{y}年{m}月{d}日"),
        3 => format!("{y}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}"),
        4 => format!("{y}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z"),
        _ => format!("{y}{m:02}{d:02}"),
    }
}

fn build(rng: &mut Rng) -> String {
    let build = *rng.pick(&[17763, 19041, 19044, 19045, 22000, 22621, 22631, 26100]);
    let ubr = rng.range(1, 5000);
    match rng.below(4) {
        0 => format!("{build}.{ubr}"),
        1 => format!("build {build}"),
        2 => format!("OS 内部版本 {build}.{ubr}"),
        _ => format!("10.0.{build}.{ubr}"),
    }
}

fn guid(rng: &mut Rng) -> String {
    let hex = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let g = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    match rng.below(4) {
        0 => format!("{{{g}}}"),
        1 => format!("{{{}}}", g.to_ascii_uppercase()),
        2 => format!("CLSID\\{{{g}}}"),
        _ => (*rng.pick(&[
            "{00021401-0000-0000-C000-000000000046}",
            "{20D04FE0-3AEA-1069-A2D8-08002B30309D}",
            "{645FF040-5081-101B-9F08-00AA002F954E}",
            "{F02C1A0D-BE21-4350-88B0-7367FC96EF3C}",
        ]))
        .to_owned(),
    }
}

/// Numbers that are neither phones nor cards: counts, sizes, durations,
/// ports, percentages, error numbers.
fn numbers(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("{} 个文件", rng.range(1, 99_999)),
        1 => format!("{} MB", rng.range(1, 65_535)),
        2 => format!("{} ms", rng.range(1, 99_999)),
        3 => format!("{}%", rng.range(0, 100)),
        4 => format!("error {}", rng.range(1, 15_999)),
        _ => format!("第 {} 页", rng.range(1, 999)),
    }
}

const MODULES: &[&str] = &[
    "shell32.dll",
    "ntdll.dll",
    "KERNELBASE.dll",
    "d3d11.dll",
    "api-ms-win-core-synch-l1-2-0.dll",
    "msvcp140_1.dll",
    "ucrtbase.dll",
    "Windows.UI.Xaml.dll",
    "mso20win32client.dll",
    "wpsmain.dll",
    "Microsoft.Windows.Common-Controls_6.0.0.0_x-ww",
    "amd64_microsoft.windows.common-controls_6595b64144ccf1df_6.0.19041.3570_none",
    "igd10iumd64.dll",
    "nvwgf2umx.dll",
    "System.Private.CoreLib.dll",
    "win32kfull.sys",
];

const FUNCTIONS: &[&str] = &[
    "CDefView::WndProc",
    "CDefView::_OnContextMenu",
    "std::vector<int>::push_back",
    "Microsoft::WRL::Details::RuntimeClassImpl",
    "CD3D11Device::CreateTexture2D",
    "?foo@@YAXXZ",
    "_Func@12",
    "RtlUserThreadStart",
    "BaseThreadInitThunk",
    "KiUserExceptionDispatcher",
    "ABC::Add",
    "Face::Add1",
    "System.Net.Http.HttpClient.SendAsync",
    "wps::CDocument::Save",
    "NtWaitForSingleObject",
];

const FILES: &[&str] = &[
    r"C:\Windows\System32\drivers\etc\hosts",
    r"C:\Program Files\WPS Office\12.1.0.16120\office6\wps.exe",
    r"C:\Users\Public\Desktop\shortcut.lnk",
    r"C:\Users\Default\NTUSER.DAT",
    r"C:\ProgramData\Microsoft\Windows\WER\ReportArchive",
    r"%APPDATA%\Microsoft\Teams\logs.txt",
    r"%USERPROFILE%\Desktop\通知.docx",
    "report_2026-11-20.docx",
    "setup_x64.msi",
    r"\\fs01\software\office\setup.exe",
    r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion",
    r"NT AUTHORITY\SYSTEM",
    r"C:\Windows\WinSxS\amd64_microsoft-windows-shell32_31bf3856ad364e35_10.0.19041.3570_none",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "公文处理系统_使用说明.pdf",
];

const PROSE_ZH: &[&str] = &[
    "希望任务栏支持按项目分组窗口",
    "打开多个公文窗口时，任务栏太拥挤，希望能按项目分组",
    "更新以后开机速度明显变快了",
    "输入法在全屏模式下偶尔无法切换",
    "打印预览时字体显示不全",
    "希望资源管理器支持标签页",
    "会议室投影仪连接后分辨率不对",
    "系统提示磁盘空间不足，但实际还有很多空间",
    "请在下一个版本中保留经典开始菜单",
    "网络断开后重新连接需要等待很久",
    // Labels of the name and address rules with no name or address after
    // them.
    "登记表的姓名栏无法输入生僻字",
    "地址栏输入网址后浏览器崩溃",
    "服务器地址：内网，端口未开放",
    "代理地址：http://proxy.corp.local/proxy.pac 无法加载",
    "联系人列表排序错误",
    "MAC地址显示为全零",
];

const PROSE_EN: &[&str] = &[
    "Updates install faster since the last patch.",
    "The taskbar should group windows by project.",
    "Explorer freezes when a network drive is offline.",
    "Please keep the classic context menu.",
    "Dark mode makes the document viewer hard to read.",
    "The PDF printer drops the last page sometimes.",
    "Search results are slow on large folders.",
    "Sleep and resume breaks the Bluetooth headset.",
    "Font rendering is blurry on the second monitor.",
    "Thanks, the new update fixed the crash.",
];
