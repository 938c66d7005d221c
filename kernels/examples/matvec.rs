//! Decode matvec timing: `dot` per row against `dot_rows` and, where the tier packs the type at
//! load, its packed kernel, on one thread and on the pool's row-split threads (the minimum of
//! many runs, interleaved, so a noisy machine hurts all alike).
//!
//! `cargo run --release -p pupil-kernels --example matvec -- [dtype] [rows] [cols]`
//! (default `Q8_0 262144 640`: Gemma 3 270M's output projection).

use pupil_kernels::ops::{PackedWeight, WeightRef};
use pupil_kernels::{DType, cpu};
use std::time::Instant;

mod common;

fn main() {
    let (dtype, [rows, cols]) = common::args(DType::Q8_0, [262_144, 640]);
    let ops = cpu::ops(dtype).unwrap();
    let act_ops = cpu::ops(ops.act).unwrap();
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    // Random bytes with small f16 scales: the layout does not matter for timing, the scales
    // only have to be finite.
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut w: Vec<u64> = (0..(rows * rb).div_ceil(8))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state & 0x3bff_3bff_3bff_3bff
        })
        .collect();
    w.truncate((rows * rb).div_ceil(8));
    let w = &bytemuck::cast_slice::<u64, u8>(&w)[..rows * rb];
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut a = vec![0u64; (ops.act.row_bytes(cols as u64).unwrap() as usize).div_ceil(8)];
    let a = {
        let ab = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut a)[..ops.act.row_bytes(cols as u64).unwrap() as usize];
        (act_ops.activate.unwrap())(&x, ab).unwrap();
        &*ab
    };
    let mut out = vec![0f32; rows];
    let packed = PackedWeight::new(&WeightRef { dtype, rows, cols, data: w, packed: None }).unwrap();
    let gemm_packed = ops.gemm_packed.filter(|_| packed.is_some());
    let words = packed.as_ref().map_or(&[][..], |p| p.words());
    let (mut best_dot, mut best_rows, mut best_packed) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..15 {
        if let Some(gemm_packed) = gemm_packed {
            let t = Instant::now();
            gemm_packed(words, rows, cols, a, 1, &mut out, rows).unwrap();
            best_packed = best_packed.min(t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        for (r, y) in out.iter_mut().enumerate() {
            *y = (ops.dot)(&w[r * rb..(r + 1) * rb], a).unwrap();
        }
        best_dot = best_dot.min(t.elapsed().as_secs_f64());
        if let Some(dot_rows) = ops.dot_rows {
            let t = Instant::now();
            dot_rows(w, a, &mut out).unwrap();
            best_rows = best_rows.min(t.elapsed().as_secs_f64());
        }
    }
    // The same across the rayon pool, split as `ops::matmul` splits decode rows.
    use rayon::prelude::*;
    let chunk = rows.div_ceil(rayon::current_num_threads() * 4).max(16);
    let (mut par_dot, mut par_rows, mut par_packed) = (f64::MAX, f64::MAX, f64::MAX);
    let panel_rows = ops.panel_rows.max(1);
    let panel_words = words.len() / rows.div_ceil(panel_rows);
    let panel_chunk = chunk.next_multiple_of(panel_rows);
    for _ in 0..15 {
        if let Some(gemm_packed) = gemm_packed {
            let t = Instant::now();
            out.par_chunks_mut(panel_chunk).enumerate().for_each(|(c, o)| {
                let p0 = c * panel_chunk / panel_rows;
                let p = &words[p0 * panel_words..(p0 + o.len().div_ceil(panel_rows)) * panel_words];
                gemm_packed(p, o.len(), cols, a, 1, o, o.len()).unwrap();
            });
            par_packed = par_packed.min(t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            for (i, y) in o.iter_mut().enumerate() {
                let r = c * chunk + i;
                *y = (ops.dot)(&w[r * rb..(r + 1) * rb], a).unwrap();
            }
        });
        par_dot = par_dot.min(t.elapsed().as_secs_f64());
        if let Some(dot_rows) = ops.dot_rows {
            let t = Instant::now();
            out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
                let r0 = c * chunk;
                dot_rows(&w[r0 * rb..(r0 + o.len()) * rb], a, o).unwrap();
            });
            par_rows = par_rows.min(t.elapsed().as_secs_f64());
        }
    }
    let gb = (rows * rb) as f64 / 1e9;
    let packed_note = |t: f64| {
        if gemm_packed.is_some() { format!(", packed {:.3} ms ({:.1} GB/s)", t * 1e3, gb / t) } else { String::new() }
    };
    println!(
        "{} threads: dot loop {:.3} ms ({:.1} GB/s), dot_rows {:.3} ms ({:.1} GB/s){}",
        rayon::current_num_threads(),
        par_dot * 1e3,
        gb / par_dot,
        par_rows * 1e3,
        gb / par_rows,
        packed_note(par_packed)
    );
    println!(
        "{dtype} {rows}x{cols} ({} tier): dot loop {:.3} ms ({:.1} GB/s), dot_rows {:.3} ms ({:.1} GB/s){}",
        cpu::tier(),
        best_dot * 1e3,
        gb / best_dot,
        best_rows * 1e3,
        gb / best_rows,
        packed_note(best_packed)
    );
}
