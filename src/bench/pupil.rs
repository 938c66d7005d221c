//! [`PupilRunner`]: pupil's own forward pass under the benchmark's two tests.

use std::time::{Duration, Instant};

use super::{BenchError, Runner};
use crate::model::{Batch, KvCache, KvType, Model, Scratch};

/// A model with a cache, scratch buffers and a batch sized once for the tests: the timed
/// loops allocate nothing. Threads: rayon's global pool (size it before the first run).
#[derive(Debug)]
pub struct PupilRunner<'m> {
    model: &'m Model,
    cache: KvCache,
    scratch: Scratch,
    batch: Batch,
    logits: Vec<f32>, // [1, n_vocab]: only the last token's logits are wanted
}

impl<'m> PupilRunner<'m> {
    /// A runner for prompts of up to `n_prompt` tokens and runs of `n_gen` decode steps, with
    /// an f16 KV cache (llama.cpp's default).
    pub fn new(model: &'m Model, n_prompt: usize, n_gen: usize) -> Result<PupilRunner<'m>, BenchError> {
        let n_ctx = n_prompt.max(n_gen).max(1);
        let limit = model.config().n_ctx_train;
        if n_ctx > limit {
            return Err(BenchError::ContextTooLong { tokens: n_ctx, n_ctx_train: limit });
        }
        let cache = model.new_cache(Some(n_ctx), 1, KvType::F16);
        let scratch = model.new_scratch(n_prompt.max(1), &cache);
        Ok(PupilRunner {
            model,
            cache,
            scratch,
            batch: Batch::with_capacity(n_prompt.max(1)),
            logits: vec![0.0; model.config().n_vocab],
        })
    }
}

impl Runner for PupilRunner<'_> {
    fn name(&self) -> &'static str {
        "pupil"
    }

    fn prompt(&mut self, tokens: &[u32]) -> Result<Duration, BenchError> {
        self.cache.clear(0);
        self.batch.clear();
        self.batch.push_sequence(tokens, 0, 0, false);
        let start = Instant::now();
        self.model.forward(&self.batch, &mut self.cache, &mut self.scratch, &mut self.logits)?;
        Ok(start.elapsed())
    }

    fn generate(&mut self, tokens: &[u32]) -> Result<Duration, BenchError> {
        self.cache.clear(0);
        let start = Instant::now();
        for (pos, &t) in tokens.iter().enumerate() {
            self.batch.clear();
            self.batch.push(t, pos as u32, 0, true);
            self.model.forward(&self.batch, &mut self.cache, &mut self.scratch, &mut self.logits)?;
        }
        Ok(start.elapsed())
    }
}
