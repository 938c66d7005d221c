//! The `pupil` command line: argument parsing and error reporting; each subcommand lives in
//! its own module and does its work through the library.

mod bench;
mod compare;
mod inspect;
mod output;
mod quantize;
mod run;
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
    Quantize(quantize::Args),
    Run(run::Args),
    Tokenize(tokenize::Args),
}

/// Exit status for input the user can fix: a malformed model file, a bad argument.
const EXIT_BAD_INPUT: i32 = 2;

/// Exit status of a quality gate that failed (`pupil compare --fail-below-agreement`).
const EXIT_GATE: i32 = 3;

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Run(args) => run::run(args),
        Command::Tokenize(args) => tokenize::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<compare::GateFailed>() {
                EXIT_GATE
            } else if is_bad_input(&e) {
                EXIT_BAD_INPUT
            } else {
                1
            }
        }
    }
}

/// Errors the user can fix by changing the input: a malformed or unsupported model file, a
/// prompt that does not fit.
fn is_bad_input(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<pupil::gguf::GgufError>()
            || c.is::<pupil::model::ModelError>()
            || c.is::<pupil::tokenizer::TokenizerError>()
            || c.is::<pupil::generate::GenerateError>()
            || c.is::<pupil::eval::VocabMismatch>()
            || c.is::<compare::NoPair>()
            || c.is::<pupil::generate::SpeculativeError>()
            || c.downcast_ref::<pupil::eval::EvalError>().is_some_and(|e| e.is_bad_input())
            || c.downcast_ref::<pupil::quantize::QuantizeError>().is_some_and(|q| q.is_bad_input())
    })
}
