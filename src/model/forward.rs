//! The forward pass: one generic transformer, driven by the architecture's switches and by
//! which optional tensors the model has.
//!
//! This module checks the batch, embeds its tokens, runs the blocks ([`super::block`], here
//! on the CPU: [`super::cpu`]) and finally computes
//! `logits = rms_norm(x) * output_norm · Woutᵀ (+b)`, soft-capped (Gemma 2), for the wanted
//! tokens only. All arithmetic goes through `pupil_kernels::ops`.

use pupil_kernels::ops::{self, KvScalar};

use super::arch::Role;
use super::block::block;
use super::cpu::{Cpu, Input, Layout};
use super::kv_cache::{KvStore, Store};
use super::probe::{ProbeFn, Probed};
use super::{Batch, KvCache, Model, ModelError, Scratch};

impl Model {
    /// Runs `batch`, writing its keys and values into `cache` and the logits of its wanted
    /// tokens, in batch order, into `logits` (`[batch.n_wanted(), n_vocab]`).
    ///
    /// A token attends to the cache rows of its own sequence at positions up to its own
    /// (within the sliding window on SWA layers), including rows written by earlier tokens of
    /// the same batch. Positions of a sequence must follow on from what the cache holds: a
    /// token may rewrite a position (after [`KvCache::truncate`], say) but not skip one.
    /// The whole batch is checked before anything is written: on error the cache is as it was.
    ///
    /// This runs on the rayon pool it is called from, rayon's global pool if none: a
    /// [`Context`](super::Context) runs it on the pool it was given instead.
    pub fn forward(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        // Run the whole pass on a worker of the thread pool: the ~130 parallel loops of a
        // decode step then split work among the workers directly, instead of each being
        // handed over from a thread outside the pool and waited for (a futex round trip each).
        // Called from inside the pool, `join` runs it in place.
        rayon::join(|| self.run_probed(batch, cache, s, logits, None), || ()).0
    }

    /// [`Self::forward`] on the current thread, which should be a worker of the pool the
    /// pass is to run on.
    pub(super) fn run(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        self.run_probed(batch, cache, s, logits, None)
    }

    /// [`Self::run`], showing each CPU op's output to `probe` if there is one.
    pub(super) fn run_probed(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        s: &mut Scratch,
        logits: &mut [f32],
        probe: Option<&mut ProbeFn<'_>>,
    ) -> Result<(), ModelError> {
        let cfg = &self.config;
        let expected = batch.n_wanted() * cfg.n_vocab;
        if logits.len() != expected {
            return Err(ModelError::LogitsSize { expected, found: logits.len() });
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.check(batch, cache, s)?;
        self.embed(batch, s)?;
        let (rope, rope_swa) = self.ropes.at(cache.n_ctx);
        for (t, &pos) in batch.positions().iter().enumerate() {
            let r = cfg.n_rot;
            rope.angles(pos as i32, &mut s.rope[t * r..][..r]);
            rope_swa.angles(pos as i32, &mut s.rope_swa[t * r..][..r]);
        }
        for seq in 0..cache.n_seq {
            cache.slide(seq, s.oldest[seq])?;
        }
        let first = self.gpu_first();
        let layout = Layout { rows: &cache.rows, oldest: &cache.oldest, n_ctx: cache.n_ctx };
        match &mut cache.store {
            Store::F16(kv) => self.blocks(0..first, batch, kv, layout, s, probe)?,
            Store::F32(kv) => self.blocks(0..first, batch, kv, layout, s, probe)?,
        }
        // The GPU runs the rest, and the head too if it has it.
        #[cfg(feature = "cuda")]
        let head_done = match &self.gpu {
            Some(g) => super::gpu::pass::run((self, g), batch, (layout, cache.n_seq), &mut cache.gpu, s, logits)?,
            None => false,
        };
        #[cfg(not(feature = "cuda"))]
        let head_done = false;
        if !head_done {
            self.output(batch, s, logits)?;
        }
        cache.lens.copy_from_slice(&s.lens[..cache.n_seq]);
        Ok(())
    }

    /// Validates the batch against the cache and scratch; leaves the cache lengths the batch
    /// will produce in `s.lens`.
    fn check(&self, batch: &Batch, cache: &KvCache, s: &mut Scratch) -> Result<(), ModelError> {
        let cfg = &self.config;
        if cache.n_layer != cfg.n_layer || cache.kv_dim != cfg.kv_dim() {
            return Err(ModelError::Mismatch { what: "KV cache" });
        }
        if !s.fits(cfg, cache) {
            return Err(ModelError::Mismatch { what: "scratch" });
        }
        if batch.len() > s.max_batch {
            return Err(ModelError::BatchTooLarge { n: batch.len(), max: s.max_batch });
        }
        s.lens.clear();
        s.lens.extend_from_slice(&cache.lens);
        s.needs.clear();
        s.needs.resize(cache.n_seq, usize::MAX);
        for (index, ((&token, &pos), &seq)) in
            batch.tokens().iter().zip(batch.positions()).zip(batch.seqs()).enumerate()
        {
            if token as usize >= cfg.n_vocab {
                return Err(ModelError::BadToken { index, token, n_vocab: cfg.n_vocab });
            }
            let Some(len) = s.lens.get_mut(seq) else {
                return Err(ModelError::BadSequence { index, seq, n_seq: cache.n_seq });
            };
            if pos as usize >= cache.n_ctx {
                return Err(ModelError::ContextFull { seq, pos, n_ctx: cache.n_ctx });
            }
            if pos as usize > *len {
                return Err(ModelError::PositionGap { seq, pos, len: *len });
            }
            *len = (*len).max(pos as usize + 1);
            let needs = cache.window.map_or(0, |w| (pos as usize + 1).saturating_sub(w));
            if needs < cache.oldest[seq] {
                return Err(ModelError::WindowEvicted { seq, pos, needs, oldest: cache.oldest[seq] });
            }
            s.needs[seq] = s.needs[seq].min(needs);
        }
        // A ring the batch would write past drops rows its tokens' windows do not reach.
        s.oldest.clear();
        for (seq, (&len, &needs)) in s.lens.iter().zip(&s.needs).enumerate() {
            s.oldest.push(cache.plan_slide(seq, len, needs)?);
        }
        Ok(())
    }

    /// The first block that runs on the GPU (`n_layer`: none does).
    fn gpu_first(&self) -> usize {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu {
            return g.offload.first;
        }
        self.config.n_layer
    }

    /// Token embeddings into the residual stream (scaled by `sqrt(n_embd)` for Gemma).
    fn embed(&self, batch: &Batch, s: &mut Scratch) -> Result<(), ModelError> {
        let e = self.config.n_embd;
        let w = self.weights.model.matrix(Role::TokEmbd)?.weight(&self.file);
        let scale = self.config.arch.spec().scale_embeddings.then(|| (e as f32).sqrt());
        for (t, &token) in batch.tokens().iter().enumerate() {
            let xt = &mut s.x[t * e..][..e];
            ops::get_row(&w, token as usize, xt)?;
            if let Some(sc) = scale {
                ops::scale(xt, sc);
            }
        }
        Ok(())
    }

    /// Runs `layers` of the batch on the CPU.
    fn blocks<T: KvScalar>(
        &self,
        layers: std::ops::Range<usize>,
        batch: &Batch,
        kv: &mut KvStore<T>,
        layout: Layout<'_>,
        s: &mut Scratch,
        probe: Option<&mut ProbeFn<'_>>,
    ) -> Result<(), ModelError> {
        let mut cpu = Cpu { model: self, batch, kv, layout, s };
        match probe {
            None => layers.into_iter().try_for_each(|il| block(&mut cpu, il, batch.len())),
            Some(on) => {
                let mut probed = Probed { cpu, on, layer: 0 };
                layers.into_iter().try_for_each(|il| block(&mut probed, il, batch.len()))
            }
        }
    }

    /// Final norm and output projection of the wanted tokens.
    fn output(&self, batch: &Batch, s: &mut Scratch, logits: &mut [f32]) -> Result<(), ModelError> {
        let cfg = &self.config;
        let e = cfg.n_embd;
        let (mut j, norm) = (0, self.weights.model.vector(Role::OutputNorm)?);
        for (t, _) in batch.want_logits().iter().enumerate().filter(|(_, w)| **w) {
            ops::rms_norm(&s.x[t * e..][..e], norm, cfg.rms_eps, &mut s.xn[j * e..][..e]);
            j += 1;
        }
        if j == 0 {
            return Ok(());
        }
        let w = self.weights.output()?.weight(&self.file);
        Input::new(&s.xn, j, &mut s.act).project(w, self.weights.model.optional(Role::OutputBias), logits)?;
        if let Some(cap) = cfg.final_softcap {
            ops::softcap(logits, cap);
        }
        Ok(())
    }
}
