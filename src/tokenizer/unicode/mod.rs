//! Codepoint classes as llama.cpp's pre-tokenizers see them: one general category (`\p{L}`,
//! `\p{N}`, ...) per codepoint, plus a whitespace flag for `\s`.
//!
//! The table is llama.cpp's own (see `gen_data.py`), so a letter here is a letter there even
//! where Unicode versions disagree.

mod data;

/// A codepoint's category and whitespace flag. `Flags::NONE` (all false) stands for a position
/// outside the text, as llama.cpp's splitters return past either end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    category: u8,
    whitespace: bool,
}

// Category bits, in llama.cpp's `unicode_cpt_flags` order.
const UNDEFINED: u8 = 0x01;
const NUMBER: u8 = 0x02;
const LETTER: u8 = 0x04;
const ACCENT_MARK: u8 = 0x10;
const PUNCTUATION: u8 = 0x20;
const SYMBOL: u8 = 0x40;

impl Flags {
    /// Outside the text: no category, not whitespace.
    pub(crate) const NONE: Flags = Flags { category: 0, whitespace: false };

    /// The flags of `c`.
    pub(crate) fn of(c: char) -> Flags {
        let cp = u32::from(c);
        let i = data::CATEGORY_RANGES.partition_point(|&(start, _)| start <= cp);
        // The table starts at 0, so `i >= 1` for every codepoint.
        let category = data::CATEGORY_RANGES.get(i.wrapping_sub(1)).map_or(UNDEFINED, |&(_, f)| f);
        Flags { category, whitespace: data::WHITESPACE.binary_search(&cp).is_ok() }
    }

    /// `\p{L}`.
    pub(crate) fn is_letter(self) -> bool {
        self.category == LETTER
    }

    /// `\p{N}`.
    pub(crate) fn is_number(self) -> bool {
        self.category == NUMBER
    }

    /// `\p{M}`.
    pub(crate) fn is_accent_mark(self) -> bool {
        self.category == ACCENT_MARK
    }

    /// `\s` (llama.cpp's set, which includes U+0085 and U+00A0).
    pub(crate) fn is_whitespace(self) -> bool {
        self.whitespace
    }

    /// Whether this is a real codepoint (any category), not [`Flags::NONE`].
    pub(crate) fn is_some(self) -> bool {
        self.category != 0 || self.whitespace
    }

    /// The stand-in character for `c` in llama.cpp's "collapsed" text, where regexes that use
    /// `\p{..}` run: ASCII stays, other whitespace becomes `\x0B`, and everything else becomes
    /// one private-use character per category (U+E0D1 number, U+E0D2 letter, U+E0D3
    /// punctuation, U+E0D4 mark, U+E0D5 symbol, U+E0D0 any other).
    pub(crate) fn collapse(c: char) -> char {
        if c.is_ascii() {
            return c;
        }
        let f = Flags::of(c);
        if f.whitespace {
            return '\x0B';
        }
        match f.category {
            NUMBER => '\u{E0D1}',
            LETTER => '\u{E0D2}',
            PUNCTUATION => '\u{E0D3}',
            ACCENT_MARK => '\u{E0D4}',
            SYMBOL => '\u{E0D5}',
            _ => '\u{E0D0}',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_of_common_codepoints() {
        assert!(Flags::of('a').is_letter());
        assert!(Flags::of('Ж').is_letter());
        assert!(Flags::of('中').is_letter());
        assert!(Flags::of('7').is_number());
        assert!(Flags::of('²').is_number());
        assert!(Flags::of(' ').is_whitespace());
        assert!(Flags::of('\u{3000}').is_whitespace());
        assert!(Flags::of('\u{85}').is_whitespace());
        assert!(!Flags::of('\u{200B}').is_whitespace());
        assert!(Flags::of('\u{301}').is_accent_mark());
        assert!(!Flags::of('e').is_accent_mark());
        assert!(Flags::of('\u{10FFFF}').is_some());
        assert!(!Flags::NONE.is_some());
        assert_eq!(Flags::collapse('é'), '\u{E0D2}');
        assert_eq!(Flags::collapse('\u{301}'), '\u{E0D4}');
        assert_eq!(Flags::collapse('€'), '\u{E0D5}');
        assert_eq!(Flags::collapse('\u{A0}'), '\x0B');
        assert_eq!(Flags::collapse('$'), '$');
    }
}
