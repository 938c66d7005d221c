//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): spaces become `▁`, then adjacent
//! symbols merge, highest-scoring resulting token first; what never becomes a token falls back
//! to byte tokens `<0xNN>`.
//!
//! This is llama.cpp's `llm_tokenizer_spm_session`: a priority queue of candidate pairs
//! ordered by (score, leftmost), stale candidates skipped when popped. A candidate exists only
//! when the joined text is a token, so every merged symbol is a token and only single
//! characters can need the byte fallback.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// Appends the tokens of `text` (spaces already escaped to `▁`) to `out`.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let n = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: (i + 1 < n).then_some(i + 1) });
    }
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        push_candidate(vocab, text, &symbols, &mut queue, i - 1, i);
    }
    while let Some(c) = queue.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != c.len {
            continue; // one side has merged since this candidate was queued
        }
        symbols[c.left].len += r.len;
        symbols[c.left].next = r.next;
        symbols[c.right].len = 0;
        if let Some(next) = r.next {
            symbols[next].prev = Some(c.left);
        }
        if let Some(prev) = l.prev {
            push_candidate(vocab, text, &symbols, &mut queue, prev, c.left);
        }
        if let Some(next) = r.next {
            push_candidate(vocab, text, &symbols, &mut queue, c.left, next);
        }
    }
    for s in symbols.iter().filter(|s| s.len > 0) {
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_token(vocab, b))),
        }
    }
}

/// The token of byte `b`: `<0xNN>`, else the byte itself as text (llama.cpp's
/// `byte_to_token`). Where neither exists llama.cpp throws out of `llama_tokenize`; here the
/// byte is dropped, as byte-level BPE drops bytes it has no token for.
fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    let hex = format!("<0x{b:02X}>");
    vocab.id(&hex).or_else(|| {
        let one = [b];
        std::str::from_utf8(&one).ok().and_then(|t| vocab.id(t))
    })
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge; valid while the two symbols' lengths still add to `len`.
#[derive(Debug)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Candidate {
    /// Greater pops first: higher score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

fn push_candidate(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    queue: &mut BinaryHeap<Candidate>,
    left: usize,
    right: usize,
) {
    let (l, r) = (symbols[left], symbols[right]);
    let joined = &text[l.start..r.start + r.len];
    if let Some(id) = vocab.id(joined) {
        queue.push(Candidate { score: vocab.score(id), left, right, len: l.len + r.len });
    }
}
