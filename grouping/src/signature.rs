//! Socorro-style signatures: the top of the crashing stack, readable.

use schemas::report::{CrashPayload, Frame};
use serde::{Deserialize, Deserializer, Serialize};

use crate::normalise_hex;

/// How many kept frames a signature joins by default.
pub const DEFAULT_MAX_FRAMES: usize = 3;

/// Frames that never explain a Windows user-mode crash, skipped by default.
///
/// Patterns are matched case-insensitively against `module!function`; `*`
/// matches any run of characters (see [`SignatureConfig::skip`]). Entries
/// name the system DLL where the function lives only there; CRT functions
/// use `*!` because the CRT may be `ucrtbase.dll`, `msvcrt.dll` or linked
/// statically into the application.
pub const DEFAULT_SKIP: &[&str] = &[
    // Every thread starts here.
    "ntdll.dll!RtlUserThreadStart",
    "kernel32.dll!BaseThreadInitThunk",
    // The kernel handing exceptions, APCs and window callbacks to user mode.
    "ntdll.dll!KiUserExceptionDispatcher",
    "ntdll.dll!KiUserApcDispatcher",
    "ntdll.dll!KiUserCallbackDispatcher",
    // Dispatching an exception to its handlers and to the unhandled filter.
    "ntdll.dll!RtlDispatchException",
    "ntdll.dll!RtlpExecuteHandlerForException",
    "*!__C_specific_handler",
    "KERNELBASE.dll!UnhandledExceptionFilter",
    // Raising an exception: whoever called these threw it.
    "ntdll.dll!RtlRaiseException",
    "KERNELBASE.dll!RaiseException",
    "KERNELBASE.dll!RaiseFailFastException",
    "*!_CxxThrowException",
    // Ending the process: whoever called these decided to.
    "*!abort",
    "*!terminate",
    "*!_invoke_watson",
    "*!_invalid_parameter*",
    "KERNELBASE.dll!TerminateProcess",
    "ntdll.dll!NtTerminateProcess",
    "ntdll.dll!ZwTerminateProcess",
    // Waiting: in a hang, the culprit is whoever waited.
    "ntdll.dll!NtWaitForSingleObject",
    "ntdll.dll!ZwWaitForSingleObject",
    "ntdll.dll!NtWaitForMultipleObjects",
    "ntdll.dll!ZwWaitForMultipleObjects",
    "KERNELBASE.dll!WaitForSingleObjectEx",
    "KERNELBASE.dll!WaitForMultipleObjectsEx",
];

/// How signatures are formed; part of the processor's config.
///
/// Both fields are optional when deserialised and default to
/// [`DEFAULT_SKIP`] and [`DEFAULT_MAX_FRAMES`]. A `skip` given in config
/// *replaces* the default list. Unknown fields and `max_frames = 0` are
/// rejected. Changing the config changes signatures, so rows grouped under
/// different configs are not comparable even at the same
/// [`GROUPING_VERSION`](crate::GROUPING_VERSION).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignatureConfig {
    /// Patterns of frames to leave out, matched case-insensitively against
    /// `module!function` after the same normalisation as rendering (module
    /// lower-cased, displacement dropped, whitespace collapsed). `*` matches
    /// any run of characters, so `ntdll.dll!Ki*` matches by prefix,
    /// `*!_CxxThrowException` matches in any module, and `explorer.exe!*`
    /// also matches `explorer.exe` frames whose function is unknown (their
    /// key is `explorer.exe!`). Every other character matches itself.
    pub skip: Vec<String>,
    /// How many kept frames to join; at least 1 (0 is treated as 1).
    #[serde(deserialize_with = "at_least_one")]
    pub max_frames: usize,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        SignatureConfig {
            skip: DEFAULT_SKIP.iter().map(|s| (*s).to_owned()).collect(),
            max_frames: DEFAULT_MAX_FRAMES,
        }
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(deserializer)?;
    if n == 0 {
        return Err(serde::de::Error::custom("max_frames must be at least 1"));
    }
    Ok(n)
}

/// The signature of a crash.
///
/// Frames are taken innermost first. Each frame is normalised:
///
/// - the module name is trimmed and rendered lower-case, since Windows file
///   names are case-insensitive (`KERNELBASE.dll` and `kernelbase.dll` give
///   one signature); a blank module renders as `<unknown>`;
/// - the function name has runs of whitespace collapsed to one space and a
///   trailing displacement (`+0x1a`) dropped, so `CDefView::WndProc+0x1a`
///   is `CDefView::WndProc`; a missing or blank function is unknown.
///
/// Frames matching a pattern in `config.skip` are dropped. Each of the first
/// `config.max_frames` kept frames renders as `module!function`, or as
/// `module+0xOFFSET` (offset normalised to upper-case hex without leading
/// zeros) when the function is unknown, and they are joined with ` | `.
///
/// If no frame is kept, the signature is the faulting module and offset,
/// `module!+0xOFFSET` (e.g. `kernelbase.dll!+0x2CF19`), and if the faulting
/// module's name is blank too, `<no frames>`.
pub fn signature(crash: &CrashPayload, config: &SignatureConfig) -> String {
    Signer::new(config).signature(crash)
}

/// A [`SignatureConfig`] with its skip patterns prepared once, for
/// computing many signatures (preparing them per crash was a seventh of
/// the processor's time).
#[derive(Debug, Clone)]
pub struct Signer {
    skip: Vec<Vec<char>>,
    max_frames: usize,
}

impl Signer {
    pub fn new(config: &SignatureConfig) -> Self {
        Signer {
            skip: config.skip.iter().map(|p| pattern_chars(p)).collect(),
            max_frames: config.max_frames.max(1),
        }
    }

    /// The crash's signature; see [`signature`].
    pub fn signature(&self, crash: &CrashPayload) -> String {
        let mut key: Vec<char> = Vec::new();
        let kept: Vec<String> = crash
            .frames
            .iter()
            .map(NormalFrame::new)
            .filter(|frame| {
                key.clear();
                key.extend(frame.key().chars());
                !self.skip.iter().any(|pattern| glob(pattern, &key))
            })
            .take(self.max_frames)
            .map(|frame| frame.render())
            .collect();
        if !kept.is_empty() {
            return kept.join(" | ");
        }

        let module = crash.module.name.trim().to_lowercase();
        if module.is_empty() {
            return "<no frames>".to_owned();
        }
        let offset = crash.module.offset.trim();
        if offset.is_empty() {
            format!("{module}!")
        } else {
            format!("{module}!+{}", normalise_hex(offset))
        }
    }
}

/// A frame after normalisation.
struct NormalFrame {
    /// Trimmed, lower-case; may be empty.
    module: String,
    /// Whitespace collapsed, displacement dropped; `None` when unknown.
    function: Option<String>,
    offset: String,
}

impl NormalFrame {
    fn new(frame: &Frame) -> Self {
        NormalFrame {
            module: frame.module.trim().to_lowercase(),
            function: frame
                .function
                .as_deref()
                .map(normalise_function)
                .filter(|f| !f.is_empty()),
            offset: frame.offset.trim().to_owned(),
        }
    }

    /// What skip patterns are matched against: `module!function`, lower-case,
    /// with an empty function when it is unknown.
    fn key(&self) -> String {
        let function = self.function.as_deref().unwrap_or("");
        format!("{}!{}", self.module, function.to_lowercase())
    }

    fn render(&self) -> String {
        let module = if self.module.is_empty() {
            "<unknown>"
        } else {
            &self.module
        };
        match (&self.function, self.offset.is_empty()) {
            (Some(function), _) => format!("{module}!{function}"),
            (None, false) => format!("{module}+{}", normalise_hex(&self.offset)),
            (None, true) => module.to_owned(),
        }
    }
}

/// Collapses whitespace and drops a trailing `+0x…` displacement.
fn normalise_function(function: &str) -> String {
    let collapsed = collapse_whitespace(function);
    if let Some((name, displacement)) = collapsed.rsplit_once('+') {
        let displacement = displacement.trim();
        let hex = displacement
            .strip_prefix("0x")
            .or_else(|| displacement.strip_prefix("0X"));
        if hex.is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit())) {
            return name.trim_end().to_owned();
        }
    }
    collapsed
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn pattern_chars(pattern: &str) -> Vec<char> {
    collapse_whitespace(pattern)
        .to_lowercase()
        .chars()
        .collect()
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters
/// (including none) and everything else matches itself.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Position of the last `*` seen, and where in `text` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&'*') {
            star = Some((p, t));
            p += 1;
        } else if pattern.get(p) == Some(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            // Let the last `*` swallow one more character and retry.
            star = Some((star_p, star_t + 1));
            p = star_p + 1;
            t = star_t + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{edge_cxx_throw, explorer_av, f, unknown};

    fn sig(crash: &CrashPayload) -> String {
        signature(crash, &SignatureConfig::default())
    }

    fn with_frames(frames: Vec<Frame>) -> CrashPayload {
        CrashPayload {
            frames,
            ..explorer_av()
        }
    }

    fn matches(pattern: &str, text: &str) -> bool {
        glob(&pattern_chars(pattern), &text.chars().collect::<Vec<_>>())
    }

    #[test]
    fn glob_matches_exactly_by_prefix_suffix_and_any_module() {
        assert!(matches(
            "ntdll.dll!rtluserthreadstart",
            "ntdll.dll!rtluserthreadstart"
        ));
        assert!(!matches(
            "ntdll.dll!rtluserthreadstart",
            "ntdll.dll!rtluserthreadstart$filt$0"
        ));
        assert!(!matches(
            "ntdll.dll!rtluserthreadstart",
            "ntdll.dll!rtluserthreadstar"
        ));
        assert!(matches(
            "ntdll.dll!ki*",
            "ntdll.dll!kiuserexceptiondispatcher"
        ));
        assert!(!matches("ntdll.dll!ki*", "ntdll.dll!"));
        assert!(!matches(
            "ntdll.dll!ki*",
            "kernelbase.dll!kiuserexceptiondispatcher"
        ));
        assert!(matches(
            "*!_cxxthrowexception",
            "vcruntime140.dll!_cxxthrowexception"
        ));
        assert!(matches(
            "*!_cxxthrowexception",
            "msvcrt.dll!_cxxthrowexception"
        ));
        assert!(!matches(
            "*!_cxxthrowexception",
            "msvcrt.dll!_cxxthrowexceptionx"
        ));
        assert!(matches("explorer.exe!*", "explorer.exe!"));
        assert!(matches("msvcp*.dll!*", "msvcp140.dll!std::_xout_of_range"));
        assert!(!matches("msvcp*.dll!*", "ucrtbase.dll!abort"));
        assert!(matches("*", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn access_violation_in_shell32_under_the_window_procedure() {
        assert_eq!(
            sig(&explorer_av()),
            "shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc \
             | user32.dll!UserCallWinProcCheckWow"
        );
    }

    #[test]
    fn cxx_exception_skips_raise_throw_and_abort() {
        assert_eq!(
            sig(&edge_cxx_throw()),
            "msedge.dll!base::internal::OnNoMemoryInternal \
             | msedge.dll!partition_alloc::TerminateBecauseOutOfMemory \
             | msedge.dll!partition_alloc::internal::OnNoMemory"
        );
    }

    #[test]
    fn unknown_functions_render_as_module_plus_offset() {
        let crash = with_frames(vec![
            unknown("explorer.exe", "0x0000000000003f21"),
            f("explorer.exe", "", "0x2a7f0"),
            f("explorer.exe", "  ", "0x0"),
            unknown("Explorer.EXE", ""),
            f("kernel32.dll", "BaseThreadInitThunk", "0x17034"),
            f("ntdll.dll", "RtlUserThreadStart", "0x52651"),
        ]);
        let config = SignatureConfig {
            max_frames: 10,
            ..SignatureConfig::default()
        };
        assert_eq!(
            signature(&crash, &config),
            "explorer.exe+0x3F21 | explorer.exe+0x2A7F0 | explorer.exe+0x0 | explorer.exe"
        );
        // A frame without a module at all still renders.
        let crash = with_frames(vec![unknown(" ", "0x1f2e3d4c")]);
        assert_eq!(sig(&crash), "<unknown>+0x1F2E3D4C");
    }

    #[test]
    fn hung_wait_is_signed_by_whoever_waited() {
        let crash = with_frames(vec![
            f("ntdll.dll", "NtWaitForSingleObject", "0x14"),
            f("KERNELBASE.dll", "WaitForSingleObjectEx", "0x8e"),
            f(
                "windows.storage.dll",
                "CFSFolder::_LoadFileAttributes",
                "0x1a3",
            ),
            f("windows.storage.dll", "CFSFolder::GetAttributesOf", "0x2f1"),
            f("shell32.dll", "CDefView::_GetItemAttributes", "0x6c"),
            f("shell32.dll", "CDefView::WndProc", "0x5e410"),
        ]);
        assert_eq!(
            sig(&crash),
            "windows.storage.dll!CFSFolder::_LoadFileAttributes \
             | windows.storage.dll!CFSFolder::GetAttributesOf \
             | shell32.dll!CDefView::_GetItemAttributes"
        );
    }

    #[test]
    fn the_frames_the_default_list_names_are_skipped() {
        let skipped = [
            f("ntdll.dll", "RtlUserThreadStart", "0x52651"),
            f("kernel32.dll", "BaseThreadInitThunk", "0x17034"),
            f("KERNELBASE.dll", "RaiseException", "0x2cf19"),
            f("ntdll.dll", "KiUserExceptionDispatcher", "0x9f3ce"),
            f("ntdll.dll", "RtlRaiseException", "0x3f5e2"),
            f("VCRUNTIME140.dll", "_CxxThrowException", "0x4a61"),
            f("msvcrt.dll", "_CxxThrowException", "0x3bd6e"),
            f("ntdll.dll", "NtWaitForSingleObject", "0x14"),
            f("KERNELBASE.dll", "WaitForSingleObjectEx", "0x8e"),
            f("ucrtbase.dll", "abort", "0x7286e"),
            f("ucrtbase.dll", "terminate", "0x6c3a9"),
            f("ucrtbase.dll", "_invalid_parameter_noinfo", "0x3b4e"),
            f("KERNELBASE.dll", "TerminateProcess", "0x2a1b"),
        ];
        for frame in skipped {
            let rendered = format!("{}!{}", frame.module, frame.function.clone().unwrap());
            let crash = with_frames(vec![frame, f("contoso.dll", "Contoso::Run", "0x10")]);
            assert_eq!(
                sig(&crash),
                "contoso.dll!Contoso::Run",
                "{rendered} was kept"
            );
        }
    }

    #[test]
    fn only_skipped_frames_fall_back_to_the_faulting_module() {
        let mut crash = edge_cxx_throw();
        crash.frames = vec![
            f("KERNELBASE.dll", "RaiseException", "0x2cf19"),
            f("kernel32.dll", "BaseThreadInitThunk", "0x17034"),
            f("ntdll.dll", "RtlUserThreadStart", "0x52651"),
        ];
        assert_eq!(sig(&crash), "kernelbase.dll!+0x2CF19");

        crash.frames.clear();
        assert_eq!(sig(&crash), "kernelbase.dll!+0x2CF19");

        crash.module.offset = " ".to_owned();
        assert_eq!(sig(&crash), "kernelbase.dll!");

        crash.module.name = String::new();
        assert_eq!(sig(&crash), "<no frames>");
    }

    #[test]
    fn displacements_and_whitespace_are_stripped() {
        let plain = with_frames(vec![
            f("shell32.dll", "CDefView::WndProc", "0x5e410"),
            f(
                "msvcp140.dll",
                "std::vector<int, std::allocator<int> >::_Xlength",
                "0x1c",
            ),
        ]);
        let noisy = with_frames(vec![
            f("shell32.dll", "CDefView::WndProc+0x1a", "0x5e42a"),
            f(
                "msvcp140.dll",
                " std::vector<int,\tstd::allocator<int>  >::_Xlength + 0X2F ",
                "0x4b",
            ),
        ]);
        assert_eq!(sig(&plain), sig(&noisy));
        assert_eq!(
            sig(&noisy),
            "shell32.dll!CDefView::WndProc | msvcp140.dll!std::vector<int, std::allocator<int> >::_Xlength"
        );

        // Only a hex displacement is dropped: `operator+` keeps its plus.
        assert_eq!(normalise_function("Vec3::operator+"), "Vec3::operator+");
        assert_eq!(
            normalise_function("Vec3::operator++0x1a"),
            "Vec3::operator+"
        );
        assert_eq!(normalise_function("Foo+12"), "Foo+12");
        assert_eq!(normalise_function("Foo+0x"), "Foo+0x");
        assert_eq!(normalise_function("+0x1a"), "");
    }

    #[test]
    fn module_case_does_not_split_signatures_or_skipping() {
        let upper = with_frames(vec![
            f("KERNELBASE.DLL", "RAISEEXCEPTION", "0x2cf19"),
            f("KERNELBASE.dll", "GetFileAttributesW", "0x1b2"),
        ]);
        let lower = with_frames(vec![f("kernelbase.dll", "GetFileAttributesW", "0x1b2")]);
        assert_eq!(sig(&upper), "kernelbase.dll!GetFileAttributesW");
        assert_eq!(sig(&upper), sig(&lower));
        // Function names keep their case: C++ names are case-sensitive.
        let other = with_frames(vec![f("kernelbase.dll", "getfileattributesw", "0x1b2")]);
        assert_ne!(sig(&other), sig(&lower));
    }

    #[test]
    fn frames_below_the_top_n_do_not_matter() {
        let base = explorer_av();
        let mut deeper = explorer_av();
        deeper.frames[3] = f("user32.dll", "DispatchClientMessage", "0x9c1");
        deeper
            .frames
            .insert(4, f("explorer.exe", "wWinMain", "0x2b9"));
        assert_eq!(sig(&base), sig(&deeper));

        let mut top = explorer_av();
        top.frames[2] = f("user32.dll", "CallWindowProcW", "0x3a2");
        assert_ne!(sig(&base), sig(&top));
    }

    #[test]
    fn max_frames_is_respected() {
        let crash = explorer_av();
        let with = |max_frames| {
            let config = SignatureConfig {
                max_frames,
                ..SignatureConfig::default()
            };
            signature(&crash, &config)
        };
        assert_eq!(with(1), "shell32.dll!CDefView::_OnContextMenu");
        assert_eq!(with(0), with(1));
        assert_eq!(
            with(5),
            "shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc \
             | user32.dll!UserCallWinProcCheckWow | user32.dll!DispatchMessageWorker \
             | explorer.exe+0x3F21"
        );
        // More than there are kept frames: all of them, skipped ones still out.
        assert_eq!(with(50), with(5));
    }

    #[test]
    fn custom_skip_list_from_toml() {
        let config: SignatureConfig = toml::from_str(
            r#"
            max_frames = 2
            skip = [
                "ntdll.dll!RtlUserThreadStart",
                "shell32.dll!CDefView::_On*",
                "USER32.dll!*",
            ]
            "#,
        )
        .unwrap();
        assert_eq!(config.max_frames, 2);
        assert_eq!(
            signature(&explorer_av(), &config),
            "shell32.dll!CDefView::WndProc | explorer.exe+0x3F21"
        );

        // `module!*` also skips that module's frames with no function.
        let config: SignatureConfig =
            toml::from_str(r#"skip = ["shell32.dll!*", "user32.dll!*", "explorer.exe!*"]"#)
                .unwrap();
        assert_eq!(config.max_frames, DEFAULT_MAX_FRAMES);
        assert_eq!(
            signature(&explorer_av(), &config),
            "kernel32.dll!BaseThreadInitThunk | ntdll.dll!RtlUserThreadStart"
        );
    }

    #[test]
    fn config_defaults_and_rejections() {
        let empty: SignatureConfig = toml::from_str("").unwrap();
        assert_eq!(empty, SignatureConfig::default());
        assert_eq!(empty.skip.len(), DEFAULT_SKIP.len());

        let only_max: SignatureConfig = serde_json::from_str(r#"{"max_frames": 4}"#).unwrap();
        assert_eq!(only_max.skip, SignatureConfig::default().skip);
        assert_eq!(only_max.max_frames, 4);

        let typo = toml::from_str::<SignatureConfig>("max_frame = 4").unwrap_err();
        assert!(typo.to_string().contains("max_frame"), "{typo}");
        let zero = toml::from_str::<SignatureConfig>("max_frames = 0").unwrap_err();
        assert!(zero.to_string().contains("at least 1"), "{zero}");
    }
}
