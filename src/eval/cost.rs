//! What a model costs to run, each model measured the same way: size, load time, peak
//! memory, prompt and generation speed, time to first token.
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
use super::runner::{Backend, ModelRunner, PupilRunner};
use crate::model::{KvType, Model};
use crate::sample::argmax;
use crate::tokenizer::Tokenizer;

/// How speed is measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostOptions {
    /// Prompt tokens run as one batch (llama-bench's pp).
    pub n_prompt: usize,
    /// Single-token decode steps after the prompt (llama-bench's tg).
    pub n_gen: usize,
    /// Repetitions; the median is reported.
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
    /// Prompt tokens per second.
    pub pp_tok_s: f64,
    /// Generated tokens per second.
    pub tg_tok_s: f64,
    /// Seconds from the start of the prompt to the first token chosen.
    pub ttft_s: f64,
}

impl Cost {
    /// Memory the model added to the process: peak minus baseline (`None` if unknown).
    pub fn model_rss_bytes(&self) -> Option<u64> {
        Some(self.peak_rss_bytes?.saturating_sub(self.baseline_rss_bytes?))
    }
}

/// A `/proc/self/status` field in bytes.
fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident size to the current one; `false` where the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn median(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    x.get(x.len() / 2).copied().unwrap_or(0.0)
}

/// The memory mark taken before a model is loaded, from which its [`Cost`] is completed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    exact: bool,
    baseline: Option<u64>,
}

/// What [`Mark::finish`] needs besides the memory: the model's facts and its timings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Measured {
    /// The engine.
    pub backend: Backend,
    /// Elements in all tensors.
    pub parameters: u64,
    /// Bytes of all tensors.
    pub weight_bytes: u64,
    /// Seconds to load.
    pub load_s: f64,
    /// Median speeds from [`time_runs`].
    pub speed: Speed,
}

impl Mark {
    /// Checks `opts` and `prompt`, resets the peak resident size and reads the baseline.
    pub(crate) fn start(prompt: &[u32], opts: &CostOptions) -> Result<Mark, EvalError> {
        if opts.n_prompt < 1 || opts.reps < 1 {
            return Err(EvalError::BadOption {
                what: "prompt tokens and repetitions",
                min: 1,
                found: opts.n_prompt.min(opts.reps),
            });
        }
        if prompt.is_empty() {
            return Err(EvalError::TextTooShort { tokens: 0 });
        }
        let exact = reset_peak_rss();
        Ok(Mark { exact, baseline: proc_status("VmRSS") })
    }

    /// The cost of the model at `path`, with the peak resident size read now.
    pub(crate) fn finish(self, path: &Path, m: Measured) -> Cost {
        Cost {
            path: path.display().to_string(),
            backend: m.backend,
            parameters: m.parameters,
            weight_bytes: m.weight_bytes,
            load_s: m.load_s,
            baseline_rss_bytes: self.baseline,
            peak_rss_bytes: proc_status("VmHWM"),
            peak_rss_exact: self.exact,
            pp_tok_s: m.speed.pp_tok_s,
            tg_tok_s: m.speed.tg_tok_s,
            ttft_s: m.speed.ttft_s,
        }
    }
}

/// Median speeds of [`time_runs`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Speed {
    pp_tok_s: f64,
    tg_tok_s: f64,
    ttft_s: f64,
}

/// Times `opts.reps` runs on `runner` (sized for `n_ctx` positions and batches of
/// `opts.n_prompt.min(n_ctx)`), each from an empty cache: `prompt` (repeated as needed to
/// that many tokens) as one batch and the greedy choice of the next token (pp, TTFT), then
/// up to `opts.n_gen` greedy decode steps (tg).
pub(crate) fn time_runs(
    runner: &mut dyn ModelRunner,
    prompt: &[u32],
    n_ctx: usize,
    opts: &CostOptions,
) -> Result<Speed, EvalError> {
    let n_prompt = opts.n_prompt.min(n_ctx);
    let tokens: Vec<u32> = prompt.iter().copied().cycle().take(n_prompt).collect();
    let mut logits = vec![0f32; runner.n_vocab()];
    let (mut pp, mut tg, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.reps {
        runner.clear();
        let t0 = Instant::now();
        runner.forward(&tokens, 0, n_prompt - 1..n_prompt, &mut logits)?;
        let mut next = argmax(&logits);
        let secs = t0.elapsed().as_secs_f64();
        pp.push(n_prompt as f64 / secs);
        ttft.push(secs);
        let steps = opts.n_gen.min(n_ctx - n_prompt);
        let t1 = Instant::now();
        for i in 0..steps {
            runner.forward(&[next], n_prompt + i, 0..1, &mut logits)?;
            next = argmax(&logits);
        }
        let secs = t1.elapsed().as_secs_f64();
        tg.push(if secs > 0.0 { steps as f64 / secs } else { 0.0 });
    }
    Ok(Speed { pp_tok_s: median(pp), tg_tok_s: median(tg), ttft_s: median(ttft) })
}

/// Loads the model at `path` with pupil and measures it: `prompt` (repeated as needed to
/// `opts.n_prompt` tokens) as one batch, then `opts.n_gen` greedy decode steps.
pub fn measure(path: &Path, prompt: &[u32], opts: &CostOptions) -> Result<Cost, EvalError> {
    let mark = Mark::start(prompt, opts)?;
    let start = Instant::now();
    let model = Model::open(path)?;
    let _tokenizer = Tokenizer::from_gguf(model.file())?;
    let load_s = start.elapsed().as_secs_f64();
    let n_ctx = (opts.n_prompt + opts.n_gen).min(model.config().n_ctx_train);
    let mut runner = PupilRunner::new(&model, n_ctx, opts.n_prompt.min(n_ctx), opts.kv_type);
    let speed = time_runs(&mut runner, prompt, n_ctx, opts)?;
    let tensors = model.file().tensors();
    Ok(mark.finish(
        path,
        Measured {
            backend: Backend::Pupil,
            parameters: tensors.iter().map(|t| t.n_elements()).sum(),
            weight_bytes: tensors.iter().map(|t| t.n_bytes()).sum(),
            load_s,
            speed,
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = super::proc_status("VmRSS").expect("VmRSS");
            let hwm = super::proc_status("VmHWM").expect("VmHWM");
            assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
        }
    }
}
