//! `pupil quantize`: a GGUF model to another file type, as llama-quantize makes it.

use super::error::BadInput;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use pupil::quantize::{Options, QuantizeError, Quantizer, parse_type};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Quantize a model to another file type (same output as llama.cpp's llama-quantize).
#[derive(clap::Args, Debug)]
#[command(after_help = "Types (case-insensitive, as llama-quantize names them):\n  \
    Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K F16 BF16 F32\n  \
    (Q3_K, Q4_K, Q5_K are aliases of Q3_K_M, Q4_K_M, Q5_K_M; llama.cpp's numeric ids work too)\n\n\
    Examples:\n  \
    pupil quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M\n  \
    pupil quantize model-f32.gguf model-q8_0.gguf q8_0 --threads 8\n  \
    pupil quantize model-q8_0.gguf model-q4_0.gguf Q4_0 --allow-requantize")]
pub struct Args {
    /// The model to quantize (GGUF; best F32, F16 or BF16).
    input: PathBuf,
    /// Where to write the quantized model.
    output: PathBuf,
    /// The file type to make, e.g. Q4_K_M.
    #[arg(value_name = "TYPE")]
    ftype: String,
    /// Re-quantize tensors that are already quantized (dequantize, then quantize: loses
    /// precision). Without it, a quantized input is refused.
    #[arg(long)]
    allow_requantize: bool,
    /// Every matrix in the type's base type, without the mixture rules (llama-quantize --pure).
    #[arg(long)]
    pure: bool,
    /// Threads (default: all cores).
    #[arg(short = 't', long, allow_negative_numbers = true, value_parser = super::parse::at_least::<1>)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    super::run::set_threads(args.threads)?;
    let ftype = parse_type(&args.ftype)?;
    let options = Options { ftype, allow_requantize: args.allow_requantize, pure: args.pure };
    let q = Quantizer::open(&args.input, &options)?;

    let requantized: Vec<_> = q.tensors().iter().filter(|t| t.requantizes()).collect();
    if let Some(first) = requantized.first() {
        eprintln!(
            "warning: {} tensors are already quantized (e.g. '{}' in {}); re-quantizing them loses precision: \
             quantize from an F32/F16/BF16 file if you have one",
            requantized.len(),
            first.name,
            first.from
        );
    }
    let fell_back: Vec<_> = q.tensors().iter().filter(|t| t.fell_back_from.is_some()).collect();
    if let Some(first) = fell_back.first() {
        eprintln!(
            "note: {} of {} tensors have rows that do not fit their type's blocks and fall back \
             (e.g. '{}': {} columns, {} -> {})",
            fell_back.len(),
            q.tensors().len(),
            first.name,
            first.dims[0],
            first.fell_back_from.map_or("?", |t| t.name()),
            first.to
        );
    }

    let total: u64 = q.tensors().iter().map(|t| t.n_elements()).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {elapsed_precise} eta {eta} {msg}")
            .map_err(anyhow::Error::msg)?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let s = q.write(&args.output, |t| {
        bar.inc(t.n_elements());
        bar.set_message(format!("{} {} -> {}", t.name, t.from, t.to));
    });
    bar.finish_and_clear();
    let s = match s {
        Ok(s) => s,
        // Creating the output failed because of the path the user gave.
        Err(QuantizeError::Output { path, source }) if super::error::is_bad_path(&source) => {
            return Err(BadInput::file("output", &path, source).into());
        }
        Err(e) => return Err(e.into()),
    };

    let bpw = |bytes: u64| bytes as f64 * 8.0 / s.elements.max(1) as f64;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} ({} tensors, {} converted): {} ({:.2} bpw) -> {} ({:.2} bpw) in {:.1} s",
        args.output.display(),
        ftype.name(),
        s.tensors,
        s.converted,
        super::output::bytes(s.in_bytes),
        bpw(s.in_bytes),
        super::output::bytes(s.out_bytes),
        bpw(s.out_bytes),
        start.elapsed().as_secs_f64()
    )?;
    out.flush()?;
    Ok(())
}
