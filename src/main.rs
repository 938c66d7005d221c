//! The `pupil` binary: a thin command line over the `pupil` library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
