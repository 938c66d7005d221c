//! The packed (repacked-at-load) kernels against small batches, on one thread: for each batch
//! size, the best time of many runs per call and its rate in multiply-adds, so the cost of one
//! more sequence in a decode step can be read off (a batch that only re-reads cached weights
//! costs its `vpdpbusd`s and nothing else).
//!
//! `cargo run --release -p pupil-kernels --example packed_batch -- [dtype] [rows] [cols]`
//! (default `Q4_K 1024 2048`: a slice of a 1B model's FFN that sits in L2).

use pupil_kernels::ops::{PackedWeight, WeightRef};
use pupil_kernels::{DType, cpu};
use std::time::Instant;

mod common;

fn main() {
    let (dtype, [rows, cols]) = common::args(DType::Q4_K, [1024, 2048]);
    let ops = cpu::ops(dtype).unwrap();
    let act_ops = cpu::ops(ops.act).unwrap();
    // Real blocks from a smooth signal: the packers read the scales.
    let x = common::signal(rows * cols);
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    let w = common::quantized(dtype, &x, rows);
    let wb = &bytemuck::cast_slice::<u64, u8>(&w)[..rows * rb];
    let weight = WeightRef { dtype, rows, cols, data: wb, packed: None };
    let Some(packed) = PackedWeight::new(&weight).unwrap() else {
        println!("{dtype}: the {} tier does not pack it", cpu::tier());
        return;
    };
    let gemm = ops.gemm_packed.expect("packed types have a packed kernel");
    let ab = ops.act.row_bytes(cols as u64).unwrap() as usize;
    println!("{dtype} {rows}x{cols}, tier {}, one thread", cpu::tier());
    let mut base = 0.0;
    for n in [1usize, 2, 3, 4, 5, 8, 12, 15] {
        let mut a = vec![0u64; (n * ab).div_ceil(8)];
        let abuf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut a)[..n * ab];
        for (t, dst) in abuf.chunks_exact_mut(ab).enumerate() {
            (act_ops.activate.unwrap())(&x[t * cols..(t + 1) * cols], dst).unwrap();
        }
        let mut out = vec![0f32; n * rows];
        let mut best = f64::MAX;
        for _ in 0..50 {
            let t = Instant::now();
            gemm(packed.words(), rows, cols, abuf, n, &mut out, rows).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        if n == 1 {
            base = best;
        }
        println!(
            "n={n:2}: {:8.1} us  {:6.1} GMAC/s  {:.2}x one token's time",
            best * 1e6,
            (rows * cols * n) as f64 / best / 1e9,
            best / base
        );
    }
}
