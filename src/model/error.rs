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

    /// GPU layers were asked for and cannot be had: no CUDA in this build, no driver or
    /// device, or a weight type or head size the GPU kernels do not take.
    #[error("--gpu-layers {layers}: {reason}")]
    Gpu {
        /// The layers asked for.
        layers: usize,
        /// Why not.
        reason: String,
    },

    /// The GPU failed while running a batch (a driver or kernel error).
    #[error("GPU: {reason}")]
    Device {
        /// What failed.
        reason: String,
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

    /// The forward pass asked for a tensor the architecture's table does not load (a bug in
    /// pupil's table, never in the file: the tables are tested against the forward pass).
    #[error("tensor '{name}' is not in the architecture's table, but the forward pass needs it")]
    NotLoaded {
        /// The tensor name.
        name: String,
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

    /// A sequence (slot) number the cache has no slot for.
    #[error("sequence {seq} is out of range (the cache has {n_seq} slots)")]
    NoSequence {
        /// The sequence asked for.
        seq: usize,
        /// Slots in the cache.
        n_seq: usize,
    },

    /// A batch token whose sliding window reaches back before the oldest position its
    /// sequence's sliding-window layers still hold (a rewrite of a position long past).
    #[error(
        "sequence {seq}: position {pos} attends back to position {needs}, but the sliding-window layers hold only positions from {oldest} on"
    )]
    WindowEvicted {
        /// The sequence.
        seq: usize,
        /// The position asked for.
        pos: u32,
        /// The first position of its window.
        needs: usize,
        /// The oldest position held.
        oldest: usize,
    },

    /// A batch that spans more positions of one sequence (with their windows) than the
    /// sliding-window layers have rows: more tokens than the cache was sized for.
    #[error(
        "sequence {seq}: the batch and its windows span {span} positions, more than the {rows} rows of the sliding-window layers"
    )]
    RingOverflow {
        /// The sequence.
        seq: usize,
        /// Positions from the oldest window start of the batch to its last position.
        span: usize,
        /// Rows per sequence of the sliding-window layers.
        rows: usize,
    },

    /// A truncation or prefix copy to a length whose next position's window reaches before
    /// what the sliding-window layers still hold.
    #[error(
        "sequence {seq}: its first {len} positions are no longer whole (the sliding-window layers hold positions from {oldest} on); keep at least {min_len}, or none"
    )]
    PrefixEvicted {
        /// The sequence.
        seq: usize,
        /// The length asked for.
        len: usize,
        /// The shortest length other than 0 possible.
        min_len: usize,
        /// The oldest position held.
        oldest: usize,
    },

    /// A prefix copy of more positions than the source holds.
    #[error("sequence {seq} holds {len} positions, fewer than the {n} asked for")]
    PrefixTooLong {
        /// The source sequence.
        seq: usize,
        /// Positions asked for.
        n: usize,
        /// Positions it holds.
        len: usize,
    },

    /// Every slot of a context is in use.
    #[error("all {n_slots} sequence slots are in use")]
    NoFreeSlot {
        /// Slots in the context.
        n_slots: usize,
    },

    /// A slot id that is not (or no longer) acquired in this context.
    #[error("slot {index} is not acquired (released, or from another context)")]
    StaleSlot {
        /// The slot's index.
        index: usize,
    },

    /// A slot released, truncated or overwritten while tokens are queued for it (their
    /// positions were fixed when queued): run or clear the batch first.
    #[error("slot {index} has tokens queued for the next pass: run or clear the batch first")]
    SlotBusy {
        /// The slot's index.
        index: usize,
    },

    /// A batch wanting more logits rows than the context's buffer holds.
    #[error("the batch wants {n} logits rows, more than the {max} the context was sized for")]
    TooManyLogits {
        /// Rows wanted.
        n: usize,
        /// Rows the context holds.
        max: usize,
    },

    /// A context's sizes that cannot work (zero slots, zero batch).
    #[error("invalid context size: {what}")]
    ContextSize {
        /// Which size, and why.
        what: &'static str,
    },

    /// The thread pool could not be built.
    #[error("cannot start a pool of {n} threads: {reason}")]
    Threads {
        /// Threads asked for.
        n: usize,
        /// Why not.
        reason: String,
    },

    /// A kernel refused its arguments (a bug in pupil if it ever surfaces).
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl ModelError {
    /// Whose fault it is: the file's and the caller's input are [`BadInput`]; a full context
    /// is [`TooLong`]; sizes the caller's own code got wrong (a stale slot, a batch larger
    /// than its buffers) are [`Internal`].
    ///
    /// [`BadInput`]: crate::error::ErrorKind::BadInput
    /// [`TooLong`]: crate::error::ErrorKind::TooLong
    /// [`Internal`]: crate::error::ErrorKind::Internal
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ModelError::Gguf(e) => e.kind(),
            ModelError::ContextFull { .. } => ErrorKind::TooLong,
            ModelError::Threads { .. } => ErrorKind::Io,
            ModelError::NoArchitecture
            | ModelError::UnknownArchitecture { .. }
            | ModelError::MissingKey { .. }
            | ModelError::BadKey { .. }
            | ModelError::Unsupported { .. }
            | ModelError::MissingTensor { .. }
            | ModelError::TensorShape { .. }
            | ModelError::UnsupportedDType { .. }
            | ModelError::BadToken { .. }
            | ModelError::ContextSize { .. }
            | ModelError::Gpu { .. } => ErrorKind::BadInput,
            _ => ErrorKind::Internal,
        }
    }
}

/// GPU faults inside a forward pass: the device's message.
#[cfg(feature = "cuda")]
impl From<pupil_kernels::cuda::GpuError> for ModelError {
    fn from(e: pupil_kernels::cuda::GpuError) -> ModelError {
        ModelError::Device { reason: e.to_string() }
    }
}
