//! Speed you can trust: prompt processing and token generation measured llama-bench style,
//! optionally side by side with llama.cpp on the same file in the same process, against the
//! memory-bandwidth ceiling of this machine.
//!
//! - Two tests, as `llama-bench`'s `pp512` and `tg128`: **pp** runs one batch of `n_prompt`
//!   tokens from an empty cache with only the last logits wanted (tokens/s = `n_prompt` /
//!   time); **tg** runs `n_gen` single-token decode steps from an empty cache (tokens/s =
//!   `n_gen` / time). Clearing the cache is outside the clock.
//! - A [`Runner`] is one engine under those tests: [`PupilRunner`], and with feature `llama`
//!   `LlamaRunner`. [`measure`] gives every runner one warm-up round, then interleaves their
//!   repetitions (pupil pp, llama.cpp pp, pupil tg, llama.cpp tg, ...), so a noisy neighbour
//!   slows both rather than one; the median is reported ([`Stats`]).
//! - [`BandwidthProbe`] and [`ModelFacts::bytes_per_token`] give the ceiling of token
//!   generation: bandwidth / bytes read per token. [`measure_with_probe`] reads the probe's
//!   buffer before every tg run, so the ceiling is measured under the tg runs' conditions.
//!
//! ```no_run
//! use pupil::bench::{self, Plan, PupilRunner, Runner};
//! # fn main() -> Result<(), pupil::bench::BenchError> {
//! let model = pupil::model::load("models/gemma-3-270m-q4_k_m.gguf")?;
//! let plan = Plan { n_prompt: 512, n_gen: 128, repetitions: 5 };
//! let tokens = bench::Tokens::for_model(&model, &plan, 42);
//! let mut pupil = PupilRunner::new(&model, plan.n_prompt, plan.n_gen)?;
//! let runners: &mut [&mut dyn Runner] = &mut [&mut pupil];
//! let results = bench::measure(&plan, &tokens, runners, |_| {})?;
//! println!("tg128: {:.1} tok/s", results[0].tg.as_ref().unwrap().median);
//! # Ok(()) }
//! ```

mod bandwidth;
mod facts;
#[cfg(feature = "llama")]
pub mod llama;
mod pupil;
mod report;
mod stats;

use std::time::Duration;

pub use bandwidth::{Bandwidth, BandwidthProbe, read_bandwidth};
pub use facts::ModelFacts;
pub use pupil::PupilRunner;
pub use report::{LlamaBuild, LlamaReport, Report};
pub use stats::Stats;

use crate::model::{Model, ModelError};
use crate::tokenizer::Tokenizer;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// pupil's forward pass failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tests need more positions than the model was trained for.
    #[error("the benchmark needs {tokens} positions, but the model's context is {n_ctx_train}")]
    ContextTooLong {
        /// Positions asked for.
        tokens: usize,
        /// The model's training context.
        n_ctx_train: usize,
    },
    /// A thread pool could not be built.
    #[error("building a thread pool: {message}")]
    Threads {
        /// The pool builder's message.
        message: String,
    },
    /// llama.cpp failed.
    #[error("llama.cpp: {what}: {message}")]
    Llama {
        /// What was being done.
        what: &'static str,
        /// llama.cpp's (or its binding's) message.
        message: String,
    },
}

/// One engine under the two tests. Each call starts from an empty KV cache and returns the
/// time of the forward passes alone.
pub trait Runner {
    /// The name tables show (`pupil`, `llama.cpp`).
    fn name(&self) -> &'static str;
    /// Runs `tokens` as one batch at positions `0..`, the last token's logits wanted.
    fn prompt(&mut self, tokens: &[u32]) -> Result<Duration, BenchError>;
    /// Runs `tokens` one per forward pass at positions `0..`, each one's logits wanted.
    fn generate(&mut self, tokens: &[u32]) -> Result<Duration, BenchError>;
}

/// What to measure. A test with 0 tokens is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Prompt tokens of the pp test (llama-bench's `-p`, default 512).
    pub n_prompt: usize,
    /// Decode steps of the tg test (llama-bench's `-n`, default 128).
    pub n_gen: usize,
    /// Measured repetitions after the warm-up round.
    pub repetitions: usize,
}

/// The token ids the tests feed: fixed pseudo-random ids, the same for every engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// `[n_prompt]`.
    pub prompt: Vec<u32>,
    /// `[n_gen]`.
    pub generate: Vec<u32>,
}

impl Tokens {
    /// Ids drawn with `seed` from the model's ordinary tokens: control and end-of-generation
    /// tokens are avoided, so no engine takes a shortcut on them (all ids if the vocabulary
    /// cannot be read).
    pub fn for_model(model: &Model, plan: &Plan, seed: u64) -> Tokens {
        let n_vocab = model.config().n_vocab as u32;
        let pool: Vec<u32> = match Tokenizer::from_gguf(model.file()) {
            Ok(t) => (0..n_vocab.min(t.n_vocab() as u32))
                .filter(|&id| !t.is_control(id) && !t.is_eog(id) && Some(id) != t.bos())
                .collect(),
            Err(_) => Vec::new(),
        };
        let pool = if pool.is_empty() { (0..n_vocab.max(1)).collect() } else { pool };
        let mut state = seed;
        let mut draw = |n: usize| -> Vec<u32> {
            (0..n)
                .map(|_| {
                    // SplitMix64: deterministic, and the same on every platform.
                    state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    pool[((z ^ (z >> 31)) % pool.len() as u64) as usize]
                })
                .collect()
        };
        Tokens { prompt: draw(plan.n_prompt), generate: draw(plan.n_gen) }
    }
}

/// Which test a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Prompt processing.
    Prompt,
    /// Token generation.
    Generate,
}

/// Where [`measure`] is, for a progress bar: called before each step.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The runner about to run.
    pub runner: &'static str,
    /// The test.
    pub test: Test,
    /// The repetition (0-based), `None` for the warm-up round.
    pub repetition: Option<usize>,
    /// Steps done so far.
    pub done: usize,
    /// Steps in all.
    pub total: usize,
}

/// One runner's results: `None` for a skipped test.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Prompt processing, tokens/s.
    pub pp: Option<Stats>,
    /// Token generation, tokens/s.
    pub tg: Option<Stats>,
}

/// Runs `plan` on every runner: a warm-up round, then `plan.repetitions` rounds, each round
/// running pp on every runner in turn, then tg. Returns one [`Measured`] per runner, in order.
pub fn measure(
    plan: &Plan,
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    progress: impl FnMut(&Progress),
) -> Result<Vec<Measured>, BenchError> {
    Ok(run_rounds(plan, tokens, runners, None, progress)?.0)
}

/// [`measure`], with one read of `probe` (GB/s) just before every measured tg run; returns
/// the reads too, in order (`repetitions` × runners of them, none if tg is skipped).
pub fn measure_with_probe(
    plan: &Plan,
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    probe: &BandwidthProbe,
    progress: impl FnMut(&Progress),
) -> Result<(Vec<Measured>, Vec<f64>), BenchError> {
    run_rounds(plan, tokens, runners, Some(probe), progress)
}

fn run_rounds(
    plan: &Plan,
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    probe: Option<&BandwidthProbe>,
    mut progress: impl FnMut(&Progress),
) -> Result<(Vec<Measured>, Vec<f64>), BenchError> {
    let tests: Vec<(Test, &[u32])> = [(Test::Prompt, &tokens.prompt[..]), (Test::Generate, &tokens.generate[..])]
        .into_iter()
        .filter(|(_, t)| !t.is_empty())
        .collect();
    let total = (plan.repetitions + 1) * tests.len() * runners.len();
    let mut secs = vec![(Vec::new(), Vec::new()); runners.len()];
    let mut reads = Vec::new();
    let mut done = 0;
    for round in 0..=plan.repetitions {
        let repetition = round.checked_sub(1);
        for &(test, toks) in &tests {
            for (i, r) in runners.iter_mut().enumerate() {
                progress(&Progress { runner: r.name(), test, repetition, done, total });
                if let (Some(p), Test::Generate, Some(_)) = (probe, test, repetition) {
                    reads.push(p.sample());
                }
                let t = match test {
                    Test::Prompt => r.prompt(toks)?,
                    Test::Generate => r.generate(toks)?,
                };
                if repetition.is_some() {
                    let s = if test == Test::Prompt { &mut secs[i].0 } else { &mut secs[i].1 };
                    s.push(t.as_secs_f64());
                }
                done += 1;
            }
        }
    }
    let measured = secs
        .into_iter()
        .map(|(pp, tg)| Measured { pp: Stats::from_secs(plan.n_prompt, &pp), tg: Stats::from_secs(plan.n_gen, &tg) })
        .collect();
    Ok((measured, reads))
}
