//! The tiled attention of a prompt (`ops::attend_batch` over an f16 cache, `n` tokens from an
//! empty cache, causal) on one thread: the best time of several runs and its rate in
//! multiply-adds (scores and mixes of the visible rows), for the GQA shapes of Gemma 3 270M
//! (4 query heads on 1 KV head of 256) and Llama 3.2 1B (32 on 8, of 64).
//!
//! Then one token's attention at depth `n` (a decode step, its rows in cache); one token at
//! depth 4`n` over sixteen layers' caches, on two threads; and a decode step of eight
//! sequences at depth `n` in one call as a model makes it, over sixteen layers' caches (each
//! layer's holding the eight sequences' rows). Those two read far more rows than the caches
//! hold, so the rows come from memory as they do in a model's step.
//!
//! `cargo run --release -p pupil-kernels --example prefill_attention -- [tokens]` (default 512).

use half::f16;
use pupil_kernels::ops;
use std::time::Instant;

mod common;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(512, |s| s.parse().expect("tokens"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for (name, n_head, n_head_kv, hd) in [("gemma3-270m", 4, 1, 256), ("llama-1b", 32, 8, 64)] {
        let (qd, kvd) = (n_head * hd, n_head_kv * hd);
        // The speed does not depend on the values.
        let k: Vec<f16> = common::signal(n * kvd).into_iter().map(f16::from_f32).collect();
        let v: Vec<f16> = common::signal(n * kvd).iter().rev().map(|&x| f16::from_f32(x)).collect();
        let q = common::signal(n * qd);
        let spans: Vec<_> = (0..n).map(|i| 0..i + 1).collect();
        let mut out = vec![0f32; n * qd];
        let mut scores = vec![0f32; n * 4];
        let scale = 1.0 / (hd as f32).sqrt();
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            pool.install(|| {
                ops::attend_batch(&q, &k, &v, &spans, n_head, n_head_kv, hd, scale, None, &mut out, &mut scores)
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        let macs = 2.0 * (n * (n + 1) / 2) as f64 * (n_head * hd) as f64;
        let sum: f64 = out.iter().map(|&x| x as f64).sum();
        println!("{name}: {n} tokens {:.2} ms, {:.1} GMAC/s (checksum {sum:.6})", best * 1e3, macs / best / 1e9);
        // One decode step at depth `n`, as `attend` runs it per sequence.
        let mut best1 = f64::MAX;
        for _ in 0..200 {
            let t = Instant::now();
            ops::attend(&q[..qd], &k, &v, n_head, n_head_kv, hd, scale, None, &mut out[..qd], &mut scores);
            best1 = best1.min(t.elapsed().as_secs_f64());
        }
        let macs1 = 2.0 * n as f64 * qd as f64;
        println!("{name}: one token at depth {n} {:.1} us, {:.1} GMAC/s", best1 * 1e6, macs1 / best1 / 1e9);
        // One token at depth 4n, on two threads as a model's pool splits its KV heads; then
        // eight sequences at depth n in one call, as a model's step makes it (one thread).
        let shape = (n_head, n_head_kv, hd);
        let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let us = cold_step(&pool2, shape, &[0..4 * n], &q, &mut out) * 1e6 / LAYERS as f64;
        println!("{name}: one token at depth {}, {LAYERS} layers' caches, 2 threads: {us:.1} us per layer", 4 * n);
        let seqs = 8;
        let spans: Vec<_> = (0..seqs).map(|s| s * n..(s + 1) * n).collect();
        let best8 = cold_step(&pool, shape, &spans, &q, &mut out);
        let bytes = (LAYERS * seqs * n * kvd * 2 * 2) as f64;
        println!(
            "{name}: {seqs} sequences at depth {n}, {LAYERS} layers' caches {:.2} ms, {:.1} us per sequence and layer, {:.1} GB/s",
            best8 * 1e3,
            best8 * 1e6 / (seqs * LAYERS) as f64,
            bytes / best8 / 1e9
        );
    }
}

/// Layers whose caches a cold step runs over in turn.
const LAYERS: usize = 16;

/// The best time (seconds) of one `attend_batch` per layer over [`LAYERS`] layers' f16 caches
/// of as many rows as `spans` reach (far more than the CPU caches hold, so the rows come from
/// memory, as in a model's decode step), for the tokens of `spans` in `pool`.
fn cold_step(
    pool: &rayon::ThreadPool,
    (n_head, n_head_kv, hd): (usize, usize, usize),
    spans: &[std::ops::Range<usize>],
    q: &[f32],
    out: &mut [f32],
) -> f64 {
    let (qd, kvd) = (n_head * hd, n_head_kv * hd);
    let rows = spans.iter().map(|s| s.end).max().unwrap_or(0);
    let caches: Vec<(Vec<f16>, Vec<f16>)> = (0..LAYERS)
        .map(|l| {
            let x = &common::signal(rows * kvd + l)[l..];
            (x.iter().map(|&x| f16::from_f32(x)).collect(), x.iter().rev().map(|&x| f16::from_f32(x)).collect())
        })
        .collect();
    let longest = spans.iter().map(|s| s.len()).max().unwrap_or(0);
    // Four scores rows per thread, as a model's scratch.
    let mut scores = vec![0f32; longest * 4 * pool.current_num_threads()];
    let (q, out) = (&q[..spans.len() * qd], &mut out[..spans.len() * qd]);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut best = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        for (k, v) in &caches {
            pool.install(|| ops::attend_batch(q, k, v, spans, n_head, n_head_kv, hd, scale, None, out, &mut scores));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
