//! [`PupilRunner`]: pupil's own forward pass as a [`Runner`], over a [`Context`] of one slot
//! per sequence.

use std::ops::Range;

use super::{Backend, Footprint, Runner, RunnerError, RunnerOptions, check_copy, check_seqs};
use crate::model::{Context, ContextParams, Logits, Model, Slot, Threads};

/// A model with a [`Context`] of one slot per sequence (KV cache, scratch buffers, batch,
/// sized once: the forward passes allocate nothing) and the thread pool it runs on.
#[derive(Debug)]
pub struct PupilRunner<'m> {
    ctx: Context<&'m Model>,
    /// `[n_seq]`: sequence `i`'s slot; `forward` runs the first.
    slots: Vec<Slot>,
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
            n_slots: opts.n_seq.max(1),
            max_batch: opts.n_batch.clamp(1, n_ctx * opts.n_seq.max(1)),
            // Logits go to the caller's buffer (`forward_into`).
            max_logits: 0,
            kv_type: opts.kv_type,
        };
        let mut ctx = Context::new(model, &params, threads)?;
        let slots = (0..params.n_slots).map(|_| ctx.acquire()).collect::<Result<_, _>>()?;
        Ok(PupilRunner { ctx, slots })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.ctx.model()
    }

    /// Positions the cache of sequence 0 holds.
    fn len(&self) -> usize {
        // The slots are acquired for the runner's life.
        self.ctx.len(self.slots[0]).unwrap_or(0)
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

    fn n_seq(&self) -> usize {
        self.slots.len()
    }

    fn clear(&mut self) {
        for &slot in &self.slots {
            // Truncating to 0 always succeeds on an acquired slot.
            let _ = self.ctx.truncate(slot, 0);
        }
    }

    fn truncate(&mut self, len: usize) -> Result<(), RunnerError> {
        Ok(self.ctx.truncate(self.slots[0], len)?)
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
        self.ctx.push(self.slots[0], tokens, Logits::Range(wanted))?;
        self.ctx.forward_into(logits)?;
        Ok(())
    }

    fn forward_seqs(&mut self, chunks: &[(usize, &[u32])], logits: &mut [f32]) -> Result<(), RunnerError> {
        check_seqs(chunks, self.slots.len(), self.n_vocab(), logits.len())?;
        for &(seq, tokens) in chunks {
            if let Err(e) = self.ctx.push(self.slots[seq], tokens, Logits::Last) {
                self.ctx.clear_batch();
                return Err(e.into());
            }
        }
        self.ctx.forward_into(logits)?;
        Ok(())
    }

    fn copy_seq(&mut self, src: usize, dst: usize) -> Result<(), RunnerError> {
        check_copy(src, dst, self.slots.len())?;
        let n = self.ctx.len(self.slots[src])?;
        Ok(self.ctx.copy_prefix(self.slots[src], self.slots[dst], n)?)
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
