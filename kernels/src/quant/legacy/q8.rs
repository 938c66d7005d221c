//! `Q8_0` and `Q8_1`: one signed byte per element. `Q8_0` is both a weight type and the
//! activation type of `Q4_0`/`Q5_0`/`Q8_0`; `Q8_1` adds `s = d * Σ q` so that the offset
//! of `Q4_1`/`Q5_1` costs one multiply per block in their dot products.
//!
//! Matches `quantize_row_q8_{0,1}_ref` and `dequantize_row_q8_0` in `ggml/src/ggml-quants.c` and
//! `ggml_vec_dot_q8_0_q8_0_generic` in `ggml/src/ggml-cpu/quants.c`.
//!
//! ggml has no `Q8_1` dequantizer and no `Q8_1` dot product: its CPU type traits give `Q8_1`
//! only an activation quantizer, with `vec_dot_type = Q8_1`. Pupil keeps that pairing and
//! gives `Q8_1` the `Q8_0` kernels, ignoring `s`, so every type in the table has all three.
//!
//! [`Quantize::quantize`] is the reference quantizer (`_ref`), which llama-quantize uses for
//! weights. ggml's CPU backend quantizes activations with SIMD versions that are not
//! bit-identical to it: on x86 with AVX, `quantize_row_q8_{0,1}` (`ggml-cpu/arch/x86/quants.c`)
//! multiply by `127 / amax` instead of `1 / (amax / 127)` and round half to even instead of
//! away from zero, so a few quants per row differ by one. A quant one step off moves a
//! matmul's output by ~1e-3 of its size, which the layers then amplify: pupil's activations
//! ([`Quantize::quantize_activations`]) are therefore those of ggml on x86, so that its
//! matmuls start from llama.cpp's bytes.

use super::{c_float_to_int, inverse};
use crate::DType;
use crate::quant::{Block, BlockQ8_0, BlockQ8_1, QK, Quantize};
use half::f16;

/// The scale and quants of one block, shared by both types: `d = amax / 127`, `q = round(x / d)`.
fn quantize_q8(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    // `round` is C's `roundf`: halves away from zero.
    (d, std::array::from_fn(|j| c_float_to_int((x[j] * id).round()) as i8))
}

/// ggml's x86 activation quantizer for one block: `d = amax / 127` and
/// `q = round_half_even(x * (127 / amax))`, as `i32` (`cvtps2dq`: `i32::MIN` for NaN or out of
/// range, which happens only where `127 / amax` overflows on subnormal blocks).
fn quantize_q8_x86(x: &[f32]) -> (f32, [i32; QK]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (amax / 127.0, std::array::from_fn(|j| c_float_to_int((x[j] * id).round_ties_even())))
}

/// The low byte of a quant, as the AVX code's saturating packs store it.
fn pack(q: i32) -> i8 {
    q.clamp(-128, 127) as i8
}

/// `Σ q_a * q_b` and the product of the two scales: the whole of a Q8 × Q8 block product.
fn block_dot(da: f16, qa: &[i8; QK], db: f16, qb: &[i8; QK]) -> f32 {
    let sumi: i32 = qa.iter().zip(qb).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
    sumi as f32 * (da.to_f32() * db.to_f32())
}

impl Block for BlockQ8_0 {
    const DTYPE: DType = DType::Q8_0;
    const SIZE: usize = QK;
    type Act = BlockQ8_0;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = f32::from(q) * d;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (w, a) in w.iter().zip(a) {
            sum += block_dot(w.d, &w.qs, a.d, &a.qs);
        }
        sum
    }
}

impl Quantize for BlockQ8_0 {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            let (d, qs) = quantize_q8(x);
            *b = BlockQ8_0 { d: f16::from_f32(d), qs };
        }
    }

    fn quantize_activations(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            let (d, q) = quantize_q8_x86(x);
            *b = BlockQ8_0 { d: f16::from_f32(d), qs: q.map(pack) };
        }
    }
}

impl Block for BlockQ8_1 {
    const DTYPE: DType = DType::Q8_1;
    const SIZE: usize = QK;
    type Act = BlockQ8_1;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = f32::from(q) * d;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut sum = 0.0f32;
        for (w, a) in w.iter().zip(a) {
            sum += block_dot(w.d, &w.qs, a.d, &a.qs);
        }
        sum
    }
}

impl Quantize for BlockQ8_1 {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            let (d, qs) = quantize_q8(x);
            // s uses the unrounded f32 d and the stored (converted) quants, as ggml does.
            let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
            *b = BlockQ8_1 { d: f16::from_f32(d), s: f16::from_f32(sum as f32 * d), qs };
        }
    }

    fn quantize_activations(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            let (d, q) = quantize_q8_x86(x);
            // s from the quants before packing, summed as the AVX code's wrapping adds do.
            let sum = q.iter().fold(0i32, |s, &q| s.wrapping_add(q));
            *b = BlockQ8_1 { d: f16::from_f32(d), s: f16::from_f32(d * sum as f32), qs: q.map(pack) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> f16 {
        f16::from_f32(v)
    }

    #[test]
    fn q8_0_known_block_and_dot() {
        let qs: [i8; 32] = std::array::from_fn(|j| j as i8 - 16);
        let b = BlockQ8_0 { d: h(0.5), qs };
        let mut y = [0.0; 32];
        BlockQ8_0::dequantize(&[b], &mut y);
        assert!(y.iter().enumerate().all(|(j, &v)| v == (j as f32 - 16.0) * 0.5));
        let a = BlockQ8_0 { d: h(2.0), qs: [-128; 32] };
        // Σ (j - 16) = -16; * -128 * 0.5 * 2.
        assert_eq!(BlockQ8_0::dot(&[b], &[a]), 2048.0);
    }

    #[test]
    fn q8_0_quantize_rounds_half_away_from_zero() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0; // d = 1
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.49;
        let mut b = [BlockQ8_0::zeroed()];
        BlockQ8_0::quantize(&x, &mut b);
        assert_eq!(b[0].d, h(1.0));
        assert_eq!(&b[0].qs[..4], &[127, 3, -3, 0]);
        // Activations, as ggml's AVX quantizer makes them: halves to even.
        BlockQ8_0::quantize_activations(&x, &mut b);
        assert_eq!(b[0].d, h(1.0));
        assert_eq!(&b[0].qs[..4], &[127, 2, -2, 0]);
        let mut b1 = [BlockQ8_1::zeroed()];
        BlockQ8_1::quantize_activations(&x, &mut b1);
        assert_eq!((&b1[0].qs[..4], b1[0].s), (&[127i8, 2, -2, 0][..], h(127.0)));
    }

    #[test]
    fn q8_1_sum_is_d_times_sum_of_quants() {
        let mut x = [1.0f32; 32];
        x[0] = -127.0; // d = 1, q = x
        let mut b = [BlockQ8_1::zeroed()];
        BlockQ8_1::quantize(&x, &mut b);
        assert_eq!(b[0].d, h(1.0));
        assert_eq!(b[0].s, h(31.0 - 127.0));
        let mut y = [0.0; 32];
        BlockQ8_1::dequantize(&b, &mut y);
        assert_eq!(y, x);
        assert_eq!(BlockQ8_1::dot(&b, &b), 31.0 + 127.0 * 127.0);
    }

    #[test]
    fn zero_block_quantizes_to_zero_scale_and_quants() {
        let mut b = [BlockQ8_1 { d: h(1.0), s: h(1.0), qs: [1; 32] }];
        BlockQ8_1::quantize(&[0.0; 32], &mut b);
        assert_eq!(b[0], BlockQ8_1::zeroed());
    }
}
