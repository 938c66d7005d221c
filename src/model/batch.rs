//! [`Batch`]: the tokens one forward pass runs, from any number of sequences.
//!
//! Each token carries its position, the sequence (KV cache slot) it belongs to, and whether
//! its logits are wanted. A prompt is a run of tokens of one sequence with only the last
//! logits wanted; a decode step of a server is one token from each active sequence; a
//! speculative check is a run of draft tokens, all with logits. The buffers are reused:
//! [`Batch::clear`] keeps their capacity.
//!
//! ```
//! use pupil::model::Batch;
//! let mut b = Batch::new();
//! b.push_sequence(&[2, 651, 3437], 0, 0, false); // prompt of sequence 0, last logits only
//! b.push(818, 7, 1, true);                      // one decode step of sequence 1
//! assert_eq!((b.len(), b.n_wanted()), (4, 2));
//! assert_eq!(b.positions(), &[0, 1, 2, 7]);
//! ```

/// Tokens with positions, sequence ids and logits flags, as parallel arrays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    tokens: Vec<u32>,       // [n]
    positions: Vec<u32>,    // [n]
    seqs: Vec<usize>,       // [n]
    want_logits: Vec<bool>, // [n]
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch with room for `n` tokens.
    pub fn with_capacity(n: usize) -> Batch {
        Batch {
            tokens: Vec::with_capacity(n),
            positions: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            want_logits: Vec::with_capacity(n),
        }
    }

    /// Adds `token` at position `pos` of sequence `seq`.
    pub fn push(&mut self, token: u32, pos: u32, seq: usize, want_logits: bool) {
        self.tokens.push(token);
        self.positions.push(pos);
        self.seqs.push(seq);
        self.want_logits.push(want_logits);
    }

    /// Adds `tokens` at positions `start..` of `seq`; logits are wanted for all of them if
    /// `all_logits`, else for the last one only.
    pub fn push_sequence(&mut self, tokens: &[u32], start: u32, seq: usize, all_logits: bool) {
        for (i, &t) in tokens.iter().enumerate() {
            self.push(t, start + i as u32, seq, all_logits || i + 1 == tokens.len());
        }
    }

    /// Removes every token, keeping the capacity.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.seqs.clear();
        self.want_logits.clear();
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of tokens whose logits are wanted: the rows of the logits a forward pass
    /// writes, in batch order.
    pub fn n_wanted(&self) -> usize {
        self.want_logits.iter().filter(|&&w| w).count()
    }

    /// Token ids.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Positions.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Sequence ids.
    pub fn seqs(&self) -> &[usize] {
        &self.seqs
    }

    /// Logits flags.
    pub fn want_logits(&self) -> &[bool] {
        &self.want_logits
    }
}
