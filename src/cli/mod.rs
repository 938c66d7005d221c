//! The `pupil` command line: argument parsing and error reporting; each subcommand lives in
//! its own module and does its work through the library.

mod inspect;
mod output;
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
    Inspect(inspect::Args),
    Run(run::Args),
    Tokenize(tokenize::Args),
}

/// Exit status for input the user can fix: a malformed model file, a bad argument.
const EXIT_BAD_INPUT: i32 = 2;

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Run(args) => run::run(args),
        Command::Tokenize(args) => tokenize::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if is_bad_input(&e) { EXIT_BAD_INPUT } else { 1 }
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
    })
}
