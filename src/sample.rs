//! Choosing the next token from logits: greedy, or temperature sampling after top-k, top-p
//! and min-p truncation, with repetition, presence and frequency penalties.
//!
//! The chain runs in llama.cpp's default order — penalties, top-k, top-p, min-p, temperature,
//! then a seeded draw — so the same settings mean the same thing in both. The sampler owns its
//! buffers: after construction, sampling allocates nothing.
//!
//! ```
//! use pupil::sample::{Sampler, SamplerConfig};
//! let mut greedy = Sampler::new(SamplerConfig::greedy(), 4);
//! assert_eq!(greedy.sample(&[0.1, 2.0, -1.0, 1.9]), 1);
//! let mut s = Sampler::new(SamplerConfig { seed: 7, ..SamplerConfig::default() }, 4);
//! let t = s.sample(&[0.1, 2.0, -1.0, 1.9]);
//! assert!(t == 1 || t == 3); // min-p 0.05 and top-p 0.95 leave the two likely tokens
//! ```
//!
//! Settings come from users, so [`SamplerConfig::validate`] checks them and names the
//! setting and value at fault; [`Session::generate`](crate::generate::Session::generate)
//! calls it before generating.
//!
//! ```
//! use pupil::sample::{SamplerConfig, SamplerError, SamplerParam};
//! let err = SamplerConfig { top_p: 7.0, ..SamplerConfig::default() }.validate().unwrap_err();
//! assert!(matches!(err, SamplerError::OutOfRange { param: SamplerParam::TopP, value: 7.0, .. }));
//! assert_eq!(err.to_string(), "top_p is 7, expected a number from 0 to 1");
//! ```

use pupil_kernels::ops::max_of;

/// Sampling settings. `Default` follows llama.cpp's defaults; [`validate`](Self::validate)
/// says whether each is in range.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature, `0` or more; `0` means greedy.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0`: no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability adds up to `top_p`, 0 to 1 (`1`: off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one, 0 to 1 (`0`: off).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this, above 0
    /// (`1`: off).
    pub repeat_penalty: f32,
    /// Subtract this from the logit of every recently seen token (`0`: off; negative
    /// favours them).
    pub presence_penalty: f32,
    /// Subtract this times the token's recent count from its logit (`0`: off; negative
    /// favours them).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at, at most [`MAX_PENALTY_LAST_N`].
    pub penalty_last_n: usize,
    /// Seed of the random draw: the same seed and logits give the same tokens.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0x5eed,
        }
    }
}

/// The longest penalty window [`SamplerConfig::validate`] accepts: far beyond any context,
/// and small enough that the window's buffer, allocated up front, is no surprise.
pub const MAX_PENALTY_LAST_N: usize = 1 << 20;

/// A [`SamplerConfig`] field, as named in [`SamplerError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamplerParam {
    /// [`SamplerConfig::temperature`].
    Temperature,
    /// [`SamplerConfig::top_p`].
    TopP,
    /// [`SamplerConfig::min_p`].
    MinP,
    /// [`SamplerConfig::repeat_penalty`].
    RepeatPenalty,
    /// [`SamplerConfig::presence_penalty`].
    PresencePenalty,
    /// [`SamplerConfig::frequency_penalty`].
    FrequencyPenalty,
    /// [`SamplerConfig::penalty_last_n`].
    PenaltyLastN,
}

impl SamplerParam {
    /// The field's name in [`SamplerConfig`].
    pub fn name(self) -> &'static str {
        match self {
            SamplerParam::Temperature => "temperature",
            SamplerParam::TopP => "top_p",
            SamplerParam::MinP => "min_p",
            SamplerParam::RepeatPenalty => "repeat_penalty",
            SamplerParam::PresencePenalty => "presence_penalty",
            SamplerParam::FrequencyPenalty => "frequency_penalty",
            SamplerParam::PenaltyLastN => "penalty_last_n",
        }
    }
}

impl std::fmt::Display for SamplerParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A sampling setting out of its range: which one, the value given and what is allowed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// A real-valued setting that is NaN, infinite or outside its range.
    #[error("{param} is {value}, expected {expected}")]
    OutOfRange {
        /// The setting.
        param: SamplerParam,
        /// The value given.
        value: f32,
        /// The range allowed, in words (`a number from 0 to 1`).
        expected: &'static str,
    },
    /// A penalty window longer than [`MAX_PENALTY_LAST_N`].
    #[error("{param} is {value}, more than the limit of {limit}")]
    TooLarge {
        /// The setting.
        param: SamplerParam,
        /// The value given.
        value: usize,
        /// The largest value allowed.
        limit: usize,
    },
}

impl SamplerError {
    /// The setting at fault.
    pub fn param(&self) -> SamplerParam {
        match self {
            SamplerError::OutOfRange { param, .. } | SamplerError::TooLarge { param, .. } => *param,
        }
    }
}

impl SamplerConfig {
    /// Always the most likely token (after penalties).
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Checks every setting is in range, NaN and infinities excluded: temperature 0 or more,
    /// top-p and min-p from 0 to 1, repeat penalty above 0, presence and frequency penalties
    /// finite, a penalty window of at most [`MAX_PENALTY_LAST_N`]. `top_k` and `seed` take
    /// any value.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let check = |param, value: f32, ok: bool, expected| {
            if ok { Ok(()) } else { Err(SamplerError::OutOfRange { param, value, expected }) }
        };
        let t = self.temperature;
        check(SamplerParam::Temperature, t, t.is_finite() && t >= 0.0, "a number of 0 or more (0 is greedy)")?;
        check(SamplerParam::TopP, self.top_p, (0.0..=1.0).contains(&self.top_p), "a number from 0 to 1")?;
        check(SamplerParam::MinP, self.min_p, (0.0..=1.0).contains(&self.min_p), "a number from 0 to 1")?;
        let r = self.repeat_penalty;
        check(SamplerParam::RepeatPenalty, r, r.is_finite() && r > 0.0, "a number above 0 (1 is off)")?;
        let (p, f) = (self.presence_penalty, self.frequency_penalty);
        check(SamplerParam::PresencePenalty, p, p.is_finite(), "a finite number (0 is off)")?;
        check(SamplerParam::FrequencyPenalty, f, f.is_finite(), "a finite number (0 is off)")?;
        if self.penalty_last_n > MAX_PENALTY_LAST_N {
            return Err(SamplerError::TooLarge {
                param: SamplerParam::PenaltyLastN,
                value: self.penalty_last_n,
                limit: MAX_PENALTY_LAST_N,
            });
        }
        Ok(())
    }

    fn penalties_on(&self) -> bool {
        self.penalty_last_n > 0
            && (self.repeat_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0)
    }
}

/// A token sampler for one sequence: settings, random state and the recent-token window.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// Candidates `(token, logit)`, `[n_vocab]` capacity.
    candidates: Vec<(u32, f32)>,
    /// Probabilities of `candidates`, same order, `[n_vocab]` capacity.
    probs: Vec<f32>,
    /// The last `penalty_last_n` accepted tokens, oldest first (a ring).
    recent: Vec<u32>,
    recent_head: usize,
    /// `(token, count)` over `recent`, rebuilt per call; `[penalty_last_n]` capacity.
    counts: Vec<(u32, u32)>,
}

impl Sampler {
    /// A sampler for a vocabulary of `n_vocab` tokens. `cfg` should pass
    /// [`SamplerConfig::validate`]: out-of-range settings give unspecified (never unsafe)
    /// choices, and a huge `penalty_last_n` a huge allocation.
    pub fn new(cfg: SamplerConfig, n_vocab: usize) -> Self {
        Self {
            rng: Rng::new(cfg.seed),
            candidates: Vec::with_capacity(n_vocab),
            probs: Vec::with_capacity(n_vocab),
            recent: Vec::with_capacity(cfg.penalty_last_n),
            recent_head: 0,
            counts: Vec::with_capacity(cfg.penalty_last_n),
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Forget the recent tokens and restart the random sequence from the seed.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.recent_head = 0;
        self.rng = Rng::new(self.cfg.seed);
    }

    /// Record a token as part of the text (prompt or generated), for the penalties.
    pub fn accept(&mut self, token: u32) {
        let n = self.cfg.penalty_last_n;
        if n == 0 {
            return;
        }
        if self.recent.len() < n {
            self.recent.push(token);
        } else {
            self.recent[self.recent_head] = token;
            self.recent_head = (self.recent_head + 1) % n;
        }
    }

    /// Choose the next token from `logits` (`[n_vocab]`). Does not [`accept`](Self::accept) it.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        self.sample_without(logits, &[])
    }

    /// [`sample`](Self::sample) as if the logits of the `banned` tokens were -inf (a request
    /// with `ignore_eos` bans the end-of-generation tokens), without copying `logits`.
    pub fn sample_without(&mut self, logits: &[f32], banned: &[u32]) -> u32 {
        if self.cfg.temperature <= 0.0 && !self.cfg.penalties_on() {
            // Greedy: straight from the logits, no candidate list to build.
            return argmax_without(logits, banned);
        }
        self.candidates.clear();
        self.candidates.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        for &t in banned {
            if let Some(c) = self.candidates.get_mut(t as usize) {
                c.1 = f32::NEG_INFINITY;
            }
        }
        if self.cfg.penalties_on() {
            self.apply_penalties();
        }
        if self.cfg.temperature <= 0.0 {
            return self.argmax();
        }
        self.top_k();
        // Truncation judges probabilities at temperature 1; the draw uses the temperature.
        self.softmax(1.0);
        let keep = self.min_p(self.top_p()).max(1);
        self.candidates.truncate(keep);
        self.softmax(self.cfg.temperature);
        self.draw()
    }

    /// The distribution [`sample`](Self::sample) draws from, without the penalties: top-k,
    /// then top-p and min-p judged at temperature 1, then the temperature, written densely
    /// into `out` (`[n_vocab]`, zero for truncated tokens). Speculative decoding compares the
    /// target's and the draft's.
    pub fn distribution(&mut self, logits: &[f32], out: &mut [f32]) {
        self.candidates.clear();
        self.candidates.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        self.top_k();
        self.softmax(1.0);
        let keep = self.min_p(self.top_p()).max(1);
        self.candidates.truncate(keep);
        self.softmax(self.cfg.temperature);
        out.fill(0.0);
        for (c, &p) in self.candidates.iter().zip(&self.probs) {
            out[c.0 as usize] = p;
        }
    }

    fn apply_penalties(&mut self) {
        self.counts.clear();
        for &t in &self.recent {
            match self.counts.iter_mut().find(|(tok, _)| *tok == t) {
                Some((_, c)) => *c += 1,
                None => self.counts.push((t, 1)),
            }
        }
        let cfg = &self.cfg;
        for &(t, c) in &self.counts {
            if let Some((_, l)) = self.candidates.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / cfg.repeat_penalty } else { *l * cfg.repeat_penalty };
                *l -= c as f32 * cfg.frequency_penalty + cfg.presence_penalty;
            }
        }
    }

    fn argmax(&self) -> u32 {
        // The first of equal maxima, as llama.cpp's greedy sampler picks.
        let mut best = (0u32, f32::NEG_INFINITY);
        for &(t, l) in &self.candidates {
            if l > best.1 {
                best = (t, l);
            }
        }
        best.0
    }

    /// Keep the `top_k` largest logits, sorted descending (all of them when `top_k` is 0).
    fn top_k(&mut self) {
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = self.cfg.top_k;
        if k > 0 && k < self.candidates.len() {
            self.candidates.select_nth_unstable_by(k - 1, by_logit_desc);
            self.candidates.truncate(k);
        }
        self.candidates.sort_unstable_by(by_logit_desc);
    }

    /// Probabilities of the candidates (logits sorted descending) at temperature `t`.
    fn softmax(&mut self, t: f32) {
        let max = self.candidates[0].1;
        self.probs.clear();
        self.probs.extend(self.candidates.iter().map(|c| ((c.1 - max) / t).exp()));
        let sum: f64 = self.probs.iter().map(|&p| f64::from(p)).sum();
        for p in &mut self.probs {
            *p = (f64::from(*p) / sum) as f32;
        }
    }

    /// How many candidates the smallest set reaching `top_p` of the mass holds.
    fn top_p(&self) -> usize {
        if self.cfg.top_p >= 1.0 {
            return self.probs.len();
        }
        let mut cum = 0.0f32;
        let last = self.probs.iter().position(|&p| {
            cum += p;
            cum >= self.cfg.top_p
        });
        last.map_or(self.probs.len(), |i| i + 1)
    }

    /// How many of the first `keep` candidates are at least `min_p` times the likeliest.
    fn min_p(&self, keep: usize) -> usize {
        if self.cfg.min_p <= 0.0 {
            return keep;
        }
        let floor = self.probs[0] * self.cfg.min_p;
        self.probs[..keep].iter().take_while(|&&p| p >= floor).count()
    }

    fn draw(&mut self) -> u32 {
        let r = self.rng.next_f32();
        let mut cum = 0.0f32;
        for (c, &p) in self.candidates.iter().zip(&self.probs) {
            cum += p;
            if r < cum {
                return c.0;
            }
        }
        self.candidates.last().map_or(0, |c| c.0)
    }
}

/// The index of the first largest value (greedy decoding's choice).
pub fn argmax(x: &[f32]) -> u32 {
    argmax_without(x, &[])
}

/// [`argmax`] over the tokens not in `banned`.
///
/// A greedy step of a server looks at a whole vocabulary per sequence (262,144 logits for
/// Gemma 3): each chunk's maximum is found sixteen lanes at a time ([`max_of`]), and only a
/// chunk holding a value above the best so far is scanned in order. A chunk whose maximum is
/// no greater holds no candidate, so the answer is the plain scan's, NaNs skipped.
fn argmax_without(x: &[f32], banned: &[u32]) -> u32 {
    const CHUNK: usize = 256;
    let mut best = (0u32, f32::NEG_INFINITY);
    for (c, chunk) in x.chunks(CHUNK).enumerate() {
        if max_of(chunk) <= best.1 {
            continue;
        }
        for (i, &v) in chunk.iter().enumerate() {
            let t = (c * CHUNK + i) as u32;
            if v > best.1 && !banned.contains(&t) {
                best = (t, v);
            }
        }
    }
    best.0
}

/// SplitMix64: a tiny generator whose sequence for a seed never changes between versions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(cfg: SamplerConfig, logits: &[f32], draws: usize) -> Vec<usize> {
        let mut s = Sampler::new(cfg, logits.len());
        let mut c = vec![0; logits.len()];
        for _ in 0..draws {
            c[s.sample(logits) as usize] += 1;
        }
        c
    }

    #[test]
    fn defaults_and_edges_are_valid() {
        SamplerConfig::default().validate().unwrap();
        SamplerConfig::greedy().validate().unwrap();
        let edges = SamplerConfig {
            temperature: 0.0,
            top_k: usize::MAX,
            top_p: 0.0,
            min_p: 1.0,
            repeat_penalty: 0.01,
            presence_penalty: -2.0,
            frequency_penalty: 2.0,
            penalty_last_n: MAX_PENALTY_LAST_N,
            seed: u64::MAX,
        };
        edges.validate().unwrap();
    }

    #[test]
    fn out_of_range_settings_name_the_setting_and_the_value() {
        let d = SamplerConfig::default;
        let bad = [
            (SamplerConfig { temperature: -0.5, ..d() }, SamplerParam::Temperature, "-0.5"),
            (SamplerConfig { temperature: f32::NAN, ..d() }, SamplerParam::Temperature, "NaN"),
            (SamplerConfig { temperature: f32::INFINITY, ..d() }, SamplerParam::Temperature, "inf"),
            (SamplerConfig { top_p: 7.0, ..d() }, SamplerParam::TopP, "7"),
            (SamplerConfig { top_p: -0.1, ..d() }, SamplerParam::TopP, "-0.1"),
            (SamplerConfig { top_p: f32::NAN, ..d() }, SamplerParam::TopP, "NaN"),
            (SamplerConfig { min_p: -1.0, ..d() }, SamplerParam::MinP, "-1"),
            (SamplerConfig { min_p: 1.5, ..d() }, SamplerParam::MinP, "1.5"),
            (SamplerConfig { repeat_penalty: 0.0, ..d() }, SamplerParam::RepeatPenalty, "0"),
            (SamplerConfig { repeat_penalty: -1.0, ..d() }, SamplerParam::RepeatPenalty, "-1"),
            (SamplerConfig { presence_penalty: f32::NEG_INFINITY, ..d() }, SamplerParam::PresencePenalty, "-inf"),
            (SamplerConfig { frequency_penalty: f32::NAN, ..d() }, SamplerParam::FrequencyPenalty, "NaN"),
            (SamplerConfig { penalty_last_n: usize::MAX, ..d() }, SamplerParam::PenaltyLastN, "18446744073709551615"),
        ];
        for (cfg, param, value) in bad {
            let e = cfg.validate().expect_err(&format!("{cfg:?} should be refused"));
            assert_eq!(e.param(), param, "{e}");
            assert!(e.to_string().starts_with(&format!("{} is {value}, ", param.name())), "{e}");
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy(), 4);
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn banned_tokens_are_never_chosen_and_the_rest_is_unchanged() {
        let logits = [1.0, 9.0, 3.0, 3.0, 8.5];
        let mut greedy = Sampler::new(SamplerConfig::greedy(), 5);
        assert_eq!(greedy.sample_without(&logits, &[1]), 4);
        assert_eq!(greedy.sample_without(&logits, &[1, 4]), 2); // the first of equal maxima
        assert_eq!(greedy.sample_without(&logits, &[]), greedy.sample(&logits));
        // With penalties, greedy goes through the candidate list: the same ban applies.
        let cfg = SamplerConfig { repeat_penalty: 1.5, ..SamplerConfig::greedy() };
        assert_eq!(Sampler::new(cfg, 5).sample_without(&logits, &[1, 4]), 2);
        // Sampled: a banned token is never drawn, and the draws equal those from logits
        // with the banned ones at -inf.
        let cfg =
            SamplerConfig { temperature: 2.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 3, ..SamplerConfig::default() };
        let masked = [1.0, f32::NEG_INFINITY, 3.0, 3.0, 8.5];
        let (mut a, mut b) = (Sampler::new(cfg.clone(), 5), Sampler::new(cfg, 5));
        for _ in 0..200 {
            let t = a.sample_without(&logits, &[1]);
            assert_ne!(t, 1);
            assert_eq!(t, b.sample(&masked));
        }
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 1.5, ..SamplerConfig::default() };
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg.clone() }, 100);
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn draws_follow_the_softmax() {
        // p = softmax([0, ln 3]) = [0.25, 0.75].
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        let c = counts(cfg, &[0.0, 3f32.ln()], 20_000);
        let p1 = c[1] as f64 / 20_000.0;
        assert!((p1 - 0.75).abs() < 0.015, "{p1}");
    }

    #[test]
    fn truncations_remove_unlikely_tokens() {
        let logits = [5.0, 4.0, 0.0, -5.0];
        let base = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        let c = counts(SamplerConfig { top_k: 2, ..base.clone() }, &logits, 2000);
        assert_eq!(c[2] + c[3], 0);
        assert!(c[0] > 0 && c[1] > 0);
        // p ≈ [0.72, 0.27, 0.005, 0.00003]: top-p 0.9 keeps two.
        let c = counts(SamplerConfig { top_p: 0.9, ..base.clone() }, &logits, 2000);
        assert_eq!(c[2] + c[3], 0);
        // min-p 0.5 of 0.72 keeps only the first.
        let c = counts(SamplerConfig { min_p: 0.5, ..base }, &logits, 500);
        assert_eq!(c[0], 500);
    }

    #[test]
    fn the_distribution_is_what_sample_draws_from() {
        let logits = [5.0, 4.0, 0.0, -5.0];
        let base = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        let mut out = [0.0; 4];
        Sampler::new(SamplerConfig { top_k: 2, ..base.clone() }, 4).distribution(&logits, &mut out);
        assert!(out[2] == 0.0 && out[3] == 0.0 && (out[0] + out[1] - 1.0).abs() < 1e-6 && out[0] > out[1]);
        Sampler::new(SamplerConfig { min_p: 0.5, ..base.clone() }, 4).distribution(&logits, &mut out);
        assert_eq!(out, [1.0, 0.0, 0.0, 0.0]);
        Sampler::new(SamplerConfig { temperature: 2.0, ..base }, 4).distribution(&logits, &mut out);
        let e = [2.5f32.exp(), 2.0f32.exp(), 1.0, (-2.5f32).exp()];
        let z: f32 = e.iter().sum();
        for (o, e) in out.iter().zip(e) {
            assert!((o - e / z).abs() < 1e-6, "{out:?}");
        }
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }

    #[test]
    fn argmax_is_the_plain_scan_with_ties_nans_and_bans() {
        let plain = |x: &[f32], banned: &[u32]| {
            let mut best = (0u32, f32::NEG_INFINITY);
            for (i, &v) in x.iter().enumerate() {
                if v > best.1 && !banned.contains(&(i as u32)) {
                    best = (i as u32, v);
                }
            }
            best.0
        };
        let mut rng = Rng::new(7);
        for len in [0, 1, 15, 16, 17, 255, 256, 257, 1000, 4099] {
            for case in 0..6 {
                // Few distinct values, so that ties across lanes and chunks are common.
                let mut x: Vec<f32> = (0..len).map(|_| (rng.next_f32() * 8.0).floor()).collect();
                if case >= 2 && len > 0 {
                    for _ in 0..len / 7 + 1 {
                        x[rng.next_u64() as usize % len] = f32::NAN;
                    }
                }
                if case == 4 {
                    x.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                }
                let top: Vec<u32> = (0..len as u32).filter(|&i| x[i as usize] == 7.0).take(3 * (case % 2)).collect();
                assert_eq!(argmax_without(&x, &top), plain(&x, &top), "len {len} case {case}");
            }
        }
    }

    #[test]
    fn penalties_push_down_recent_tokens() {
        let cfg = SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg, 3);
        assert_eq!(s.sample(&[3.0, 2.0, -1.0]), 0);
        s.accept(0);
        assert_eq!(s.sample(&[3.0, 2.0, -1.0]), 1, "3/2 < 2");
        let cfg = SamplerConfig { frequency_penalty: 0.5, presence_penalty: 0.2, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg, 2);
        s.accept(0);
        assert_eq!(s.sample(&[1.0, 0.0]), 0, "1 - 0.5 - 0.2 > 0");
        s.accept(0);
        assert_eq!(s.sample(&[1.0, 0.0]), 1, "1 - 2 * 0.5 - 0.2 < 0");
    }

    #[test]
    fn the_penalty_window_forgets_old_tokens() {
        let cfg = SamplerConfig { repeat_penalty: 10.0, penalty_last_n: 2, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg, 3);
        for t in [0, 2, 2] {
            s.accept(t);
        }
        assert_eq!(s.sample(&[3.0, 2.0, 0.0]), 0, "token 0 left the window");
    }
}
