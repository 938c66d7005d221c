//! `pupil loadgen`: closed-loop streaming load against an OpenAI-compatible server on this
//! machine (`pupil serve`, llama-server), through [`pupil::serve::loadgen`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pupil::serve::loadgen::{self, LoadConfig, LoadError, Percentiles, Report};

use super::error::BadInput;

/// Load a server on this machine with streaming clients and report throughput and latency.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    pupil loadgen --url http://127.0.0.1:8080 -c 8 -n 32\n  \
    pupil loadgen -c 32 -n 64 --solo 16 --server-pid $(pgrep -n llama-server) --json\n  \
    pupil loadgen -c 8 -n 8 --long-prompt 2048          # streams while a long prompt arrives\n  \
    pupil loadgen -c 8 -n 32 --shared-prefix 400 --prompt-tokens 50 --max-tokens 32\n\n\
    Closed loop: each client sends its next request when its previous answer ended, until -n\n\
    requests were sent or --deadline passed. Requests are streamed /v1/completions of token ids\n\
    (greedy, ignore_eos), each prompt a different window of --text as the server tokenizes it.\n\
    TTFT counts from sending (queueing included); ITL is the gap between text chunks.\n\
    Loopback only.")]
pub struct Args {
    /// The server's root URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Clients, each with one request in flight.
    #[arg(short = 'c', long, default_value_t = 8, allow_negative_numbers = true, value_parser = super::parse::between::<1, 4096>)]
    clients: usize,
    /// Requests to send in all.
    #[arg(short = 'n', long, default_value_t = 32, allow_negative_numbers = true, value_parser = super::parse::between::<1, 1_000_000>)]
    requests: usize,
    /// Seconds after which no request is sent and running ones are cut (the --solo runs have
    /// as long again, after the load).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, allow_negative_numbers = true, value_parser = super::parse::between::<1, 86_400>)]
    deadline: usize,
    /// Tokens of each request's own prompt (its BOS included).
    #[arg(long, default_value_t = 256, allow_negative_numbers = true, value_parser = super::parse::between::<1, 1_000_000>)]
    prompt_tokens: usize,
    /// Tokens generated per request (`max_tokens`, with `ignore_eos`).
    #[arg(long, default_value_t = 128, allow_negative_numbers = true, value_parser = super::parse::between::<1, 1_000_000>)]
    max_tokens: usize,
    /// Tokens of a prefix every prompt shares (a system prompt), after the BOS.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::parse::between::<0, 1_000_000>)]
    shared_prefix: usize,
    /// Also send one prompt of this many tokens once every stream is decoding, and report the
    /// streams' inter-token latency while it is prefilled.
    #[arg(long, value_name = "TOKENS", allow_negative_numbers = true, value_parser = super::parse::between::<1, 1_000_000>)]
    long_prompt: Option<usize>,
    /// After the load, run the first N requests again alone and count identical texts.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true, value_parser = super::parse::between::<0, 1_000_000>)]
    solo: usize,
    /// Start at the Nth prompt of the text (runs against one server with offsets far enough
    /// apart send different prompts, which no prefix cache has seen).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true, value_parser = super::parse::between::<0, 100_000_000>)]
    prompt_offset: usize,
    /// Text the prompts are cut from (default: models/distill/heldout.txt).
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// The server's process id: report its memory (VmRSS, VmHWM) after the load.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// The held-out text of the embedded pair: under the working directory, or else under the
/// checkout this binary was built from.
fn default_text() -> Result<PathBuf> {
    let rel = "models/distill/heldout.txt";
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    [PathBuf::from(rel), built].into_iter().find(|p| p.is_file()).ok_or_else(|| {
        BadInput::new(format!("no --text given and {rel} is not under the working directory: name a text with --text"))
            .into()
    })
}

fn load_error(e: LoadError) -> anyhow::Error {
    match e {
        LoadError::BadUrl { .. } | LoadError::NotLoopback { .. } => BadInput::new(format!("--url {e}")).into(),
        LoadError::BadConfig(_) | LoadError::TextTooShort { .. } => BadInput::new(e.to_string()).into(),
        LoadError::ServerMemory { .. } => BadInput::new(format!("--server-pid: {e}")).into(),
        e => e.into(),
    }
}

pub fn run(args: Args) -> Result<()> {
    let path = match &args.text {
        Some(p) => p.clone(),
        None => default_text()?,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| BadInput::file("--text", &path, e))?;
    if let Some(pid) = args.server_pid {
        // Before the load, so that a wrong pid fails in a second.
        loadgen::server_memory(pid).map_err(load_error)?;
    }
    let cfg = LoadConfig {
        url: args.url.trim_end_matches('/').to_owned(),
        clients: args.clients,
        requests: args.requests,
        deadline: Duration::from_secs(args.deadline as u64),
        prompt_tokens: args.prompt_tokens,
        shared_prefix: args.shared_prefix,
        max_tokens: args.max_tokens,
        long_prompt: args.long_prompt,
        solo: args.solo,
        prompt_offset: args.prompt_offset,
        ..LoadConfig::new("")
    };
    let bar = ProgressBar::with_draw_target(Some(args.requests as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} requests {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("pupil loadgen");
    let mut report = loadgen::run(&cfg, &text, &|n| bar.set_position(n as u64)).map_err(load_error)?;
    bar.finish_and_clear();
    if let Some(pid) = args.server_pid {
        // The server may have exited during the load: then there is nothing to report.
        report.server_memory = loadgen::server_memory(pid).ok();
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", human(&report))?;
    }
    Ok(())
}

fn pct(p: &Option<Percentiles>) -> String {
    match p {
        Some(p) => format!("p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms", p.p50, p.p99, p.max),
        None => "none".into(),
    }
}

fn human(r: &Report) -> String {
    let mut s = format!(
        "{} clients, {} of {} requests completed in {:.1} s against {} ({} errors, {} cut at the deadline)\n",
        r.clients, r.completed, r.requests, r.wall_s, r.url, r.errors, r.cut
    );
    if let Some(e) = &r.first_error {
        s += &format!("  first error: {e}\n");
    }
    s += &format!("  output      {:.1} tok/s   total {:.1} tok/s\n", r.output_tok_s, r.total_tok_s);
    s += &format!("  TTFT        {}\n", pct(&r.ttft_ms));
    s += &format!("  inter-token {}\n", pct(&r.itl_ms));
    if let Some(l) = &r.long_prompt {
        let ttft = l.ttft_ms.map_or("no first token".into(), |t| format!("first token after {t:.0} ms"));
        s += &format!(
            "  long prompt {} tokens, {ttft}; streams meanwhile: {}\n",
            l.prompt_tokens,
            pct(&l.streams_itl_ms)
        );
        if let Some(e) = &l.error {
            s += &format!("    its error: {e}\n");
        }
    }
    if let Some(o) = &r.solo {
        s += &format!(
            "  solo        {} of {} identical to their run alone ({:.0}%), {} solo runs failed\n",
            o.identical,
            o.checked,
            100.0 * o.fraction,
            o.errors
        );
        if let Some(e) = &o.first_error {
            s += &format!("    first solo error: {e}\n");
        }
    }
    if let Some(m) = &r.server_memory {
        s += &format!(
            "  server      RSS {:.1} MiB, peak {:.1} MiB (pid {})\n",
            m.rss_kib as f64 / 1024.0,
            m.peak_rss_kib as f64 / 1024.0,
            m.pid
        );
    }
    s
}
