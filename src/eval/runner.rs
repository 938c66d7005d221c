//! [`Backend`]: which engine runs a model under evaluation, and [`ModelRunner`]: one model
//! behind its KV cache, turning tokens into logits, whatever the engine. Scoring and cost
//! measurement drive every engine through it, so pupil and llama.cpp are run the same way.

use std::ops::Range;

use serde::Serialize;

use super::EvalError;
use crate::model::{Batch, KvCache, KvType, Model, Scratch};

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

    /// `Ok` if this build can run the backend: llama.cpp needs feature `llama`.
    pub fn check_available(self) -> Result<(), EvalError> {
        match self {
            Backend::Llama if !cfg!(feature = "llama") => Err(EvalError::LlamaUnavailable),
            _ => Ok(()),
        }
    }
}

/// One model with its KV cache (one sequence) and buffers, sized once.
pub(crate) trait ModelRunner {
    /// Logits per position.
    fn n_vocab(&self) -> usize;
    /// Empties the cache: the next tokens start again at position 0.
    fn clear(&mut self);
    /// Runs `tokens` at positions `pos..`, following on from what the cache holds, and writes
    /// the logits of the tokens at indices `wanted` of `tokens` to `logits`, one row of
    /// `n_vocab` after another: `logits` is exactly `[wanted.len(), n_vocab]`.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), EvalError>;
}

/// pupil's forward pass as a [`ModelRunner`].
#[derive(Debug)]
pub(crate) struct PupilRunner<'m> {
    model: &'m Model,
    cache: KvCache,
    scratch: Scratch,
    batch: Batch,
}

impl<'m> PupilRunner<'m> {
    /// A runner for sequences of up to `n_ctx` positions, run `n_batch` tokens at most at a time.
    pub(crate) fn new(model: &'m Model, n_ctx: usize, n_batch: usize, kv_type: KvType) -> PupilRunner<'m> {
        let cache = model.new_cache(Some(n_ctx), 1, kv_type);
        let scratch = model.new_scratch(n_batch, &cache);
        PupilRunner { model, cache, scratch, batch: Batch::with_capacity(n_batch) }
    }
}

impl ModelRunner for PupilRunner<'_> {
    fn n_vocab(&self) -> usize {
        self.model.config().n_vocab
    }

    fn clear(&mut self) {
        self.cache.clear(0);
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), EvalError> {
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            self.batch.push(t, (pos + i) as u32, 0, wanted.contains(&i));
        }
        self.model.forward(&self.batch, &mut self.cache, &mut self.scratch, logits)?;
        Ok(())
    }
}
