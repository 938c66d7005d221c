//! `pupil bench`: prompt and generation speed, llama-bench style, optionally side by side with
//! llama.cpp on the same file, against this machine's memory-bandwidth ceiling.

use super::error::BadInput;
use super::output;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pupil::bench::{self, Measured, ModelFacts, Plan, Progress, Report, SequencesReport, Test, Tokens, synth};
use pupil::model::Model;
use pupil::runner::{PupilRunner, Runner, memory};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Measure prompt processing (pp) and token generation (tg) speed.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    pupil bench -m models/gemma-3-270m-q4_k_m.gguf\n  \
    pupil bench -m model.gguf -p 512 -n 128 -r 5 -t 2 --against-llama\n  \
    pupil bench -m model.gguf -p 64 -n 16 -r 3 --json | jq .tg_tok_s\n  \
    pupil bench --synth llama-1b:Q4_K_M -t 2 --against-llama\n  \
    pupil bench --synth all -t 2 --against-llama     # every model of the table below\n  \
    pupil bench --synth llama-1b:Q4_0 -t 2 --sequences 8 --against-llama\n\n\
    --synth NAME:TYPE writes a random-weight model with the exact shape of a known one and\n\
    llama-quantize's mixture for TYPE, once, into --synth-dir: weights do not change speed.\n\
    Shapes: gemma3-270m, qwen2.5-0.5b, llama-1b (separate output), qwen2.5-1.5b. `all` is\n\
    gemma3-270m:Q4_K_M, llama-1b:Q4_0, llama-1b:Q4_K_M, qwen2.5-0.5b:Q4_K_M,\n\
    qwen2.5-1.5b:Q4_K_M, qwen2.5-1.5b:Q8_0. With several models, a summary table of the\n\
    ratios follows, and --json prints an array.\n\n\
    pp: one batch of -p tokens from an empty cache; tg: -n single-token steps from an empty\n\
    cache (llama-bench's pp512 / tg128); with --sequences B, tg×B: B sequences each holding\n\
    the -p prompt decode -n steps together, one token each per forward pass (llama.cpp: one\n\
    llama_decode per step), aggregate t/s beside one sequence at the same depth.\n\
    One warm-up round, then -r repetitions; t/s is the\n\
    median ± the standard deviation. For a fair --against-llama, build llama.cpp for this\n\
    CPU: scripts/bench.sh does.")]
pub struct Args {
    /// A GGUF model file (repeat for several).
    #[arg(short, long, required_unless_present = "synth")]
    model: Vec<PathBuf>,
    /// A synthetic model, NAME:TYPE (`llama-1b:Q4_K_M`), or `all` (repeat for several).
    #[arg(long, value_name = "NAME:TYPE")]
    synth: Vec<String>,
    /// Where synthetic models are written (default: $PUPIL_CACHE_DIR/synth, else
    /// ~/.cache/pupil/synth).
    #[arg(long, value_name = "DIR")]
    synth_dir: Option<PathBuf>,
    /// Prompt tokens of the pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512, allow_negative_numbers = true)]
    n_prompt: usize,
    /// Decode steps of the tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128, allow_negative_numbers = true)]
    n_gen: usize,
    /// Measured repetitions, after one warm-up round.
    #[arg(short = 'r', long, default_value_t = 5, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    repetitions: u32,
    /// Threads, for both engines and the bandwidth test (default: all cores).
    #[arg(short = 't', long, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    threads: Option<usize>,
    /// Also measure llama.cpp (needs a build with `--features llama`).
    #[arg(long)]
    against_llama: bool,
    /// Also measure B sequences decoding together at the depth of -p (tg×B; 0: skip).
    #[arg(long, value_name = "B", default_value_t = 0, allow_negative_numbers = true,
          value_parser = super::parse::between::<0, 256>)]
    sequences: usize,
    /// Read every matrix from the memory map as stored, without the copy repacked at load
    /// for this CPU's kernels (for comparison; also `PUPIL_NO_REPACK=1`).
    #[arg(long)]
    no_repack: bool,
    #[command(flatten)]
    gpu: super::GpuArgs,
    /// Size of the buffer the bandwidth test streams, in MiB (keep it far above the CPU caches;
    /// at most 64 GiB).
    #[arg(long, value_name = "MIB", default_value_t = 1024, allow_negative_numbers = true,
          value_parser = super::parse::between::<1, 65536>)]
    bandwidth_mib: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Bandwidth reads when tg is skipped (otherwise there is one before every tg run).
const BANDWIDTH_RUNS: usize = 5;

/// Seed of the benchmark's token ids: fixed, so every run feeds the same tokens.
const TOKEN_SEED: u64 = 0x5eed;

pub fn run(args: Args) -> Result<()> {
    if args.against_llama && !cfg!(feature = "llama") {
        return Err(BadInput::new(
            "--against-llama needs llama.cpp, and this pupil was built without it: build with \
             `cargo build --release --features llama`, or run scripts/bench.sh, which also \
             compiles llama.cpp for this CPU",
        )
        .into());
    }
    if args.sequences > 0 && args.n_gen == 0 {
        return Err(
            BadInput::new("--sequences measures decode steps, and -n 0 asks for none: give -n 1 or more").into()
        );
    }
    if args.n_prompt == 0 && args.n_gen == 0 {
        return Err(BadInput::new("-p 0 and -n 0 skip both tests: nothing to measure").into());
    }
    let threads = match args.threads {
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    super::run::set_threads(Some(threads))?;
    let models = models(&args)?;
    let probe = {
        let bar = spinner(format!("memory bandwidth, {threads} threads"));
        let probe = bench::BandwidthProbe::new(threads, args.bandwidth_mib << 20)?;
        bar.finish_and_clear();
        probe
    };
    let mut reports = Vec::with_capacity(models.len());
    for (label, path) in &models {
        let report = bench_one(&args, label, path, threads, &probe)?;
        if report.llama.as_ref().is_some_and(|l| !l.llama_native) && reports.is_empty() {
            warn_not_native(&report);
        }
        if !args.json {
            // Each model's table as soon as it is measured: a full run takes a while.
            let mut out = std::io::stdout().lock();
            print_human(&mut out, &report)?;
            writeln!(out)?;
            out.flush()?;
        }
        reports.push((label.clone(), report));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        if let [(_, one)] = &reports[..] {
            serde_json::to_writer_pretty(&mut out, one)?;
        } else {
            serde_json::to_writer_pretty(&mut out, &reports.iter().map(|(_, r)| r).collect::<Vec<_>>())?;
        }
        writeln!(out)?;
    } else if reports.len() > 1 {
        print_summary(&mut out, &reports)?;
    }
    out.flush()?;
    Ok(())
}

fn spinner(msg: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
    bar.set_message(msg);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// The bar a benchmark's steps advance (their count is set by the first step).
fn steps_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]").expect("static template"));
    bar
}

/// The models to measure, in order, with the label of each: the files of `-m`, then the
/// synthetic models (written first where they are not cached yet).
fn models(args: &Args) -> Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = args.model.iter().map(|p| (p.display().to_string(), p.clone())).collect();
    let mut specs = Vec::new();
    for s in &args.synth {
        if s.eq_ignore_ascii_case("all") {
            specs.extend(synth::SynthSpec::all());
        } else {
            specs.push(s.parse::<synth::SynthSpec>()?);
        }
    }
    let dir = args.synth_dir.clone().unwrap_or_else(synth::default_dir);
    for spec in specs {
        let path = synth::ensure(&spec, &dir, |m| eprintln!("{m}"))?;
        out.push((spec.label(), path));
    }
    Ok(out)
}

/// One model's benchmark.
fn bench_one(args: &Args, label: &str, path: &Path, threads: usize, probe: &bench::BandwidthProbe) -> Result<Report> {
    let exact = memory::reset_peak();
    let baseline = memory::resident_bytes();
    let start = Instant::now();
    let model = Model::open_with(path, &super::load_options(args.no_repack, args.gpu.gpu_layers))
        .map_err(output::in_file(path))?;
    let load_s = start.elapsed().as_secs_f64();
    let load_rss = memory::resident_bytes().zip(baseline).map(|(r, b)| r.saturating_sub(b));
    let facts = ModelFacts::of(&model);
    let plan = Plan { n_prompt: args.n_prompt, n_gen: args.n_gen, repetitions: args.repetitions as usize };
    let tokens = bench::tokens_for_model(&model, &plan, TOKEN_SEED);
    let tier = pupil::kernels::cpu::tier().name().to_owned();

    let bar = steps_bar();
    let on_step = |p: &Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        let test = match p.test {
            Test::Prompt => format!("pp{}", plan.n_prompt),
            Test::Generate => format!("tg{}", plan.n_gen),
            Test::Sequences(b) => format!("tg{}x{b}", plan.n_gen),
        };
        let round = p.repetition.map_or("warm-up".to_owned(), |r| format!("run {}/{}", r + 1, plan.repetitions));
        bar.set_message(format!("{label}: {} {test} {round}", p.runner));
    };
    let lmodel = load_llama(args, path)?;
    let (pupil, llama, mut reads) = measure(lmodel.as_ref(), &model, &plan, &tokens, threads, probe, on_step)?;
    bar.finish_and_clear();
    if reads.is_empty() {
        reads = (0..BANDWIDTH_RUNS).map(|_| probe.sample()).collect();
    }
    let bandwidth = bench::Bandwidth::from_samples(probe, &reads).expect("at least one read");
    let llama_load_s = llama.as_ref().map(|l| l.2);
    let mut report = Report::new(
        path.display().to_string(),
        &facts,
        tier,
        threads,
        &plan,
        &bandwidth,
        &pupil,
        llama.map(|(m, b, _)| (m, b)).as_ref().map(|(m, b)| (m, b.clone())),
    );
    report.load_s = Some(load_s);
    report.gpu = model.gpu_device().map(|d| bench::GpuReport::new(&d, &report));
    report.load_rss_bytes = load_rss;
    report.peak_rss_bytes =
        memory::peak_resident_bytes().zip(baseline).filter(|_| exact).map(|(p, b)| p.saturating_sub(b));
    if let Some(l) = report.llama.as_mut() {
        l.llama_load_s = llama_load_s;
    }
    if args.sequences > 0 {
        let bar = steps_bar();
        let on_step = |p: &Progress| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            let round = p.repetition.map_or("warm-up".to_owned(), |r| format!("run {}/{}", r + 1, plan.repetitions));
            let b = if let Test::Sequences(b) = p.test { b } else { 1 };
            bar.set_message(format!("{label}: {} tg{}x{b} at depth {} {round}", p.runner, plan.n_gen, plan.n_prompt));
        };
        report.sequences = Some(sequences(args, lmodel.as_ref(), &model, &plan, &tokens, threads, on_step)?);
        bar.finish_and_clear();
    }
    Ok(report)
}

/// tg×B at the depth of the prompt, and one sequence at that depth, on pupil and with
/// `--against-llama` on llama.cpp, interleaved.
#[allow(clippy::too_many_arguments)]
fn sequences(
    args: &Args,
    llama: Option<&Llama>,
    model: &Model,
    plan: &Plan,
    tokens: &Tokens,
    threads: usize,
    on_step: impl FnMut(&Progress),
) -> Result<SequencesReport> {
    let par = pupil::runner::speed::Parallel {
        n_seq: args.sequences,
        depth: plan.n_prompt,
        n_gen: plan.n_gen,
        repetitions: plan.repetitions,
    };
    let counts = [1, par.n_seq];
    let opts = pupil::runner::RunnerOptions { threads: Some(threads), ..par.runner_options() };
    let mut pupil = PupilRunner::new(model, &opts)?;
    let pair = |v: Vec<Option<bench::Stats>>| -> [Option<bench::Stats>; 2] {
        let mut it = v.into_iter();
        [it.next().flatten(), it.next().flatten()]
    };
    #[cfg(feature = "llama")]
    if let Some((lmodel, _, _)) = llama {
        let mut runner = lmodel.runner(&opts)?;
        let runners: &mut [&mut dyn Runner] = &mut [&mut pupil, &mut runner];
        let mut r = pupil::runner::speed::measure_parallel(&par, &counts, tokens, runners, on_step)?.into_iter();
        let (Some(p), Some(l)) = (r.next(), r.next()) else { unreachable!("one result per runner") };
        return Ok(SequencesReport::new(&par, pair(p), Some(pair(l))));
    }
    let _ = llama;
    let runners: &mut [&mut dyn Runner] = &mut [&mut pupil];
    let mut r = pupil::runner::speed::measure_parallel(&par, &counts, tokens, runners, on_step)?;
    Ok(SequencesReport::new(&par, pair(r.remove(0)), None))
}

/// llama.cpp's results, its build, and the seconds it took to load the model.
type LlamaSide = Option<(Measured, bench::LlamaBuild, f64)>;

/// With `--against-llama`: the model on llama.cpp (loaded once for every test), its build
/// check, and the seconds the load took.
#[cfg(feature = "llama")]
type Llama = (pupil::llama::LlamaModel, pupil::llama::NativeCheck, f64);
#[cfg(not(feature = "llama"))]
type Llama = ();

/// Loads `path` on llama.cpp if `--against-llama` asks for it.
fn load_llama(args: &Args, path: &Path) -> Result<Option<Llama>> {
    #[cfg(feature = "llama")]
    if args.against_llama {
        let check = pupil::llama::native_check()?;
        let start = Instant::now();
        let model = pupil::llama::LlamaModel::load(path)?;
        return Ok(Some((model, check, start.elapsed().as_secs_f64())));
    }
    let _ = (args, path);
    Ok(None)
}

/// pupil's results, and llama.cpp's with `--against-llama`, their repetitions interleaved,
/// and the bandwidth reads taken before each tg run.
#[allow(clippy::too_many_arguments)]
fn measure(
    llama: Option<&Llama>,
    model: &Model,
    plan: &Plan,
    tokens: &Tokens,
    threads: usize,
    probe: &bench::BandwidthProbe,
    on_step: impl FnMut(&Progress),
) -> Result<(Measured, LlamaSide, Vec<f64>)> {
    // Both engines on `threads` threads of their own.
    let opts = pupil::runner::RunnerOptions { threads: Some(threads), ..plan.runner_options() };
    let mut pupil = PupilRunner::new(model, &opts)?;
    #[cfg(feature = "llama")]
    if let Some((lmodel, check, load_s)) = llama {
        let (check, load_s) = (check, *load_s);
        let mut runner = lmodel.runner(&opts)?;
        let runners: &mut [&mut dyn Runner] = &mut [&mut pupil, &mut runner];
        let (results, reads) = bench::measure_with_probe(plan, tokens, runners, probe, on_step)?;
        let mut results = results.into_iter();
        let (Some(p), Some(l)) = (results.next(), results.next()) else { unreachable!("one result per runner") };
        let build = bench::LlamaBuild {
            native: check.native,
            host_isa: check.host_best.to_owned(),
            ggml_isa: check.ggml_best.to_owned(),
            system_info: check.system_info.trim().to_owned(),
        };
        return Ok((p, Some((l, build, load_s)), reads));
    }
    let _ = llama;
    let runners: &mut [&mut dyn Runner] = &mut [&mut pupil];
    let (mut measured, reads) = bench::measure_with_probe(plan, tokens, runners, probe, on_step)?;
    Ok((measured.remove(0), None, reads))
}

fn warn_not_native(r: &Report) {
    let Some(l) = &r.llama else { return };
    eprintln!(
        "\n\
         WARNING: llama.cpp was compiled for {ggml} but this CPU has {host}: ggml chooses its\n\
         WARNING: kernels at compile time, so its numbers here are far below what it can do and\n\
         WARNING: the comparison is UNFAIR TO LLAMA.CPP. Build it for this CPU with\n\
         WARNING:   scripts/bench.sh\n\
         WARNING: (RUSTFLAGS=\"-C target-cpu=native\" cargo build --release --features llama, in\n\
         WARNING: its own target dir). pupil picks its SIMD tier at run time and is unaffected.\n",
        ggml =
            if l.llama_ggml_isa == "none" { "the baseline ISA (no AVX2)".to_owned() } else { l.llama_ggml_isa.clone() },
        host = l.llama_host_isa,
    );
}

fn print_human(out: &mut impl Write, r: &Report) -> Result<()> {
    let size = output::bytes(r.model_bytes);
    let params = output::count(r.params);
    let mut rows: Vec<[String; 7]> = Vec::new();
    let tests = [
        (format!("pp{}", r.pp), &r.pp_stats, r.llama.as_ref().map(|l| &l.llama_pp_stats)),
        (format!("tg{}", r.tg), &r.tg_stats, r.llama.as_ref().map(|l| &l.llama_tg_stats)),
    ];
    let row = |backend: String, test: &str, s: &bench::Stats| {
        [
            r.description.clone(),
            size.clone(),
            params.clone(),
            backend,
            r.threads.to_string(),
            test.to_owned(),
            format!("{:.2} ± {:.2}", s.median, s.stddev),
        ]
    };
    for (test, ours, theirs) in &tests {
        if let Some(s) = ours {
            rows.push(row(format!("pupil {}", r.tier), test, s));
        }
        if let (Some(Some(s)), Some(l)) = (theirs, &r.llama) {
            rows.push(row(format!("llama.cpp {}", l.llama_ggml_isa), test, s));
        }
    }
    let head = ["model", "size", "params", "backend", "threads", "test", "t/s"];
    let right = [false, true, true, false, true, true, true];
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|row| row[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| -> String {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if right[i] { format!("{c:>w$}", w = widths[i]) } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    writeln!(out, "{}", line(&head.map(str::to_owned)))?;
    let rule: Vec<String> = (0..7)
        .map(|i| if right[i] { format!("{}:", "-".repeat(widths[i] - 1)) } else { "-".repeat(widths[i]) })
        .collect();
    writeln!(out, "| {} |", rule.join(" | "))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    writeln!(out)?;
    if let Some(l) = &r.llama {
        let ratio = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}x"));
        writeln!(
            out,
            "pupil / llama.cpp: pp{} {}, tg{} {}{}",
            r.pp,
            ratio(l.pp_ratio),
            r.tg,
            ratio(l.tg_ratio),
            if l.llama_native { "" } else { "  (llama.cpp NOT built for this CPU: see the warning)" }
        )?;
    }
    let pct = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{:.0}%", 100.0 * x));
    write!(
        out,
        "ceiling: {:.1} GB/s read bandwidth ({} thread{}) / {} per token = {:.1} tok/s; tg reaches {} of it (pupil)",
        r.bandwidth_gb_s,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        output::bytes(r.bytes_per_token),
        r.tg_ceiling_tok_s,
        pct(r.tg_fraction_of_ceiling),
    )?;
    if let Some(l) = &r.llama {
        write!(out, ", {} (llama.cpp)", pct(l.llama_tg_fraction_of_ceiling))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "         bandwidth: median of {} reads of {}, {}; the best read, {:.1} GB/s, puts tg at {}",
        r.bandwidth_runs,
        output::bytes(r.bandwidth_buffer_bytes as u64),
        if r.tg_stats.is_some() { "one just before each tg run" } else { "back to back" },
        r.bandwidth_best_gb_s,
        pct(r.tg_fraction_of_best_ceiling),
    )?;
    if let Some(g) = &r.gpu {
        writeln!(
            out,
            "GPU: {} (sm_{}, {}), blocks from {}{}: {:.0} GB/s theoretical / {} per token = {:.0} tok/s; tg reaches {} of it",
            g.name,
            g.sm,
            output::bytes(g.memory_bytes),
            g.first_layer,
            if g.head { " and the head" } else { "" },
            g.bandwidth_gb_s,
            output::bytes(r.bytes_per_token),
            g.tg_ceiling_tok_s,
            pct(g.tg_fraction_of_ceiling),
        )?;
    }
    if let Some(q) = &r.sequences {
        let ts = |x: &Option<bench::Stats>| x.as_ref().map_or("-".to_owned(), |s| format!("{:.1}", s.median));
        let gain = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}x"));
        write!(
            out,
            "tg{}x{} at depth {}: pupil {} t/s in all, {} one sequence's {}",
            q.n_gen,
            q.n_seq,
            q.depth,
            ts(&q.many),
            gain(q.gain),
            ts(&q.one)
        )?;
        if r.llama.is_some() {
            write!(
                out,
                "; llama.cpp {} t/s, {} its {}; pupil / llama.cpp {}",
                ts(&q.llama_many),
                gain(q.llama_gain),
                ts(&q.llama_one),
                gain(q.ratio)
            )?;
        }
        writeln!(out)?;
    }
    if let Some(t) = r.load_s {
        write!(out, "load: {t:.2} s (pupil)")?;
        if let Some(l) = r.llama.as_ref().and_then(|l| l.llama_load_s) {
            write!(out, ", {l:.2} s (llama.cpp)")?;
        }
        writeln!(out)?;
    }
    if let (Some(load), Some(peak)) = (r.load_rss_bytes, r.peak_rss_bytes) {
        writeln!(
            out,
            "memory: the load added {}; at its peak the run held {} more than before the load, {} of the file's {}{}",
            output::bytes(load),
            output::bytes(peak),
            pct(Some(peak as f64 / r.model_bytes.max(1) as f64)),
            output::bytes(r.model_bytes),
            if r.llama.is_some() { "; the peak includes llama.cpp's copy" } else { "" },
        )?;
    }
    Ok(())
}

/// One line per model: pupil's speeds, the ratios against llama.cpp, the ceiling fractions.
fn print_summary(out: &mut impl Write, reports: &[(String, Report)]) -> Result<()> {
    let f = |x: Option<f64>, d: usize| x.map_or("-".to_owned(), |x| format!("{x:.d$}"));
    let ratio = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}x"));
    let pct = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{:.0}%", 100.0 * x));
    let Some((_, first)) = reports.first() else { return Ok(()) };
    let (pp, tg) = (format!("pp{}", first.pp), format!("tg{}", first.tg));
    let head = [
        "model".to_owned(),
        "size".to_owned(),
        format!("{pp} t/s"),
        format!("{pp} vs llama.cpp"),
        format!("{tg} t/s"),
        format!("{tg} vs llama.cpp"),
        "tg of ceiling (llama.cpp)".to_owned(),
        "load s (llama.cpp)".to_owned(),
    ];
    let seqs = first.sequences.as_ref().map(|q| (q.n_gen, q.n_seq));
    let mut head = head.to_vec();
    if let Some((n, b)) = seqs {
        head.push(format!("tg{n}x{b} t/s (x one; vs llama.cpp)"));
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|(label, r)| {
            let l = r.llama.as_ref();
            let q = r.sequences.as_ref();
            let seq_cell = q.map(|q| {
                let many = q.many.as_ref().map(|s| s.median);
                format!("{} ({}; {})", f(many, 1), ratio(q.gain), ratio(q.ratio))
            });
            let mut row = vec![
                label.clone(),
                output::bytes(r.model_bytes),
                f(r.pp_tok_s, 1),
                ratio(l.and_then(|l| l.pp_ratio)),
                f(r.tg_tok_s, 1),
                ratio(l.and_then(|l| l.tg_ratio)),
                match l {
                    Some(l) => format!("{} ({})", pct(r.tg_fraction_of_ceiling), pct(l.llama_tg_fraction_of_ceiling)),
                    None => pct(r.tg_fraction_of_ceiling),
                },
                match l.and_then(|l| l.llama_load_s) {
                    Some(ll) => format!("{} ({ll:.2})", f(r.load_s, 2)),
                    None => f(r.load_s, 2),
                },
            ];
            if seqs.is_some() {
                row.push(seq_cell.unwrap_or_else(|| "-".to_owned()));
            }
            row
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    writeln!(out, "{}", line(&head))?;
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| if i == 0 { "-".repeat(w) } else { format!("{}:", "-".repeat(w - 1)) })
        .collect();
    writeln!(out, "| {} |", rule.join(" | "))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    writeln!(
        out,
        "\n{} threads; ratios are pupil / llama.cpp of the medians, measured in the same run.",
        first.threads
    )?;
    Ok(())
}
