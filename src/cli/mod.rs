//! The `pupil` command line: argument parsing and error reporting; each subcommand lives in
//! its own module and does its work through the library.

mod bench;
mod compare;
mod error;
mod inspect;
mod loadgen;
mod output;
mod parse;
mod quantize;
mod run;
mod serve;
mod tokenize;

use clap::{Parser, Subcommand};

/// pupil: run, serve and evaluate distilled student language models.
#[derive(Parser, Debug)]
#[command(name = "pupil", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Bench(bench::Args),
    Compare(compare::Args),
    Inspect(inspect::Args),
    Loadgen(loadgen::Args),
    Quantize(quantize::Args),
    Run(run::Args),
    Serve(serve::Args),
    Tokenize(tokenize::Args),
}

/// Runs the command line and returns the process exit status (see [`error`] for what each
/// means).
pub fn main() -> i32 {
    // llama.cpp spells `--gpu-layers` `-ngl`, which clap cannot take as a short flag.
    let args = std::env::args_os().map(|a| if a == "-ngl" { "--gpu-layers".into() } else { a });
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && e.kind() != clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("{}", error::clap_one_line(&e));
            return error::EXIT_BAD_INPUT;
        }
        // --help, --version, or no subcommand: clap prints the help.
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Tokenize(args) => tokenize::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            match error::hint(&e) {
                Some(hint) => eprintln!("error: {} ({hint})", error::one_line(&e)),
                None => eprintln!("error: {}", error::one_line(&e)),
            }
            if e.is::<compare::GateFailed>() {
                error::EXIT_GATE
            } else if is_bad_input(&e) {
                error::EXIT_BAD_INPUT
            } else {
                1
            }
        }
    }
}

/// Errors the user can fix by changing the input: a flag out of range, a file that cannot be
/// read or written, a malformed or unsupported model file, a prompt that does not fit.
///
/// A file named on the command line that cannot be read is the user's to fix, so the library's
/// [`ErrorKind::Io`] counts here too; only what the library calls internal does not.
fn is_bad_input(e: &anyhow::Error) -> bool {
    use pupil::error::ErrorKind;
    let not_internal = |k: ErrorKind| k != ErrorKind::Internal;
    e.chain().any(|c| {
        c.is::<error::BadInput>()
            || c.is::<pupil::gguf::GgufError>()
            || c.downcast_ref::<pupil::model::ModelError>().is_some_and(|e| not_internal(e.kind()))
            || c.is::<pupil::tokenizer::TokenizerError>()
            || c.downcast_ref::<pupil::engine::EngineError>().is_some_and(|e| not_internal(e.kind()))
            || c.downcast_ref::<pupil::generate::GenerateError>().is_some_and(|e| not_internal(e.kind()))
            || c.is::<pupil::sample::SamplerError>()
            || c.is::<pupil::eval::VocabMismatch>()
            || c.is::<compare::NoPair>()
            || c.is::<pupil::generate::SpeculativeError>()
            || c.downcast_ref::<pupil::eval::EvalError>().is_some_and(|e| e.is_bad_input())
            || c.downcast_ref::<pupil::quantize::QuantizeError>().is_some_and(|q| q.is_bad_input())
            || c.downcast_ref::<pupil::bench::BenchError>().is_some_and(|b| b.is_bad_input())
    })
}

/// `--gpu-layers`, for every command that loads models.
#[derive(clap::Args, Debug, Clone, Copy)]
struct GpuArgs {
    /// Layers to run on an NVIDIA GPU, as llama.cpp's `-ngl`: the last N blocks, N = layers
    /// + 1 adding the output head. Needs a build with `--features cuda` and a GPU.
    #[arg(
        long = "gpu-layers",
        visible_alias = "n-gpu-layers",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    gpu_layers: usize,
}

/// How a command's `--no-repack` and `--gpu-layers` load models: repacked at load unless the
/// flag (or `PUPIL_NO_REPACK`) says not to.
fn load_options(no_repack: bool, gpu_layers: usize) -> pupil::model::LoadOptions {
    let opts = pupil::model::LoadOptions::default();
    pupil::model::LoadOptions { repack: opts.repack && !no_repack, gpu_layers }
}
