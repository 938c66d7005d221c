//! [`PupilRunner`]: pupil's own forward pass as a [`Runner`].

use std::ops::Range;

use super::{Backend, Footprint, Runner, RunnerError, RunnerOptions};
use crate::model::{Batch, KvCache, Model, Scratch};

/// A model with a KV cache (one sequence), scratch buffers and a batch sized once: the
/// forward passes allocate nothing. Threads: the rayon pool it is called from.
#[derive(Debug)]
pub struct PupilRunner<'m> {
    model: &'m Model,
    cache: KvCache,
    scratch: Scratch,
    batch: Batch,
    n_batch: usize,
}

impl<'m> PupilRunner<'m> {
    /// A runner for `opts.n_ctx` positions (at least 1), run `opts.n_batch` tokens at most at
    /// a time; [`RunnerError::ContextTooLong`] if the model was trained for fewer positions.
    pub fn new(model: &'m Model, opts: &RunnerOptions) -> Result<PupilRunner<'m>, RunnerError> {
        let n_ctx = opts.n_ctx.max(1);
        let n_ctx_train = model.config().n_ctx_train;
        if n_ctx > n_ctx_train {
            return Err(RunnerError::ContextTooLong { tokens: n_ctx, n_ctx_train });
        }
        let n_batch = opts.n_batch.clamp(1, n_ctx);
        let cache = model.new_cache(Some(n_ctx), 1, opts.kv_type);
        let scratch = model.new_scratch(n_batch, &cache);
        Ok(PupilRunner { model, cache, scratch, batch: Batch::with_capacity(n_batch), n_batch })
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }
}

impl Runner for PupilRunner<'_> {
    fn backend(&self) -> Backend {
        Backend::Pupil
    }

    fn n_vocab(&self) -> usize {
        self.model.config().n_vocab
    }

    fn n_ctx(&self) -> usize {
        self.cache.n_ctx()
    }

    fn n_batch(&self) -> usize {
        self.n_batch
    }

    fn clear(&mut self) {
        self.cache.clear(0);
    }

    fn truncate(&mut self, len: usize) -> Result<(), RunnerError> {
        Ok(self.cache.truncate(0, len)?)
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), RunnerError> {
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            self.batch.push(t, (pos + i) as u32, 0, wanted.contains(&i));
        }
        self.model.forward(&self.batch, &mut self.cache, &mut self.scratch, logits)?;
        Ok(())
    }

    fn footprint(&self) -> Footprint {
        let tensors = self.model.file().tensors();
        Footprint {
            backend: Backend::Pupil,
            parameters: tensors.iter().map(|t| t.n_elements()).sum(),
            weight_bytes: tensors.iter().map(|t| t.n_bytes()).sum(),
            kv_bytes: Some(self.cache.bytes() as u64),
        }
    }
}
