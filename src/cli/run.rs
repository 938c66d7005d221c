//! `pupil run`: generate text from a prompt, or chat, streaming tokens as they come.

use super::error::BadInput;
use anyhow::{Context, Result};
use pupil::chat::Message;
use pupil::generate::{Completion, Engine, GenerateParams, Session, SessionOptions, SpeculativeSession, StopReason};
use pupil::model::{KvType, Threads};
use pupil::sample::{SamplerConfig, SamplerError, SamplerParam};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Generate text with a model.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    pupil run -m models/gemma-3-270m-q4_k_m.gguf -p \"The capital of France is\" -n 32\n  \
    pupil run -m model.gguf -p - --temp 0.7 --seed 42 < prompt.txt\n  \
    pupil run -m model-it.gguf --chat --system \"Be brief.\"\n  \
    pupil run -m teacher-q8_0.gguf --draft student-q4_k_m.gguf --draft-max 8 -p \"Once upon a time\" --temp 0")]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    /// The prompt; `-` reads it from stdin. With --chat, an optional first user message.
    #[arg(short, long)]
    prompt: Option<String>,
    /// Tokens to generate (-1: until the model ends or the context is full).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true,
          value_parser = super::parse::token_limit)]
    n_predict: i64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Stop when the output contains this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
    /// Context length (capped by the model's training context).
    #[arg(short = 'c', long = "ctx", default_value_t = 4096, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    ctx: usize,
    /// Threads (default: all cores).
    #[arg(short = 't', long, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    threads: Option<usize>,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = KvArg::F16)]
    kv_type: KvArg,
    /// Interactive multi-turn chat on stdin, using the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// A Jinja chat template file to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Treat special-token text in the prompt (`<start_of_turn>`) as special tokens.
    #[arg(long)]
    parse_special: bool,
    /// Do not add the BOS token the model's metadata asks for.
    #[arg(long)]
    no_bos: bool,
    /// A draft model with the same vocabulary, for speculative decoding: it proposes tokens
    /// that the model checks in one batch (greedy output is unchanged, only faster).
    #[arg(long, value_name = "FILE", conflicts_with = "chat")]
    draft: Option<PathBuf>,
    /// Read every matrix from the memory map as stored, without the copy repacked at load
    /// for this CPU's kernels (for comparison; also `PUPIL_NO_REPACK=1`).
    #[arg(long)]
    no_repack: bool,
    #[command(flatten)]
    gpu: super::GpuArgs,
    /// Most tokens the draft proposes per step.
    #[arg(long, default_value_t = 8, requires = "draft", allow_negative_numbers = true)]
    draft_max: usize,
}

/// Sampling flags, shared by commands that generate.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    // Values may start with a hyphen, so that `--temp -1` and `--temp -inf` get the range
    // error of `config` rather than clap's "unexpected argument".
    /// Temperature, 0 or more; 0 is greedy.
    #[arg(long = "temp", default_value_t = 0.8, allow_hyphen_values = true)]
    temp: f32,
    /// Top-k (0: off).
    #[arg(long, default_value_t = 40, allow_negative_numbers = true, value_parser = super::parse::at_least::<0>)]
    top_k: usize,
    /// Top-p, 0 to 1 (1: off).
    #[arg(long, default_value_t = 0.95, allow_hyphen_values = true)]
    top_p: f32,
    /// Min-p, 0 to 1 (0: off).
    #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
    min_p: f32,
    /// Repetition penalty, above 0 (1: off).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    repeat_penalty: f32,
    /// Tokens the penalties look back over.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = super::parse::at_least::<0>)]
    repeat_last_n: usize,
    /// Presence penalty (0: off).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    presence_penalty: f32,
    /// Frequency penalty (0: off).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    frequency_penalty: f32,
    /// Random seed.
    #[arg(short, long, default_value_t = 0x5eed, allow_negative_numbers = true)]
    seed: u64,
}

impl SamplingArgs {
    /// The sampler these flags describe, checked: a setting out of range is [`BadInput`]
    /// naming its flag.
    pub fn config(&self) -> Result<SamplerConfig, BadInput> {
        let cfg = SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.repeat_last_n,
            seed: self.seed,
        };
        cfg.validate().map_err(|e| {
            let flag = match e.param() {
                SamplerParam::Temperature => "--temp",
                SamplerParam::TopP => "--top-p",
                SamplerParam::MinP => "--min-p",
                SamplerParam::RepeatPenalty => "--repeat-penalty",
                SamplerParam::PresencePenalty => "--presence-penalty",
                SamplerParam::FrequencyPenalty => "--frequency-penalty",
                SamplerParam::PenaltyLastN => "--repeat-last-n",
                _ => "a sampling flag",
            };
            BadInput::new(match &e {
                SamplerError::OutOfRange { value, expected, .. } => format!("{flag} is {value}, expected {expected}"),
                SamplerError::TooLarge { value, limit, .. } => {
                    format!("{flag} is {value}, more than the limit of {limit}")
                }
                _ => format!("{flag}: {e}"),
            })
        })?;
        Ok(cfg)
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum KvArg {
    F16,
    F32,
}

/// Size rayon's global pool once, before any work runs. (`--threads` parses as 1 or more.)
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting up the thread pool")?;
    }
    Ok(())
}

/// The pool `-t N` asks for (one thread per core without it): the model runs on it, not on
/// rayon's global pool.
pub fn threads(threads: Option<usize>) -> Result<Threads> {
    Ok(match threads {
        Some(n) => Threads::new(n)?,
        None => Threads::available()?,
    })
}

/// Without --chat, a prompt is needed.
const NO_PROMPT: &str = "give a prompt with -p TEXT (or -p - for stdin), or use --chat";

pub fn run(args: Args) -> Result<()> {
    // Every flag is checked before the model loads.
    if args.prompt.is_none() && !args.chat {
        return Err(BadInput::new(NO_PROMPT).into());
    }
    let sampler = args.sampling.config()?;
    if let Some(empty) = args.stop.iter().find(|s| s.is_empty()) {
        return Err(BadInput::new(format!(
            "--stop {empty:?} is empty, and every text contains it: give the text to stop at"
        ))
        .into());
    }
    let template = match &args.chat_template {
        Some(path) => {
            let src = std::fs::read_to_string(path).map_err(|e| BadInput::file("--chat-template", path, e))?;
            if src.trim().is_empty() {
                return Err(BadInput::new(format!("--chat-template {} is empty", path.display())).into());
            }
            Some(src)
        }
        None => None,
    };
    let threads = threads(args.threads)?;
    let load = super::load_options(args.no_repack, args.gpu.gpu_layers);
    let start = std::time::Instant::now();
    let mut engine = Engine::load_with(&args.model, &load).map_err(super::output::in_file(&args.model))?;
    let load_s = start.elapsed().as_secs_f64();
    engine.set_threads(threads.clone());
    if let (Some(path), Some(src)) = (&args.chat_template, template) {
        engine
            .set_chat_template("chat template", src)
            .with_context(|| format!("--chat-template {}", path.display()))?;
    }
    let engine = Arc::new(engine);
    let kv_type = match args.kv_type {
        KvArg::F16 => KvType::F16,
        KvArg::F32 => KvType::F32,
    };
    let mut session = engine.session(SessionOptions { n_ctx: Some(args.ctx), kv_type, ..SessionOptions::default() });
    let params = GenerateParams { max_tokens: usize::try_from(args.n_predict).ok(), sampler, stop: args.stop.clone() };
    if args.chat {
        return chat(&engine, &mut session, &params, &args, (load_s, load.repack));
    }
    let prompt = match args.prompt.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| BadInput::stdin("-p", e))?;
            s
        }
        Some(p) => p.to_owned(),
        // Checked at the start; --chat returned above.
        None => return Err(BadInput::new(NO_PROMPT).into()),
    };
    let tokens = engine.tokenizer().encode(&prompt, !args.no_bos, args.parse_special);
    if let Some(path) = &args.draft {
        // The draft and the target take turns: one pool for both.
        let mut draft = Engine::load_with(path, &load).map_err(super::output::in_file(path))?;
        draft.set_threads(threads);
        let draft = Arc::new(draft);
        let draft = draft.session(SessionOptions { n_ctx: Some(args.ctx), kv_type, ..SessionOptions::default() });
        let mut spec = SpeculativeSession::new(session, draft, args.draft_max)?;
        let mut out = std::io::stdout().lock();
        let mut io_err = None;
        let done = spec.generate(&tokens, &params, |piece| write_piece(&mut out, piece, &mut io_err))?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
        end_line()?;
        report(&done.completion, Some((load_s, load.repack)));
        let s = done.stats;
        eprintln!(
            "draft: drafted {}, accepted {} ({:.1}%) | {} target passes for {} tokens ({:.2} tokens/pass)",
            s.drafted,
            s.accepted,
            100.0 * s.acceptance_rate(),
            s.target_passes,
            done.completion.tokens.len(),
            done.completion.tokens.len() as f64 / s.target_passes.max(1) as f64
        );
        return Ok(());
    }
    let done = generate(&mut session, &tokens, &params)?;
    end_line()?;
    report(&done, Some((load_s, load.repack)));
    Ok(())
}

/// Generate, streaming text to stdout; a closed stdout ends generation quietly.
fn generate(session: &mut Session, tokens: &[u32], params: &GenerateParams) -> Result<Completion> {
    let mut out = std::io::stdout().lock();
    let mut io_err = None;
    let done = session.generate(tokens, params, |piece| write_piece(&mut out, piece, &mut io_err))?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    Ok(done)
}

/// Ends the generated text's line. A closed stdout is an error here (which `main` treats as
/// success), where `println!` would panic.
fn end_line() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    out.flush()
}

/// Writes a streamed piece; on failure keeps the error and asks generation to stop.
fn write_piece(out: &mut impl Write, piece: &str, io_err: &mut Option<std::io::Error>) -> bool {
    match out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            *io_err = Some(e);
            false
        }
    }
}

/// The closing line: speeds, why generation stopped, and how long the model took to load.
fn report(done: &Completion, load: Option<(f64, bool)>) {
    let t = &done.timings;
    let why = match &done.stop {
        StopReason::EndOfGeneration => "end of generation".to_string(),
        StopReason::MaxTokens => "token limit".to_string(),
        StopReason::StopString(s) => format!("stop string {s:?}"),
        StopReason::ContextFull => "context full".to_string(),
        StopReason::Cancelled => "cancelled".to_string(),
    };
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | generation: {} tokens, {:.1} tok/s | time to first token: {:.0} ms | stopped: {why}{}",
        t.prompt_tokens,
        t.prompt_tok_s(),
        t.gen_tokens,
        t.gen_tok_s(),
        t.ttft_secs * 1e3,
        match load {
            Some((s, true)) => format!(" | load: {s:.2} s"),
            Some((s, false)) => format!(" | load: {s:.2} s (--no-repack)"),
            None => String::new(),
        },
    );
}

/// The chat loop; `load` (the model's load time, and whether it was repacked) is said once
/// the chat can start.
fn chat(
    engine: &Arc<Engine>,
    session: &mut Session,
    params: &GenerateParams,
    args: &Args,
    load: (f64, bool),
) -> Result<()> {
    if engine.chat_template().is_none() {
        return Err(
            anyhow::Error::new(pupil::engine::EngineError::NoChatTemplate).context(args.model.display().to_string())
        );
    }
    eprintln!("load: {:.2} s{}", load.0, if load.1 { "" } else { " (--no-repack)" });
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.clone()));
    }
    let mut pending = args.prompt.clone().filter(|p| p != "-");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let user = match pending.take() {
            Some(p) => p,
            None => {
                eprint!("> ");
                match lines.next() {
                    Some(line) => line.context("reading stdin")?,
                    None => break,
                }
            }
        };
        if user.trim().is_empty() {
            continue;
        }
        messages.push(Message::user(user));
        let tokens = engine.chat_tokens(&messages)?;
        let done = generate(session, &tokens, params)?;
        end_line()?;
        report(&done, None);
        messages.push(Message::assistant(done.text));
    }
    Ok(())
}
