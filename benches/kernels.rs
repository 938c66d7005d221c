//! Kernels per block type and per tier: dequantize, quantize and dot product of one row.
//!
//! Each group loops over types and the tiers this host supports (`dot/Q4_K/avx512`); a tier
//! whose function is the one of the tier below (no kernel of its own for that type) is left
//! out rather than measured twice. `scalar` is the reference tier. Throughput is in weight
//! bytes read, the quantity that bounds decoding (elements, for `quantize`).
//!
//! `cargo bench --bench kernels -- --warm-up-time 1 --measurement-time 2 dot`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pupil::kernels::DType;
use pupil::kernels::cpu::{self, Tier};
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
        for (tier, ops) in tiers_with(t, |o| o.quantize.map(|q| q as usize)) {
            let q = ops.quantize.unwrap();
            g.bench_function(BenchmarkId::new(t.name(), tier), |b| {
                b.iter(|| q(black_box(&x), &mut bytemuck::cast_slice_mut(&mut out)[..len]).unwrap())
            });
        }
    }
}

criterion_group!(benches, dequantize, dot, quantize);
criterion_main!(benches);
