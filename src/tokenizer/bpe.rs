//! BPE with ranked merges: pre-tokenize, spell each word, then merge adjacent symbols lowest
//! merge rank first.
//!
//! Two spellings exist. Byte-level BPE (`tokenizer.ggml.model = gpt2`) spells each word's
//! bytes with GPT-2's byte characters. Gemma 4's SentencePiece-style BPE (`gemma4`) keeps the
//! text as UTF-8 with spaces escaped to `▁` and merges across them.
//!
//! The merge loop is llama.cpp's `llm_tokenizer_bpe_session`: a priority queue of candidate
//! pairs ordered by (rank, left position), stale candidates skipped when popped. A word that
//! ends as a symbol with no token is emitted byte by byte where single bytes are tokens (the
//! byte character, or `<0xNN>` for Gemma 4), and those bytes without a token are dropped, as
//! llama.cpp does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::bytes::byte_to_char;
use super::pretokenize::{PreConfig, PreTokenizer};
use super::vocab::Vocab;

/// The merge table and pre-tokenizer of a BPE vocabulary.
#[derive(Debug)]
pub(crate) struct Bpe {
    /// Rank of each merge, keyed by its line `"left right"` (the first of duplicates wins).
    ranks: HashMap<Box<str>, u32>,
    pre: PreTokenizer,
    ignore_merges: bool,
    /// GPT-2 byte characters; otherwise raw UTF-8 with `▁` for spaces.
    byte_level: bool,
    whole_newline_runs: bool,
}

impl Bpe {
    /// Builds the tables from the `tokenizer.ggml.merges` lines.
    pub(crate) fn new(merges: &[String], cfg: &PreConfig) -> Bpe {
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, line) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte; a line without one
            // becomes an empty pair that no symbol can match, so it is left out here.
            let has_pair = line.as_bytes().get(1..).is_some_and(|rest| rest.contains(&b' '));
            if has_pair {
                ranks.entry(line.as_str().into()).or_insert(rank as u32);
            }
        }
        Bpe {
            ranks,
            pre: PreTokenizer::new(cfg),
            ignore_merges: cfg.ignore_merges,
            byte_level: cfg.byte_level(),
            whole_newline_runs: cfg.whole_newline_runs(),
        }
    }

    /// Appends the tokens of raw text `text` to `out`.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut session = Session { bpe: self, vocab, key: String::new(), symbols: Vec::new(), queue: BinaryHeap::new() };
        if !self.byte_level {
            let escaped = text.replace(' ', "\u{2581}");
            for range in self.pre.split(&escaped) {
                session.word(&escaped[range], out);
            }
            return;
        }
        let mut word = String::new();
        for range in self.pre.split(text) {
            word.clear();
            word.extend(text[range].bytes().map(byte_to_char));
            session.word(&word, out);
        }
    }
}

/// One symbol of the word being merged: a byte range, linked to its live neighbours.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and `right`, valid while their lengths still add to
/// `len`. Ordered so that the heap pops the lowest rank, then the leftmost.
type Candidate = Reverse<(u32, usize, usize, usize)>; // (rank, left, right, len)

struct Session<'a> {
    bpe: &'a Bpe,
    vocab: &'a Vocab,
    /// Scratch for building `"left right"` lookup keys.
    key: String,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Candidate>,
}

impl Session<'_> {
    fn word(&mut self, word: &str, out: &mut Vec<u32>) {
        let newlines = self.bpe.whole_newline_runs && word.bytes().all(|b| b == b'\n');
        if (self.bpe.ignore_merges || newlines)
            && let Some(id) = self.vocab.id(word)
        {
            out.push(id);
            return;
        }
        self.symbols.clear();
        self.queue.clear();
        let n = word.chars().count();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let prev = i.checked_sub(1);
            let next = (i + 1 < n).then_some(i + 1);
            self.symbols.push(Symbol { start, len: c.len_utf8(), prev, next });
        }
        for i in 1..self.symbols.len() {
            self.push_candidate(word, i - 1, i);
        }
        while let Some(Reverse((_, left, right, len))) = self.queue.pop() {
            let (l, r) = (self.symbols[left], self.symbols[right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != len {
                continue; // one side has merged since this candidate was queued
            }
            self.symbols[left].len += r.len;
            self.symbols[left].next = r.next;
            self.symbols[right].len = 0;
            if let Some(next) = r.next {
                self.symbols[next].prev = Some(left);
            }
            if let Some(prev) = l.prev {
                self.push_candidate(word, prev, left);
            }
            if let Some(next) = r.next {
                self.push_candidate(word, left, next);
            }
        }
        for s in self.symbols.iter().filter(|s| s.len > 0) {
            let piece = &word[s.start..s.start + s.len];
            match self.vocab.id(piece) {
                Some(id) => out.push(id),
                None if !self.bpe.byte_level => {
                    out.extend(piece.bytes().filter_map(|b| self.vocab.id(&format!("<0x{b:02X}>"))));
                }
                None => {
                    // Single bytes of the spelt piece: only ASCII ones can be tokens.
                    for b in piece.bytes().filter(u8::is_ascii) {
                        let one = [b];
                        if let Some(id) = std::str::from_utf8(&one).ok().and_then(|t| self.vocab.id(t)) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    fn push_candidate(&mut self, word: &str, left: usize, right: usize) {
        let (l, r) = (self.symbols[left], self.symbols[right]);
        self.key.clear();
        self.key.push_str(&word[l.start..l.start + l.len]);
        self.key.push(' ');
        self.key.push_str(&word[r.start..r.start + r.len]);
        if let Some(&rank) = self.bpe.ranks.get(self.key.as_str()) {
            self.queue.push(Reverse((rank, left, right, l.len + r.len)));
        }
    }
}
