//! Normalisation and shingling of request text.
//!
//! Both are part of the cluster-id contract: the id of a new cluster is a hash
//! of [`normalize`]'s output, and the MinHash signatures persisted next to each
//! request are computed from [`shingles`]. Changing either (including the stop
//! lists below) changes ids and signatures of *future* requests only; the
//! golden tests in this module and in `minhash` fail when that happens so the
//! change is made deliberately.

use std::borrow::Cow;

use std::collections::HashSet;
use std::sync::LazyLock;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Normalises request text: Unicode NFKC, lower-cased, punctuation and symbols
/// turned into spaces, whitespace collapsed and trimmed.
///
/// * NFKC folds compatibility forms: full-width `ＷＩＦＩ１２３` becomes
///   `wifi123`, half-width katakana becomes full-width, `①` becomes `1`.
/// * Case folding is simple lower-casing (`char::to_lowercase`), not full
///   Unicode case folding: `Straße` stays `straße` rather than `strasse`. Chinese
///   and English requests are unaffected by the difference.
/// * Every character that is not alphanumeric (`char::is_alphanumeric`: letters
///   of any script, Han characters, digits) becomes a word separator, except
///   apostrophes (`'` and `’`), which are dropped so that `user's` and `users`
///   agree. Combining marks that NFKC could not compose are separators too; no
///   script this product ships for relies on them.
pub fn normalize(text: &str) -> String {
    // Text that passes the NFKC quick check (nearly all Chinese and English
    // text) is already NFKC; skipping the normaliser gives the same result.
    match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => fold(text.chars()),
        _ => fold(text.nfkc()),
    }
}

fn fold(chars: impl Iterator<Item = char>) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in chars {
        if c == '\'' || c == '\u{2019}' {
            continue;
        }
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

/// Whether `c` belongs to a script written without spaces between words: Han
/// (CJK unified ideographs and their extensions, compatibility ideographs),
/// Hiragana, Katakana and Hangul. Runs of these characters are shingled as
/// character bigrams; everything else is shingled as words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3005..=0x3007        // 々 〆 〇
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF      // Katakana phonetic extensions
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0x1100..=0x11FF      // Hangul jamo
        | 0x3130..=0x318F      // Hangul compatibility jamo
        | 0xAC00..=0xD7AF      // Hangul syllables
        | 0x20000..=0x3134F    // CJK extensions B–G, compatibility supplement
    )
}

/// English words dropped before shingling: articles, pronouns, prepositions
/// and the verbs nearly every request uses ("please add support for ...").
/// Matched after normalisation, before plural stripping.
pub const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "add", "allow", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "do",
    "for", "from", "hope", "i", "in", "into", "is", "it", "its", "let", "like", "me", "my", "need",
    "of", "on", "or", "our", "per", "please", "should", "so", "suggest", "support", "that", "the",
    "this", "to", "us", "want", "we", "when", "will", "with", "would", "you",
];

/// Chinese phrases dropped from CJK runs before shingling: function characters
/// (的 了 和 与 及 或 吗 呢 吧 把 将 让 对 在 按 时 ...) and request boilerplate
/// (希望 "hope", 建议 "suggest", 请 "please", 能否/能不能/可否/是否 "could",
/// 可以/能够 "can", 支持 "support", 增加/添加/新增/提供 "add/provide", 功能
/// "feature", 进行 "carry out"). Nearly every request uses the boilerplate,
/// so it only adds noise to similarity. Single 能 is deliberately absent: it
/// is part of 性能 (performance) and 智能 (smart).
pub const CHINESE_STOP_PHRASES: &[&str] = &[
    "希望",
    "建议",
    "请",
    "请问",
    "能否",
    "能不能",
    "可否",
    "是否",
    "可以",
    "能够",
    "支持",
    "增加",
    "添加",
    "新增",
    "提供",
    "功能",
    "进行",
    "一下",
    "一个",
    "一些",
    "我们",
    "我",
    "的",
    "了",
    "和",
    "与",
    "及",
    "或",
    "吗",
    "呢",
    "吧",
    "把",
    "将",
    "让",
    "对",
    "在",
    "按",
    "按照",
    "时",
    "也",
    "都",
    "就",
    "很",
];

/// Words that contain a stop phrase but must stay whole (申请 "apply",
/// 按钮 "button", 对话框 "dialog", 时间 "time", 在线 "online" ...). Matching is
/// greedy longest-first from the left, so a protected word wins over the stop
/// phrase inside it.
pub const CHINESE_PROTECTED: &[&str] = &[
    "申请", "请求", "邀请", "了解", "目的", "的确", "对话", "对比", "对象", "对齐", "对应", "将来",
    "按钮", "按键", "在线", "存在", "现在", "时间", "时区", "及时", "同时", "实时", "定时", "和谐",
    "总和",
];

/// Longest entry of either Chinese list, in characters.
const MAX_PHRASE_CHARS: usize = 3;

enum Phrase {
    Stop,
    Protected,
}

/// First characters of all Chinese phrases: most characters start none, and
/// are passed over without building a string.
static PHRASE_FIRST_CHARS: LazyLock<HashSet<char>> = LazyLock::new(|| {
    CHINESE_STOP_PHRASES
        .iter()
        .chain(CHINESE_PROTECTED)
        .filter_map(|p| p.chars().next())
        .collect()
});

fn chinese_phrase(chars: &[char]) -> Option<Phrase> {
    let mut buf = [0u8; 4 * MAX_PHRASE_CHARS];
    let mut len = 0;
    for c in chars {
        len += c.encode_utf8(&mut buf[len..]).len();
    }
    let s = std::str::from_utf8(&buf[..len]).ok()?;
    if CHINESE_PROTECTED.contains(&s) {
        Some(Phrase::Protected)
    } else if CHINESE_STOP_PHRASES.contains(&s) {
        Some(Phrase::Stop)
    } else {
        None
    }
}

/// Splits a CJK run at stop phrases and returns the remaining segments.
fn cjk_segments(run: &[char]) -> Vec<&[char]> {
    let mut segments = Vec::new();
    let mut start = 0;
    let mut i = 0;
    'outer: while i < run.len() {
        if !PHRASE_FIRST_CHARS.contains(&run[i]) {
            i += 1;
            continue;
        }
        for len in (1..=MAX_PHRASE_CHARS.min(run.len() - i)).rev() {
            match chinese_phrase(&run[i..i + len]) {
                Some(Phrase::Protected) => {
                    i += len;
                    continue 'outer;
                }
                Some(Phrase::Stop) => {
                    if start < i {
                        segments.push(&run[start..i]);
                    }
                    i += len;
                    start = i;
                    continue 'outer;
                }
                None => {}
            }
        }
        i += 1;
    }
    if start < run.len() {
        segments.push(&run[start..]);
    }
    segments
}

/// Minimal English plural stripping for ASCII words longer than three
/// letters: `-ies` → `-y`, `-sses`/`-xes`/`-ches`/`-shes` → drop `-es`, other
/// `-s` dropped unless the word ends in `-ss`, `-us` or `-is`. So `windows` and
/// `window`, `certificates` and `certificate` agree.
fn stem(word: &str) -> Cow<'_, str> {
    if word.len() <= 3 || !word.is_ascii() {
        return Cow::Borrowed(word);
    }
    if let Some(base) = word.strip_suffix("ies").filter(|b| b.len() > 1) {
        return Cow::Owned(format!("{base}y"));
    }
    for suffix in ["sses", "xes", "ches", "shes"] {
        if word.ends_with(suffix) {
            return Cow::Borrowed(&word[..word.len() - 2]);
        }
    }
    if word.ends_with('s')
        && !(word.ends_with("ss") || word.ends_with("us") || word.ends_with("is"))
    {
        return Cow::Borrowed(&word[..word.len() - 1]);
    }
    Cow::Borrowed(word)
}

fn emit_word(word: &str, emit: &mut impl FnMut(&str)) {
    if !word.is_empty() && !ENGLISH_STOP_WORDS.contains(&word) {
        emit(&stem(word));
    }
}

fn emit_cjk_run(run: &[char], emit: &mut impl FnMut(&str)) {
    let mut buf = [0u8; 8];
    for segment in cjk_segments(run) {
        if segment.len() == 1 {
            emit(segment[0].encode_utf8(&mut buf));
        } else {
            for pair in segment.windows(2) {
                let first = pair[0].encode_utf8(&mut buf).len();
                let second = pair[1].encode_utf8(&mut buf[first..]).len();
                if let Ok(bigram) = std::str::from_utf8(&buf[..first + second]) {
                    emit(bigram);
                }
            }
        }
    }
}

/// Calls `emit` for each shingle of normalised text, in text order, with
/// repeats; see [`shingles_of_normalized`] for the rules.
pub(crate) fn for_each_shingle(normalized: &str, mut emit: impl FnMut(&str)) {
    let mut chars: Vec<char> = Vec::new();
    let mut word_buf = String::new();
    for word in normalized.split(' ') {
        chars.clear();
        chars.extend(word.chars());
        let mut i = 0;
        while i < chars.len() {
            let cjk = is_cjk(chars[i]);
            let start = i;
            while i < chars.len() && is_cjk(chars[i]) == cjk {
                i += 1;
            }
            if cjk {
                emit_cjk_run(&chars[start..i], &mut emit);
            } else if start == 0 && i == chars.len() {
                emit_word(word, &mut emit);
            } else {
                word_buf.clear();
                word_buf.extend(&chars[start..i]);
                emit_word(&word_buf, &mut emit);
            }
        }
    }
}

/// The shingles of already-normalised text, sorted and de-duplicated.
///
/// * CJK runs (see [`is_cjk`]) are split at [`CHINESE_STOP_PHRASES`]; each
///   remaining segment gives its character bigrams, or the character itself
///   when the segment is one character long. Bigrams never cross a space
///   (former punctuation) or a removed stop phrase.
/// * Other runs are words: [`ENGLISH_STOP_WORDS`] are dropped, plurals are
///   stripped, and each word is one shingle. Word order is ignored, which
///   suits short titles where reordering is the most common paraphrase.
/// * A word mixing scripts (`sm2证书`) is split at the script boundary.
///
/// Word and CJK shingles cannot collide: words contain no CJK characters.
pub fn shingles_of_normalized(normalized: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_shingle(normalized, |s| out.push(s.to_owned()));
    out.sort_unstable();
    out.dedup();
    out
}

/// The shingles of raw request text: [`normalize`] then
/// [`shingles_of_normalized`].
pub fn shingles(text: &str) -> Vec<String> {
    shingles_of_normalized(&normalize(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_full_width_and_case() {
        assert_eq!(normalize("ＷＩＦＩ　６ 连接"), "wifi 6 连接");
        assert_eq!(normalize("Ｗｉｎｄｏｗｓ １２３"), "windows 123");
        assert_eq!(normalize("ＶＰＮ断线"), "vpn断线");
        // Half-width katakana becomes full-width; circled digits become digits.
        assert_eq!(normalize("ｶﾀｶﾅ ①"), "カタカナ 1");
        assert_eq!(normalize("Taskbar GROUPING"), "taskbar grouping");
        // Simple lower-casing, not full case folding (documented).
        assert_eq!(normalize("STRASSE Straße"), "strasse straße");
    }

    #[test]
    fn punctuation_and_whitespace() {
        assert_eq!(
            normalize("  Taskbar:  group\topen windows -- per project!!! "),
            "taskbar group open windows per project"
        );
        assert_eq!(
            normalize("希望任务栏支持按项目分组窗口。谢谢！"),
            "希望任务栏支持按项目分组窗口 谢谢"
        );
        assert_eq!(
            normalize("【建议】打印机（HP）驱动…"),
            "建议 打印机 hp 驱动"
        );
        assert_eq!(normalize("user's   users’"), "users users");
        assert_eq!(normalize("C++ / C# → 100%"), "c c 100");
        assert_eq!(normalize("!!! ？？ ..."), "");
    }

    #[test]
    fn cjk_bigrams_split_at_stop_phrases() {
        assert_eq!(
            shingles("希望任务栏支持按项目分组窗口"),
            ["任务", "分组", "务栏", "目分", "窗口", "组窗", "项目"]
        );
        // 对 and 进行 are removed and bigrams do not cross them.
        assert_eq!(
            shingles("任务栏能否按项目对窗口进行分组"),
            ["任务", "分组", "务栏", "窗口", "项目"]
        );
    }

    #[test]
    fn protected_words_survive() {
        // 按钮 (button) and 申请 (apply) contain stop phrases 按 and 请.
        assert_eq!(shingles("关机按钮"), ["关机", "按钮", "机按"]);
        assert_eq!(
            shingles("请简化申请流程"),
            ["化申", "流程", "申请", "简化", "请流"]
        );
        // A one-character segment is kept as a unigram.
        assert_eq!(shingles("希望支持快"), ["快"]);
    }

    #[test]
    fn english_words_stop_words_and_plurals() {
        assert_eq!(
            shingles("Please let the taskbar group windows by project"),
            ["group", "project", "taskbar", "window"]
        );
        assert_eq!(
            shingles("Support SM2 certificates for login"),
            ["certificate", "login", "sm2"]
        );
        assert_eq!(
            shingles("policies processes boxes bus access"),
            ["access", "box", "bus", "policy", "process"]
        );
    }

    #[test]
    fn mixed_text_splits_at_script_boundaries() {
        assert_eq!(
            shingles("希望任务栏支持按项目分组窗口 taskbar grouping"),
            [
                "grouping", "taskbar", "任务", "分组", "务栏", "目分", "窗口", "组窗", "项目"
            ]
        );
        assert_eq!(
            shingles("希望支持国密算法SM2证书登录"),
            ["sm2", "书登", "国密", "密算", "登录", "算法", "证书"]
        );
    }

    #[test]
    fn only_stop_words_gives_no_shingles() {
        assert!(shingles("Please, we would like to ...").is_empty());
        assert!(shingles("希望能够支持").is_empty());
        assert!(shingles("").is_empty());
    }
}
