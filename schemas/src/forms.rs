//! Forms that the JSON Schemas pin machine-filled strings to, checked in
//! code: ingest's fast validator answers with them (and must agree with the
//! schemas' patterns), and the reporter sends only what they take, so that
//! a machine never queues a report the edge refuses for its OS facts.

/// The edition's words (`os.product`'s pattern):
/// `^(Microsoft )?Windows( (7|8|8\.1|10|11|20[0-9]{2}|<word>)){0,8}$`.
pub fn os_product(text: &str) -> bool {
    const WORDS: [&str; 47] = [
        "R2",
        "Server",
        "Enterprise",
        "Education",
        "Professional",
        "Pro",
        "Home",
        "Ultimate",
        "Premium",
        "Basic",
        "Starter",
        "Business",
        "Standard",
        "Datacenter",
        "Essentials",
        "Foundation",
        "Embedded",
        "IoT",
        "Core",
        "LTSC",
        "LTSB",
        "G",
        "N",
        "KN",
        "S",
        "SE",
        "Team",
        "China",
        "Government",
        "Edition",
        "Single",
        "Language",
        "for",
        "Workstations",
        "Virtual",
        "Desktops",
        "multi-session",
        "Evaluation",
        "Insider",
        "Preview",
        "Azure",
        "Stack",
        "HCI",
        "Web",
        "Storage",
        "Holographic",
        "Mobile",
    ];
    let text = text.strip_prefix("Microsoft ").unwrap_or(text);
    let Some(rest) = text.strip_prefix("Windows") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix(' ') else {
        return false;
    };
    let words: Vec<&str> = rest.split(' ').collect();
    words.len() <= 8
        && words.iter().all(|word| {
            matches!(*word, "7" | "8" | "8.1" | "10" | "11")
                || (word.len() == 4 && word.starts_with("20") && digits(word, 4, 4))
                || WORDS.contains(word)
        })
}

/// `^[a-z]{2,3}(-(<script>))?(-([A-Z]{2}|[0-9]{3}))?$`: a language, an
/// optional script of those Windows locales use, an optional region.
pub fn locale(text: &str) -> bool {
    const SCRIPTS: [&str; 36] = [
        "Adlm", "Arab", "Beng", "Cans", "Cher", "Cyrl", "Deva", "Ethi", "Geor", "Grek", "Gujr",
        "Guru", "Hans", "Hant", "Hebr", "Jpan", "Khmr", "Knda", "Kore", "Laoo", "Latn", "Mlym",
        "Mong", "Mymr", "Olck", "Orya", "Sinh", "Syrc", "Taml", "Telu", "Tfng", "Thaa", "Thai",
        "Tibt", "Vaii", "Yiii",
    ];
    let script = |s: &str| SCRIPTS.contains(&s);
    let region =
        |s: &str| (s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())) || digits(s, 3, 3);
    let parts: Vec<&str> = text.split('-').collect();
    let language = parts[0];
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && match parts[1..] {
            [] => true,
            [one] => script(one) || region(one),
            [one, two] => script(one) && region(two),
            _ => false,
        }
}

/// `min..=max` ASCII digits and nothing else.
fn digits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}
