//! What the rules see: the text with the forms that hide digits and
//! separators folded to ASCII, and where each byte came from.
//!
//! - full-width ASCII (`１３８`, `＠`, `．`, `－`, `（`, `）`, `＼`) → ASCII;
//! - U+3000, U+00A0 and the other typographic spaces → ` `;
//! - hyphens and the minus sign (U+2010–U+2013, U+2212, U+FE63) → `-`;
//! - zero-width characters and the soft hyphen → removed.
//!
//! The rules match on the folded text; replacements are made in the
//! original, so what is not replaced keeps its full-width form.
//! Full-width punctuation no rule needs as ASCII (`，`, `。`, `！`, `？`,
//! `；`, and `：`, which the patterns that read it name) is left as it is,
//! so ordinary Chinese text costs no folding. Where a folded byte came
//! from is worked out only for what is replaced.

use std::borrow::Cow;

/// A text as the rules see it.
#[derive(Debug)]
pub(crate) struct Normalized<'a> {
    pub text: Cow<'a, str>,
    /// Whether anything was folded (else the offsets are the original's).
    folded: bool,
}

impl Normalized<'_> {
    /// Turns `offsets` of the folded text (ascending, on char boundaries)
    /// into offsets of `original`, the text it was folded from, in one
    /// walk over it. An offset just after removed characters maps to
    /// before them.
    pub fn to_original(&self, original: &str, offsets: &mut [usize]) {
        if !self.folded {
            return;
        }
        let mut folded_at = 0;
        let mut k = 0;
        for (at, c) in original.char_indices() {
            while k < offsets.len() && offsets[k] == folded_at {
                offsets[k] = at;
                k += 1;
            }
            if k == offsets.len() {
                return;
            }
            folded_at += match fold(c) {
                Some(Some(_)) => 1,
                Some(None) => 0,
                None => c.len_utf8(),
            };
        }
        for offset in &mut offsets[k..] {
            *offset = original.len();
        }
    }
}

/// What `c` folds to: `Some(Some(ascii))`, `Some(None)` to remove it,
/// `None` to keep it.
fn fold(c: char) -> Option<Option<u8>> {
    let folded = match c {
        // Full-width digits, letters and the punctuation rules read.
        '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
            (u32::from(c) - 0xFEE0) as u8
        }
        '＠' | '．' | '－' | '＋' | '（' | '）' | '＼' | '／' | '＿' | '＃' | '＄' | '％' => {
            (u32::from(c) - 0xFEE0) as u8
        }
        '\u{3000}' | '\u{A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' => b' ',
        '\u{2010}'..='\u{2013}' | '\u{2212}' | '\u{FE63}' => b'-',
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{AD}' => return Some(None),
        _ => return None,
    };
    Some(Some(folded))
}

pub(crate) fn normalize(text: &str) -> Normalized<'_> {
    let unchanged = Normalized {
        text: Cow::Borrowed(text),
        folded: false,
    };
    // Every folded character starts with one of these bytes (U+00A0,
    // U+00AD; U+2000–U+2FFF; U+3000; U+FE00–U+FFFF), each the first byte of
    // a character: only those characters are decoded, so text without a
    // foldable one (ASCII, Chinese with `，` and `。`) is only scanned.
    if text.is_ascii() {
        return unchanged;
    }
    let bytes = text.as_bytes();
    let mut from = 0;
    let first = loop {
        let Some(lead) = bytes[from..]
            .iter()
            .position(|b| matches!(b, 0xC2 | 0xE2 | 0xE3 | 0xEF))
        else {
            return unchanged;
        };
        let at = from + lead;
        let Some(c) = text[at..].chars().next() else {
            return unchanged;
        };
        if fold(c).is_some() {
            break at;
        }
        from = at + c.len_utf8();
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match fold(c) {
            Some(Some(b)) => out.push(char::from(b)),
            Some(None) => {}
            None => out.push(c),
        }
    }
    Normalized {
        text: Cow::Owned(out),
        folded: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_full_width_forms_and_spaces_and_maps_back() {
        let text = "电话：１３８\u{3000}００１３－８０００，邮箱 a＠b.cn\u{200B}!";
        let n = normalize(text);
        assert_eq!(n.text, "电话：138 0013-8000，邮箱 a@b.cn!");
        let mut offsets = [
            n.text.find("138").unwrap(),
            n.text.find("，").unwrap(),
            n.text.find('!').unwrap(),
            n.text.len(),
        ];
        n.to_original(text, &mut offsets);
        assert_eq!(
            &text[offsets[0]..offsets[1]],
            "１３８\u{3000}００１３－８０００"
        );
        assert_eq!(&text[offsets[2]..], "\u{200B}!");
        assert_eq!(offsets[3], text.len());
    }

    #[test]
    fn plain_and_chinese_text_is_borrowed() {
        for text in [
            "plain",
            "打开多个公文窗口时，任务栏太拥挤。",
            "故障描述：“崩溃”",
        ] {
            let n = normalize(text);
            assert!(matches!(n.text, Cow::Borrowed(_)));
            let mut offsets = [3];
            n.to_original(text, &mut offsets);
            assert_eq!(offsets, [3]);
        }
    }
}
