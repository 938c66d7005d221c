//! Cutting special-token texts out of the input before the tokenizer proper sees it
//! (llama.cpp's `tokenizer_st_partition`).
//!
//! Control, user-defined and unknown tokens take part; control and unknown ones only when
//! the caller asks to parse special tokens, user-defined ones always. Longest texts go first;
//! each token in turn splits every remaining stretch of plain text at its non-overlapping
//! occurrences, left to right. Tokens marked `LSTRIP`/`RSTRIP` also swallow the ASCII
//! whitespace beside them.
//!
//! An Aho-Corasick pass finds which special texts occur at all, so only those are searched
//! for; the splitting itself is llama.cpp's, token by token, because its order decides
//! overlaps.

use std::ops::Range;

use aho_corasick::AhoCorasick;

use super::vocab::{Attr, Vocab};

/// A stretch of the input: plain text to tokenize, or a special token found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// The special tokens of a vocabulary, in matching order.
#[derive(Debug)]
pub(crate) struct SpecialTokens {
    /// Control, user-defined and unknown tokens, longest text first (ties by id).
    ids: Vec<u32>,
    /// Finds which of `ids`' texts occur in an input (pattern `i` is `ids[i]`).
    finder: Option<AhoCorasick>,
}

impl SpecialTokens {
    /// Collects the special tokens of `vocab`.
    pub(crate) fn new(vocab: &Vocab) -> SpecialTokens {
        let special = Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN;
        let mut ids: Vec<u32> = vocab.iter().filter(|&(id, _)| vocab.attr(id).any(special)).map(|(id, _)| id).collect();
        ids.sort_by_key(|&id| std::cmp::Reverse(vocab.text(id).map_or(0, str::len)));
        // Without the finder every token is searched for: slower, same result.
        let finder = AhoCorasick::new(ids.iter().map(|&id| vocab.text(id).unwrap_or(""))).ok();
        SpecialTokens { ids, finder }
    }

    /// The ids, in matching order.
    pub(crate) fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Splits `text` into plain-text fragments and special tokens.
    pub(crate) fn partition<'a>(&self, vocab: &Vocab, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut present = vec![self.finder.is_none(); self.ids.len()];
        if let Some(finder) = &self.finder {
            for m in finder.find_overlapping_iter(text) {
                present[m.pattern().as_usize()] = true;
            }
        }
        let mut frags = vec![Frag::Text(0..text.len())];
        for (&id, _) in self.ids.iter().zip(&present).filter(|&(_, &p)| p) {
            let attr = vocab.attr(id);
            if !parse_special && attr.any(Attr::CONTROL | Attr::UNKNOWN) {
                continue;
            }
            let Some(needle) = vocab.text(id).filter(|t| !t.is_empty()) else { continue };
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Frag::Token(_) => next.push(f),
                    Frag::Text(r) => split(text, r, needle, id, attr, &mut next),
                }
            }
            frags = next;
        }
        frags
            .into_iter()
            .map(|f| match f {
                Frag::Text(r) => Fragment::Text(&text[r]),
                Frag::Token(id) => Fragment::Token(id),
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Frag {
    Text(Range<usize>),
    Token(u32),
}

/// Splits plain text `text[r]` at the occurrences of `needle` (token `id`), into `out`.
fn split(text: &str, r: Range<usize>, needle: &str, id: u32, attr: Attr, out: &mut Vec<Frag>) {
    let (mut start, end) = (r.start, r.end);
    while let Some(found) = text[start..end].find(needle) {
        let at = start + found;
        let mut left_end = at;
        if attr.any(Attr::LSTRIP) {
            while left_end > start && is_c_space(text.as_bytes()[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > start {
            out.push(Frag::Text(start..left_end));
        }
        out.push(Frag::Token(id));
        start = at + needle.len();
        if attr.any(Attr::RSTRIP) {
            while start < end && is_c_space(text.as_bytes()[start]) {
                start += 1;
            }
        }
    }
    if start < end {
        out.push(Frag::Text(start..end));
    }
}

/// C's `isspace` in the "C" locale, which llama.cpp strips with.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}
