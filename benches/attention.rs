//! The attention op (`pupil_kernels::ops::attend` over an f16 cache) at 512, 2048 and 8192
//! cached positions: one query token (a decode step) and a causal block of 64 query tokens (a
//! prefill chunk: query `i` sees the rows up to its own position; token by token through
//! `attend`, and as one batch through `attend_batch`, which tiles it), in the GQA shapes of Gemma 3
//! 270M (4 query heads on 1 KV head of 256) and Llama 3.2 1B (32 on 8, of 64).
//!
//! At 512 positions, also a decode step of eight sequences as a model makes it (one
//! `attend_batch` of eight tokens over a cache holding the eight sequences' rows), over sixteen
//! layers' caches in turn: far more rows than the CPU caches hold, so they come from memory,
//! as in a model's step, where the streamed kernels ask for them ahead.
//!
//! Throughput is in KV bytes read (keys and values of every visible row, once per query token).
//! The 64-token block at 8192 positions takes seconds per iteration with the reference op, so
//! it runs only with `PUPIL_BENCH_LONG=1`.
//!
//! `cargo bench --bench attention -- --warm-up-time 1 --measurement-time 2 gemma3`

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use half::f16;
use pupil::kernels::ops;
use std::hint::black_box;
use std::time::Duration;

/// A GQA shape: name, query heads, KV heads, head width.
const SHAPES: [(&str, usize, usize, usize); 2] = [("gemma3-270m", 4, 1, 256), ("llama-1b", 32, 8, 64)];
const CONTEXTS: [usize; 3] = [512, 2048, 8192];
const BLOCK: usize = 64;

/// Deterministic values in [-1, 1): the op's speed does not depend on them.
fn values(n: usize, seed: u32) -> impl Iterator<Item = f32> {
    (0..n as u32)
        .map(move |i| ((i.wrapping_mul(2_654_435_761).wrapping_add(seed)) >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
}

fn attention(c: &mut Criterion) {
    let long = std::env::var_os("PUPIL_BENCH_LONG").is_some();
    let mut g = c.benchmark_group("attend");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
    for (name, n_head, n_head_kv, hd) in SHAPES {
        let (qd, kvd) = (n_head * hd, n_head_kv * hd);
        let scale = 1.0 / (hd as f32).sqrt();
        for ctx in CONTEXTS {
            let k: Vec<f16> = values(ctx * kvd, 1).map(f16::from_f32).collect();
            let v: Vec<f16> = values(ctx * kvd, 2).map(f16::from_f32).collect();
            let q: Vec<f32> = values(BLOCK * qd, 3).collect();
            let mut out = vec![0.0f32; BLOCK * qd];
            let mut scores = vec![0.0f32; ctx];
            let row_bytes = (2 * kvd * std::mem::size_of::<f16>()) as u64;

            g.throughput(Throughput::Bytes(ctx as u64 * row_bytes));
            g.bench_function(BenchmarkId::new(format!("{name}/1-token"), ctx), |b| {
                b.iter(|| {
                    ops::attend(&q[..qd], &k, &v, n_head, n_head_kv, hd, scale, None, &mut out[..qd], &mut scores)
                });
                black_box(&out);
            });

            if ctx == 512 {
                sequences_step(&mut g, (name, n_head, n_head_kv, hd), ctx, &q);
            }
            if ctx > 2048 && !long {
                continue;
            }
            // Query i sits at position ctx - BLOCK + i and sees rows 0..=that position.
            let first = ctx - BLOCK;
            let rows: u64 = (0..BLOCK).map(|i| (first + i + 1) as u64).sum();
            g.throughput(Throughput::Bytes(rows * row_bytes));
            g.bench_function(BenchmarkId::new(format!("{name}/{BLOCK}-token-block"), ctx), |b| {
                b.iter(|| {
                    for (i, (qt, ot)) in q.chunks_exact(qd).zip(out.chunks_exact_mut(qd)).enumerate() {
                        let n = (first + i + 1) * kvd;
                        ops::attend(qt, &k[..n], &v[..n], n_head, n_head_kv, hd, scale, None, ot, &mut scores);
                    }
                });
                black_box(&out);
            });
            // The same block as one batch, on all threads, with the scratch the model gives
            // (four scores rows per thread): `attend_batch` takes the tiled path (each key row
            // read once per tile of query tokens).
            let spans: Vec<_> = (0..BLOCK).map(|i| 0..first + i + 1).collect();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut batch_scores = vec![0.0f32; ctx * 4 * threads];
            g.bench_function(BenchmarkId::new(format!("{name}/{BLOCK}-token-block-batch"), ctx), |b| {
                b.iter(|| {
                    ops::attend_batch(
                        &q,
                        &k,
                        &v,
                        &spans,
                        n_head,
                        n_head_kv,
                        hd,
                        scale,
                        None,
                        &mut out,
                        &mut batch_scores,
                    )
                });
                black_box(&out);
            });
        }
    }
    g.finish();
}

/// A decode step of [`SEQS`] sequences at depth `ctx`, one `attend_batch` per layer over
/// [`LAYERS`] layers' caches (each `[SEQS * ctx, kv_dim]`), on all threads.
fn sequences_step(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    (name, n_head, n_head_kv, hd): (&str, usize, usize, usize),
    ctx: usize,
    q: &[f32],
) {
    const SEQS: usize = 8;
    const LAYERS: usize = 16;
    let (qd, kvd) = (n_head * hd, n_head_kv * hd);
    let caches: Vec<(Vec<f16>, Vec<f16>)> = (0..LAYERS as u32)
        .map(|l| {
            let k = values(SEQS * ctx * kvd, 10 + l).map(f16::from_f32).collect();
            (k, values(SEQS * ctx * kvd, 40 + l).map(f16::from_f32).collect())
        })
        .collect();
    let spans: Vec<_> = (0..SEQS).map(|s| s * ctx..(s + 1) * ctx).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut scores = vec![0.0f32; ctx * 4 * threads];
    let mut out = vec![0.0f32; SEQS * qd];
    let scale = 1.0 / (hd as f32).sqrt();
    g.throughput(Throughput::Bytes((LAYERS * SEQS * ctx * 2 * kvd * std::mem::size_of::<f16>()) as u64));
    g.bench_function(BenchmarkId::new(format!("{name}/{SEQS}-sequence-step-{LAYERS}-layers"), ctx), |b| {
        b.iter(|| {
            for (k, v) in &caches {
                ops::attend_batch(
                    &q[..SEQS * qd],
                    k,
                    v,
                    &spans,
                    n_head,
                    n_head_kv,
                    hd,
                    scale,
                    None,
                    &mut out,
                    &mut scores,
                );
            }
        });
        black_box(&out);
    });
}

criterion_group!(benches, attention);
criterion_main!(benches);
