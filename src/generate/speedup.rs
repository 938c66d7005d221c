//! What a draft model buys the target: the target writes the same prompts alone and with the
//! draft proposing (greedy, so both write the same text), prompt by prompt in turn, and the
//! two generation speeds are compared.

use std::sync::Arc;

use super::{Engine, GenerateParams, SessionOptions, SpeculativeError, SpeculativeSession};

/// The target alone against the target with a draft, on the same prompts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Speedup {
    /// Tokens the draft proposed per step, at most.
    pub draft_max: usize,
    /// Fraction of the drafted tokens the target kept.
    pub acceptance: f64,
    /// The target's generated tokens per second alone (each prompt's first token, which
    /// comes from the prompt's pass, not counted).
    pub plain_tok_s: f64,
    /// The same with the draft proposing.
    pub speculative_tok_s: f64,
}

impl Speedup {
    /// `speculative_tok_s / plain_tok_s`.
    pub fn ratio(&self) -> f64 {
        self.speculative_tok_s / self.plain_tok_s
    }
}

/// Runs each of `prompts` through `target` alone, then with `draft` proposing up to
/// `draft_max` tokens per step, `n` tokens greedily each, and sums the generation times.
pub fn measure(
    target: &Arc<Engine>,
    draft: &Arc<Engine>,
    prompts: &[Vec<u32>],
    n: usize,
    draft_max: usize,
    opts: &SessionOptions,
) -> Result<Speedup, SpeculativeError> {
    let mut plain = target.session(opts.clone());
    let mut spec = SpeculativeSession::new(target.session(opts.clone()), draft.session(opts.clone()), draft_max)?;
    let params = GenerateParams::greedy(n);
    let (mut plain_tok, mut plain_s, mut spec_tok, mut spec_s) = (0, 0.0, 0, 0.0);
    let (mut drafted, mut accepted) = (0, 0);
    for p in prompts {
        let c = plain.generate(p, &params, |_| true)?;
        plain_tok += c.timings.gen_tokens.saturating_sub(1);
        plain_s += c.timings.gen_secs;
        let c = spec.generate(p, &params, |_| true)?;
        spec_tok += c.completion.timings.gen_tokens.saturating_sub(1);
        spec_s += c.completion.timings.gen_secs;
        drafted += c.stats.drafted;
        accepted += c.stats.accepted;
    }
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { f64::NAN };
    Ok(Speedup {
        draft_max: spec.draft_max(),
        acceptance: if drafted == 0 { 0.0 } else { accepted as f64 / drafted as f64 },
        plain_tok_s: rate(plain_tok, plain_s),
        speculative_tok_s: rate(spec_tok, spec_s),
    })
}
