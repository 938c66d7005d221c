//! The hand-written splitters llama.cpp uses instead of a regex engine for the commonest
//! patterns. They are not exact regex semantics (there is no backtracking), and llama.cpp's
//! output is what a GGUF model was checked against, so these follow its scanning order step
//! by step (`unicode_regex_split_custom_gpt2` / `_llama3` / `_qwen2` in `src/unicode.cpp`).
//!
//! Both take the text as codepoints and the current pieces as lengths, and return the new
//! piece lengths. A look past either end of a piece sees [`Flags::NONE`], so no token
//! crosses a piece boundary.

use super::unicode::Flags;

/// A view of one piece: codepoint and flags at absolute positions, `None` outside.
struct Piece<'a> {
    chars: &'a [char],
    flags: &'a [Flags],
    start: usize,
    end: usize,
}

impl Piece<'_> {
    fn char(&self, pos: usize) -> Option<char> {
        (self.start..self.end).contains(&pos).then(|| self.chars[pos])
    }

    fn flags(&self, pos: usize) -> Flags {
        if (self.start..self.end).contains(&pos) { self.flags[pos] } else { Flags::NONE }
    }

    /// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at `pos`, 0 if
    /// none; `any_case` also accepts upper case (Llama 3).
    fn contraction(&self, pos: usize, any_case: bool) -> usize {
        let lower = |c: Option<char>| c.map(|c| if any_case { c.to_ascii_lowercase() } else { c });
        if self.char(pos) != Some('\'') || pos + 1 >= self.end {
            return 0;
        }
        let next = lower(self.char(pos + 1));
        if matches!(next, Some('s' | 't' | 'm' | 'd')) {
            return 2;
        }
        if pos + 2 < self.end {
            let pair = (next, lower(self.char(pos + 2)));
            if matches!(pair, (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))) {
                return 3;
            }
        }
        0
    }
}

/// Cuts pieces into tokens: `out` receives each token's length.
struct Cutter<'a> {
    out: &'a mut Vec<usize>,
    prev_end: usize,
}

impl Cutter<'_> {
    /// Ends a token at `end`; returns its length (empty tokens are not recorded).
    fn cut(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn for_each_piece(chars: &[char], pieces: &[usize], mut f: impl FnMut(&Piece<'_>, &mut Cutter<'_>)) -> Vec<usize> {
    let flags: Vec<Flags> = chars.iter().map(|&c| Flags::of(c)).collect();
    let mut out = Vec::with_capacity(pieces.len());
    let mut start = 0;
    for &len in pieces {
        let piece = Piece { chars, flags: &flags, start, end: start + len };
        let mut cutter = Cutter { out: &mut out, prev_end: start };
        f(&piece, &mut cutter);
        start += len;
    }
    out
}

/// Whether the flags are "other": not whitespace, letter or number, but a real codepoint.
fn is_other(f: Flags) -> bool {
    !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some()
}

/// Length of the whitespace run at `pos`.
fn whitespace_run(p: &Piece<'_>, pos: usize) -> usize {
    let mut n = 0;
    while p.flags(pos + n).is_whitespace() {
        n += 1;
    }
    n
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
pub(crate) fn gpt2(chars: &[char], pieces: &[usize]) -> Vec<usize> {
    for_each_piece(chars, pieces, |p, cut| {
        let mut pos = p.start;
        while pos < p.end {
            let c = p.char(pos);
            let n = p.contraction(pos, false);
            if n > 0 {
                pos += cut.cut(pos + n);
                continue;
            }
            let space = usize::from(c == Some(' '));
            let mut f = if space == 1 { p.flags(pos + 1) } else { p.flags(pos) };
            if f.is_letter() || f.is_number() || is_other(f) {
                // ` ?` then a run of one class: letters, numbers, or "other".
                let same: fn(Flags) -> bool = if f.is_letter() {
                    Flags::is_letter
                } else if f.is_number() {
                    Flags::is_number
                } else {
                    is_other
                };
                pos += space;
                while same(f) {
                    pos += 1;
                    f = p.flags(pos);
                }
                cut.cut(pos);
                continue;
            }
            let n = whitespace_run(p, pos);
            if n > 1 && p.char(pos + n).is_some() {
                // `\s+(?!\S)`: leave the last space to prefix the next word.
                pos += n - 1;
                cut.cut(pos);
            } else if n > 0 {
                pos += n;
                cut.cut(pos);
            } else {
                pos += 1;
                cut.cut(pos);
            }
        }
    })
}

/// How the Llama 3 family of patterns differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Llama3Style {
    /// Longest run of digits in one word: 3 for Llama 3, 1 for Qwen 2 and Qwen 3.5.
    pub(crate) max_digits: usize,
    /// Combining marks (`\p{M}`) count as letters, as in Qwen 3.5's `[\p{L}\p{M}]+`.
    pub(crate) marks_are_letters: bool,
}

/// Llama 3 (`max_digits` 3), Qwen 2 (`max_digits` 1) and Qwen 3.5 (marks as letters):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
/// with `\p{L}` read as `[\p{L}\p{M}]` for Qwen 3.5 (`unicode_regex_split_custom_qwen35`).
pub(crate) fn llama3(chars: &[char], pieces: &[usize], style: Llama3Style) -> Vec<usize> {
    let Llama3Style { max_digits, marks_are_letters } = style;
    let is_newline = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let letter = |f: Flags| f.is_letter() || (marks_are_letters && f.is_accent_mark());
    let other = |f: Flags| !(f.is_whitespace() || letter(f) || f.is_number()) && f.is_some();
    for_each_piece(chars, pieces, |p, cut| {
        let mut pos = p.start;
        while pos < p.end {
            let c = p.char(pos);
            let f = p.flags(pos);
            let n = p.contraction(pos, true);
            if n > 0 {
                pos += cut.cut(pos + n);
                continue;
            }
            // `[^\r\n\p{L}\p{N}]?\p{L}+`
            if !(is_newline(c) || f.is_number()) && (letter(f) || letter(p.flags(pos + 1))) {
                pos += 1;
                while letter(p.flags(pos)) {
                    pos += 1;
                }
                cut.cut(pos);
                continue;
            }
            // `\p{N}{1,max}`
            if f.is_number() {
                let mut run_start = pos;
                while p.flags(pos).is_number() {
                    pos += 1;
                    if pos - run_start >= max_digits {
                        cut.cut(pos);
                        run_start = pos;
                    }
                }
                cut.cut(pos);
                continue;
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`; llama.cpp tests the flags at `pos` for "is a
            // codepoint", so a lone trailing space takes this branch too.
            let mut f2 = if c == Some(' ') { p.flags(pos + 1) } else { f };
            if !(f2.is_whitespace() || letter(f2) || f2.is_number()) && f.is_some() {
                pos += usize::from(c == Some(' '));
                while other(f2) {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                while is_newline(p.char(pos)) {
                    pos += 1;
                }
                cut.cut(pos);
                continue;
            }
            let mut n = 0;
            let mut last_newline_end = None;
            while p.flags(pos + n).is_whitespace() {
                if is_newline(p.char(pos + n)) {
                    last_newline_end = Some(pos + n + 1);
                }
                n += 1;
            }
            if let Some(end) = last_newline_end {
                // `\s*[\r\n]+`
                pos = end;
                cut.cut(pos);
            } else if n > 1 && p.char(pos + n).is_some() {
                pos += n - 1;
                cut.cut(pos);
            } else if n > 0 {
                pos += n;
                cut.cut(pos);
            } else {
                pos += 1;
                cut.cut(pos);
            }
        }
    })
}

/// `[^\n]+|[\n]+`: runs of newlines and runs of anything else (Gemma 4, which merges across
/// spaces; `unicode_regex_split_custom_newlines`).
pub(crate) fn newlines(chars: &[char], pieces: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut start = 0;
    for &len in pieces {
        let piece = &chars[start..start + len];
        let mut run = 0;
        for (i, &c) in piece.iter().enumerate() {
            if i > 0 && (c == '\n') != (piece[i - 1] == '\n') {
                out.push(run);
                run = 0;
            }
            run += 1;
        }
        if run > 0 {
            out.push(run);
        }
        start += len;
    }
    out
}
