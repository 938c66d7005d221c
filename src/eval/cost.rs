//! What a model costs to run, each model measured the same way on whichever engine runs it:
//! size, load time, peak memory, and prompt speed, generation speed and time to first token
//! as [`crate::runner::speed`] defines them (the definitions `pupil bench` reports too).
//!
//! Peak memory is the process's high-water mark (`VmHWM` in `/proc/self/status`). It is
//! process-wide, so before each model is loaded the mark is reset to the current resident
//! size (writing `5` to `/proc/self/clear_refs`, Linux 4.0+) and the resident size then is
//! kept as the baseline; where the reset is refused, [`Cost::peak_rss_exact`] says so and the
//! figure includes whatever ran before.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::EvalError;
use super::engine::Loaded;
use crate::model::KvType;
use crate::runner::speed::{self, Plan, Tokens};
use crate::runner::{Backend, RunnerOptions, Stats, memory};
use crate::tokenizer::Tokenizer;

/// How speed is measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostOptions {
    /// Prompt tokens run as one batch (llama-bench's pp).
    pub n_prompt: usize,
    /// Single-token decode steps from an empty cache (llama-bench's tg).
    pub n_gen: usize,
    /// Measured repetitions, after one warm-up; the median is reported.
    pub reps: usize,
    /// KV cache element type.
    pub kv_type: KvType,
}

impl Default for CostOptions {
    /// A 128-token prompt, 32 decode steps, 3 repetitions, f16 cache.
    fn default() -> Self {
        CostOptions { n_prompt: 128, n_gen: 32, reps: 3, kv_type: KvType::F16 }
    }
}

/// One model's cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    /// The file.
    pub path: String,
    /// The engine that ran it (`"pupil"` or `"llama.cpp"` in JSON).
    pub backend: Backend,
    /// Elements in all tensors.
    pub parameters: u64,
    /// Bytes of all tensors.
    pub weight_bytes: u64,
    /// Seconds to open the model and build its tokenizer (llama.cpp: to load the model,
    /// vocabulary included).
    pub load_s: f64,
    /// Resident memory just before loading (`None`: not measurable here).
    pub baseline_rss_bytes: Option<u64>,
    /// The process's peak resident memory from the load to the end of the runs.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the peak was reset before the load (else it may include earlier work).
    pub peak_rss_exact: bool,
    /// Prompt tokens of the pp test (the requested count, capped by the training context).
    pub pp_tokens: usize,
    /// Decode steps of the tg test, from an empty cache.
    pub tg_steps: usize,
    /// Measured repetitions of each test, after one warm-up.
    pub repetitions: usize,
    /// Prompt tokens per second (pp), median.
    pub pp_tok_s: f64,
    /// Generated tokens per second (tg), median; 0 with no decode steps.
    pub tg_tok_s: f64,
    /// Seconds from the start of the prompt to the first token chosen (TTFT), median.
    pub ttft_s: f64,
    /// pp's detail: every repetition, spread (`None` if not measured).
    pub pp_stats: Option<Stats>,
    /// tg's detail (`None` with no decode steps).
    pub tg_stats: Option<Stats>,
    /// TTFT's detail, in seconds.
    pub ttft_stats: Option<Stats>,
}

impl Cost {
    /// Memory the model added to the process: peak minus baseline (`None` if unknown).
    pub fn model_rss_bytes(&self) -> Option<u64> {
        Some(self.peak_rss_bytes?.saturating_sub(self.baseline_rss_bytes?))
    }
}

/// Loads the model at `path` on `backend` and measures it: size, load time, peak memory, and
/// [`speed::measure`] with `prompt` repeated as needed for `opts.n_prompt` prompt tokens and
/// `opts.n_gen` decode steps (each capped by the model's training context). llama.cpp runs on
/// `threads` threads (default: as many as the current rayon pool has); pupil on the current
/// rayon pool.
pub fn measure(
    path: &Path,
    backend: Backend,
    prompt: &[u32],
    opts: &CostOptions,
    threads: Option<usize>,
    load: &crate::model::LoadOptions,
) -> Result<Cost, EvalError> {
    if opts.n_prompt < 1 || opts.reps < 1 {
        let found = opts.n_prompt.min(opts.reps);
        return Err(EvalError::BadOption { what: "prompt tokens and repetitions", min: 1, found });
    }
    if prompt.is_empty() {
        return Err(EvalError::TextTooShort { tokens: 0 });
    }
    let exact = memory::reset_peak();
    let baseline = memory::resident_bytes();
    let start = Instant::now();
    let model = Loaded::open(path, backend, None, load)?;
    match &model {
        // llama.cpp loads the vocabulary with the model; pupil builds it apart.
        Loaded::Pupil(m) => drop(Tokenizer::from_gguf(m.file())?),
        #[cfg(feature = "llama")]
        Loaded::Llama(_) => {}
    }
    let load_s = start.elapsed().as_secs_f64();

    let n_ctx_train = model.n_ctx_train();
    let plan =
        Plan { n_prompt: opts.n_prompt.min(n_ctx_train), n_gen: opts.n_gen.min(n_ctx_train), repetitions: opts.reps };
    let ropts = RunnerOptions { kv_type: opts.kv_type, threads, ..plan.runner_options() };
    let mut runner = model.runner(&ropts)?;
    let measured = speed::measure(&plan, &Tokens::cycled(prompt, &plan), &mut [&mut *runner], |_| {})?;
    let m = measured.into_iter().next().expect("one result per runner");
    let footprint = runner.footprint();
    let median = |s: &Option<Stats>| s.as_ref().map_or(0.0, |s| s.median);
    Ok(Cost {
        path: path.display().to_string(),
        backend,
        parameters: footprint.parameters,
        weight_bytes: footprint.weight_bytes,
        load_s,
        baseline_rss_bytes: baseline,
        peak_rss_bytes: memory::peak_resident_bytes(),
        peak_rss_exact: exact,
        pp_tokens: plan.n_prompt,
        tg_steps: plan.n_gen,
        repetitions: plan.repetitions,
        pp_tok_s: median(&m.pp),
        tg_tok_s: median(&m.tg),
        ttft_s: median(&m.ttft),
        pp_stats: m.pp,
        tg_stats: m.tg,
        ttft_stats: m.ttft,
    })
}
