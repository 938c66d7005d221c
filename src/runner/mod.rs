//! One model on one engine, driven the same way whatever the engine: [`Runner`] turns
//! tokens at positions into logits over a KV cache it owns, and says what it costs
//! ([`Footprint`]). pupil's forward pass ([`PupilRunner`]) and llama.cpp (feature `llama`,
//! [`crate::llama::LlamaRunner`]) both implement it, so every use that measures or compares
//! models (`bench`, `eval`, the criterion benches, the oracle tests) runs them through one
//! interface, and [`speed`] times any of them by one definition of pp, tg and TTFT.
//!
//! The uses sit above this module and never import each other: `bench` and `eval` both come
//! here for runners and timings.
//!
//! ```no_run
//! use pupil::model::{KvType, Model};
//! use pupil::runner::{PupilRunner, Runner, RunnerOptions};
//! # fn main() -> Result<(), pupil::runner::RunnerError> {
//! let model = Model::open("models/distill/student-q4_0.gguf")?;
//! let mut r = PupilRunner::new(&model, &RunnerOptions::new(256, 64))?;
//! let mut logits = vec![0.0; r.n_vocab()];
//! r.forward(&[1, 42, 7], 0, 2..3, &mut logits)?; // a prompt, the last token's logits
//! r.forward(&[9], 3, 0..1, &mut logits)?; // one decode step after it
//! # Ok(()) }
//! ```

pub mod memory;
mod pupil;
pub mod speed;
mod stats;

use std::ops::Range;

use serde::Serialize;

pub use pupil::PupilRunner;
pub use stats::{Stats, median};

use crate::model::{KvType, ModelError};

/// The engine that runs a model: pupil's own, or llama.cpp (feature `llama`), which runs any
/// architecture llama.cpp knows, pupil's or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Backend {
    /// pupil's forward pass.
    #[default]
    #[serde(rename = "pupil")]
    Pupil,
    /// llama.cpp through `llama-cpp-2`.
    #[serde(rename = "llama.cpp")]
    Llama,
}

impl Backend {
    /// The name reports show: `pupil`, `llama.cpp`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Pupil => "pupil",
            Backend::Llama => "llama.cpp",
        }
    }

    /// Whether this build can run the backend: llama.cpp needs feature `llama`.
    pub fn available(self) -> bool {
        match self {
            Backend::Pupil => true,
            Backend::Llama => cfg!(feature = "llama"),
        }
    }
}

/// How an engine computes attention, where it has a choice (llama.cpp's flash attention);
/// pupil has one path, the exact one, and ignores this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Attention {
    /// The engine's default, as its own benchmark runs it (llama.cpp: flash attention chosen
    /// automatically, values accumulated in f16): for speed.
    #[default]
    Default,
    /// The engine's most exact path (llama.cpp: no flash attention, an f32 softmax): for
    /// scoring against another engine.
    Exact,
}

/// What a runner is sized for, and how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Positions the KV cache holds.
    pub n_ctx: usize,
    /// Most tokens per [`Runner::forward`] (llama.cpp: one micro-batch of this size).
    pub n_batch: usize,
    /// KV cache element type (default f16, llama.cpp's default).
    pub kv_type: KvType,
    /// Attention path.
    pub attention: Attention,
    /// Threads, for batches and single tokens alike; `None`: as many as the current rayon
    /// pool has. Each runner has its own pool (pupil: a [`crate::model::Threads`]; llama.cpp:
    /// ggml's).
    pub threads: Option<usize>,
    /// Sequences the cache holds, `n_ctx` positions each (default 1): more for decode steps
    /// of several sequences in one batch ([`Runner::forward_seqs`]).
    pub n_seq: usize,
}

impl RunnerOptions {
    /// `n_ctx` positions, batches of up to `n_batch`, the rest at the defaults.
    pub fn new(n_ctx: usize, n_batch: usize) -> RunnerOptions {
        RunnerOptions { n_ctx, n_batch, kv_type: KvType::F16, attention: Attention::Default, threads: None, n_seq: 1 }
    }

    /// The threads a runner runs on: as many as cores by default (never rayon's global pool,
    /// which belongs to the program that embeds pupil).
    pub fn n_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
    }
}

/// What a loaded model and its runner occupy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// The engine.
    pub backend: Backend,
    /// Elements in all tensors.
    pub parameters: u64,
    /// Bytes of all tensors.
    pub weight_bytes: u64,
    /// Bytes of the KV cache, where the engine says.
    pub kv_bytes: Option<u64>,
}

/// Why a runner could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// pupil's forward pass failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// llama.cpp failed.
    #[cfg(feature = "llama")]
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
    /// Tokens were given at a position other than the one after what the cache holds.
    #[error("tokens at position {pos} do not follow the {len} positions the cache holds")]
    Position {
        /// The position given.
        pos: usize,
        /// Positions the cache holds.
        len: usize,
    },
    /// A batch of several sequences named one out of range, or one twice, or had an empty
    /// chunk, or a logits buffer of the wrong size.
    #[error("a batch of several sequences (the runner holds {n_seq}): {message}")]
    Sequences {
        /// Sequences the runner holds.
        n_seq: usize,
        /// What was wrong.
        message: String,
    },
    /// More positions were asked for than the model was trained for.
    #[error("{tokens} positions are needed, but the model's context is {n_ctx_train}")]
    ContextTooLong {
        /// Positions asked for.
        tokens: usize,
        /// The model's training context.
        n_ctx_train: usize,
    },
}

/// One model on one engine, with a KV cache for [`RunnerOptions::n_seq`] sequences (one by
/// default) and buffers sized once ([`RunnerOptions`]): tokens in, logits out. Calls follow
/// on from what the cache holds. [`Runner::forward`] runs sequence 0;
/// [`Runner::forward_seqs`] runs several in one batch.
pub trait Runner {
    /// The engine.
    fn backend(&self) -> Backend;
    /// Logits per position.
    fn n_vocab(&self) -> usize;
    /// Positions the cache holds.
    fn n_ctx(&self) -> usize;
    /// Most tokens one [`Runner::forward`] takes.
    fn n_batch(&self) -> usize;
    /// Sequences the cache holds.
    fn n_seq(&self) -> usize;
    /// Empties the cache of every sequence: the next tokens start again at position 0.
    fn clear(&mut self);
    /// Forgets the positions from `len` on; the next tokens follow position `len - 1`. Fails,
    /// changing nothing, where the engine cannot (a sliding-window cache that no longer holds
    /// the window of position `len`).
    fn truncate(&mut self, len: usize) -> Result<(), RunnerError>;
    /// Runs `tokens` (at most [`Runner::n_batch`]) as one batch at positions `pos..`, which
    /// must follow what the cache holds ([`RunnerError::Position`] otherwise), and writes the
    /// logits of the tokens at indices `wanted` of `tokens` to `logits`, one row of `n_vocab`
    /// after another: `logits` is exactly `[wanted.len(), n_vocab]`.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), RunnerError>;
    /// Runs several sequences' tokens as one batch: chunk `(seq, tokens)` follows what
    /// sequence `seq` holds, and at most one chunk names each sequence (a decode step of
    /// several sequences; one sequence's prompt). Writes each chunk's last-token logits to
    /// `logits`, one row after another: exactly `[chunks.len(), n_vocab]`. At most
    /// [`Runner::n_batch`] tokens in all (and at least one per chunk).
    fn forward_seqs(&mut self, chunks: &[(usize, &[u32])], logits: &mut [f32]) -> Result<(), RunnerError>;
    /// Makes sequence `dst` hold what sequence `src` holds (a prompt run once, shared).
    fn copy_seq(&mut self, src: usize, dst: usize) -> Result<(), RunnerError>;
    /// Parameters and bytes of the model and cache.
    fn footprint(&self) -> Footprint;
}

/// The check every [`Runner::copy_seq`] makes: two different sequences the runner holds.
pub(crate) fn check_copy(src: usize, dst: usize, n_seq: usize) -> Result<(), RunnerError> {
    if src >= n_seq || dst >= n_seq || src == dst {
        return Err(RunnerError::Sequences { n_seq, message: format!("a copy from sequence {src} to {dst}") });
    }
    Ok(())
}

/// The checks every [`Runner::forward_seqs`] makes, with its error: sequences in range and
/// named once, no empty chunk, `logits` of one row per chunk.
pub(crate) fn check_seqs(
    chunks: &[(usize, &[u32])],
    n_seq: usize,
    n_vocab: usize,
    logits: usize,
) -> Result<(), RunnerError> {
    let mut seen = vec![false; n_seq];
    for &(seq, tokens) in chunks {
        if seq >= n_seq || std::mem::replace(&mut seen[seq], true) || tokens.is_empty() {
            return Err(RunnerError::Sequences {
                n_seq,
                message: format!("chunk of {} tokens for sequence {seq}", tokens.len()),
            });
        }
    }
    if logits != chunks.len() * n_vocab {
        let message = format!("{logits} logits for {} chunks of {n_vocab}", chunks.len());
        return Err(RunnerError::Sequences { n_seq, message });
    }
    Ok(())
}
