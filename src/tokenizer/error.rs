//! [`TokenizerError`]: why a tokenizer could not be built from a file's metadata.

use crate::gguf::GgufError;

/// A tokenizer could not be built: the metadata is missing, malformed or names something
/// pupil does not implement. Each variant names the key or value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// Reading a metadata key failed (typically: it holds the wrong type).
    #[error(transparent)]
    Gguf(#[from] GgufError),

    /// A key the tokenizer needs is absent.
    #[error("metadata key '{key}' is missing")]
    MissingKey {
        /// The absent key.
        key: &'static str,
    },

    /// An array holds the wrong element type.
    #[error("metadata key '{key}' should be an array of {expected}, found an array of {found}")]
    WrongArrayType {
        /// The key.
        key: &'static str,
        /// The element type wanted.
        expected: &'static str,
        /// The element type found.
        found: &'static str,
    },

    /// A per-token array does not have one entry per token.
    #[error("metadata key '{key}' has {found} entries for {expected} tokens")]
    LengthMismatch {
        /// The key.
        key: &'static str,
        /// The number of tokens.
        expected: usize,
        /// The number of entries.
        found: usize,
    },

    /// `tokenizer.ggml.model` names a tokenizer pupil does not implement.
    #[error("unsupported tokenizer model '{name}'{}; pupil implements 'llama', 'gpt2' and 'gemma4'", algorithm(.name))]
    UnsupportedModel {
        /// The value of `tokenizer.ggml.model`.
        name: String,
    },

    /// `tokenizer.ggml.pre` names a pre-tokenizer pupil does not implement.
    #[error("unknown pre-tokenizer '{name}' in 'tokenizer.ggml.pre'")]
    UnknownPreTokenizer {
        /// The value of `tokenizer.ggml.pre`.
        name: String,
    },

    /// The token list is empty, or too long for 32-bit token ids.
    #[error("'tokenizer.ggml.tokens' has {count} tokens; expected 1 to {max}")]
    BadTokenCount {
        /// The number of tokens.
        count: usize,
        /// The largest number accepted.
        max: usize,
    },

    /// Two tokens have the same text (llama.cpp aborts on such a vocabulary).
    #[error("tokens {first} and {second} have the same text {text:?}")]
    DuplicateToken {
        /// The shared text.
        text: String,
        /// The first id.
        first: u32,
        /// The second id.
        second: u32,
    },

    /// A special-token id in the metadata is not a token.
    #[error("metadata key '{key}' is {id}, outside the vocabulary of {n_vocab} tokens")]
    SpecialIdOutOfRange {
        /// The key, e.g. `tokenizer.ggml.bos_token_id`.
        key: String,
        /// The id found.
        id: u64,
        /// The number of tokens.
        n_vocab: usize,
    },
}

impl TokenizerError {
    /// Whose fault it is: the file's (or the operating system's, reading it).
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            TokenizerError::Gguf(e) => e.kind(),
            _ => crate::error::ErrorKind::BadInput,
        }
    }
}

/// What a tokenizer model pupil lacks is, for the error message.
fn algorithm(model: &str) -> &'static str {
    match model {
        "bert" => " (WordPiece)",
        "t5" => " (Unigram)",
        "rwkv" => " (RWKV's greedy trie)",
        _ => "",
    }
}
