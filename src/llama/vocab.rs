//! [`LlamaVocab`]: llama.cpp's tokenizer, with pupil's token ids (`u32`), for the tokenizer
//! oracle.
//!
//! llama.cpp throws a C++ exception (and the process aborts) on an id past its vocabulary,
//! so every id is checked here first.

use llama_cpp_2::token::LlamaToken;

use super::LlamaError;

/// The vocabulary of a [`super::LlamaModel`].
#[derive(Debug)]
pub struct LlamaVocab<'m> {
    inner: llama_cpp_2::vocab::LlamaVocab<'m>,
    n_tokens: usize,
}

impl<'m> LlamaVocab<'m> {
    pub(super) fn new(inner: llama_cpp_2::vocab::LlamaVocab<'m>) -> LlamaVocab<'m> {
        let n_tokens = usize::try_from(inner.n_tokens()).unwrap_or(0);
        LlamaVocab { inner, n_tokens }
    }

    /// The token of `id`, if the vocabulary has it.
    fn token(&self, id: u32) -> Option<LlamaToken> {
        (usize::try_from(id).is_ok_and(|i| i < self.n_tokens)).then(|| LlamaToken::new(id as i32))
    }

    fn id(t: LlamaToken) -> Option<u32> {
        u32::try_from(t.0).ok()
    }

    /// Tokens in the vocabulary.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// The beginning-of-sequence token, if any.
    pub fn bos(&self) -> Option<u32> {
        Self::id(self.inner.bos())
    }

    /// The end-of-sequence token, if any.
    pub fn eos(&self) -> Option<u32> {
        Self::id(self.inner.eos())
    }

    /// Whether tokenizing with `add_special` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.inner.should_add_bos()
    }

    /// Whether tokenizing with `add_special` adds EOS.
    pub fn add_eos(&self) -> bool {
        self.inner.should_add_eos()
    }

    /// Whether `id` ends generation (false past the vocabulary).
    pub fn is_eog(&self, id: u32) -> bool {
        self.token(id).is_some_and(|t| self.inner.is_eog(t))
    }

    /// Whether `id` is a control token (false past the vocabulary).
    pub fn is_control(&self, id: u32) -> bool {
        self.token(id).is_some_and(|t| self.inner.is_control(t))
    }

    /// The bytes of `id`, special tokens rendered if `special` (empty past the vocabulary).
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        self.token(id).map_or_else(Vec::new, |t| self.inner.token_to_piece(t, special, None))
    }

    /// `text` as token ids: BOS/EOS added as the vocabulary says if `add_special`, special
    /// tokens' texts parsed as those tokens if `parse_special`.
    pub fn tokenize(&self, text: &[u8], add_special: bool, parse_special: bool) -> Result<Vec<u32>, LlamaError> {
        self.inner
            .tokenize(text, add_special, parse_special)
            .into_iter()
            .map(|t| {
                Self::id(t).ok_or_else(|| LlamaError::Call {
                    what: "tokenizing",
                    message: format!("negative token id {}", t.0),
                })
            })
            .collect()
    }

    /// The bytes of `ids`: BOS/EOS removed if `remove_special` (and the vocabulary adds
    /// them), special tokens rendered if `unparse_special`.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Result<Vec<u8>, LlamaError> {
        let tokens = ids
            .iter()
            .map(|&id| {
                self.token(id).ok_or_else(|| LlamaError::Call {
                    what: "detokenizing",
                    message: format!("id {id} is past the vocabulary of {}", self.n_tokens),
                })
            })
            .collect::<Result<Vec<LlamaToken>, LlamaError>>()?;
        // `detokenize` sizes its buffer as `2 * len - remove_special`, which underflows for no
        // tokens; `detokenize_into` grows the buffer it is given.
        let mut out = Vec::with_capacity(2 * tokens.len() + 8);
        self.inner.detokenize_into(&tokens, &mut out, remove_special, unparse_special);
        Ok(out)
    }
}
