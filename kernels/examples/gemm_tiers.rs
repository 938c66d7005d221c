//! The prompt GEMM of every tier side by side, on one thread: for one weight type and shape,
//! the best time of several calls of `n` tokens through each tier's `gemm` (weights as
//! stored) and the chosen tier's `gemm_packed` (repacked at load), in multiply-adds per
//! second and as a ratio to the AVX-512 tier. Every tier gives the same bits (checked here too).
//!
//! Then the whole matmul (`ops::matmul`, the packed weights of the chosen tier) on every
//! core, as a model's prompt runs it.
//!
//! `cargo run --release -p pupil-kernels --example gemm_tiers -- [dtype] [rows] [cols] [n]`
//! (default `Q4_K 2048 2048 256`: a 1B model's attention projection, a quarter prompt).

use pupil_kernels::ops::{self, Activations, PackedWeight, WeightRef};
use pupil_kernels::{DType, cpu};
use std::time::Instant;

mod common;

fn main() {
    let (dtype, [rows, cols, n]) = common::args(DType::Q4_K, [2048, 2048, 256]);
    let ops = cpu::ops(dtype).unwrap();
    let x = common::signal(rows.max(n) * cols);
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    let w = common::quantized(dtype, &x[..rows * cols], rows);
    let wb = &bytemuck::cast_slice::<u64, u8>(&w)[..rows * rb];
    let ab = ops.act.row_bytes(cols as u64).unwrap() as usize;
    let a = common::quantized(ops.act, &x[..n * cols], n);
    let abuf = &bytemuck::cast_slice::<u64, u8>(&a)[..n * ab];
    println!("{dtype} {rows}x{cols}, {n} tokens, one thread");
    let time = |f: &mut dyn FnMut(&mut [f32])| {
        let mut out = vec![0f32; n * rows];
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            f(&mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        (best, out)
    };
    let mut runs: Vec<(String, f64, Vec<f32>)> = Vec::new();
    for &tier in cpu::available_tiers().iter().rev().filter(|&&t| t != cpu::Tier::Scalar) {
        let Some(gemm) = cpu::ops_for(tier, dtype).and_then(|o| o.gemm) else { continue };
        let (secs, out) = time(&mut |out| gemm(wb, abuf, n, out, rows).unwrap());
        runs.push((format!("{tier} gemm"), secs, out));
    }
    let weight = WeightRef { dtype, rows, cols, data: wb, packed: None };
    if let (Some(p), Some(gemm_packed)) = (PackedWeight::new(&weight).unwrap(), ops.gemm_packed) {
        let (secs, out) = time(&mut |out| gemm_packed(p.words(), rows, cols, abuf, n, out, rows).unwrap());
        runs.push((format!("{} packed", cpu::tier()), secs, out));
    }
    let base = runs.iter().find(|r| r.0 == "avx512 gemm").or(runs.first()).cloned();
    for (what, secs, out) in &runs {
        let (ratio, same) = base
            .as_ref()
            .map_or((1.0, true), |(_, b, o)| (b / secs, o.iter().zip(out).all(|(x, y)| x.to_bits() == y.to_bits())));
        println!(
            "{what:>14}: {:9.1} us  {:7.1} GMAC/s  {ratio:5.2}x avx512  {}",
            secs * 1e6,
            (rows * cols * n) as f64 / secs / 1e9,
            if same { "same bits" } else { "DIFFERENT BITS" }
        );
    }
    let packed = PackedWeight::new(&weight).unwrap();
    let weight = WeightRef { packed: packed.as_ref(), ..weight };
    let mut acts = Activations::new();
    acts.quantize(ops.act, &x[..n * cols], n, cols).unwrap();
    let (secs, _) = time(&mut |out| ops::matmul(&weight, &acts, out).unwrap());
    println!(
        "{:>14}: {:9.1} us  {:7.1} GMAC/s  ({} threads, {})",
        "matmul",
        secs * 1e6,
        (rows * cols * n) as f64 / secs / 1e9,
        rayon::current_num_threads(),
        if weight.packed.is_some() { "packed" } else { "as stored" }
    );
}
