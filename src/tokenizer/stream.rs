//! [`StreamDecoder`]: text from tokens as they are generated, one token at a time.
//!
//! A token may end in the middle of a UTF-8 sequence (an emoji spread over byte tokens, a
//! CJK character split by BPE), so bytes of an incomplete sequence at the end are held back
//! until the tokens that complete them arrive. Bytes that can never be valid UTF-8 come out
//! as U+FFFD, like [`String::from_utf8_lossy`].
//!
//! ```no_run
//! # fn demo(tok: &pupil::tokenizer::Tokenizer, ids: &[u32]) {
//! let mut stream = tok.stream();
//! for &id in ids {
//!     if let Some(text) = stream.push(id) {
//!         print!("{text}");
//!     }
//! }
//! print!("{}", stream.finish());
//! # }
//! ```

use super::Tokenizer;

/// Incremental, UTF-8-safe decoding; made by [`Tokenizer::stream`].
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder { tokenizer, special: false, pending: Vec::new() }
    }

    /// Renders control tokens as their text (llama.cpp's `special` flag); off by default.
    pub fn render_special(mut self, on: bool) -> Self {
        self.special = on;
        self
    }

    /// Adds token `id`; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.push_bytes(self.tokenizer.token_to_piece(id, self.special))
    }

    /// Adds raw bytes (a piece from elsewhere); returns the text they complete, if any.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Checked by `from_utf8` just above.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete sequence at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        self.pending.drain(..self.pending.len() - keep);
        (!out.is_empty()).then_some(out)
    }

    /// Whether bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the stream: held-back bytes come out as U+FFFD (empty if none).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
