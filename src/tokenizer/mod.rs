//! Tokenizers read from GGUF metadata, token for token equal to llama.cpp's.
//!
//! Three tokenizer models are implemented, chosen by `tokenizer.ggml.model`:
//!
//! - `llama`: SentencePiece-style merges by token score, spaces as `▁`, byte fallback to
//!   `<0xNN>` tokens (Llama 2, Phi-3, Gemma 3, Baichuan, ...).
//! - `gpt2`: byte-level BPE with ranked merges after a pre-tokenizer split chosen by
//!   `tokenizer.ggml.pre` (Llama 3, Qwen 2 and 3.5, GPT-2, GPT-NeoX, MPT, DeepSeek, Falcon,
//!   StarCoder, Refact, Command R, SmolLM, ...).
//! - `gemma4`: BPE with ranked merges over UTF-8 text with spaces as `▁`, split only at
//!   newlines, byte fallback to `<0xNN>` tokens (Gemma 4).
//!
//! The others llama.cpp knows (`bert`'s WordPiece, `t5`'s Unigram, `rwkv`, `plamo2`) are
//! [`TokenizerError::UnsupportedModel`].
//!
//! Encoding takes llama.cpp's two flags: `add_special` adds BOS/EOS as the metadata says, and
//! `parse_special` lets control-token texts in the input (`<start_of_turn>`, `<|im_start|>`)
//! become those tokens; without it they are plain text. User-defined tokens are always
//! recognised. Decoding turns ids back into bytes ([`Tokenizer::token_to_piece`],
//! [`Tokenizer::detokenize`]), text ([`Tokenizer::decode`]), or a stream of text that never
//! splits a character ([`Tokenizer::stream`]).
//!
//! Equality with llama.cpp is tested against its test vectors (`tests/tokenizer_vectors.rs`)
//! and, with the `llama` feature, against llama.cpp itself on generated text
//! (`tests/tokenizer_oracle.rs`).
//!
//! ```
//! use pupil::gguf::GgufFile;
//! use pupil::tokenizer::Tokenizer;
//!
//! let file = GgufFile::open("models/.cache/llama.cpp/models/ggml-vocab-gpt-2.gguf")?;
//! let tok = Tokenizer::from_gguf(&file)?;
//! assert_eq!(tok.encode("Hello world", false, false), [15496, 995]);
//! assert_eq!(tok.encode("<|endoftext|>", false, true), [50256]); // parsed: the control token
//! assert_eq!(tok.encode("<|endoftext|>", false, false).len(), 7); // not parsed: plain text
//! assert_eq!(tok.decode(&[15496, 995, 50256]), "Hello world"); // control tokens not rendered
//! assert!(tok.is_eog(50256));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bpe;
mod bytes;
mod compat;
mod decode;
mod error;
mod load;
mod partition;
mod pretokenize;
mod special;
mod split_custom;
mod spm;
mod stream;
mod unicode;
mod vocab;

pub use compat::{VocabMismatch, check_vocab};
pub use error::TokenizerError;
pub use stream::StreamDecoder;

use crate::gguf::Gguf;
use partition::{Fragment, SpecialTokens};
use vocab::{Attr, Vocab};

/// Which tokenizer algorithm a vocabulary uses (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelKind {
    /// `llama`: SentencePiece-style, scored merges with byte fallback.
    Spm,
    /// `gpt2`: byte-level BPE with ranked merges.
    Bpe,
    /// `gemma4`: SentencePiece-style BPE, ranked merges over `▁`-escaped UTF-8.
    Gemma4,
}

impl ModelKind {
    /// The `tokenizer.ggml.model` value.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Spm => "llama",
            ModelKind::Bpe => "gpt2",
            ModelKind::Gemma4 => "gemma4",
        }
    }
}

/// The ids of the special-token roles; `None` where a vocabulary has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn (`<|eot_id|>`, `<end_of_turn>`, `<|im_end|>`, ...).
    pub eot: Option<u32>,
    /// End of message (`<|eom_id|>`).
    pub eom: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Separator.
    pub sep: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Classifier (read for completeness; llama.cpp does not use it).
    pub cls: Option<u32>,
    /// Mask.
    pub mask: Option<u32>,
    /// Fill-in-the-middle prefix.
    pub fim_pre: Option<u32>,
    /// Fill-in-the-middle suffix.
    pub fim_suf: Option<u32>,
    /// Fill-in-the-middle middle.
    pub fim_mid: Option<u32>,
    /// Fill-in-the-middle padding.
    pub fim_pad: Option<u32>,
    /// Fill-in-the-middle repository name.
    pub fim_rep: Option<u32>,
    /// Fill-in-the-middle file separator.
    pub fim_sep: Option<u32>,
}

/// The algorithm-specific part of a tokenizer.
#[derive(Debug)]
enum Model {
    Spm,
    Bpe(bpe::Bpe),
}

/// A tokenizer built from a GGUF file's metadata. Immutable once built, so it is `Send` and
/// `Sync` and can be shared between threads.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    kind: ModelKind,
    model: Model,
    /// `tokenizer.ggml.pre` as found.
    pre: Option<String>,
    ids: SpecialIds,
    /// End-of-generation ids, sorted.
    eog: Vec<u32>,
    special: SpecialTokens,
    /// Each token's bytes with special tokens rendered (llama.cpp's piece cache).
    pieces: Vec<Box<[u8]>>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

impl Tokenizer {
    /// Builds the tokenizer described by the `tokenizer.ggml.*` metadata of `g`.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        load::from_gguf(g)
    }

    /// Token ids of `text`. `add_special` adds BOS (and EOS) where the metadata asks for them;
    /// `parse_special` turns control-token texts in `text` into those tokens. These are the
    /// two flags of llama.cpp's `llama_tokenize`, with the same meaning.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = self.special.partition(&self.vocab, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.ids.bos);
        }
        match &self.model {
            Model::Spm => {
                // A space is prefixed to the text at the start and after each special token.
                let mut after_special = true;
                let mut buf = String::new();
                for f in fragments {
                    match f {
                        Fragment::Text(t) => {
                            buf.clear();
                            if self.add_space_prefix && after_special {
                                buf.push('\u{2581}');
                            }
                            buf.extend(t.chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
                            spm::encode(&self.vocab, &buf, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for f in fragments {
                    match f {
                        Fragment::Text(t) => bpe.encode(&self.vocab, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.ids.eos);
        }
        out
    }

    /// The bytes of token `id`: byte tokens as their byte, `▁` as a space, GPT-2 byte
    /// characters as their bytes. Control and unknown tokens are empty unless `special`
    /// (llama.cpp's flag of the same name); ids outside the vocabulary are empty.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        if !special && self.vocab.attr(id).any(Attr::CONTROL | Attr::UNKNOWN) {
            return &[];
        }
        self.pieces.get(id as usize).map_or(&[], |p| p)
    }

    /// The bytes of a token sequence, as llama.cpp's `llama_detokenize`: the space a
    /// SentencePiece vocabulary prefixed is removed from the first token; `remove_special`
    /// drops a leading BOS and trailing EOS that the metadata adds; `unparse_special` renders
    /// control tokens; vocabularies that ask for it get their spaces cleaned up (`" ,"` → `","`).
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special
            && self.add_bos
            && let Some((&first, rest)) = ids.split_first()
            && Some(first) == self.ids.bos
        {
            remove_space = false;
            ids = rest;
        }
        if remove_special
            && self.add_eos
            && let Some((&last, rest)) = ids.split_last()
            && Some(last) == self.ids.eos
        {
            ids = rest;
        }
        let mut out = Vec::new();
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special);
            let piece = match piece {
                [b' ', rest @ ..] if remove_space => rest,
                _ => piece,
            };
            out.extend_from_slice(piece);
            remove_space = false;
        }
        if self.clean_spaces {
            decode::clean_spaces(&mut out);
        }
        out
    }

    /// The text of a token sequence: [`detokenize`](Self::detokenize) without rendering
    /// control tokens, invalid UTF-8 replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, false, false)).into_owned()
    }

    /// A decoder for tokens arriving one at a time; see [`StreamDecoder`].
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    /// The tokenizer algorithm.
    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }

    /// `tokenizer.ggml.pre`, as found in the file.
    pub fn pre(&self) -> Option<&str> {
        self.pre.as_deref()
    }

    /// The special-token ids.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.ids
    }

    /// Beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.ids.bos
    }

    /// End-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.ids.eos
    }

    /// End-of-turn id.
    pub fn eot(&self) -> Option<u32> {
        self.ids.eot
    }

    /// Whether [`encode`](Self::encode) with `add_special` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.ids.bos.is_some()
    }

    /// Whether [`encode`](Self::encode) with `add_special` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.ids.eos.is_some()
    }

    /// Whether generation should stop at `id`: EOS, end of turn, end of message, and the
    /// tokens llama.cpp recognises by text (`<end_of_turn>`, `<|im_end|>`, `<|eot_id|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` is a control token (rendered only on request).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id).any(Attr::CONTROL)
    }

    /// The text of token `id` as stored in the vocabulary (`▁Hello`, `ĠHello`, `<0x0A>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id of the token whose stored text is `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }
}

#[cfg(test)]
mod tests;
