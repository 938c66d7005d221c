//! Teacher-forced scoring: both models read the same tokens in windows, batch by batch, and
//! every batch's two sets of logits are compared before the next batch runs, so memory stays
//! at one batch of logits per model whatever the length of the text.

use rayon::prelude::*;

use std::path::Path;

use super::engine::Pair;
use super::{CompareOptions, EvalError, Fidelity, FidelityAcc, Position, Progress, compare_row};
use crate::model::{KvType, Model};
use crate::runner::{Attention, PupilRunner, Runner, RunnerOptions};
use crate::tokenizer::Tokenizer;

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

/// A text as the models read it: tokenised once, with the teacher's tokenizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TextTokens {
    /// The text's tokens, without BOS.
    pub tokens: Vec<u32>,
    /// The BOS every window starts with, if the vocabulary adds one.
    pub bos: Option<u32>,
}

impl TextTokens {
    /// `text` through `tok`, with no special tokens parsed.
    pub(crate) fn new(tok: &Tokenizer, text: &str) -> TextTokens {
        TextTokens { tokens: tok.encode(text, false, false), bos: tok.bos().filter(|_| tok.add_bos()) }
    }

    /// BOS (if any) and the text: the prompt cost measurement repeats.
    pub(crate) fn prompt(&self) -> Vec<u32> {
        self.bos.into_iter().chain(self.tokens.iter().copied()).collect()
    }
}

/// A scored text: what [`super::compare`] reports of the fidelity run.
#[derive(Clone, Debug)]
pub(crate) struct Scored {
    /// The text's tokens.
    pub text: TextTokens,
    /// How it was cut.
    pub plan: Plan,
    /// The scores.
    pub fidelity: Fidelity,
}

/// Scores `text` with the teacher on `opts.teacher_backend` and the student on pupil: the
/// teacher's vocabulary, read from its GGUF file with pupil's reader (which needs no support
/// for its architecture), must be the student's, and the text is tokenised once, with it.
/// An engine with a choice runs its most exact attention ([`Attention::Exact`]).
pub(crate) fn score_text(
    teacher: &Path,
    student: &Path,
    text: &str,
    opts: &CompareOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Scored, EvalError> {
    let pair = Pair::load(teacher, student, opts.teacher_backend, &opts.load)?;
    let text = TextTokens::new(&pair.tok, text);
    let fo = &opts.fidelity;
    let plan = Plan::new(fo, pair.n_ctx_train(), &text.tokens, text.bos)?;
    progress(Progress::Scoring { tokens: plan.n_tokens() });
    let ropts = plan.runner_options(fo.kv_type, opts.threads);
    let mut rt = pair.teacher.runner(&ropts)?;
    let mut rs = PupilRunner::new(&pair.student, &ropts)?;
    let fidelity = score(&mut *rt, &mut rs, &plan, |n| progress(Progress::Scored(n)))?;
    Ok(Scored { text, plan, fidelity })
}

/// How a text is cut for scoring: the window and batch sizes in effect and the windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Tokens per window: `--ctx`, capped by both models' training context.
    pub n_ctx: usize,
    /// Tokens per forward pass: `--batch`, capped by the window.
    pub n_batch: usize,
    /// The windows, each starting with BOS (if any).
    pub windows: Vec<Vec<u32>>,
}

impl Plan {
    /// Checks `opts` and cuts `tokens` (the text, without BOS) into windows of `opts.n_ctx`
    /// tokens, capped by `n_ctx_train` (the smaller training context of the two models).
    pub(crate) fn new(
        opts: &FidelityOptions,
        n_ctx_train: usize,
        tokens: &[u32],
        bos: Option<u32>,
    ) -> Result<Plan, EvalError> {
        if opts.n_ctx < 2 {
            return Err(EvalError::BadOption { what: "the window (--ctx)", min: 2, found: opts.n_ctx });
        }
        if opts.n_batch < 1 {
            return Err(EvalError::BadOption { what: "the batch (--batch)", min: 1, found: opts.n_batch });
        }
        let n_ctx = opts.n_ctx.min(n_ctx_train).max(2);
        let windows = windows(tokens, bos, n_ctx);
        if windows.is_empty() {
            return Err(EvalError::TextTooShort { tokens: tokens.len() + usize::from(bos.is_some()) });
        }
        Ok(Plan { n_ctx, n_batch: opts.n_batch.min(n_ctx), windows })
    }

    /// Tokens run through each model, BOS of every window included.
    pub(crate) fn n_tokens(&self) -> usize {
        self.windows.iter().map(Vec::len).sum()
    }

    /// Runners for the plan: a window of positions, batches of `n_batch`, the most exact
    /// attention.
    pub(crate) fn runner_options(&self, kv_type: KvType, threads: Option<usize>) -> RunnerOptions {
        RunnerOptions { kv_type, attention: Attention::Exact, threads, ..RunnerOptions::new(self.n_ctx, self.n_batch) }
    }
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
    progress: impl FnMut(usize),
) -> Result<Fidelity, EvalError> {
    let n_ctx_train = teacher.config().n_ctx_train.min(student.config().n_ctx_train);
    let plan = Plan::new(opts, n_ctx_train, tokens, bos)?;
    let ropts = plan.runner_options(opts.kv_type, None);
    let mut t = PupilRunner::new(teacher, &ropts)?;
    let mut s = PupilRunner::new(student, &ropts)?;
    score(&mut t, &mut s, &plan, progress)
}

/// Runs both models over `plan`'s windows, batch by batch, comparing each batch's logits
/// before the next batch runs. The runners are sized for `plan.n_ctx` and `plan.n_batch`, and
/// their vocabularies are the same size.
pub(crate) fn score(
    teacher: &mut dyn Runner,
    student: &mut dyn Runner,
    plan: &Plan,
    mut progress: impl FnMut(usize),
) -> Result<Fidelity, EvalError> {
    let n_vocab = teacher.n_vocab();
    let n_batch = plan.n_batch;
    let mut logits = [vec![0f32; n_batch * n_vocab], vec![0f32; n_batch * n_vocab]];
    let mut scored: Vec<Position> = Vec::with_capacity(n_batch);
    let mut acc = FidelityAcc::new();
    for w in &plan.windows {
        teacher.clear();
        student.clear();
        for start in (0..w.len()).step_by(n_batch) {
            let end = (start + n_batch).min(w.len());
            // The last token of a window predicts nothing that is scored.
            let wanted = (start..end).filter(|&p| p + 1 < w.len()).count();
            let [lt, ls] = &mut logits;
            let (lt, ls) = (&mut lt[..wanted * n_vocab], &mut ls[..wanted * n_vocab]);
            teacher.forward(&w[start..end], start, 0..wanted, lt)?;
            student.forward(&w[start..end], start, 0..wanted, ls)?;
            let next = &w[start + 1..start + 1 + wanted];
            lt.par_chunks_exact(n_vocab)
                .zip(ls.par_chunks_exact(n_vocab))
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
