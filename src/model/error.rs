//! [`ModelError`]: everything that can go wrong loading a model or running it.
//!
//! Load errors name the metadata key or tensor at fault with what was expected and what was
//! found; run-time errors name the batch entry (sequence, position, token) that was refused.
//! Nothing a file or a caller controls makes the model code panic.

use pupil_kernels::{DType, KernelError};

use crate::gguf::GgufError;

/// Why a model could not be loaded, or a batch could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be opened or is not valid GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),

    /// `general.architecture` is absent.
    #[error("metadata key 'general.architecture' is missing: cannot tell which model this is")]
    NoArchitecture,

    /// An architecture pupil has no table for.
    #[error("unknown architecture '{arch}': pupil runs {}", super::Arch::NAMES.join(", "))]
    UnknownArchitecture {
        /// The value of `general.architecture`.
        arch: String,
    },

    /// A required metadata key is absent.
    #[error("metadata key '{key}' is missing")]
    MissingKey {
        /// The full key, e.g. `gemma3.embedding_length`.
        key: String,
    },

    /// A metadata key holds a value of the wrong type, or a value out of range.
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    BadKey {
        /// The full key.
        key: String,
        /// What a valid value looks like.
        expected: String,
        /// What the file holds.
        found: String,
    },

    /// A feature of the file that pupil does not implement (e.g. YaRN RoPE scaling).
    #[error("unsupported: {what}")]
    Unsupported {
        /// The feature and where it was found.
        what: String,
    },

    /// A tensor the architecture requires is not in the file.
    #[error("tensor '{name}' is missing (expected shape {expected:?})")]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The shape it should have, `ne[0]` first.
        expected: Vec<u64>,
    },

    /// A tensor's shape disagrees with the hyperparameters.
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor name.
        name: String,
        /// The shape implied by the config, `ne[0]` first.
        expected: Vec<u64>,
        /// The shape in the file.
        found: Vec<u64>,
    },

    /// A tensor's element type has no pupil kernels.
    #[error("tensor '{name}' has type {dtype}, which pupil has no kernels for")]
    UnsupportedDType {
        /// The tensor name.
        name: String,
        /// Its element type.
        dtype: DType,
    },

    /// A batch entry names a sequence the cache has no slot for.
    #[error("batch token {index}: sequence {seq} is out of range (the cache has {n_seq} slots)")]
    BadSequence {
        /// Index of the token in the batch.
        index: usize,
        /// The sequence asked for.
        seq: usize,
        /// Slots in the cache.
        n_seq: usize,
    },

    /// A token id outside the vocabulary.
    #[error("batch token {index}: token id {token} is out of range (vocabulary of {n_vocab})")]
    BadToken {
        /// Index of the token in the batch.
        index: usize,
        /// The token id.
        token: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },

    /// A position at or past the cache's context length.
    #[error("context full: sequence {seq} position {pos} does not fit a context of {n_ctx}")]
    ContextFull {
        /// The sequence.
        seq: usize,
        /// The position asked for.
        pos: u32,
        /// Positions per sequence in the cache.
        n_ctx: usize,
    },

    /// A position that would leave earlier positions of its sequence unwritten.
    #[error("sequence {seq}: position {pos} skips ahead of the {len} positions written so far")]
    PositionGap {
        /// The sequence.
        seq: usize,
        /// The position asked for.
        pos: u32,
        /// Positions the sequence holds (the next position to write).
        len: usize,
    },

    /// More tokens than the scratch buffers were sized for.
    #[error("batch of {n} tokens is larger than the {max} the scratch buffers were sized for")]
    BatchTooLarge {
        /// Tokens in the batch.
        n: usize,
        /// The scratch's maximum.
        max: usize,
    },

    /// The logits buffer does not hold `[n_wanted, n_vocab]` floats.
    #[error("logits buffer holds {found} floats, expected {expected} (wanted tokens x vocabulary)")]
    LogitsSize {
        /// `n_wanted * n_vocab`.
        expected: usize,
        /// The buffer's length.
        found: usize,
    },

    /// A cache or scratch built for a different model (other layer count or widths).
    #[error("{what} was built for a different model")]
    Mismatch {
        /// `KV cache` or `scratch`.
        what: &'static str,
    },

    /// A kernel refused its arguments (a bug in pupil if it ever surfaces).
    #[error(transparent)]
    Kernel(#[from] KernelError),
}
