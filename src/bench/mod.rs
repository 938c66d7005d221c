//! Speed you can trust: prompt processing and token generation measured llama-bench style,
//! optionally side by side with llama.cpp on the same file in the same process, against the
//! memory-bandwidth ceiling of this machine.
//!
//! - The tests are [`crate::runner::speed`]'s, the one definition of pp, tg and TTFT that
//!   `pupil compare` reports too: **pp** runs one batch of `n_prompt` tokens from an empty
//!   cache with only the last logits wanted; **tg** runs `n_gen` single-token decode steps
//!   from an empty cache. One warm-up round, then the repetitions, interleaved across
//!   engines; the median is reported ([`Stats`]).
//! - The engines are [`crate::runner::Runner`]s: pupil's, and with feature `llama`
//!   llama.cpp's ([`crate::llama::LlamaRunner`]), sized by [`Plan::runner_options`].
//! - [`BandwidthProbe`] and [`ModelFacts::bytes_per_token`] give the ceiling of token
//!   generation: bandwidth / bytes read per token. [`measure_with_probe`] reads the probe's
//!   buffer before every tg run, so the ceiling is measured under the tg runs' conditions.
//!
//! ```no_run
//! use pupil::bench::{self, Plan};
//! use pupil::runner::{PupilRunner, Runner};
//! # fn main() -> Result<(), pupil::bench::BenchError> {
//! let model = pupil::model::load("models/gemma-3-270m-q4_k_m.gguf")?;
//! let plan = Plan { n_prompt: 512, n_gen: 128, repetitions: 5 };
//! let tokens = bench::tokens_for_model(&model, &plan, 42);
//! let mut pupil = PupilRunner::new(&model, &plan.runner_options())?;
//! let runners: &mut [&mut dyn Runner] = &mut [&mut pupil];
//! let results = bench::measure(&plan, &tokens, runners, |_| {})?;
//! println!("tg128: {:.1} tok/s", results[0].tg.as_ref().unwrap().median);
//! # Ok(()) }
//! ```

mod bandwidth;
mod facts;
mod report;
pub mod synth;

pub use bandwidth::{Bandwidth, BandwidthProbe, read_bandwidth};
pub use facts::ModelFacts;
pub use report::{GpuReport, LlamaBuild, LlamaReport, Report, SequencesReport};

pub use crate::runner::Stats;
pub use crate::runner::speed::{Measured, Plan, Progress, Test, Tokens};

use crate::model::{Model, ModelError};
use crate::runner::{Runner, RunnerError, speed};
use crate::tokenizer::Tokenizer;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An engine could not be set up or failed while running.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// llama.cpp failed outside a runner (loading, checking its build).
    #[cfg(feature = "llama")]
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
    /// A synthetic model's name (`--synth`) is not one pupil can make.
    #[error("--synth {spec}: {why}")]
    Synth {
        /// What was asked for.
        spec: String,
        /// Why it cannot be made.
        why: String,
    },
    /// The synthetic models' cache could not be written.
    #[error("{}: {source}", path.display())]
    Cache {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A thread pool could not be built.
    #[error("building a thread pool: {message}")]
    Threads {
        /// The pool builder's message.
        message: String,
    },
}

impl BenchError {
    /// Whether the user can fix it (a synthetic model's name, its cache directory, a model
    /// file), rather than pupil.
    pub fn is_bad_input(&self) -> bool {
        match self {
            BenchError::Synth { .. } | BenchError::Cache { .. } => true,
            BenchError::Model(e) => e.kind() != crate::error::ErrorKind::Internal,
            _ => false,
        }
    }
}

/// The token ids the benchmark feeds: drawn with `seed` from the model's ordinary tokens, the
/// same for every engine. Control and end-of-generation tokens are avoided, so no engine takes
/// a shortcut on them (all ids if the vocabulary cannot be read).
pub fn tokens_for_model(model: &Model, plan: &Plan, seed: u64) -> Tokens {
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

/// Runs `plan` on every runner ([`speed::measure`]): a warm-up round, then
/// `plan.repetitions` rounds, each running pp on every runner in turn, then tg. Returns one
/// [`Measured`] per runner, in order.
pub fn measure(
    plan: &Plan,
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    progress: impl FnMut(&Progress),
) -> Result<Vec<Measured>, BenchError> {
    Ok(speed::measure(plan, tokens, runners, progress)?)
}

/// [`measure`], with one read of `probe` (GB/s) just before every measured tg run; returns
/// the reads too, in order (`repetitions` × runners of them, none if tg is skipped).
pub fn measure_with_probe(
    plan: &Plan,
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    probe: &BandwidthProbe,
    mut progress: impl FnMut(&Progress),
) -> Result<(Vec<Measured>, Vec<f64>), BenchError> {
    let mut reads = Vec::new();
    let measured = speed::measure(plan, tokens, runners, |p| {
        progress(p);
        if p.test == Test::Generate && p.repetition.is_some() {
            reads.push(probe.sample());
        }
    })?;
    Ok((measured, reads))
}
