//! The one spelling of a hexadecimal number (an exception code, a module or
//! frame offset) everywhere: what the reporter sends from a WER file, what
//! grouping hashes into a bucket and a signature, and what the processor
//! stores are the same text.

/// Upper-case hex with a `0x` prefix and no leading zeros: `0x00a1b2c`,
/// `0XA1B2C` and `a1b2c` all become `0xA1B2C`, and `0x0000` becomes `0x0`.
/// The payload documents these fields as hexadecimal, so a value without a
/// prefix is read as hex too. Anything that is not hex is only trimmed, so
/// it still groups with identical values.
pub fn normalise(value: &str) -> String {
    let value = value.trim();
    let digits = digits(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return value.to_owned();
    }
    let significant = digits.trim_start_matches('0');
    let significant = if significant.is_empty() {
        "0"
    } else {
        significant
    };
    // Built in place: `format!` of an upper-cased copy allocated twice, for
    // every frame of every crash.
    let mut spelled = String::with_capacity(2 + significant.len());
    spelled.push_str("0x");
    spelled.extend(significant.chars().map(|c| c.to_ascii_uppercase()));
    spelled
}

/// The digits after an optional `0x`/`0X` prefix.
pub fn digits(value: &str) -> &str {
    value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_strips_padding_prefix_and_case() {
        assert_eq!(normalise("0x00000000000a1b2c"), "0xA1B2C");
        assert_eq!(normalise("0XA1B2C"), "0xA1B2C");
        assert_eq!(normalise(" a1b2c "), "0xA1B2C");
        assert_eq!(normalise("0xc0000005"), "0xC0000005");
        assert_eq!(normalise("0x0000"), "0x0");
        assert_eq!(normalise("0x"), "0x");
        assert_eq!(normalise("-1073741819"), "-1073741819");
        assert_eq!(normalise("0xZZ"), "0xZZ");
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for value in ["0x00a1", "A1", "0X0", "xyz", " 0xc0000005 ", "0x"] {
            let once = normalise(value);
            assert_eq!(normalise(&once), once, "{value}");
        }
    }
}
