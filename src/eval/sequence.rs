//! The sequence-level comparison: the teacher grades what the student writes.
//!
//! Teacher-forced fidelity ([`super::fidelity`]) has both models read the same text. A
//! deployed student reads its own text instead, and its errors compound. Here, for each
//! prompt, each model writes its own continuation ([`write`]), and then both models score
//! both continuations teacher-forced ([`score_along`]):
//!
//! - the teacher's mean log-probability per token of the student's text (its *grade* of the
//!   student) against that of its own text, and the same from the student's side;
//! - where the two continuations first differ ("part");
//! - KL(teacher ‖ student) along the student's text (on-policy) beside the same along the
//!   teacher's text: the gap is the error the student's own choices add;
//! - each model's generation speed on the same prompts.
//!
//! Per-prompt figures are averaged over prompts, with standard errors across prompts
//! ([`MeanSe`]): the tokens of one continuation are not independent of each other.

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::engine::Pair;
use super::prompts::{self, Prompt};
use super::{CompareOptions, EvalError, compare_row};
use crate::chat::ChatTemplate;
use crate::model::KvType;
use crate::runner::{Attention, PupilRunner, Runner, RunnerOptions};
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;

/// How the continuations are written.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceOptions {
    /// Most tokens each model writes per prompt; an end-of-generation token ends one sooner
    /// (and is scored).
    pub n_predict: usize,
    /// How tokens are chosen, the same for both models (default greedy). Prompt `i` samples
    /// with seed `seed + i`, the same for both models.
    pub sampler: SamplerConfig,
    /// Most tokens per forward pass.
    pub n_batch: usize,
    /// KV cache element type.
    pub kv_type: KvType,
}

impl Default for SequenceOptions {
    /// 128 tokens, greedy, batches of 64, f16 cache.
    fn default() -> Self {
        SequenceOptions { n_predict: 128, sampler: SamplerConfig::greedy(), n_batch: 64, kv_type: KvType::F16 }
    }
}

/// One model's continuation of one prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Continuation {
    /// The tokens written, the end-of-generation token included where one ended it.
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Whether an end-of-generation token ended it before `n_predict`.
    pub ended: bool,
    /// Seconds to read the prompt (up to the first token's logits).
    pub prompt_s: f64,
    /// Seconds to write the tokens after the first.
    pub decode_s: f64,
}

/// Both models' scores along one continuation, averaged over its tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Along {
    /// Tokens scored.
    pub tokens: usize,
    /// The teacher's mean log-probability per token (nats).
    pub teacher_logp: f64,
    /// The student's mean log-probability per token (nats).
    pub student_logp: f64,
    /// Mean KL(teacher ‖ student) over the positions that predict the tokens (nats).
    pub kl: f64,
    /// Fraction of those positions where the two models' likeliest tokens agree.
    pub top1_agreement: f64,
}

/// One prompt's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptResult {
    /// The prompt, shortened to one line.
    pub prompt: String,
    /// Its tokens (BOS or template included).
    pub prompt_tokens: usize,
    /// The tokens themselves (not in the JSON).
    #[serde(skip)]
    pub prompt_ids: Vec<u32>,
    /// What the student wrote.
    pub student: Continuation,
    /// What the teacher wrote.
    pub teacher: Continuation,
    /// The index of the first token where the two continuations differ; `None` if they never
    /// part (identical, within `n_predict`).
    pub part_at: Option<usize>,
    /// Both models along the student's text.
    pub on_student: Along,
    /// Both models along the teacher's text.
    pub on_teacher: Along,
}

/// A mean over prompts and its standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MeanSe {
    /// The mean.
    pub mean: f64,
    /// Its standard error (0 with fewer than 2 values).
    pub se: f64,
}

impl MeanSe {
    /// Of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> MeanSe {
        let v: Vec<f64> = values.into_iter().collect();
        let n = v.len() as f64;
        if v.is_empty() {
            return MeanSe { mean: f64::NAN, se: f64::NAN };
        }
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        MeanSe { mean, se: (var / n).sqrt() }
    }
}

/// Where the two continuations part.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Parting {
    /// Median index of the first differing token, counting "never" as `n_predict` (`None`
    /// when more than half never part).
    pub median: Option<f64>,
    /// Fraction of prompts whose continuations never part within `n_predict`.
    pub never: f64,
    /// Prompts per bucket of first-differing index: `(from, to_exclusive, prompts)`, eight
    /// equal buckets over `0..n_predict`, then the ones that never part as `(n, n, k)`.
    pub histogram: Vec<(usize, usize, usize)>,
}

impl Parting {
    fn new(parts: &[Option<usize>], n_predict: usize) -> Parting {
        let n = parts.len().max(1) as f64;
        let never = parts.iter().filter(|p| p.is_none()).count();
        let mut sorted: Vec<usize> = parts.iter().map(|p| p.unwrap_or(n_predict)).collect();
        sorted.sort_unstable();
        let median = if sorted.is_empty() {
            None
        } else {
            let m = sorted.len();
            let mid = if m % 2 == 1 { sorted[m / 2] as f64 } else { (sorted[m / 2 - 1] + sorted[m / 2]) as f64 / 2.0 };
            (mid < n_predict as f64).then_some(mid)
        };
        let buckets = 8.min(n_predict.max(1));
        let edge = |k: usize| k * n_predict / buckets;
        let mut histogram: Vec<(usize, usize, usize)> = (0..buckets)
            .map(|k| {
                (
                    edge(k),
                    edge(k + 1),
                    parts.iter().filter(|p| p.is_some_and(|i| i >= edge(k) && i < edge(k + 1))).count(),
                )
            })
            .collect();
        histogram.push((n_predict, n_predict, never));
        Parting { median, never: never as f64 / n, histogram }
    }
}

/// One model's generation over all prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct GenerationCost {
    /// Tokens written.
    pub tokens: usize,
    /// Seconds in all, prompts included.
    pub wall_s: f64,
    /// Tokens per second after each prompt's first (as `pupil bench`'s tg counts).
    pub decode_tok_s: f64,
}

impl GenerationCost {
    fn of<'a>(runs: impl Iterator<Item = &'a Continuation>) -> GenerationCost {
        let (mut tokens, mut wall, mut decoded, mut decode_s) = (0, 0.0, 0, 0.0);
        for c in runs {
            tokens += c.tokens.len();
            wall += c.prompt_s + c.decode_s;
            decoded += c.tokens.len().saturating_sub(1);
            decode_s += c.decode_s;
        }
        GenerationCost {
            tokens,
            wall_s: wall,
            decode_tok_s: if decode_s > 0.0 { decoded as f64 / decode_s } else { f64::NAN },
        }
    }
}

/// The teacher generating alone and with the student drafting for it (speculative decoding,
/// greedy), on the same prompts: filled in by the caller, which runs the generation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DraftSpeedup {
    /// Tokens the student drafts per step.
    pub draft_max: usize,
    /// Fraction of the drafted tokens the teacher kept.
    pub acceptance: f64,
    /// The teacher's tokens per second alone.
    pub teacher_tok_s: f64,
    /// The teacher's tokens per second with the student drafting.
    pub speculative_tok_s: f64,
    /// `speculative_tok_s / teacher_tok_s`.
    pub speedup: f64,
}

/// Everything the sequence-level comparison reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sequences {
    /// Prompts run.
    pub prompts: usize,
    /// Most tokens written per prompt.
    pub n_predict: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// The first prompt's seed (prompt `i` uses `seed + i`).
    pub seed: u64,
    /// The teacher's grade of the student: its mean log-probability per token of the
    /// student's text.
    pub teacher_on_student: MeanSe,
    /// The teacher's mean log-probability per token of its own text.
    pub teacher_on_teacher: MeanSe,
    /// `teacher_on_student − teacher_on_teacher`, prompt by prompt: below 0, the teacher
    /// finds the student's text less likely than its own.
    pub grade_gap: MeanSe,
    /// The student's mean log-probability per token of its own text.
    pub student_on_student: MeanSe,
    /// The student's grade of the teacher's text.
    pub student_on_teacher: MeanSe,
    /// KL(teacher ‖ student) along the student's text (on-policy).
    pub kl_on_student: MeanSe,
    /// KL(teacher ‖ student) along the teacher's text (teacher-forced).
    pub kl_on_teacher: MeanSe,
    /// `kl_on_student − kl_on_teacher`, prompt by prompt: the error the student's own
    /// choices add.
    pub kl_gap: MeanSe,
    /// Top-1 agreement of the two models along the student's text.
    pub agreement_on_student: MeanSe,
    /// Top-1 agreement of the two models along the teacher's text.
    pub agreement_on_teacher: MeanSe,
    /// Where the continuations part.
    pub parting: Parting,
    /// The teacher's generation.
    pub teacher_cost: GenerationCost,
    /// The student's generation.
    pub student_cost: GenerationCost,
    /// Student / teacher decode tokens per second.
    pub speed_ratio: f64,
    /// The speculative speed-up of the teacher with the student drafting, where measured.
    pub draft: Option<DraftSpeedup>,
    /// Per prompt.
    pub per_prompt: Vec<PromptResult>,
}

impl Sequences {
    /// Summarises `per_prompt`.
    pub fn new(per_prompt: Vec<PromptResult>, opts: &SequenceOptions) -> Sequences {
        let m = |f: &dyn Fn(&PromptResult) -> f64| MeanSe::of(per_prompt.iter().map(f));
        let parts: Vec<Option<usize>> = per_prompt.iter().map(|p| p.part_at).collect();
        let (teacher_cost, student_cost) = (
            GenerationCost::of(per_prompt.iter().map(|p| &p.teacher)),
            GenerationCost::of(per_prompt.iter().map(|p| &p.student)),
        );
        Sequences {
            prompts: per_prompt.len(),
            n_predict: opts.n_predict,
            temperature: opts.sampler.temperature.max(0.0),
            seed: opts.sampler.seed,
            teacher_on_student: m(&|p| p.on_student.teacher_logp),
            teacher_on_teacher: m(&|p| p.on_teacher.teacher_logp),
            grade_gap: m(&|p| p.on_student.teacher_logp - p.on_teacher.teacher_logp),
            student_on_student: m(&|p| p.on_student.student_logp),
            student_on_teacher: m(&|p| p.on_teacher.student_logp),
            kl_on_student: m(&|p| p.on_student.kl),
            kl_on_teacher: m(&|p| p.on_teacher.kl),
            kl_gap: m(&|p| p.on_student.kl - p.on_teacher.kl),
            agreement_on_student: m(&|p| p.on_student.top1_agreement),
            agreement_on_teacher: m(&|p| p.on_teacher.top1_agreement),
            parting: Parting::new(&parts, opts.n_predict),
            speed_ratio: student_cost.decode_tok_s / teacher_cost.decode_tok_s,
            teacher_cost,
            student_cost,
            draft: None,
            per_prompt,
        }
    }

    /// The sequence-level clause of the verdict.
    pub fn verdict(&self) -> String {
        format!(
            "the teacher rates the student's own writing {:+.3} nats/token against its own, on-policy KL {:.3} vs {:.3} teacher-forced",
            self.grade_gap.mean, self.kl_on_student.mean, self.kl_on_teacher.mean
        )
    }
}

/// What [`compare_generated`] is doing, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SequenceProgress {
    /// Starting: this many prompts.
    Prompts(usize),
    /// One more prompt is done (both written and both scored).
    Done,
}

/// For each of `prompts`, the student and the teacher (on `opts.teacher_backend`) each write
/// a continuation, and both score both, teacher-forced. The prompts are tokenised once with
/// the teacher's vocabulary (which must be the student's) and, for conversations, the
/// teacher's chat template (ChatML where the file has none, as llama-server does).
pub fn compare_generated(
    teacher: &Path,
    student: &Path,
    prompts: &[Prompt],
    opts: &CompareOptions,
    seq: &SequenceOptions,
    mut progress: impl FnMut(SequenceProgress),
) -> Result<Sequences, EvalError> {
    super::check_backend(opts.teacher_backend)?;
    if seq.n_predict < 1 {
        return Err(EvalError::BadOption { what: "the tokens to write (-n)", min: 1, found: seq.n_predict });
    }
    if seq.n_batch < 1 {
        return Err(EvalError::BadOption { what: "the batch (--batch)", min: 1, found: seq.n_batch });
    }
    if prompts.is_empty() {
        return Err(EvalError::NoPrompts);
    }
    let pair = Pair::load(teacher, student, opts.teacher_backend, &opts.load)?;
    let tok = &pair.tok;
    let template =
        if prompts.iter().any(|p| matches!(p, Prompt::Chat(_))) { Some(chat_template(&pair)?) } else { None };
    let tokens = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| prompts::tokens(p, i, tok, template.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let n_ctx_train = pair.n_ctx_train();
    let n_ctx = tokens.iter().map(|p| p.len() + seq.n_predict).max().unwrap_or(0);
    if let Some((i, p)) = tokens.iter().enumerate().find(|(_, p)| p.len() + seq.n_predict > n_ctx_train) {
        return Err(EvalError::PromptTooLong { index: i + 1, tokens: p.len(), n_predict: seq.n_predict, n_ctx_train });
    }
    let ropts = RunnerOptions {
        kv_type: seq.kv_type,
        attention: Attention::Exact,
        threads: opts.threads,
        ..RunnerOptions::new(n_ctx, seq.n_batch.min(n_ctx))
    };
    let mut rt = pair.teacher.runner(&ropts)?;
    let mut rs = PupilRunner::new(&pair.student, &ropts)?;
    let mut scratch = Scratch::new(ropts.n_batch, rt.n_vocab());
    progress(SequenceProgress::Prompts(prompts.len()));
    let mut results = Vec::with_capacity(prompts.len());
    for (i, (prompt, ptoks)) in prompts.iter().zip(&tokens).enumerate() {
        let cfg = SamplerConfig { seed: seq.sampler.seed.wrapping_add(i as u64), ..seq.sampler.clone() };
        let student_text = write(&mut rs, ptoks, seq.n_predict, &cfg, tok, &mut scratch)?;
        let teacher_text = write(&mut *rt, ptoks, seq.n_predict, &cfg, tok, &mut scratch)?;
        let on_student = score_along(&mut *rt, &mut rs, ptoks, &student_text.tokens, &mut scratch)?;
        let on_teacher = score_along(&mut *rt, &mut rs, ptoks, &teacher_text.tokens, &mut scratch)?;
        let part_at = part_at(&student_text.tokens, &teacher_text.tokens);
        results.push(PromptResult {
            prompt: prompt.label(60),
            prompt_tokens: ptoks.len(),
            prompt_ids: ptoks.clone(),
            student: student_text,
            teacher: teacher_text,
            part_at,
            on_student,
            on_teacher,
        });
        progress(SequenceProgress::Done);
    }
    Ok(Sequences::new(results, seq))
}

/// The teacher file's chat template, or ChatML where it has none.
fn chat_template(pair: &Pair) -> Result<ChatTemplate, EvalError> {
    let (name, src) = match &pair.template {
        Some(src) => ("tokenizer.chat_template", src.as_str()),
        None => {
            tracing::info!("the teacher has no chat template: conversations are rendered with ChatML");
            ("ChatML", crate::chat::CHATML)
        }
    };
    crate::chat::template_for(name, src, &pair.tok).map_err(|e| EvalError::ChatTemplate(e.to_string()))
}

/// The index of the first token where `a` and `b` differ (one ending before the other counts),
/// or `None` if they are the same.
pub fn part_at(a: &[u32], b: &[u32]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() == b.len() => None,
        None => Some(a.len().min(b.len())),
    }
}

/// Buffers sized once: one batch of logits per model.
struct Scratch {
    teacher: Vec<f32>,
    student: Vec<f32>,
    n_vocab: usize,
}

impl Scratch {
    fn new(n_batch: usize, n_vocab: usize) -> Scratch {
        Scratch { teacher: vec![0.0; n_batch * n_vocab], student: vec![0.0; n_batch * n_vocab], n_vocab }
    }
}

/// `r` writes up to `n` tokens after `prompt`, chosen by a sampler with `cfg` (which has seen
/// the prompt), ending early at an end-of-generation token of `tok`'s vocabulary.
fn write(
    r: &mut dyn Runner,
    prompt: &[u32],
    n: usize,
    cfg: &SamplerConfig,
    tok: &Tokenizer,
    scratch: &mut Scratch,
) -> Result<Continuation, EvalError> {
    let (n_batch, n_vocab) = (r.n_batch(), scratch.n_vocab);
    let logits = &mut scratch.teacher[..n_vocab];
    r.clear();
    let t0 = Instant::now();
    for start in (0..prompt.len()).step_by(n_batch) {
        let end = (start + n_batch).min(prompt.len());
        if end == prompt.len() {
            r.forward(&prompt[start..end], start, end - start - 1..end - start, logits)?;
        } else {
            r.forward(&prompt[start..end], start, 0..0, &mut [])?;
        }
    }
    let prompt_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut sampler = Sampler::new(cfg.clone(), n_vocab);
    prompt.iter().for_each(|&t| sampler.accept(t));
    let mut tokens = Vec::with_capacity(n);
    let ended = loop {
        let next = sampler.sample(logits);
        sampler.accept(next);
        tokens.push(next);
        if tok.is_eog(next) {
            break true;
        }
        if tokens.len() == n {
            break false;
        }
        r.forward(&[next], prompt.len() + tokens.len() - 1, 0..1, logits)?;
    };
    let decode_s = t1.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&tok.detokenize(&tokens, false, false)).into_owned();
    Ok(Continuation { tokens, text, ended, prompt_s, decode_s })
}

/// Both models read `prompt` then `cont` teacher-forced, in batches; every position that
/// predicts a token of `cont` is scored.
fn score_along(
    teacher: &mut dyn Runner,
    student: &mut dyn Runner,
    prompt: &[u32],
    cont: &[u32],
    scratch: &mut Scratch,
) -> Result<Along, EvalError> {
    let seq: Vec<u32> = prompt.iter().chain(cont).copied().collect();
    let (n_batch, n_vocab) = (teacher.n_batch(), scratch.n_vocab);
    // Position p predicts seq[p + 1]; the last token predicts nothing scored.
    let (first, last) = (prompt.len() - 1, seq.len() - 1);
    teacher.clear();
    student.clear();
    let (mut sum_t, mut sum_s, mut sum_kl, mut same) = (0.0, 0.0, 0.0, 0usize);
    for start in (0..last).step_by(n_batch) {
        let end = (start + n_batch).min(last);
        // A batch wholly inside the prompt scores nothing.
        let wanted = first.clamp(start, end) - start..end - start;
        let (lt, ls) = (&mut scratch.teacher[..wanted.len() * n_vocab], &mut scratch.student[..wanted.len() * n_vocab]);
        teacher.forward(&seq[start..end], start, wanted.clone(), lt)?;
        student.forward(&seq[start..end], start, wanted.clone(), ls)?;
        let next = &seq[start + wanted.start + 1..start + wanted.end + 1];
        let rows: Vec<_> = lt
            .par_chunks_exact(n_vocab)
            .zip(ls.par_chunks_exact(n_vocab))
            .zip(next.par_iter())
            .map(|((t, s), &next)| compare_row(t, s, next))
            .collect();
        for p in rows {
            sum_t += p.logp_teacher;
            sum_s += p.logp_student;
            sum_kl += p.kl;
            same += usize::from(p.same_top1);
        }
    }
    let n = cont.len() as f64;
    Ok(Along {
        tokens: cont.len(),
        teacher_logp: sum_t / n,
        student_logp: sum_s / n,
        kl: sum_kl / n,
        top1_agreement: same as f64 / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parting() {
        assert_eq!(part_at(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(part_at(&[1, 2, 3], &[1, 5, 3]), Some(1));
        assert_eq!(part_at(&[1, 2], &[1, 2, 3]), Some(2));
        let p = Parting::new(&[Some(0), Some(3), None, Some(15)], 16);
        assert_eq!(p.never, 0.25);
        assert_eq!(p.median, Some(9.0));
        assert_eq!(p.histogram.len(), 9);
        assert_eq!(p.histogram[0], (0, 2, 1));
        assert_eq!(p.histogram[1], (2, 4, 1));
        assert_eq!(p.histogram[7], (14, 16, 1));
        assert_eq!(p.histogram[8], (16, 16, 1));
        assert_eq!(Parting::new(&[None, None, Some(1)], 4).median, None);
    }

    #[test]
    fn mean_and_standard_error() {
        let m = MeanSe::of([1.0, 3.0]);
        assert_eq!(m.mean, 2.0);
        assert!((m.se - 1.0).abs() < 1e-12);
        assert_eq!(MeanSe::of([4.0]).se, 0.0);
    }
}
