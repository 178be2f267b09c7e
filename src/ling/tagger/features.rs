//! Word-form features shared by the taggers: shape classes, collapsed shapes, affixes and a
//! stable 64-bit feature hash.

/// A coarse class of a word's surface form, used for unknown words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WordClass {
    /// Only punctuation characters (`.`, `,`, `"`, `(`, `--`, `...`).
    Punct,
    /// Only symbol characters (`$`, `%`, `+`, `=`, `<`, `>`, `&`, `#`, `@`, `^`, `~`, `|`).
    Symbol,
    /// A number: digits with optional separators (`3`, `1,000`, `3.5`, `10:30`, `2-1`).
    Number,
    /// Letters and digits mixed (`B52`, `3rd`, `mp3`).
    AlnumDigit,
    /// A URL or e-mail address.
    Web,
    /// All upper case letters, two or more (`USA`, `NASA`).
    AllCaps,
    /// First letter upper case (`Paris`, `McDonald`).
    InitCap,
    /// Lower case (possibly with hyphens or apostrophes).
    Lower,
    /// Anything else.
    Other,
}

impl WordClass {
    /// All classes, for tables.
    pub const ALL: [WordClass; 9] = [
        WordClass::Punct,
        WordClass::Symbol,
        WordClass::Number,
        WordClass::AlnumDigit,
        WordClass::Web,
        WordClass::AllCaps,
        WordClass::InitCap,
        WordClass::Lower,
        WordClass::Other,
    ];

    /// Index in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }
}

fn is_symbol_char(c: char) -> bool {
    matches!(
        c,
        '$' | '%'
            | '+'
            | '='
            | '<'
            | '>'
            | '&'
            | '#'
            | '@'
            | '^'
            | '~'
            | '|'
            | '*'
            | '£'
            | '€'
            | '¥'
            | '°'
            | '§'
            | '©'
            | '®'
            | '×'
            | '÷'
            | '±'
    ) || (!c.is_alphanumeric() && !c.is_ascii_punctuation() && c.is_ascii() && !c.is_whitespace())
}

/// Whether every char is punctuation (ASCII or Unicode general punctuation), not a symbol.
pub fn is_punct(w: &str) -> bool {
    !w.is_empty()
        && w.chars().all(|c| {
            (c.is_ascii_punctuation() && !is_symbol_char(c))
                || matches!(
                    c,
                    '“' | '”' | '‘' | '’' | '–' | '—' | '…' | '«' | '»' | '¿' | '¡'
                )
        })
}

/// The [`WordClass`] of a form.
pub fn word_class(w: &str) -> WordClass {
    if w.is_empty() {
        return WordClass::Other;
    }
    if is_punct(w) {
        return WordClass::Punct;
    }
    if w.chars()
        .all(|c| is_symbol_char(c) || c.is_ascii_punctuation())
    {
        return WordClass::Symbol;
    }
    let lw = w.to_ascii_lowercase();
    if lw.starts_with("http") || lw.starts_with("www.") || lw.contains("://") {
        return WordClass::Web;
    }
    if w.contains('@') && w.contains('.') && w.len() > 4 {
        return WordClass::Web;
    }
    let digits = w.chars().filter(char::is_ascii_digit).count();
    let letters = w.chars().filter(|c| c.is_alphabetic()).count();
    if digits > 0 && letters == 0 {
        return WordClass::Number;
    }
    if digits > 0 {
        return WordClass::AlnumDigit;
    }
    let first = w.chars().next().unwrap_or(' ');
    let uppers = w.chars().filter(|c| c.is_uppercase()).count();
    if letters >= 2 && uppers == letters {
        return WordClass::AllCaps;
    }
    if first.is_uppercase() {
        return WordClass::InitCap;
    }
    if first.is_lowercase() || letters > 0 {
        return WordClass::Lower;
    }
    WordClass::Other
}

/// Collapsed shape: upper → `X`, lower → `x`, digit → `d`, other chars kept; runs of the same
/// shape char collapsed to one (`Hello` → `Xx`, `3.50` → `d.d`, `e-mail` → `x-x`).
pub fn short_shape(w: &str) -> String {
    let mut s = String::new();
    let mut last = None;
    for c in w.chars().take(24) {
        let m = if c.is_uppercase() {
            'X'
        } else if c.is_lowercase() {
            'x'
        } else if c.is_ascii_digit() {
            'd'
        } else {
            c
        };
        if last != Some(m) {
            s.push(m);
            last = Some(m);
        }
    }
    s
}

/// The last `n` chars of `w` (all of it when shorter).
pub fn suffix(w: &str, n: usize) -> &str {
    let len = w.chars().count();
    if len <= n {
        return w;
    }
    let start = w.char_indices().nth(len - n).map_or(0, |(i, _)| i);
    &w[start..]
}

/// The first `n` chars of `w` (all of it when shorter).
pub fn prefix(w: &str, n: usize) -> &str {
    match w.char_indices().nth(n) {
        Some((i, _)) => &w[..i],
        None => w,
    }
}

/// Lower-case form used as a lexicon key.
pub fn norm(w: &str) -> String {
    w.to_lowercase()
}

/// FNV-1a 64-bit hash of a feature: a template id and its string parts (separated so that
/// `("ab", "c")` and `("a", "bc")` differ). Stable across platforms and versions.
pub fn feature_hash(template: u8, parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    };
    eat(template);
    for p in parts {
        for &b in p.as_bytes() {
            eat(b);
        }
        eat(0xff);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_shapes() {
        assert_eq!(word_class("."), WordClass::Punct);
        assert_eq!(word_class("..."), WordClass::Punct);
        assert_eq!(word_class("$"), WordClass::Symbol);
        assert_eq!(word_class("1,000"), WordClass::Number);
        assert_eq!(word_class("3rd"), WordClass::AlnumDigit);
        assert_eq!(word_class("http://x.org"), WordClass::Web);
        assert_eq!(word_class("a@b.com"), WordClass::Web);
        assert_eq!(word_class("NASA"), WordClass::AllCaps);
        assert_eq!(word_class("Paris"), WordClass::InitCap);
        assert_eq!(word_class("walking"), WordClass::Lower);
        assert_eq!(short_shape("Hello"), "Xx");
        assert_eq!(short_shape("3.50"), "d.d");
        assert_eq!(suffix("walking", 3), "ing");
        assert_eq!(suffix("ab", 3), "ab");
        assert_eq!(suffix("café", 2), "fé");
        assert_eq!(prefix("café", 3), "caf");
        assert_ne!(feature_hash(1, &["ab", "c"]), feature_hash(1, &["a", "bc"]));
    }
}
