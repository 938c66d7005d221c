//! [`LlamaRunner`]: a llama.cpp context as a [`Runner`].

use std::num::NonZeroU32;
use std::ops::Range;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::{LlamaError, LlamaModel, backend};
use crate::model::KvType;
use crate::runner::{Attention, Backend, Footprint, Runner, RunnerError, RunnerOptions, check_copy, check_seqs};

/// A llama.cpp context (of [`RunnerOptions::n_seq`] sequences) and a batch, sized once.
pub struct LlamaRunner<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_ctx: usize,
    n_batch: usize,
    /// `[n_seq]`: positions each sequence's cache holds.
    lens: Vec<usize>,
}

impl std::fmt::Debug for LlamaRunner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaRunner").field("model", self.model).field("n_ctx", &self.n_ctx).finish_non_exhaustive()
    }
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A context for `opts.n_seq` sequences of `opts.n_ctx` positions each, run in batches of up
/// to `opts.n_batch` tokens as one micro-batch (`n_ubatch = n_batch`, as llama-bench runs the
/// whole prompt at once), on the same threads for batches and single tokens; the rest at
/// llama.cpp's defaults but for the cache type and, with [`Attention::Exact`], flash
/// attention turned off.
fn context_params(opts: &RunnerOptions) -> LlamaContextParams {
    let (n_ctx, n_batch) = sizes(opts);
    let threads = to_i32(opts.n_threads());
    let kv = match opts.kv_type {
        KvType::F32 => KvCacheType::F32,
        KvType::F16 => KvCacheType::F16,
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(to_u32(n_ctx)))
        .with_n_batch(to_u32(n_batch))
        .with_n_ubatch(to_u32(n_batch))
        .with_n_seq_max(to_u32(opts.n_seq.max(1)))
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_type_k(kv)
        .with_type_v(kv);
    match opts.attention {
        // The plain attention graph (f32 softmax), llama.cpp's most exact CPU path; its
        // automatic choice would take the flash-attention kernel, which accumulates in f16.
        Attention::Exact => params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED),
        Attention::Default => params,
    }
}

/// Positions of the whole cache (llama.cpp's `n_ctx` counts every sequence's) and the
/// largest batch.
fn sizes(opts: &RunnerOptions) -> (usize, usize) {
    let n_ctx = opts.n_ctx.max(1) * opts.n_seq.max(1);
    (n_ctx, opts.n_batch.clamp(1, n_ctx))
}

impl<'m> LlamaRunner<'m> {
    /// A runner over a new context of `model` sized by `opts`. Unlike pupil, llama.cpp
    /// accepts a context longer than the model's training context (callers cap it where
    /// that matters).
    pub fn new(model: &'m LlamaModel, opts: &RunnerOptions) -> Result<LlamaRunner<'m>, RunnerError> {
        let (n_ctx, n_batch) = (opts.n_ctx.max(1), sizes(opts).1);
        let n_seq = opts.n_seq.max(1);
        let ctx = model
            .inner
            .new_context(backend()?, context_params(opts))
            .map_err(|e| LlamaError::call("creating a context", e))?;
        let batch = LlamaBatch::new(n_batch, to_i32(n_seq));
        Ok(LlamaRunner { model, ctx, batch, n_ctx, n_batch, lens: vec![0; n_seq] })
    }
}

impl Runner for LlamaRunner<'_> {
    fn backend(&self) -> Backend {
        Backend::Llama
    }

    fn n_vocab(&self) -> usize {
        self.model.n_vocab()
    }

    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn n_batch(&self) -> usize {
        self.n_batch
    }

    fn n_seq(&self) -> usize {
        self.lens.len()
    }

    fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.lens.iter_mut().for_each(|l| *l = 0);
    }

    fn truncate(&mut self, len: usize) -> Result<(), RunnerError> {
        let removed = self
            .ctx
            .clear_kv_cache_seq(Some(0), Some(to_u32(len)), None)
            .map_err(|e| LlamaError::call("truncating the cache", e))?;
        if removed {
            self.lens[0] = self.lens[0].min(len);
            Ok(())
        } else {
            let message = format!("llama.cpp cannot remove positions {len}.. of this model's cache");
            Err(LlamaError::Call { what: "truncating the cache", message }.into())
        }
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), RunnerError> {
        if pos != self.lens[0] {
            return Err(RunnerError::Position { pos, len: self.lens[0] });
        }
        let n_vocab = self.n_vocab();
        if wanted.end > tokens.len() || logits.len() != wanted.len() * n_vocab {
            return Err(LlamaError::Call {
                what: "reading logits",
                message: format!(
                    "{} logits asked for rows {wanted:?} of a batch of {} tokens with {n_vocab} logits each",
                    logits.len(),
                    tokens.len()
                ),
            }
            .into());
        }
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            let token = LlamaToken::new(i32::try_from(t).unwrap_or(i32::MAX));
            self.batch
                .add(token, to_i32(pos + i), &[0], wanted.contains(&i))
                .map_err(|e| LlamaError::call("filling a batch", e))?;
        }
        self.ctx.decode(&mut self.batch).map_err(|e| LlamaError::call("decoding", e))?;
        self.lens[0] += tokens.len();
        // The CPU backend computes in `decode`; a device backend may still be running.
        self.ctx.synchronize();
        for (row, i) in logits.chunks_exact_mut(n_vocab).zip(wanted) {
            row.copy_from_slice(self.ctx.get_logits_ith(to_i32(i)));
        }
        Ok(())
    }

    fn forward_seqs(&mut self, chunks: &[(usize, &[u32])], logits: &mut [f32]) -> Result<(), RunnerError> {
        let n_vocab = self.n_vocab();
        check_seqs(chunks, self.lens.len(), n_vocab, logits.len())?;
        self.batch.clear();
        // Each chunk's last token's row in the batch.
        let mut last = Vec::with_capacity(chunks.len());
        for &(seq, tokens) in chunks {
            for (j, &t) in tokens.iter().enumerate() {
                let token = LlamaToken::new(i32::try_from(t).unwrap_or(i32::MAX));
                self.batch
                    .add(token, to_i32(self.lens[seq] + j), &[to_i32(seq)], j + 1 == tokens.len())
                    .map_err(|e| LlamaError::call("filling a batch", e))?;
            }
            last.push(self.batch.n_tokens() - 1);
        }
        self.ctx.decode(&mut self.batch).map_err(|e| LlamaError::call("decoding", e))?;
        for &(seq, tokens) in chunks {
            self.lens[seq] += tokens.len();
        }
        self.ctx.synchronize();
        for (row, i) in logits.chunks_exact_mut(n_vocab).zip(last) {
            row.copy_from_slice(self.ctx.get_logits_ith(i));
        }
        Ok(())
    }

    fn copy_seq(&mut self, src: usize, dst: usize) -> Result<(), RunnerError> {
        check_copy(src, dst, self.lens.len())?;
        // Whole sequences: `dst` first emptied, then given every position of `src`.
        self.ctx
            .clear_kv_cache_seq(Some(to_u32(dst)), None, None)
            .map_err(|e| LlamaError::call("emptying a sequence", e))?;
        self.ctx
            .copy_kv_cache_seq(to_i32(src), to_i32(dst), None, None)
            .map_err(|e| LlamaError::call("copying a sequence", e))?;
        self.lens[dst] = self.lens[src];
        Ok(())
    }

    fn footprint(&self) -> Footprint {
        Footprint {
            backend: Backend::Llama,
            parameters: self.model.n_params(),
            weight_bytes: self.model.size(),
            kv_bytes: None,
        }
    }
}
