//! The `pupil` binary: a thin command line over the `pupil` library.

mod cli;

fn main() {
    // Logs go to stderr, filtered by RUST_LOG (warnings and errors by default).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(cli::main());
}
