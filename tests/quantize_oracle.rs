//! `pupil::quantize` against llama.cpp's `llama_model_quantize` (what `llama-quantize` runs):
//! the same input, the same file type, then every metadata entry, every tensor info (name,
//! shape, type, offset), every tensor's bytes and the whole files are compared.
//!
//! Inputs are random-weight models (`pupil::model::synth`) with 8 or 9 layers, so the per-layer
//! rules (`use_more_bits`, the first-layers bumps) pick different layers, in shapes that hit
//! the fallbacks: a Llama with rows of 256 (everything fits), a Gemma 3 with rows of 320
//! (not whole 256-blocks: k-quants fall back to legacy types) and tied embeddings, a Qwen2
//! with biases, grouped-query attention of 5 and an FFN of 880 (not even whole 32-blocks:
//! F16). Plus F16 and already-quantized inputs, `--pure`, and the real Gemma 3 270M.
//!
//! Run with `cargo test --release --features llama --test quantize_oracle -- --nocapture`
//! for the per-recipe table.
#![cfg(feature = "llama")]

use std::path::Path;
use std::time::{Duration, Instant};

use pupil::gguf::GgufFile;
use pupil::kernels::DType;
use pupil::llama;
use pupil::model::Arch;
use pupil::model::synth::{Synth, SynthModel};
use pupil::quantize::{Options, Quantizer, parse_type};

const GEMMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");

/// Every type and recipe pupil makes from a float model (F32 itself only from F16).
const TYPES: &[&str] = &[
    "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q3_K_L",
    "Q3_K_M", "Q3_K_S", "Q2_K",
];

fn models(dtype: DType) -> Vec<(&'static str, Synth)> {
    vec![
        ("llama", Synth { n_layer: 8, n_head: 4, n_head_kv: 1, ..Synth::new(Arch::Llama, dtype) }),
        (
            "gemma3",
            Synth {
                n_layer: 9,
                n_embd: 320,
                n_ff: 768,
                n_head: 4,
                n_head_kv: 1,
                head_dim: 128,
                sliding_window: Some(16),
                tied_output: true,
                ..Synth::new(Arch::Gemma3, dtype)
            },
        ),
        (
            "qwen2",
            Synth {
                n_layer: 8,
                n_embd: 320,
                n_ff: 880,
                n_head: 5,
                n_head_kv: 1,
                head_dim: 64,
                biases: true,
                tied_output: true,
                ..Synth::new(Arch::Qwen2, dtype)
            },
        ),
    ]
}

/// What one comparison found.
struct Outcome {
    tensors: usize,
    same_info: usize,
    same_bytes: usize,
    same_metadata: bool,
    same_file: bool,
    diffs: Vec<String>,
    ours: Duration,
    theirs: Duration,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.same_metadata && self.same_file && self.same_info == self.tensors && self.same_bytes == self.tensors
    }
}

fn compare(ours: &Path, theirs: &Path) -> Outcome {
    let (a, b) = (GgufFile::open(ours).unwrap(), GgufFile::open(theirs).unwrap());
    let mut diffs = Vec::new();
    let same_metadata = a.metadata() == b.metadata();
    if !same_metadata {
        let (ka, kb): (Vec<_>, Vec<_>) =
            (a.metadata().iter().map(|kv| &kv.0).collect(), b.metadata().iter().map(|kv| &kv.0).collect());
        if ka != kb {
            diffs.push(format!("metadata keys: ours {ka:?}\n theirs {kb:?}"));
        }
        for ((k, va), (_, vb)) in a.metadata().iter().zip(b.metadata()) {
            if va != vb {
                diffs.push(format!("metadata {k}: ours {va:?}, theirs {vb:?}"));
            }
        }
    }
    if a.tensors().len() != b.tensors().len() {
        diffs.push(format!("tensor count: ours {}, theirs {}", a.tensors().len(), b.tensors().len()));
    }
    let (mut same_info, mut same_bytes) = (0, 0);
    for (ta, tb) in a.tensors().iter().zip(b.tensors()) {
        if ta == tb {
            same_info += 1;
        } else {
            diffs.push(format!("tensor info: ours {ta:?}, theirs {tb:?}"));
        }
        if a.tensor_data(ta) == b.tensor_data(tb) {
            same_bytes += 1;
        } else if ta.dtype == tb.dtype {
            diffs.push(format!("tensor {} ({}): bytes differ", ta.name, ta.dtype));
        }
    }
    let same_file = a.bytes() == b.bytes();
    if !same_file && diffs.is_empty() {
        diffs.push(format!("files differ ({} vs {} bytes) where nothing else does", a.file_size(), b.file_size()));
    }
    Outcome {
        tensors: b.tensors().len(),
        same_info,
        same_bytes,
        same_metadata,
        same_file,
        diffs,
        ours: Duration::ZERO,
        theirs: Duration::ZERO,
    }
}

/// Quantizes `input` with both and compares; prints one table row.
fn check(dir: &Path, label: &str, input: &Path, type_name: &str, pure: bool, allow_requantize: bool) -> Outcome {
    let ftype = parse_type(type_name).unwrap();
    let tag = format!("{label}-{type_name}{}", if pure { "-pure" } else { "" });
    let (ours, theirs) = (dir.join(format!("{tag}-pupil.gguf")), dir.join(format!("{tag}-llama.gguf")));

    let t = Instant::now();
    let options = Options { ftype, allow_requantize, pure };
    Quantizer::open(input, &options).unwrap().write(&ours, |_| {}).unwrap();
    let t_ours = t.elapsed();

    llama::backend().unwrap();
    let t = Instant::now();
    let params = llama::QuantizeParams { ftype: ftype.id(), allow_requantize, pure, nthread: 2 };
    llama::quantize(input, &theirs, params).unwrap();
    let t_theirs = t.elapsed();

    let mut o = compare(&ours, &theirs);
    o.ours = t_ours;
    o.theirs = t_theirs;
    let types = type_counts(&ours);
    println!(
        "{tag:<26} tensors {:>3}  info {:>3}  bytes {:>3}  metadata {:<5} file {:<5}  pupil {:>6.2} s  llama.cpp {:>6.2} s  [{types}]",
        o.tensors,
        o.same_info,
        o.same_bytes,
        o.same_metadata,
        o.same_file,
        o.ours.as_secs_f64(),
        o.theirs.as_secs_f64(),
    );
    for d in o.diffs.iter().take(5) {
        println!("    {d}");
    }
    // Keep the disk use of the whole run small.
    let _ = (std::fs::remove_file(&ours), std::fs::remove_file(&theirs));
    o
}

/// `Q6_K:3 Q4_K:40 F32:17`: how many tensors of each type a file holds.
fn type_counts(path: &Path) -> String {
    let f = GgufFile::open(path).unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for t in f.tensors() {
        *counts.entry(t.dtype.to_string()).or_default() += 1;
    }
    counts.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
}

fn write_model(dir: &Path, label: &str, spec: &Synth) -> std::path::PathBuf {
    let path = dir.join(format!("{label}-{}.gguf", spec.dtype));
    SynthModel::build(spec, None).unwrap().write(&path).unwrap();
    path
}

fn assert_all(outcomes: &[(String, Outcome)]) {
    let bad: Vec<&String> = outcomes.iter().filter(|(_, o)| !o.ok()).map(|(l, _)| l).collect();
    assert!(bad.is_empty(), "outputs differ from llama.cpp's for {bad:?} (see the table above)");
}

#[test]
fn every_type_from_f32_matches_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (label, spec) in models(DType::F32) {
        let input = write_model(dir.path(), label, &spec);
        for ty in TYPES {
            outcomes.push((format!("{label} {ty}"), check(dir.path(), label, &input, ty, false, false)));
        }
    }
    assert_all(&outcomes);
}

#[test]
fn f16_inputs_and_pure_recipes_match_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (label, spec) in models(DType::F16) {
        let input = write_model(dir.path(), label, &spec);
        for ty in ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q4_K_M", "Q4_0", "Q3_K_M"] {
            outcomes.push((
                format!("{label}-f16 {ty}"),
                check(dir.path(), &format!("{label}-f16"), &input, ty, false, false),
            ));
        }
        for ty in ["Q4_K_M", "Q2_K", "Q6_K"] {
            outcomes.push((
                format!("{label}-f16 {ty} pure"),
                check(dir.path(), &format!("{label}-f16"), &input, ty, true, false),
            ));
        }
    }
    assert_all(&outcomes);
}

#[test]
fn requantizing_matches_llama_quantize_and_is_refused_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (label, spec) in models(DType::Q8_0).into_iter().take(2) {
        let input = write_model(dir.path(), label, &spec);
        for ty in ["Q4_K_M", "Q4_0", "F16"] {
            outcomes.push((
                format!("{label}-q8_0 {ty}"),
                check(dir.path(), &format!("{label}-q8_0"), &input, ty, false, true),
            ));
        }
        // Both refuse without --allow-requantize.
        let options = Options::new(parse_type("Q4_K_M").unwrap());
        let err = Quantizer::open(&input, &options).unwrap_err();
        assert!(err.to_string().contains("--allow-requantize"), "{err}");
        let params = llama::QuantizeParams { ftype: 15, allow_requantize: false, pure: false, nthread: 2 };
        assert!(llama::quantize(&input, &dir.path().join("refused.gguf"), params).is_err());
    }
    // K-quants in, as downloaded models are.
    let spec = Synth { n_layer: 8, ..Synth::new(Arch::Qwen3, DType::Q4_K) };
    let input = write_model(dir.path(), "qwen3", &spec);
    for ty in ["Q8_0", "Q5_K_M"] {
        outcomes.push((format!("qwen3-q4_k {ty}"), check(dir.path(), "qwen3-q4_k", &input, ty, false, true)));
    }
    assert_all(&outcomes);
}

/// A real model's metadata (a 262k-token vocabulary, chat template, llama.cpp's key order)
/// and real weights: re-quantized to Q8_0 and to F32, then that F32 file (1 GB, as a
/// converter would write it) quantized to Q4_K_M, with rows of 640 that take the fallbacks.
#[test]
fn gemma3_270m_matches_llama_quantize() {
    let input = Path::new(GEMMA);
    assert!(input.exists(), "{GEMMA} is missing: run models/fetch-gemma3-270m.sh (the test command does)");
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes =
        vec![("gemma-3-270m Q8_0".to_owned(), check(dir.path(), "gemma-3-270m", input, "Q8_0", false, true))];
    let f32 = dir.path().join("gemma-3-270m-f32.gguf");
    let options = Options { allow_requantize: true, ..Options::new(parse_type("F32").unwrap()) };
    Quantizer::open(input, &options).unwrap().write(&f32, |_| {}).unwrap();
    outcomes.push(("gemma-3-270m F32".into(), check(dir.path(), "gemma-3-270m", input, "F32", false, true)));
    outcomes
        .push(("gemma-3-270m-f32 Q4_K_M".into(), check(dir.path(), "gemma-3-270m-f32", &f32, "Q4_K_M", false, false)));
    assert_all(&outcomes);
}
