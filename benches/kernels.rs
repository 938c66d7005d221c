//! Kernels per block type and per tier: dequantize, quantize and dot product of one row; the
//! decode mat-vec (`matvec`) at the shapes of Gemma 3 270M and of a 1B model, each tier's
//! `dot_rows` on one thread and the whole op (`ops::matmul` of one token, every thread), in
//! GB/s of weights; and the prefill matmul kernels (`gemm`): the tier's tiled GEMM against the
//! `dot_x4` loop it replaces, one thread, at Gemma 3 270M's shapes.
//!
//! Each group loops over types and the tiers this host supports (`dot/Q4_K/avx512`); a tier
//! whose function is the one of the tier below (no kernel of its own for that type) is left
//! out rather than measured twice. `scalar` is the reference tier. Throughput is in weight
//! bytes read, the quantity that bounds decoding (elements, for `quantize`).
//!
//! `cargo bench --bench kernels -- --warm-up-time 1 --measurement-time 2 dot`
//! `cargo bench --bench kernels -- matvec/Q5_0`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pupil::kernels::DType;
use pupil::kernels::cpu::{self, Tier};
use pupil::kernels::ops::{self as kops, Activations, WeightRef};
use pupil::kernels::quant::{self, Ops};
use std::hint::black_box;

/// A row as wide as Gemma 3 270M's FFN (2048) rounded to whole k-quant blocks.
const N: usize = 2048;

fn row() -> Vec<f32> {
    (0..N).map(|i| ((i as f32) * 0.618).sin() * 0.1).collect()
}

/// A buffer aligned for every block type (the erased kernels reject misaligned rows).
fn aligned(len: usize) -> Vec<u64> {
    vec![0u64; len.div_ceil(8)]
}

fn bytes(v: &[u64], len: usize) -> &[u8] {
    &bytemuck::cast_slice(v)[..len]
}

fn quantized(t: DType, x: &[f32]) -> (Vec<u64>, usize) {
    let ops = quant::ops(t).expect("kernels");
    let len = t.row_bytes(x.len() as u64).unwrap() as usize;
    let mut buf = aligned(len);
    (ops.quantize.expect("quantizer"))(x, &mut bytemuck::cast_slice_mut(&mut buf)[..len]).unwrap();
    (buf, len)
}

fn types() -> impl Iterator<Item = DType> {
    DType::ALL.iter().copied().filter(|&t| quant::ops(t).is_some_and(|o| o.quantize.is_some()))
}

/// The tiers with their own version of `f` for `t`: each tier whose `f` differs from the
/// previous tier's.
fn tiers_with<F: PartialEq>(t: DType, f: impl Fn(&Ops) -> F) -> Vec<(Tier, &'static Ops)> {
    let mut out: Vec<(Tier, &'static Ops)> = Vec::new();
    for tier in cpu::available_tiers() {
        let ops = cpu::ops_for(tier, t).unwrap();
        if out.last().is_none_or(|(_, prev)| f(prev) != f(ops)) {
            out.push((tier, ops));
        }
    }
    out
}

fn dequantize(c: &mut Criterion) {
    let x = row();
    let mut g = c.benchmark_group("dequantize");
    for t in types() {
        let (w, len) = quantized(t, &x);
        let mut out = vec![0f32; N];
        g.throughput(Throughput::Bytes(len as u64));
        for (tier, ops) in tiers_with(t, |o| o.dequantize as usize) {
            let f = ops.dequantize;
            g.bench_function(BenchmarkId::new(t.name(), tier), |b| {
                b.iter(|| f(black_box(bytes(&w, len)), &mut out).unwrap())
            });
        }
    }
}

fn dot(c: &mut Criterion) {
    let x = row();
    let mut g = c.benchmark_group("dot");
    for t in types() {
        let (w, wlen) = quantized(t, &x);
        let (a, alen) = quantized(quant::ops(t).unwrap().act, &x);
        g.throughput(Throughput::Bytes(wlen as u64));
        for (tier, ops) in tiers_with(t, |o| o.dot as usize) {
            let f = ops.dot;
            g.bench_function(BenchmarkId::new(t.name(), tier), |b| {
                b.iter(|| f(black_box(bytes(&w, wlen)), black_box(bytes(&a, alen))).unwrap())
            });
        }
    }
}

fn quantize(c: &mut Criterion) {
    let x = row();
    let mut g = c.benchmark_group("quantize");
    for t in types() {
        let (mut out, len) = quantized(t, &x);
        g.throughput(Throughput::Elements(N as u64));
        for (tier, ops) in tiers_with(t, |o| o.activate.map(|q| q as usize)) {
            let q = ops.activate.unwrap();
            g.bench_function(BenchmarkId::new(t.name(), tier), |b| {
                b.iter(|| q(black_box(&x), &mut bytemuck::cast_slice_mut(&mut out)[..len]).unwrap())
            });
        }
    }
}

/// Decode shapes, `(type, rows, cols, what)`: Gemma 3 270M Q4_K_M's tensors (its output
/// matrix is the tied Q8_0 embedding table, 178 MB, 70% of what a token reads) and a 1B
/// Llama's FFN and output matrices in the types of a Q4_0 and a Q4_K_M file. All but the
/// largest fit in the caches after the first pass, so they measure the kernels; the output
/// matrices stream from memory, as in decoding.
const MATVEC_SHAPES: [(DType, usize, usize, &str); 10] = [
    (DType::Q8_0, 262_144, 640, "gemma3-output"),
    (DType::Q5_0, 2048, 640, "gemma3-ffn_up"),
    (DType::Q5_0, 1024, 640, "gemma3-attn_q"),
    (DType::Q6_K, 640, 2048, "gemma3-ffn_down"),
    (DType::Q4_K, 640, 1024, "gemma3-attn_output"),
    (DType::Q4_0, 8192, 2048, "1b-ffn_up"),
    (DType::Q4_0, 2048, 8192, "1b-ffn_down"),
    (DType::Q4_K, 8192, 2048, "1b-ffn_up"),
    (DType::Q6_K, 2048, 8192, "1b-ffn_down"),
    (DType::Q6_K, 32_000, 2048, "1b-output"),
];

/// One token's mat-vec at [`MATVEC_SHAPES`]: `dot_rows/{tier}`, the tier's kernel over every
/// row on one thread, and `op`, [`kops::matmul`] as a decode step runs it (best tier, rows
/// split over rayon's threads, called from a worker). Throughput in weight bytes.
fn matvec(c: &mut Criterion) {
    let mut g = c.benchmark_group("matvec");
    g.sample_size(10).warm_up_time(std::time::Duration::from_millis(500));
    for (t, rows, cols, what) in MATVEC_SHAPES {
        // Eight distinct rows tiled over the matrix: speed does not depend on the values.
        let x: Vec<f32> = (0..8 * cols).map(|i| ((i as f32) * 0.618).sin() * 0.1).collect();
        let (tile, tile_len) = quantized(t, &x);
        let rb = tile_len / 8;
        let len = rows * rb;
        let mut w = aligned(len);
        for (r, dst) in bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..len].chunks_exact_mut(rb).enumerate() {
            dst.copy_from_slice(&bytes(&tile, tile_len)[(r % 8) * rb..][..rb]);
        }
        let wb = bytes(&w, len);
        let act = quant::ops(t).unwrap().act;
        let (a, alen) = quantized(act, &x[..cols]);
        let mut out = vec![0f32; rows];
        let id = format!("{}/{what}-{rows}x{cols}", t.name());
        g.throughput(Throughput::Bytes(len as u64));
        for (tier, ops) in tiers_with(t, |o| o.dot_rows.map(|f| f as usize)) {
            let Some(dot_rows) = ops.dot_rows else { continue };
            g.bench_function(BenchmarkId::new(format!("{id}/dot_rows"), tier), |b| {
                b.iter(|| dot_rows(black_box(wb), black_box(bytes(&a, alen)), &mut out).unwrap())
            });
        }
        let weight = WeightRef { dtype: t, rows, cols, data: wb, packed: None };
        let mut acts = Activations::new();
        acts.quantize(act, &x[..cols], 1, cols).unwrap();
        // On a worker of the pool, as the model's forward pass runs: the rows are then split
        // among the workers directly rather than handed over from outside and waited for.
        g.bench_function(BenchmarkId::new(id.clone(), "op"), |b| {
            rayon::join(|| b.iter(|| kops::matmul(&weight, &acts, &mut out).unwrap()), || ());
        });
        // The op over the copy repacked at load, where the chosen tier packs this type.
        if let Some(p) = kops::PackedWeight::new(&weight).unwrap() {
            let weight = WeightRef { packed: Some(&p), ..weight };
            g.bench_function(BenchmarkId::new(id.clone(), "op-packed"), |b| {
                rayon::join(|| b.iter(|| kops::matmul(&weight, &acts, &mut out).unwrap()), || ());
            });
        }
    }
}

/// Prefill shapes: `(rows, cols)` of Gemma 3 270M's `ffn_gate` (Q5_0 in the Q4_K_M file),
/// `ffn_down` (Q4_K/Q6_K) and a 1B model's `ffn_up`, against 256 tokens (one thread's half of
/// pp512). Throughput in multiply-adds; `x4` is the `dot_x4` loop over four tokens at a time
/// (the path before the GEMM), `gemm` the tier's tiled kernel.
fn gemm(c: &mut Criterion) {
    const TOKENS: usize = 256;
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10);
    let shapes = [
        (DType::Q5_0, 2048, 640),
        (DType::Q8_0, 256, 640),
        (DType::Q4_0, 2048, 640),
        (DType::Q4_K, 640, 2048),
        (DType::Q6_K, 640, 2048),
        (DType::Q4_K, 8192, 2048),
    ];
    for (t, rows, cols) in shapes {
        let x: Vec<f32> = (0..rows.max(TOKENS) * cols).map(|i| ((i as f32) * 0.618).sin() * 0.1).collect();
        let (w, wlen) = quantized(t, &x[..rows * cols]);
        let act = quant::ops(t).unwrap().act;
        let (a, alen) = quantized(act, &x[..TOKENS * cols]);
        let (wb, ab) = (bytes(&w, wlen), bytes(&a, alen));
        let (wr, ar) = (wlen / rows, alen / TOKENS);
        let mut out = vec![0f32; rows * TOKENS];
        g.throughput(Throughput::Elements((rows * cols * TOKENS) as u64));
        for tier in cpu::available_tiers() {
            let ops = cpu::ops_for(tier, t).unwrap();
            let id = format!("{}x{}", rows, cols);
            if let Some(gemm) = ops.gemm {
                g.bench_function(BenchmarkId::new(format!("{}/{id}/gemm", t.name()), tier), |b| {
                    b.iter(|| gemm(black_box(wb), black_box(ab), TOKENS, &mut out, rows).unwrap())
                });
            }
            // The same weights repacked at load (where the tier packs the type): the GEMM
            // over its panels, each decoded once per call.
            let weight = WeightRef { dtype: t, rows, cols, data: wb, packed: None };
            if let (Some(p), Some(gemm_packed)) = (kops::PackedWeight::new(&weight).unwrap(), ops.gemm_packed)
                && tier == cpu::tier()
            {
                let words = p.words();
                g.bench_function(BenchmarkId::new(format!("{}/{id}/packed", t.name()), tier), |b| {
                    b.iter(|| gemm_packed(black_box(words), rows, cols, black_box(ab), TOKENS, &mut out, rows).unwrap())
                });
            }
            if let Some(x4) = ops.dot_x4 {
                g.bench_function(BenchmarkId::new(format!("{}/{id}/x4", t.name()), tier), |b| {
                    b.iter(|| {
                        let mut four = [0f32; 4];
                        for tb in (0..TOKENS).step_by(4) {
                            let acts = [0, 1, 2, 3].map(|i| &ab[(tb + i) * ar..][..ar]);
                            for r in 0..rows {
                                x4(black_box(&wb[r * wr..][..wr]), acts, &mut four).unwrap();
                                for (i, &y) in four.iter().enumerate() {
                                    out[(tb + i) * rows + r] = y;
                                }
                            }
                        }
                    })
                });
            }
        }
    }
}

/// Small batches (speculative verification, a few sequences decoding together): the op as a
/// forward pass runs it, `n` tokens against Gemma 3 270M's `ffn_up` (Q5_0), `ffn_down`
/// (Q6_K) and `attn_output` (Q4_K), a slice of its Q8_0 output head and a 1B model's Q4_0
/// `ffn_up`. Throughput in weight bytes per token.
fn small_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("small_batch");
    g.sample_size(10).warm_up_time(std::time::Duration::from_millis(500));
    let shapes = [
        (DType::Q5_0, 2048, 640),
        (DType::Q6_K, 640, 2048),
        (DType::Q4_K, 640, 1024),
        (DType::Q4_0, 8192, 2048),
        // A sixteenth of Gemma 3 270M's output head (Q8_0, 262,144 rows).
        (DType::Q8_0, 131072, 640),
    ];
    for (t, rows, cols) in shapes {
        let x: Vec<f32> = (0..rows.max(16) * cols).map(|i| ((i as f32) * 0.618).sin() * 0.1).collect();
        let (w, wlen) = quantized(t, &x[..rows * cols]);
        let weight = WeightRef { dtype: t, rows, cols, data: bytes(&w, wlen), packed: None };
        // The same weights packed once for the chosen tier, where it packs this type.
        let packed = kops::PackedWeight::new(&weight).unwrap();
        let act = quant::ops(t).unwrap().act;
        for n in [1usize, 2, 3, 4, 8, 15] {
            let mut acts = Activations::new();
            acts.quantize(act, &x[..n * cols], n, cols).unwrap();
            let mut out = vec![0f32; n * rows];
            g.throughput(Throughput::Bytes((wlen * n) as u64));
            g.bench_function(BenchmarkId::new(format!("{}/{rows}x{cols}", t.name()), n), |b| {
                rayon::join(|| b.iter(|| kops::matmul(&weight, &acts, &mut out).unwrap()), || ());
            });
            if let Some(p) = &packed {
                let weight = WeightRef { packed: Some(p), ..weight };
                g.bench_function(BenchmarkId::new(format!("{}/{rows}x{cols}/packed", t.name()), n), |b| {
                    rayon::join(|| b.iter(|| kops::matmul(&weight, &acts, &mut out).unwrap()), || ());
                });
            }
        }
    }
}

criterion_group!(benches, dequantize, dot, quantize, matvec, gemm, small_batch);
criterion_main!(benches);
