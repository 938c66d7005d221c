//! `Q2_K`: 2-bit quants, 16 sub-blocks of 16 with a 4-bit scale and a 4-bit min each.
//!
//! `block_q2_K` in `ggml/src/ggml-common.h` (84 bytes); element `e` of the 256 is
//!
//! ```text
//! x[e] = d * (scales[e/16] & 0xf) * q[e] - dmin * (scales[e/16] >> 4)
//! q[e] = (qs[32*(e/128) + e%32] >> (2 * ((e%128) / 32))) & 3
//! ```
//!
//! i.e. each 32-byte half of `qs` holds 128 values as four 2-bit planes, plane `p` holding
//! elements `32p..32p+32` of that half. Matches `dequantize_row_q2_K` and
//! `quantize_row_q2_K_ref` (`ggml-quants.c`) and `ggml_vec_dot_q2_K_q8_K_generic`
//! (`ggml-cpu/quants.c`).

use super::search::{make_qkx2_quants, nearest_int};
use super::{fp16, out_blocks, super_blocks};
use crate::DType;
use crate::quant::{Block, BlockQ2_K, BlockQ8_K, QK_K, Quantize};

/// Byte of `qs` and bit shift holding element `e`.
fn qs_pos(e: usize) -> (usize, u32) {
    (32 * (e / 128) + e % 32, 2 * ((e % 128) / 32) as u32)
}

impl BlockQ2_K {
    /// The 256 quants, each in `0..4`.
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (byte, shift) = qs_pos(e);
            ((self.qs[byte] >> shift) & 3) as i8
        })
    }
}

impl Block for BlockQ2_K {
    const DTYPE: DType = DType::Q2_K;
    const SIZE: usize = QK_K;
    type Act = BlockQ8_K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in out_blocks(blocks, out) {
            let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
            for (e, (y, q)) in y.iter_mut().zip(b.quants()).enumerate() {
                let sc = b.scales[e / 16];
                let dl = d * f32::from(sc & 0xf);
                let ml = dmin * f32::from(sc >> 4);
                *y = dl * f32::from(q) - ml;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot: row lengths differ");
        let mut sumf = 0f32;
        for (x, y) in w.iter().zip(a) {
            // The min term, from the activation's precomputed sums of 16.
            let summs: i32 = (0..16).map(|j| i32::from(y.bsums[j]) * i32::from(x.scales[j] >> 4)).sum();
            let isum: i32 = x
                .quants()
                .iter()
                .zip(&y.qs)
                .enumerate()
                .map(|(e, (&q, &a))| i32::from(x.scales[e / 16] & 0xf) * i32::from(q) * i32::from(a))
                .sum();
            let dall = y.d * x.d.to_f32();
            let dmin = y.d * x.dmin.to_f32();
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }
}

impl Quantize for BlockQ2_K {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, y) in super_blocks(x, out) {
            *y = quantize_block(x);
        }
    }
}

/// `quantize_row_q2_K_ref` for one super-block: a scale/min search per sub-block of 16
/// (weighted by |x|, absolute error), 4-bit scales and mins against `d = max_scale / 15` and
/// `dmin = max_min / 15`, then the values re-quantized against the rounded scales.
fn quantize_block(x: &[f32; QK_K]) -> BlockQ2_K {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..16 {
        let xs = &x[16 * j..16 * (j + 1)];
        let weights: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
        let (scale, min) = make_qkx2_quants(3, xs, &weights, &mut l[16 * j..16 * (j + 1)], -0.5, 0.1, 15, true);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let mut y = BlockQ2_K::zeroed();
    // ggml stores nearest_int straight into the u8 (and ORs the min in as an int): a
    // negative scale from the search would wrap, and we wrap the same way.
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (s, &scale) in y.scales.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * scale) as u8;
        }
        y.d = fp16(max_scale / 15.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (s, &min) in y.scales.iter_mut().zip(&mins) {
            *s |= (nearest_int(iscale * min) << 4) as u8;
        }
        y.dmin = fp16(max_min / 15.0);
    }

    for j in 0..16 {
        let d = y.d.to_f32() * f32::from(y.scales[j] & 0xf);
        if d == 0.0 {
            continue; // keeps the search's quants, as ggml does
        }
        let dm = y.dmin.to_f32() * f32::from(y.scales[j] >> 4);
        for e in 16 * j..16 * (j + 1) {
            l[e] = nearest_int((x[e] + dm) / d).clamp(0, 3) as u8;
        }
    }
    for (e, &q) in l.iter().enumerate() {
        let (byte, shift) = qs_pos(e);
        y.qs[byte] |= q << shift;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::k_quants::test_util;
    use half::f16;

    #[test]
    fn known_block_dequantizes_to_known_values() {
        let mut b = BlockQ2_K::zeroed();
        b.d = f16::from_f32(1.0);
        b.dmin = f16::from_f32(0.5);
        for (s, sc) in b.scales.iter_mut().enumerate() {
            *sc = (s as u8) | ((15 - s as u8) << 4);
        }
        // 0b11_10_01_00 in every byte: plane p of each half holds the value p.
        b.qs = [0b1110_0100; 64];
        let mut y = [0f32; QK_K];
        BlockQ2_K::dequantize(&[b], &mut y);
        // e = 40: sub-block 2 (scale 2, min 13), plane 1 -> 2 * 1 - 0.5 * 13.
        assert_eq!(y[40], -4.5);
        // e = 255: sub-block 15 (scale 15, min 0), plane 3 -> 45.
        assert_eq!(y[255], 45.0);
        // e = 130: second half, plane 0 -> -0.5 * 7.
        assert_eq!(y[130], -3.5);
    }

    #[test]
    fn round_trip_and_dot() {
        test_util::round_trip::<BlockQ2_K>(&test_util::row(3), 0.35);
    }
}
