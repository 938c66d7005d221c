//! `pupil compare`: a student against its teacher, fidelity and cost side by side.

use super::error::BadInput;
use super::output::LateFile;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pupil::eval::{
    self, Backend, CompareOptions, CostOptions, DraftSpeedup, FidelityOptions, Progress, Prompt, Report,
    SequenceOptions, SequenceProgress, Sequences,
};
use pupil::sample::{SamplerConfig, SamplerParam};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Compare a student model with its teacher: how closely it follows the teacher's next-token
/// distributions on a text (KL divergence, top-1 agreement, perplexity) and what it costs
/// (size, memory, speed).
#[derive(clap::Args, Debug)]
#[command(after_help = "With no --teacher and --student, the embedded distilled pair is compared \
    (models/distill/ in pupil's checkout: a 13.8M-parameter llama teacher in F16 and its 3.3M \
    student, distilled from it, in Q4_0) on its held-out text.\n\n\
    Both models must share a vocabulary. With no --text, a built-in held-out sample is scored \
    (the pair's own held-out text for the embedded pair).\n\n\
    With --teacher-backend llama the teacher runs on llama.cpp (builds with --features llama), \
    so any architecture llama.cpp runs can be the teacher; its vocabulary is still read from \
    its GGUF file and checked, and the student always runs on pupil.\n\n\
    --generate adds the sequence level: for each prompt the student and the teacher each write \
    a continuation, and both score both. The teacher's grade of the student is its mean \
    log-probability per token of the student's text, beside that of its own; the on-policy KL \
    is measured along the student's text, beside the teacher-forced KL along the teacher's; \
    and the first token where the two continuations part is counted. Prompts come from \
    --prompts (one per line, or JSON Lines of {\"prompt\": ...} or {\"messages\": [...]} \
    objects, for a .jsonl file), or else from the text: the first verse of each chapter of the \
    embedded pair's held-out text, the first sentence of each paragraph of another.\n\n\
    Exit status: 0 ok; 1 failed while running; 2 bad input (a file, mismatched vocabularies); \
    3 a --fail-* gate failed (the report is still printed).\n\n\
    Examples:\n  \
    pupil compare\n  \
    pupil compare --teacher gemma-q8_0.gguf --student gemma-q4_k_m.gguf\n  \
    pupil compare --teacher t.gguf --student s.gguf --text wiki.txt --ctx 512 --md > report.md\n  \
    pupil compare --teacher t.gguf --student s.gguf --json --plot fidelity.svg\n  \
    pupil compare --teacher phi-teacher.gguf --student s.gguf --teacher-backend llama -t 8\n  \
    pupil compare --teacher t.gguf --student s.gguf --fail-below-agreement 0.9 --fail-above-kl 0.1\n  \
    pupil compare --generate -n 64 --draft\n  \
    pupil compare --generate --teacher t.gguf --student s.gguf --prompts chats.jsonl --chat --temp 0.7 --seed 1")]
pub struct Args {
    /// The reference model (GGUF); default: the embedded pair's teacher.
    #[arg(long, value_name = "FILE", requires = "student")]
    teacher: Option<PathBuf>,
    /// The engine that runs the teacher: pupil, or llama.cpp (any architecture it runs).
    #[arg(long, value_enum, value_name = "ENGINE", default_value_t = TeacherBackend::Pupil)]
    teacher_backend: TeacherBackend,
    #[command(flatten)]
    gpu: super::GpuArgs,
    /// The model under test (GGUF, same vocabulary); default: the embedded pair's student.
    #[arg(long, value_name = "FILE", requires = "teacher")]
    student: Option<PathBuf>,
    /// The text to score (`-`: stdin); default: a built-in held-out sample.
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// Tokens per window, BOS included; every position after the first is scored.
    #[arg(short = 'c', long = "ctx", default_value_t = 512, allow_negative_numbers = true, value_parser = super::parse::at_least::<2>)]
    ctx: usize,
    /// Most tokens per forward pass (one batch of logits per model is held in memory).
    #[arg(short = 'b', long = "batch", default_value_t = 64, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    batch: usize,
    /// Repetitions of each speed measurement (the median is reported).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    reps: usize,
    /// Threads, for pupil and llama.cpp (default: all cores).
    #[arg(short = 't', long, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    threads: Option<usize>,
    /// Also compare at the sequence level: each model writes a continuation of each prompt,
    /// and each scores both.
    #[arg(long)]
    generate: bool,
    /// The prompts for --generate: one per line (`\\n` for a line break), or JSON Lines for a
    /// `.jsonl` file; default: from the text.
    #[arg(long, value_name = "FILE", requires = "generate")]
    prompts: Option<PathBuf>,
    /// Render the prompts with the teacher's chat template (ChatML where it has none) as a
    /// user's message.
    #[arg(long, requires = "generate")]
    chat: bool,
    /// Most tokens each model writes per prompt (--generate).
    #[arg(short = 'n', long = "n-predict", default_value_t = 128, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    n_predict: usize,
    /// Sampling temperature for --generate (0: greedy).
    #[arg(long = "temp", default_value_t = 0.0, allow_hyphen_values = true, requires = "generate")]
    temp: f32,
    /// Seed of prompt 1 for --generate with --temp (prompt i uses seed + i - 1).
    #[arg(long, default_value_t = 0x5eed, requires = "generate")]
    seed: u64,
    /// Also measure the teacher's speed with the student drafting for it (speculative
    /// decoding, greedy) on the same prompts (--generate).
    #[arg(long, requires = "generate")]
    draft: bool,
    /// Most tokens the student drafts per step with --draft.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = super::parse::between::<1, 64>)]
    draft_max: usize,
    /// Print one JSON object instead of text.
    #[arg(long, conflicts_with = "md")]
    json: bool,
    /// Print Markdown tables instead of text.
    #[arg(long)]
    md: bool,
    /// Also write an SVG: per-position KL along the text and the cost ratios.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Exit with status 3 if top-1 agreement (0..1) is below this.
    #[arg(long, value_name = "X", allow_hyphen_values = true, value_parser = super::parse::fraction)]
    fail_below_agreement: Option<f64>,
    /// Exit with status 3 if the mean KL divergence (nats) is above this.
    #[arg(long, value_name = "X", allow_hyphen_values = true, value_parser = super::parse::non_negative)]
    fail_above_kl: Option<f64>,
    /// Exit with status 3 if the teacher's grade of the student (its mean log-probability
    /// per token of the student's text, nats, at most 0) is below this (--generate).
    #[arg(long, value_name = "X", allow_hyphen_values = true, requires = "generate", value_parser = super::parse::log_prob)]
    fail_below_grade: Option<f64>,
}

/// `--teacher-backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TeacherBackend {
    /// pupil's own engine.
    Pupil,
    /// llama.cpp (a build with `--features llama`).
    Llama,
}

impl From<TeacherBackend> for Backend {
    fn from(b: TeacherBackend) -> Backend {
        match b {
            TeacherBackend::Pupil => Backend::Pupil,
            TeacherBackend::Llama => Backend::Llama,
        }
    }
}

/// The embedded distilled pair: where `make.sh` puts it, relative to a checkout of pupil.
const PAIR_DIR: &str = "models/distill";
/// The pair's teacher, student and held-out text, within [`PAIR_DIR`].
const PAIR: [&str; 3] = ["teacher-f16.gguf", "student-q4_0.gguf", "heldout.txt"];

/// The embedded pair's files: in `models/distill` under the working directory, or else
/// under the checkout this binary was built from.
fn embedded_pair() -> Result<[PathBuf; 3]> {
    let here = PathBuf::from(PAIR_DIR);
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PAIR_DIR);
    for dir in [here, built] {
        let files = PAIR.map(|f| dir.join(f));
        if files.iter().all(|f| f.is_file()) {
            return Ok(files);
        }
    }
    Err(NoPair.into())
}

/// The embedded pair is not where it should be: bad input (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "the embedded pair ({PAIR_DIR}/{{{}, {}, {}}}) is neither under the working directory nor \
     under {}; run from a pupil checkout, or name the models with --teacher and --student",
    PAIR[0],
    PAIR[1],
    PAIR[2],
    env!("CARGO_MANIFEST_DIR")
)]
pub struct NoPair;

/// A quality gate failed: exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GateFailed(String);

pub fn run(args: Args) -> Result<()> {
    let teacher_backend = Backend::from(args.teacher_backend);
    // Refused before any work: no CUDA in this build, or no GPU.
    let load = super::load_options(false, args.gpu.gpu_layers);
    load.check()?;
    eval::check_backend(teacher_backend).context("--teacher-backend llama")?;
    super::run::set_threads(args.threads)?;
    let (teacher, student, default_text) = match (&args.teacher, &args.student) {
        (Some(t), Some(s)) => (t.clone(), s.clone(), None),
        // clap's `requires` makes these two go together.
        _ => {
            let [t, s, text] = embedded_pair()?;
            (t, s, Some(text))
        }
    };
    let text = match args.text.as_ref().or(default_text.as_ref()) {
        None => eval::HELD_OUT.to_owned(),
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| BadInput::stdin("--text", e))?;
            s
        }
        Some(p) => std::fs::read_to_string(p).map_err(|e| BadInput::file("--text", p, e))?,
    };
    let plot = args.plot.as_deref().map(|p| LateFile::open("--plot", p)).transpose()?;
    let opts = CompareOptions {
        fidelity: FidelityOptions { n_ctx: args.ctx, n_batch: args.batch, ..FidelityOptions::default() },
        cost: CostOptions { reps: args.reps, ..CostOptions::default() },
        teacher_backend,
        threads: args.threads,
        load,
    };
    // Checked before any work starts.
    let sequence = if args.generate { Some((sequence_options(&args)?, read_prompts(&args, &text)?)) } else { None };
    if args.draft && teacher_backend != Backend::Pupil {
        return Err(BadInput::new("--draft runs the teacher on pupil: drop --teacher-backend llama or --draft").into());
    }
    if let Some(text) = &default_text {
        eprintln!(
            "embedded pair: teacher {}, student {}, text {}",
            teacher.display(),
            student.display(),
            text.display()
        );
    }
    let context = || format!("comparing {} with {}", student.display(), teacher.display());
    // The sequence level first: a prompt that does not fit is found before the long work.
    let sequences = match sequence {
        Some((seq, prompts)) => {
            let mut sequences = generate(&teacher, &student, &prompts, &opts, &seq).with_context(context)?;
            if args.draft {
                sequences.draft = Some(draft_speedup(&teacher, &student, &sequences, &args).with_context(context)?);
            }
            Some(sequences)
        }
        None => None,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tokens {elapsed_precise} eta {eta}")
            .map_err(anyhow::Error::msg)?
            .progress_chars("=> "),
    );
    bar.set_message("scoring");
    let report = eval::compare(&teacher, &student, &text, &opts, |p| match p {
        Progress::Scoring { tokens } => bar.set_length(tokens as u64),
        Progress::Scored(n) => bar.inc(n as u64),
        Progress::Measuring(who) => {
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed_precise}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(format!("measuring the {who}'s cost"));
            bar.tick();
        }
        _ => {}
    });
    bar.finish_and_clear();
    let mut report = report.with_context(context)?;
    if let Some(sequences) = sequences {
        report = report.with_sequences(sequences);
    }

    let failures = gates(&report, &args);
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["gates"] = serde_json::json!({ "passed": failures.is_empty(), "failures": failures });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else if args.md {
        write!(out, "{}", report.to_markdown())?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    out.flush()?;
    if let (Some(file), Some(path)) = (plot, &args.plot) {
        file.write(eval::plot::svg(&report).as_bytes())
            .with_context(|| format!("writing --plot {}", path.display()))?;
    }
    if failures.is_empty() { Ok(()) } else { Err(GateFailed(failures.join("; ")).into()) }
}

/// The gates that failed, each as a sentence.
fn gates(r: &Report, args: &Args) -> Vec<String> {
    let f = &r.fidelity;
    let mut failed = Vec::new();
    // A NaN measurement fails the gate.
    if let Some(min) = args.fail_below_agreement
        && f.top1_agreement.partial_cmp(&min).is_none_or(|o| o.is_lt())
    {
        failed.push(format!("top-1 agreement {:.4} is below --fail-below-agreement {min}", f.top1_agreement));
    }
    if let Some(max) = args.fail_above_kl
        && f.mean_kl.partial_cmp(&max).is_none_or(|o| o.is_gt())
    {
        failed.push(format!("mean KL {:.6} is above --fail-above-kl {max}", f.mean_kl));
    }
    if let (Some(min), Some(q)) = (args.fail_below_grade, &r.sequences)
        && q.teacher_on_student.mean.partial_cmp(&min).is_none_or(|o| o.is_lt())
    {
        failed.push(format!(
            "the teacher's grade of the student {:.4} nats/token is below --fail-below-grade {min}",
            q.teacher_on_student.mean
        ));
    }
    failed
}

/// `--temp` and `--seed` as a greedy or seeded sampler, checked.
fn sequence_options(args: &Args) -> Result<SequenceOptions> {
    let sampler = if args.temp == 0.0 {
        SamplerConfig::greedy()
    } else {
        // Sampling as `pupil run` samples: llama.cpp's defaults for top-k, top-p and min-p.
        SamplerConfig { temperature: args.temp, seed: args.seed, ..SamplerConfig::default() }
    };
    sampler.validate().map_err(|e| match e.param() {
        SamplerParam::Temperature => BadInput::new(format!("--temp: {e}")),
        _ => BadInput::new(e.to_string()),
    })?;
    Ok(SequenceOptions { n_predict: args.n_predict, sampler, n_batch: args.batch, ..SequenceOptions::default() })
}

/// The prompts of `--prompts`, or the text's own.
fn read_prompts(args: &Args, text: &str) -> Result<Vec<Prompt>> {
    let Some(path) = &args.prompts else {
        let prompts = eval::prompts::from_text(text);
        if prompts.is_empty() {
            return Err(BadInput::new("the text gives no prompts: name a file with --prompts").into());
        }
        return Ok(prompts.into_iter().map(|p| chat(p, args.chat)).collect());
    };
    let contents = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| BadInput::stdin("--prompts", e))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| BadInput::file("--prompts", path, e))?
    };
    let jsonl = path.extension().is_some_and(|e| e == "jsonl" || e == "ndjson");
    eval::prompts::parse(&contents, jsonl, args.chat)
        .map_err(|e| BadInput::new(format!("--prompts {}: {e}", path.display())).into())
}

/// `p` as a user's message under `--chat`.
fn chat(p: Prompt, chat: bool) -> Prompt {
    match p {
        Prompt::Text(t) if chat => Prompt::Chat(vec![pupil::chat::Message::user(t)]),
        p => p,
    }
}

/// The sequence-level comparison, with a progress bar.
fn generate(
    teacher: &Path,
    student: &Path,
    prompts: &[Prompt],
    opts: &CompareOptions,
    seq: &SequenceOptions,
) -> Result<Sequences> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} prompts {elapsed_precise} eta {eta}")
            .map_err(anyhow::Error::msg)?
            .progress_chars("=> "),
    );
    bar.set_message("writing and grading");
    let out = eval::compare_generated(teacher, student, prompts, opts, seq, |p| match p {
        SequenceProgress::Prompts(n) => bar.set_length(n as u64),
        SequenceProgress::Done => bar.inc(1),
        _ => {}
    });
    bar.finish_and_clear();
    Ok(out?)
}

/// The teacher alone and with the student drafting, on the prompts `seq` ran.
fn draft_speedup(teacher: &Path, student: &Path, seq: &Sequences, args: &Args) -> Result<DraftSpeedup> {
    use pupil::generate::{Engine, SessionOptions, speedup};
    use std::sync::Arc;
    let load = |p: &Path| -> Result<Arc<Engine>> {
        let mut e = Engine::load(p).with_context(|| p.display().to_string())?;
        e.set_threads(super::run::threads(args.threads)?);
        Ok(Arc::new(e))
    };
    let (t, s) = (load(teacher)?, load(student)?);
    let prompts: Vec<Vec<u32>> = seq.per_prompt.iter().map(|p| p.prompt_ids.clone()).collect();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let opts = SessionOptions {
        n_ctx: Some(longest + args.n_predict + args.draft_max + 1),
        n_batch: args.batch,
        ..SessionOptions::default()
    };
    eprintln!("measuring the teacher alone and with the student drafting {} tokens per step", args.draft_max);
    let m = speedup::measure(&t, &s, &prompts, args.n_predict, args.draft_max, &opts)?;
    Ok(DraftSpeedup {
        draft_max: m.draft_max,
        acceptance: m.acceptance,
        teacher_tok_s: m.plain_tok_s,
        speculative_tok_s: m.speculative_tok_s,
        speedup: m.ratio(),
    })
}
