//! What a student saves: prefill and decode latency of a teacher and its students, side by
//! side, so `cargo bench --bench student_vs_teacher` shows the cost ratio directly:
//! - the embedded distilled pair in `models/distill/` (teacher F16, students Q8_0 and Q4_0);
//! - Gemma 3 270M, when `models/gemma-3-270m-q4_k_m.gguf` is present, as the Q4_K_M student
//!   of a Q8_0 "teacher" made from it once (`pupil::quantize`, as the tests make it).
//!
//! Prefill: one batch of 128 prompt tokens from an empty cache, last logits only. Decode: one
//! token at position 128 of a filled cache (the cost a generated token pays).
//! Threads: rayon's default (all cores; `RAYON_NUM_THREADS` to change).

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pupil::model::Model;
use pupil::runner::{PupilRunner, Runner, RunnerOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "../tests/support/gemma_pair.rs"]
mod gemma_pair;

const PROMPT: usize = 128;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Groups of (pair name, [(role, file)]), teacher first.
fn pairs() -> Vec<(&'static str, Vec<(&'static str, PathBuf)>)> {
    let d = root().join("models/distill");
    let mut out = vec![(
        "kjv-pair",
        vec![
            ("teacher-f16", d.join("teacher-f16.gguf")),
            ("student-q8_0", d.join("student-q8_0.gguf")),
            ("student-q4_0", d.join("student-q4_0.gguf")),
        ],
    )];
    if root().join("models/gemma-3-270m-q4_k_m.gguf").exists() {
        out.push((
            "gemma3-270m",
            vec![("teacher-q8_0", gemma_pair::teacher()), ("student-q4_k_m", gemma_pair::student())],
        ));
    }
    out
}

fn latency(c: &mut Criterion) {
    for (pair, members) in pairs() {
        let mut g = c.benchmark_group(pair);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3))
            .sampling_mode(SamplingMode::Flat);
        for (role, path) in members {
            let model = Model::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let n_vocab = model.config().n_vocab as u32;
            let tokens: Vec<u32> = (0..=PROMPT as u32).map(|i| 3 + (i * 7919) % (n_vocab - 3)).collect();
            let mut r = PupilRunner::new(&model, &RunnerOptions::new(2 * PROMPT, PROMPT)).expect("a runner");
            let mut logits = vec![0.0f32; n_vocab as usize];
            let (prompt, step) = (&tokens[..PROMPT], &tokens[PROMPT..]);

            g.throughput(Throughput::Elements(PROMPT as u64));
            g.bench_function(BenchmarkId::new("prefill-128", role), |b| {
                b.iter(|| {
                    r.clear();
                    r.forward(prompt, 0, PROMPT - 1..PROMPT, &mut logits).expect("forward");
                });
            });
            g.throughput(Throughput::Elements(1));
            r.clear();
            r.forward(prompt, 0, PROMPT - 1..PROMPT, &mut logits).expect("forward");
            g.bench_function(BenchmarkId::new("decode", role), |b| {
                b.iter(|| {
                    // Drop the token decoded last time, so every step sees 128 cached tokens.
                    r.truncate(PROMPT).expect("truncate");
                    r.forward(step, PROMPT, 0..1, &mut logits).expect("forward");
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, latency);
criterion_main!(benches);
