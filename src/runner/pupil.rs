//! [`PupilRunner`]: pupil's own forward pass as a [`Runner`], over a [`Context`] of one slot.

use std::ops::Range;

use super::{Backend, Footprint, Runner, RunnerError, RunnerOptions};
use crate::model::{Context, ContextParams, Logits, Model, Slot, Threads};

/// A model with a [`Context`] of one slot (KV cache, scratch buffers, batch, sized once: the
/// forward passes allocate nothing) and the thread pool it runs on.
#[derive(Debug)]
pub struct PupilRunner<'m> {
    ctx: Context<&'m Model>,
    slot: Slot,
}

impl<'m> PupilRunner<'m> {
    /// A runner for `opts.n_ctx` positions (at least 1), run `opts.n_batch` tokens at most at
    /// a time, on a pool of `opts.threads` threads of its own (default: as many as the
    /// current rayon pool has); [`RunnerError::ContextTooLong`] if the model was trained for
    /// fewer positions.
    pub fn new(model: &'m Model, opts: &RunnerOptions) -> Result<PupilRunner<'m>, RunnerError> {
        PupilRunner::with_threads(model, opts, Threads::new(opts.n_threads())?)
    }

    /// [`PupilRunner::new`] on the pool `threads` (shared with whoever else holds it);
    /// `opts.threads` is not read.
    pub fn with_threads(
        model: &'m Model,
        opts: &RunnerOptions,
        threads: Threads,
    ) -> Result<PupilRunner<'m>, RunnerError> {
        let n_ctx = opts.n_ctx.max(1);
        let n_ctx_train = model.config().n_ctx_train;
        if n_ctx > n_ctx_train {
            return Err(RunnerError::ContextTooLong { tokens: n_ctx, n_ctx_train });
        }
        let params = ContextParams {
            n_ctx: Some(n_ctx),
            n_slots: 1,
            max_batch: opts.n_batch.clamp(1, n_ctx),
            // Logits go to the caller's buffer (`forward_into`).
            max_logits: 0,
            kv_type: opts.kv_type,
        };
        let mut ctx = Context::new(model, &params, threads)?;
        let slot = ctx.acquire()?;
        Ok(PupilRunner { ctx, slot })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.ctx.model()
    }

    /// Positions the cache holds.
    fn len(&self) -> usize {
        // The one slot is acquired for the runner's life.
        self.ctx.len(self.slot).unwrap_or(0)
    }
}

impl Runner for PupilRunner<'_> {
    fn backend(&self) -> Backend {
        Backend::Pupil
    }

    fn n_vocab(&self) -> usize {
        self.ctx.model().config().n_vocab
    }

    fn n_ctx(&self) -> usize {
        self.ctx.n_ctx()
    }

    fn n_batch(&self) -> usize {
        self.ctx.max_batch()
    }

    fn clear(&mut self) {
        // Truncating to 0 always succeeds on an acquired slot.
        let _ = self.ctx.truncate(self.slot, 0);
    }

    fn truncate(&mut self, len: usize) -> Result<(), RunnerError> {
        Ok(self.ctx.truncate(self.slot, len)?)
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), RunnerError> {
        let len = self.len();
        if pos != len {
            return Err(RunnerError::Position { pos, len });
        }
        self.ctx.push(self.slot, tokens, Logits::Range(wanted))?;
        self.ctx.forward_into(logits)?;
        Ok(())
    }

    fn footprint(&self) -> Footprint {
        let tensors = self.ctx.model().file().tensors();
        Footprint {
            backend: Backend::Pupil,
            parameters: tensors.iter().map(|t| t.n_elements()).sum(),
            weight_bytes: tensors.iter().map(|t| t.n_bytes()).sum(),
            kv_bytes: Some(self.ctx.kv_bytes() as u64),
        }
    }
}
