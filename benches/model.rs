//! End-to-end forward-pass latency: prefill (one batch of 64 or 512 prompt tokens from an
//! empty cache, last logits only) and decode (one token), on
//! - a synthesized Llama with the layer shapes of a 1B model (n_embd 2048, n_ff 8192, 32 query
//!   and 8 KV heads of 64, 32k vocabulary tied to the output) in Q4_0 and Q4_K. Random weights
//!   run exactly as fast as trained ones. Only `PUPIL_BENCH_LAYERS` (default 2) of the 16 layers
//!   are written, so that writing the file and one prefill take seconds; per-layer cost scales
//!   linearly. The files are written once into the temp dir and reused by later runs;
//! - Gemma 3 270M, when `models/gemma-3-270m-q4_k_m.gguf` is present.
//!
//! Threads: rayon's default (all cores; `RAYON_NUM_THREADS` to change).
//!
//! `cargo bench --bench model -- decode`

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pupil::kernels::DType;
use pupil::model::synth::{Synth, SynthModel};
use pupil::model::{Arch, Model};
use pupil::runner::{PupilRunner, Runner, RunnerOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PREFILL: [usize; 2] = [64, 512];

/// The 1B-shaped model in `dtype`, written on first use.
fn synth_1b(dtype: DType) -> PathBuf {
    let layers: usize = std::env::var("PUPIL_BENCH_LAYERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let dir = std::env::temp_dir().join("pupil-bench-models");
    let path = dir.join(format!("llama-1b-shape-{layers}l-{dtype}.gguf"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spec = Synth {
        n_vocab: 32_000,
        n_embd: 2048,
        n_ff: 8192,
        n_layer: layers,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        n_ctx: 2048,
        rope_base: 500_000.0,
        tied_output: true,
        ..Synth::new(Arch::Llama, dtype)
    };
    eprintln!("writing {} (once)", path.display());
    let partial = path.with_extension("partial");
    SynthModel::build(&spec, None).and_then(|m| m.write(&partial)).expect("synthesize the model");
    std::fs::rename(&partial, &path).expect("rename the model into place");
    path
}

fn models() -> Vec<(String, PathBuf)> {
    let mut out = vec![
        ("llama-1b-shape/Q4_0".to_owned(), synth_1b(DType::Q4_0)),
        ("llama-1b-shape/Q4_K".to_owned(), synth_1b(DType::Q4_K)),
    ];
    let gemma = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    if gemma.exists() {
        out.push(("gemma3-270m/Q4_K_M".to_owned(), gemma));
    }
    out
}

fn forward(c: &mut Criterion) {
    for (name, path) in models() {
        let model = Model::open(&path).expect("load the model");
        let n_vocab = model.config().n_vocab as u32;
        let tokens: Vec<u32> =
            (0..*PREFILL.iter().max().unwrap() as u32).map(|i| 3 + (i * 7919) % (n_vocab - 3)).collect();
        let mut r = PupilRunner::new(&model, &RunnerOptions::new(1024, tokens.len())).expect("a runner");
        let mut logits = vec![0.0f32; n_vocab as usize];

        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3))
            .sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Elements(1));
        g.bench_function("decode", |b| {
            b.iter(|| {
                r.clear();
                r.forward(&tokens[..1], 0, 0..1, &mut logits).expect("forward");
            });
        });
        for n in PREFILL {
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new("prefill", n), |b| {
                b.iter(|| {
                    r.clear();
                    r.forward(&tokens[..n], 0, n - 1..n, &mut logits).expect("forward");
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
