//! `pupil serve`: the OpenAI-compatible HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pupil::engine::Engine;
use pupil::model::Threads;
use pupil::serve::http::{self, App, HttpOptions};
use pupil::serve::scheduler::{Scheduler, SchedulerOptions};

use super::error::BadInput;

/// Serve a model over HTTP with OpenAI's API (chat, completions, streaming).
#[derive(clap::Args, Debug)]
#[command(after_help = "With no -m, the embedded distilled student (models/distill/student-q8_0.gguf in \
    pupil's checkout) is served.\n\nExamples:\n  \
    pupil serve\n  \
    pupil serve -m models/gemma-3-270m-q4_k_m.gguf --slots 8 -t 2 --port 8080\n  \
    curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n    \
    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'")]
pub struct Args {
    /// The GGUF model file (default: the embedded distilled student).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests served at once (KV cache slots).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    slots: usize,
    /// Positions per slot (capped by the model's training context).
    #[arg(short = 'c', long = "ctx", default_value_t = 4096, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    ctx: usize,
    /// Most tokens one step runs (decodes and prompt chunks together).
    #[arg(long, default_value_t = 512, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    batch: usize,
    /// Most prompt tokens a step runs while requests are decoding (within --batch). Smaller
    /// shortens the pause a new prompt puts in the running streams; larger gives more
    /// throughput.
    #[arg(long, value_name = "N", default_value_t = pupil::serve::scheduler::PREFILL_WHILE_DECODING, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    prefill_chunk: usize,
    /// Threads of the forward pass (default: all cores).
    #[arg(short = 't', long, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    threads: Option<usize>,
    /// Requests that may wait for a slot; past it, 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1/*.
    #[arg(long, value_name = "KEY", conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// Read the API key from this file (its first line).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// The model's name in answers and /v1/models (default: the file's stem).
    #[arg(long)]
    alias: Option<String>,
    /// A Jinja chat template file to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// On SIGTERM, answer /ready with 503 but keep admitting requests for this many seconds
    /// (for load balancers' health checks to move traffic away), then drain.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = super::parse::non_negative)]
    drain_grace: f64,
    /// Close a connection whose request headers take longer than this, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = super::parse::non_negative)]
    header_timeout: f64,
    /// Read every matrix from the memory map as stored, without the copy repacked at load
    /// for this CPU's kernels (for comparison; also `PUPIL_NO_REPACK=1`).
    #[arg(long)]
    no_repack: bool,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

/// The embedded distilled student: in `models/distill` under the working directory, or else
/// under the checkout this binary was built from.
fn embedded_student() -> Result<PathBuf> {
    let rel = "models/distill/student-q8_0.gguf";
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    [PathBuf::from(rel), built].into_iter().find(|p| p.is_file()).ok_or_else(|| {
        BadInput::new(format!(
            "no -m given and the embedded student ({rel}) is not under the working directory: name a model with -m"
        ))
        .into()
    })
}

pub fn run(args: Args) -> Result<()> {
    let path = match &args.model {
        Some(p) => p.clone(),
        None => embedded_student()?,
    };
    let api_key = match &args.api_key_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| BadInput::file("--api-key-file", f, e))?;
            let key = text.lines().next().unwrap_or("").trim().to_owned();
            if key.is_empty() {
                return Err(BadInput::new(format!("--api-key-file {} holds no key", f.display())).into());
            }
            Some(key)
        }
        None => args.api_key.clone(),
    };
    let mut engine = Engine::load_with(&path, &super::load_options(args.no_repack, args.gpu.gpu_layers))
        .with_context(|| path.display().to_string())?;
    if let Some(t) = &args.chat_template {
        let src = std::fs::read_to_string(t).map_err(|e| BadInput::file("--chat-template", t, e))?;
        engine.set_chat_template("chat template", src).with_context(|| format!("--chat-template {}", t.display()))?;
    }
    if engine.chat_template().is_none() {
        // As llama-server does for a model without a template.
        tracing::info!("{} has no chat template: using ChatML", path.display());
        engine.set_chat_template("ChatML", pupil::chat::CHATML.to_owned()).context("the ChatML template")?;
    }
    let engine = Arc::new(engine);
    let threads = match args.threads {
        Some(n) => Threads::new(n)?,
        None => Threads::available()?,
    };
    let n_threads = threads.count();
    let opts = SchedulerOptions {
        n_slots: args.slots,
        n_ctx: Some(args.ctx),
        step_tokens: args.batch,
        prefill_while_decoding: args.prefill_chunk,
        max_queue: args.max_queue,
        ..SchedulerOptions::default()
    };
    let sched = Scheduler::start(Arc::clone(&engine), opts, threads)?;
    let alias = args
        .alias
        .clone()
        .unwrap_or_else(|| path.file_stem().map_or("pupil".into(), |s| s.to_string_lossy().into_owned()));
    let app = App::new(engine, sched.clone(), HttpOptions { alias, api_key, ..HttpOptions::default() });
    let grace = Duration::from_secs_f64(args.drain_grace);
    let unready = Arc::clone(&app);

    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|e| BadInput::new(format!("--host {} --port {}: {e}", args.host, args.port)))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| BadInput::new(format!("--host/--port {addr}: {e}")))?;
        let local = listener.local_addr()?;
        eprintln!(
            "pupil serve: {} on http://{local} ({} slots of {} positions, {n_threads} threads)",
            path.display(),
            args.slots,
            sched.n_ctx()
        );
        let drain = sched.clone();
        http::serve(listener, http::router(app), Duration::from_secs_f64(args.header_timeout), async move {
            shutdown_signal().await;
            // Readiness turns 503 and new requests are refused, while every request
            // admitted finishes (up to the deadline); then the listener closes.
            eprintln!("pupil serve: draining");
            unready.set_unready();
            tokio::time::sleep(grace).await;
            drain.shutdown();
            let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
            while !drain.is_finished() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Ok::<_, anyhow::Error>(())
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    eprintln!("pupil serve: stopped");
    Ok(())
}

/// How long a drain waits for the requests in flight.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
