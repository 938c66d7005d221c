//! Teacher-forced scoring: both models read the same tokens in windows, batch by batch, and
//! every batch's two sets of logits are compared before the next batch runs, so memory stays
//! at one batch of logits per model whatever the length of the text.

use rayon::prelude::*;

use super::{EvalError, Fidelity, FidelityAcc, Position, compare_row};
use crate::model::{Batch, KvType, Model};

/// How the text is cut and run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FidelityOptions {
    /// Tokens per window, BOS included (llama-perplexity's `--ctx-size`).
    pub n_ctx: usize,
    /// Most tokens per forward pass (the logits of one batch are held per model).
    pub n_batch: usize,
    /// KV cache element type.
    pub kv_type: KvType,
}

impl Default for FidelityOptions {
    /// Windows of 512 tokens, batches of 64, f16 cache.
    fn default() -> Self {
        FidelityOptions { n_ctx: 512, n_batch: 64, kv_type: KvType::F16 }
    }
}

/// The windows `tokens` is cut into: `bos` (if any) then up to `n_ctx − 1` tokens of the
/// text each, in order; windows with fewer than 2 tokens score nothing and are left out.
pub fn windows(tokens: &[u32], bos: Option<u32>, n_ctx: usize) -> Vec<Vec<u32>> {
    let body = n_ctx.saturating_sub(usize::from(bos.is_some())).max(1);
    tokens
        .chunks(body)
        .map(|c| bos.into_iter().chain(c.iter().copied()).collect::<Vec<u32>>())
        .filter(|w| w.len() >= 2)
        .collect()
}

/// Runs `teacher` and `student` over `tokens` (the text, without BOS) in windows, scoring
/// every position after the first of each window: the logits before token `i` against each
/// other and against token `i`. `progress` gets the number of tokens just run (through both
/// models).
pub fn fidelity(
    teacher: &Model,
    student: &Model,
    tokens: &[u32],
    bos: Option<u32>,
    opts: &FidelityOptions,
    mut progress: impl FnMut(usize),
) -> Result<Fidelity, EvalError> {
    if opts.n_ctx < 2 {
        return Err(EvalError::BadOption { what: "the window (--ctx)", min: 2, found: opts.n_ctx });
    }
    if opts.n_batch < 1 {
        return Err(EvalError::BadOption { what: "the batch (--batch)", min: 1, found: opts.n_batch });
    }
    let n_ctx = opts.n_ctx.min(teacher.config().n_ctx_train).min(student.config().n_ctx_train);
    let wins = windows(tokens, bos, n_ctx);
    if wins.is_empty() {
        return Err(EvalError::TextTooShort { tokens: tokens.len() + usize::from(bos.is_some()) });
    }
    let n_vocab = teacher.config().n_vocab;
    let n_batch = opts.n_batch.min(n_ctx);
    let mut sides = [teacher, student].map(|m| {
        let cache = m.new_cache(Some(n_ctx), 1, opts.kv_type);
        let scratch = m.new_scratch(n_batch, &cache);
        (m, cache, scratch, vec![0f32; n_batch * n_vocab])
    });
    let mut batch = Batch::with_capacity(n_batch);
    let mut scored: Vec<Position> = Vec::with_capacity(n_batch);
    let mut acc = FidelityAcc::new();
    for w in &wins {
        for (_, cache, _, _) in &mut sides {
            cache.clear(0);
        }
        for start in (0..w.len()).step_by(n_batch) {
            let end = (start + n_batch).min(w.len());
            // The last token of a window predicts nothing that is scored.
            let wanted = (start..end).filter(|&p| p + 1 < w.len()).count();
            batch.clear();
            for p in start..end {
                batch.push(w[p], p as u32, 0, p + 1 < w.len());
            }
            for (m, cache, scratch, logits) in &mut sides {
                m.forward(&batch, cache, scratch, &mut logits[..wanted * n_vocab])?;
            }
            let (t, s) = (&sides[0].3[..wanted * n_vocab], &sides[1].3[..wanted * n_vocab]);
            let next = &w[start + 1..start + 1 + wanted];
            t.par_chunks_exact(n_vocab)
                .zip(s.par_chunks_exact(n_vocab))
                .zip(next.par_iter())
                .map(|((t, s), &next)| compare_row(t, s, next))
                .collect_into_vec(&mut scored);
            scored.iter().for_each(|p| acc.push(p));
            progress(end - start);
        }
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_start_with_bos_and_drop_what_scores_nothing() {
        let t: Vec<u32> = (10..17).collect();
        assert_eq!(super::windows(&t, Some(2), 4), vec![vec![2, 10, 11, 12], vec![2, 13, 14, 15], vec![2, 16]]);
        assert_eq!(super::windows(&t, None, 3), vec![vec![10, 11, 12], vec![13, 14, 15]]);
        assert!(super::windows(&[5], None, 8).is_empty());
    }
}
