//! What the rules see: the text with the forms that hide digits and
//! separators folded to ASCII, and where each byte came from.
//!
//! - full-width ASCII (`１３８`, `＠`, `．`, `－`, `（`, `）`, `：`, `＼`) → ASCII;
//! - U+3000, U+00A0 and the other typographic spaces → ` `;
//! - hyphens and the minus sign (U+2010–U+2013, U+2212, U+FE63) → `-`;
//! - zero-width characters and the soft hyphen → removed.
//!
//! The rules match on the folded text; replacements are made in the
//! original, so what is not replaced keeps its full-width form.
//! Full-width punctuation that no rule reads (`，`, `。`, `！`, `？`, `；`)
//! is left as it is, so ordinary Chinese text costs no folding.

use std::borrow::Cow;

/// A text as the rules see it.
#[derive(Debug)]
pub(crate) struct Normalized<'a> {
    pub text: Cow<'a, str>,
    /// For each byte of `text`, and one past its end, the offset in the
    /// original text; `None` when nothing was folded (the offsets are the
    /// same).
    map: Option<Vec<u32>>,
}

impl Normalized<'_> {
    /// The original offset of `text`'s byte offset `at` (a char boundary).
    pub fn original(&self, at: usize) -> usize {
        self.map.as_ref().map_or(at, |map| map[at] as usize)
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
        '＠' | '．' | '－' | '＋' | '（' | '）' | '：' | '＼' | '／' | '＿' | '＃' | '＄'
        | '％' => (u32::from(c) - 0xFEE0) as u8,
        '\u{3000}' | '\u{A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' => b' ',
        '\u{2010}'..='\u{2013}' | '\u{2212}' | '\u{FE63}' => b'-',
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{AD}' => return Some(None),
        _ => return None,
    };
    Some(Some(folded))
}

pub(crate) fn normalize(text: &str) -> Normalized<'_> {
    // Every folded character starts with one of these bytes (U+00A0,
    // U+00AD; U+2000–U+2FFF; U+3000; U+FE00–U+FFFF): text without them,
    // ASCII or ordinary Chinese, is not decoded.
    let Some(lead) = text
        .bytes()
        .position(|b| matches!(b, 0xC2 | 0xE2 | 0xE3 | 0xEF))
    else {
        return Normalized {
            text: Cow::Borrowed(text),
            map: None,
        };
    };
    let from = (0..=lead)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let Some(first) = text[from..]
        .char_indices()
        .map(|(i, c)| (from + i, c))
        .find(|(_, c)| fold(*c).is_some())
    else {
        return Normalized {
            text: Cow::Borrowed(text),
            map: None,
        };
    };
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    out.push_str(&text[..first.0]);
    map.extend(0..first.0 as u32);
    for (at, c) in text[first.0..].char_indices() {
        let at = first.0 + at;
        match fold(c) {
            Some(Some(b)) => {
                out.push(char::from(b));
                map.push(at as u32);
            }
            Some(None) => {}
            None => {
                out.push(c);
                map.extend((0..c.len_utf8() as u32).map(|i| at as u32 + i));
            }
        }
    }
    map.push(text.len() as u32);
    Normalized {
        text: Cow::Owned(out),
        map: Some(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_full_width_forms_and_spaces_and_maps_back() {
        let text = "电话：１３８\u{3000}００１３－８０００，邮箱 a＠b.cn\u{200B}!";
        let n = normalize(text);
        assert_eq!(n.text, "电话:138 0013-8000，邮箱 a@b.cn!");
        let start = n.text.find("138").unwrap();
        let end = n.text.find("，").unwrap();
        assert_eq!(
            &text[n.original(start)..n.original(end)],
            "１３８\u{3000}００１３－８０００"
        );
        assert_eq!(n.original(n.text.len()), text.len());
    }

    #[test]
    fn plain_and_chinese_text_is_borrowed() {
        for text in ["plain", "打开多个公文窗口时，任务栏太拥挤。"] {
            let n = normalize(text);
            assert!(matches!(n.text, Cow::Borrowed(_)));
            assert_eq!(n.original(3), 3);
        }
    }
}
