//! Speculative decoding: a small draft model proposes a few tokens, the target model checks
//! them all in one batch, and every token the target agrees with costs no pass of its own.
//!
//! Each step the draft proposes up to `draft_max` tokens one at a time; the target runs
//! `[last token, drafts...]` as one batch with every logit wanted and accepts the longest
//! prefix it agrees with, then adds a token of its own (the correction at the first
//! disagreement, or a bonus token after the last draft). Rejected positions are dropped from
//! both KV caches ([`Context::truncate`](crate::model::Context::truncate) for the target; the
//! draft's prefix reuse does it on its next catch-up).
//!
//! - Greedy (`temperature <= 0`): a draft is accepted when it is the token the target's
//!   sampler picks, so the text is token for token the target's own greedy text (penalties
//!   included).
//! - Sampling: the standard rejection scheme (Leviathan et al. 2023, Chen et al. 2023):
//!   draft token `x ~ q` is kept with probability `min(1, p(x)/q(x))`, else a token is drawn
//!   from `norm(max(0, p − q))` ([`verify_draft`]). The output has the target's distribution
//!   (after top-k, top-p, min-p and temperature), though not the same tokens as a plain run
//!   with the same seed. Penalties are not supported with sampling.
//!
//! ```no_run
//! use pupil::generate::{Engine, GenerateParams, SessionOptions, SpeculativeSession};
//! use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Arc::new(Engine::load("teacher-q8_0.gguf")?);
//! let draft = Arc::new(Engine::load("student-q4_k_m.gguf")?);
//! let mut spec = SpeculativeSession::new(target.session(SessionOptions::default()), draft.session(SessionOptions::default()), 8)?;
//! let prompt = target.tokenizer().encode("The capital of France is", true, false);
//! let done = spec.generate(&prompt, &GenerateParams::greedy(32), |piece| {
//!     print!("{piece}");
//!     true
//! })?;
//! eprintln!("\naccepted {:.0}% of drafts", 100.0 * done.stats.acceptance_rate());
//! # Ok(()) }
//! ```

use std::sync::Arc;

use super::{Completion, GenerateError, GenerateParams, Session, StopReason, Streamed};
use crate::tokenizer::{VocabMismatch, check_vocab};
use crate::model::Logits;
use crate::request::Request;
use crate::sample::{Rng, Sampler, SamplerConfig, argmax};

/// Why speculative decoding could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeculativeError {
    /// Running either model failed, or the prompt does not fit.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The draft's vocabulary is not the target's.
    #[error(transparent)]
    Vocab(#[from] VocabMismatch),
    /// `draft_max` is 0.
    #[error("the draft length must be at least 1")]
    NoDrafts,
    /// Penalties change the target's distribution with every accepted token, which the
    /// rejection scheme does not follow.
    #[error("repetition, presence and frequency penalties work with a draft model only with greedy decoding")]
    PenaltiesWithSampling,
}

/// Counts of one speculative generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeculativeStats {
    /// Tokens the draft proposed.
    pub drafted: usize,
    /// Of those, tokens the target accepted.
    pub accepted: usize,
    /// Target forward passes after the prompt (one per step).
    pub target_passes: usize,
    /// Draft forward passes after the prompt.
    pub draft_passes: usize,
}

impl SpeculativeStats {
    /// `accepted / drafted` (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 { 0.0 } else { self.accepted as f64 / self.drafted as f64 }
    }
}

/// The result of [`SpeculativeSession::generate`].
#[derive(Clone, Debug)]
pub struct SpeculativeCompletion {
    /// Text, tokens, stop reason and timings, as a plain generation reports them.
    pub completion: Completion,
    /// Drafting counts.
    pub stats: SpeculativeStats,
}

/// What the target does with a draft token in the sampling scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Accept,
    /// Drop it and every later draft; this token (from the residual) takes its place.
    Resample(u32),
}

/// The rejection step of speculative sampling for draft `token`, drawn from `q`, checked
/// against the target's `p` (both `[n_vocab]` probabilities): accept if `u < p/q`, else
/// draw from `norm(max(0, p − q))` with `u2`. `u`, `u2` are uniform in `[0, 1)`.
pub fn verify_draft(p: &[f32], q: &[f32], token: u32, u: f32, u2: f32) -> Verdict {
    let i = token as usize;
    let (pt, qt) = (p.get(i).copied().unwrap_or(0.0), q.get(i).copied().unwrap_or(0.0));
    if qt > 0.0 && u * qt < pt {
        return Verdict::Accept;
    }
    let residual = |(a, b): (&f32, &f32)| (a - b).max(0.0) as f64;
    let total: f64 = p.iter().zip(q).map(residual).sum();
    if total <= 0.0 {
        // p ≤ q everywhere means p == q: nothing is ever rejected in exact arithmetic.
        return Verdict::Resample(draw(p, u2));
    }
    let target = u2 as f64 * total;
    let mut cum = 0.0;
    let mut last = 0;
    for (k, pair) in p.iter().zip(q).enumerate() {
        let r = residual(pair);
        if r > 0.0 {
            cum += r;
            last = k;
            if target < cum {
                return Verdict::Resample(k as u32);
            }
        }
    }
    Verdict::Resample(last as u32)
}

/// A token drawn from probabilities `p` with uniform `u`.
fn draw(p: &[f32], u: f32) -> u32 {
    let mut cum = 0.0f64;
    let mut last = 0;
    for (k, &pk) in p.iter().enumerate() {
        if pk > 0.0 {
            cum += pk as f64;
            last = k;
            if (u as f64) < cum {
                return k as u32;
            }
        }
    }
    last as u32
}

/// A target session with a draft session beside it, over the same vocabulary.
#[derive(Debug)]
pub struct SpeculativeSession {
    target: Session,
    draft: Session,
    draft_max: usize,
    n_vocab: usize,
    logits: Vec<f32>, // [draft_max + 1, n_vocab] the target's verification logits
    drafts: Vec<u32>, // [draft_max]
    q: Vec<f32>,      // [draft_max, n_vocab] draft distributions (sampling)
    p: Vec<f32>,      // [n_vocab] a target distribution (sampling)
    /// The sampler chain as a dense distribution, `[n_vocab]` buffers inside.
    dist: Sampler,
    /// Prompt and generated tokens; the target cache holds all but the last.
    seq: Vec<u32>,
}

impl SpeculativeSession {
    /// Pairs `target` with `draft`, which proposes up to `draft_max` tokens per step (capped
    /// by the target's batch size). Fails if the vocabularies differ.
    pub fn new(target: Session, draft: Session, draft_max: usize) -> Result<Self, SpeculativeError> {
        if draft_max == 0 {
            return Err(SpeculativeError::NoDrafts);
        }
        let (te, de) = (Arc::clone(target.engine()), Arc::clone(draft.engine()));
        check_vocab(
            (te.tokenizer(), te.model().config().n_vocab),
            (de.tokenizer(), de.model().config().n_vocab),
            ("target", "draft"),
        )?;
        // The target computes each token of a verification batch (the last token and the
        // drafts) bit for bit as it would alone, at any batch size (the kernels are batch
        // invariant): greedy output is exactly the target's own.
        let draft_max = draft_max.min(target.ctx.max_batch().saturating_sub(1)).max(1);
        let n_vocab = te.model().config().n_vocab;
        Ok(SpeculativeSession {
            target,
            draft,
            draft_max,
            n_vocab,
            logits: vec![0.0; (draft_max + 1) * n_vocab],
            drafts: Vec::with_capacity(draft_max),
            q: Vec::new(),
            p: Vec::new(),
            dist: Sampler::new(SamplerConfig::default(), n_vocab),
            seq: Vec::new(),
        })
    }

    /// The target session.
    pub fn target(&self) -> &Session {
        &self.target
    }

    /// The draft session.
    pub fn draft(&self) -> &Session {
        &self.draft
    }

    /// Most tokens drafted per step.
    pub fn draft_max(&self) -> usize {
        self.draft_max
    }

    /// Continue from `prompt` as [`Session::generate`] does (prefix reuse, stop strings,
    /// end of generation, token and context limits), drafting with the draft model.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<SpeculativeCompletion, SpeculativeError> {
        let cfg = &params.sampler;
        cfg.validate().map_err(GenerateError::from)?;
        let greedy = cfg.temperature <= 0.0;
        let penalties = cfg.penalty_last_n > 0
            && (cfg.repeat_penalty != 1.0 || cfg.presence_penalty != 0.0 || cfg.frequency_penalty != 0.0);
        if !greedy && penalties {
            return Err(SpeculativeError::PenaltiesWithSampling);
        }
        if !greedy && self.q.is_empty() {
            // Sized once, on the first sampled generation.
            self.q = vec![0.0; self.draft_max * self.n_vocab];
            self.p = vec![0.0; self.n_vocab];
        }
        let engine = Arc::clone(self.target.engine());
        let tok = engine.tokenizer();
        let mut out = Streamed::new(Request::new(tok, params), on_text);
        let prompt_tokens = self.target.set_tokens(prompt)?;
        self.draft.set_tokens(prompt)?;
        out.req.prompt_done(prompt_tokens);

        let mut sampler = Sampler::new(cfg.clone(), self.n_vocab);
        prompt.iter().for_each(|&t| sampler.accept(t));
        let mut rng = Rng::new(cfg.seed);
        self.dist = Sampler::new(cfg.clone(), self.n_vocab);
        let mut stats = SpeculativeStats::default();

        let reason = 'run: {
            if let Some(r) = out.req.limit_reached() {
                break 'run r;
            }
            let first = if greedy {
                sampler.sample(self.target.logits())
            } else {
                self.dist.distribution(self.target.logits(), &mut self.p);
                draw(&self.p, rng.next_f32())
            };
            sampler.accept(first);
            if let Some(r) = out.push(first) {
                break 'run r;
            }
            self.seq.clear();
            self.seq.extend_from_slice(prompt);
            self.seq.push(first);
            loop {
                let n = self.seq.len();
                if n > self.target.n_ctx() {
                    break 'run StopReason::ContextFull;
                }
                let remaining = params.max_tokens.map_or(usize::MAX, |m| m - out.req.tokens().len());
                let mut k = self.draft_max.min(remaining - 1).min(self.target.n_ctx() - n);
                if n > self.draft.n_ctx() {
                    k = 0;
                } else {
                    k = k.min(self.draft.n_ctx() + 1 - n);
                }
                self.propose(k, greedy, &mut rng, &mut stats)?;
                let (m, next) = self.verify(greedy, &mut sampler, &mut rng)?;
                stats.drafted += k;
                stats.accepted += m;
                stats.target_passes += 1;
                for i in 0..=m {
                    let t = if i < m { self.drafts[i] } else { next };
                    self.seq.push(t);
                    if let Some(r) = out.push(t) {
                        break 'run r;
                    }
                }
            }
        };
        Ok(SpeculativeCompletion { completion: out.finish(reason), stats })
    }

    /// The draft catches up with `seq` and proposes `k` tokens into `drafts` (and their
    /// distributions into `q` when sampling).
    fn propose(
        &mut self,
        k: usize,
        greedy: bool,
        rng: &mut Rng,
        stats: &mut SpeculativeStats,
    ) -> Result<(), GenerateError> {
        self.drafts.clear();
        if k == 0 {
            return Ok(());
        }
        self.draft.set_tokens(&self.seq)?;
        stats.draft_passes += 1;
        for j in 0..k {
            let d = if greedy {
                argmax(self.draft.logits())
            } else {
                let q = &mut self.q[j * self.n_vocab..][..self.n_vocab];
                self.dist.distribution(self.draft.logits(), q);
                draw(q, rng.next_f32())
            };
            self.drafts.push(d);
            // The last draft is evaluated at the next catch-up, if it is accepted.
            if j + 1 < k {
                self.draft.eval(&[d])?;
                stats.draft_passes += 1;
            }
        }
        Ok(())
    }

    /// The target runs `[last, drafts...]` in one batch and keeps the longest agreeing
    /// prefix; returns how many drafts it accepted and its own next token, with its cache
    /// holding everything before that token.
    fn verify(
        &mut self,
        greedy: bool,
        sampler: &mut Sampler,
        rng: &mut Rng,
    ) -> Result<(usize, u32), GenerateError> {
        let (n, k, v) = (self.seq.len(), self.drafts.len(), self.n_vocab);
        let last = self.seq[n - 1];
        let t = &mut self.target;
        t.ctx.push(t.slot, &[last], Logits::All)?;
        t.ctx.push(t.slot, &self.drafts, Logits::All)?;
        t.ctx.forward_into(&mut self.logits[..(k + 1) * v])?;
        let mut m = 0;
        let next = loop {
            let row = &self.logits[m * v..][..v];
            if greedy {
                let x = sampler.sample(row);
                sampler.accept(x);
                if m < k && x == self.drafts[m] {
                    m += 1;
                    continue;
                }
                break x;
            }
            self.dist.distribution(row, &mut self.p);
            if m == k {
                break draw(&self.p, rng.next_f32());
            }
            let q = &self.q[m * v..][..v];
            match verify_draft(&self.p, q, self.drafts[m], rng.next_f32(), rng.next_f32()) {
                Verdict::Accept => m += 1,
                Verdict::Resample(x) => break x,
            }
        };
        // Keep `last` and the accepted drafts; forget the rest.
        t.ctx.truncate(t.slot, n + m).map_err(GenerateError::from)?;
        t.tokens.push(last);
        t.tokens.extend_from_slice(&self.drafts[..m]);
        t.logits.copy_from_slice(&self.logits[m * v..][..v]);
        Ok((m, next))
    }
}
