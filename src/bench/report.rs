//! [`Report`]: everything one benchmark run found, as the `--json` object and the source of
//! the human table.

use serde::Serialize;

use super::{Bandwidth, Measured, ModelFacts, Plan, Stats};

/// One benchmark run. Flat keys for the headline numbers (`pp_tok_s`, `tg_tok_s`, and with
/// llama.cpp `llama_pp_tok_s`, `pp_ratio`, ...), nested stats for the detail. Ratios are
/// pupil / llama.cpp of the medians: above 1, pupil is faster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The model file.
    pub model: String,
    /// `gemma3 270M Q4_K_M`.
    pub description: String,
    /// Bytes of tensor data.
    pub model_bytes: u64,
    /// Parameters.
    pub params: u64,
    /// Weight bytes read per generated token.
    pub bytes_per_token: u64,
    /// pupil's kernel tier (`avx512`, `avx2`, `scalar`).
    pub tier: String,
    /// Threads of both engines and of the bandwidth test.
    pub threads: usize,
    /// Prompt tokens of the pp test.
    pub pp: usize,
    /// Decode steps of the tg test.
    pub tg: usize,
    /// Measured repetitions (after one warm-up).
    pub repetitions: usize,
    /// Seconds pupil took to open the model, weights repacked included (`None`: not timed).
    pub load_s: Option<f64>,
    /// Resident memory pupil's load added (packed copies, pages touched while loading), bytes
    /// (`None`: not measurable here).
    pub load_rss_bytes: Option<u64>,
    /// The most resident memory the process held above its size before the load, over the
    /// whole benchmark (with `--against-llama`, llama.cpp's copy of the model too).
    pub peak_rss_bytes: Option<u64>,
    /// pupil's median prompt tokens/s (`None` if pp was skipped).
    pub pp_tok_s: Option<f64>,
    /// pupil's median generated tokens/s (`None` if tg was skipped).
    pub tg_tok_s: Option<f64>,
    /// pupil's pp detail.
    pub pp_stats: Option<Stats>,
    /// pupil's tg detail.
    pub tg_stats: Option<Stats>,
    /// Streaming read bandwidth with `threads` threads, GB/s: the median of the reads (one
    /// before each tg run), as tg is the median of its runs.
    pub bandwidth_gb_s: f64,
    /// The fastest read, GB/s.
    pub bandwidth_best_gb_s: f64,
    /// Reads taken.
    pub bandwidth_runs: usize,
    /// The bandwidth test's buffer size.
    pub bandwidth_buffer_bytes: usize,
    /// `bandwidth / bytes_per_token`: no engine generates faster on this machine.
    pub tg_ceiling_tok_s: f64,
    /// `tg_tok_s / tg_ceiling_tok_s`.
    pub tg_fraction_of_ceiling: Option<f64>,
    /// `tg_tok_s` over the ceiling of the best read.
    pub tg_fraction_of_best_ceiling: Option<f64>,
    /// llama.cpp's side, with `--against-llama`.
    #[serde(flatten)]
    pub llama: Option<LlamaReport>,
    /// Several sequences decoding together, with `--sequences`.
    pub sequences: Option<SequencesReport>,
    /// The GPU the offloaded blocks ran on, with `--gpu-layers`.
    pub gpu: Option<GpuReport>,
}

/// The GPU of a run with offloaded blocks, and tg against its memory bandwidth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuReport {
    /// The product name.
    pub name: String,
    /// Compute capability as `XY` of `sm_XY`.
    pub sm: u32,
    /// Device memory, bytes.
    pub memory_bytes: u64,
    /// The first block on the GPU (0: all of them).
    pub first_layer: usize,
    /// Whether the output head ran there too.
    pub head: bool,
    /// Theoretical memory bandwidth (memory clock × bus width), GB/s.
    pub bandwidth_gb_s: f64,
    /// `bandwidth / bytes_per_token`: the tg no engine passes on this device.
    pub tg_ceiling_tok_s: f64,
    /// `tg_tok_s / tg_ceiling_tok_s`.
    pub tg_fraction_of_ceiling: Option<f64>,
}

impl GpuReport {
    /// For a run of `report` on `device`.
    pub fn new(device: &crate::model::GpuDevice, report: &Report) -> GpuReport {
        let ceiling = device.bandwidth / report.bytes_per_token.max(1) as f64;
        GpuReport {
            name: device.name.clone(),
            sm: device.sm,
            memory_bytes: device.memory as u64,
            first_layer: device.first_layer,
            head: device.head,
            bandwidth_gb_s: device.bandwidth / 1e9,
            tg_ceiling_tok_s: ceiling,
            tg_fraction_of_ceiling: report.tg_tok_s.map(|t| t / ceiling),
        }
    }
}

/// tg×B at depth d ([`crate::runner::speed::Parallel`]): aggregate tokens/s of `n_seq`
/// sequences decoding together, beside one sequence at the same depth, per engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SequencesReport {
    /// Sequences decoding together.
    pub n_seq: usize,
    /// Prompt tokens each sequence holds before the steps.
    pub depth: usize,
    /// Decode steps.
    pub n_gen: usize,
    /// pupil, one sequence, tokens/s.
    pub one: Option<Stats>,
    /// pupil, `n_seq` sequences, aggregate tokens/s.
    pub many: Option<Stats>,
    /// `many / one` of the medians: what batching gains.
    pub gain: Option<f64>,
    /// llama.cpp, one sequence, tokens/s (with `--against-llama`).
    pub llama_one: Option<Stats>,
    /// llama.cpp, `n_seq` sequences in one `llama_decode` per step, aggregate tokens/s.
    pub llama_many: Option<Stats>,
    /// llama.cpp's `many / one`.
    pub llama_gain: Option<f64>,
    /// pupil / llama.cpp of the `n_seq`-sequence medians.
    pub ratio: Option<f64>,
}

impl SequencesReport {
    /// From each engine's `[one, many]` results.
    pub fn new(
        par: &crate::runner::speed::Parallel,
        pupil: [Option<Stats>; 2],
        llama: Option<[Option<Stats>; 2]>,
    ) -> Self {
        let [one, many] = pupil;
        let [llama_one, llama_many] = llama.unwrap_or([None, None]);
        SequencesReport {
            n_seq: par.n_seq,
            depth: par.depth,
            n_gen: par.n_gen,
            gain: ratio(median(&many), median(&one)),
            llama_gain: ratio(median(&llama_many), median(&llama_one)),
            ratio: ratio(median(&many), median(&llama_many)),
            one,
            many,
            llama_one,
            llama_many,
        }
    }
}

/// llama.cpp's numbers and how pupil compares.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LlamaReport {
    /// Seconds llama.cpp took to load the model (`None`: not timed).
    pub llama_load_s: Option<f64>,
    /// llama.cpp's median prompt tokens/s.
    pub llama_pp_tok_s: Option<f64>,
    /// llama.cpp's median generated tokens/s.
    pub llama_tg_tok_s: Option<f64>,
    /// llama.cpp's pp detail.
    pub llama_pp_stats: Option<Stats>,
    /// llama.cpp's tg detail.
    pub llama_tg_stats: Option<Stats>,
    /// Whether ggml was compiled for the host's best ISA; if not, the comparison flatters
    /// pupil.
    pub llama_native: bool,
    /// The host's best ISA (`AVX512`, `AVX2`).
    pub llama_host_isa: String,
    /// The best ISA ggml was compiled with.
    pub llama_ggml_isa: String,
    /// `llama_print_system_info()`.
    pub llama_system_info: String,
    /// `llama.cpp`'s tg as a fraction of the ceiling.
    pub llama_tg_fraction_of_ceiling: Option<f64>,
    /// pupil / llama.cpp, prompt processing.
    pub pp_ratio: Option<f64>,
    /// pupil / llama.cpp, token generation.
    pub tg_ratio: Option<f64>,
}

/// What is known about llama.cpp's build, for [`Report::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlamaBuild {
    /// Whether ggml has the host's best ISA.
    pub native: bool,
    /// The host's best ISA.
    pub host_isa: String,
    /// ggml's best ISA.
    pub ggml_isa: String,
    /// `llama_print_system_info()`.
    pub system_info: String,
}

fn median(s: &Option<Stats>) -> Option<f64> {
    s.as_ref().map(|s| s.median)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

impl Report {
    /// Puts the pieces together: `pupil` is pupil's result, `llama` llama.cpp's with its build.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: String,
        facts: &ModelFacts,
        tier: String,
        threads: usize,
        plan: &Plan,
        bandwidth: &Bandwidth,
        pupil: &Measured,
        llama: Option<(&Measured, LlamaBuild)>,
    ) -> Report {
        let ceiling_at = |gb_s: f64| gb_s * 1e9 / facts.bytes_per_token.max(1) as f64;
        let ceiling = ceiling_at(bandwidth.gb_s);
        let (pp_tok_s, tg_tok_s) = (median(&pupil.pp), median(&pupil.tg));
        let llama = llama.map(|(m, b)| {
            let (lpp, ltg) = (median(&m.pp), median(&m.tg));
            LlamaReport {
                llama_load_s: None,
                llama_pp_tok_s: lpp,
                llama_tg_tok_s: ltg,
                llama_pp_stats: m.pp.clone(),
                llama_tg_stats: m.tg.clone(),
                llama_native: b.native,
                llama_host_isa: b.host_isa,
                llama_ggml_isa: b.ggml_isa,
                llama_system_info: b.system_info,
                llama_tg_fraction_of_ceiling: ltg.map(|t| t / ceiling),
                pp_ratio: ratio(pp_tok_s, lpp),
                tg_ratio: ratio(tg_tok_s, ltg),
            }
        });
        Report {
            model,
            description: facts.description.clone(),
            model_bytes: facts.model_bytes,
            params: facts.params,
            bytes_per_token: facts.bytes_per_token,
            tier,
            threads,
            pp: plan.n_prompt,
            tg: plan.n_gen,
            repetitions: plan.repetitions,
            load_s: None,
            load_rss_bytes: None,
            peak_rss_bytes: None,
            pp_tok_s,
            tg_tok_s,
            pp_stats: pupil.pp.clone(),
            tg_stats: pupil.tg.clone(),
            bandwidth_gb_s: bandwidth.gb_s,
            bandwidth_best_gb_s: bandwidth.best_gb_s,
            bandwidth_runs: bandwidth.runs,
            bandwidth_buffer_bytes: bandwidth.buffer_bytes,
            tg_ceiling_tok_s: ceiling,
            tg_fraction_of_ceiling: tg_tok_s.map(|t| t / ceiling),
            tg_fraction_of_best_ceiling: tg_tok_s.map(|t| t / ceiling_at(bandwidth.best_gb_s)),
            llama,
            sequences: None,
            gpu: None,
        }
    }
}
